from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.security import hash_token, new_token
from app.users.orm import ApiToken, Role, User


def get(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_by_name(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def list_all(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def create(session: Session, *, name: str, role: Role) -> User:
    user = User(name=name, role=role.value)
    session.add(user)
    session.flush()
    return user


def issue_token(session: Session, *, user: User) -> str:
    token = new_token()
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token)))
    session.flush()
    return token


def get_by_token(session: Session, token: str) -> User | None:
    return session.scalar(
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    )
