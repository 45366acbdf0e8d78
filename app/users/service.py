from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.core.db import utcnow
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


def issue_token(session: Session, *, user: User, kind: str = "api", lifetime: timedelta | None = None) -> str:
    token = new_token()
    expires = utcnow() + lifetime if lifetime is not None else None
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), kind=kind, expires_at=expires))
    session.flush()
    return token


def _live(token: str):  # type: ignore[no-untyped-def]
    return and_(
        ApiToken.token_hash == hash_token(token),
        ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > utcnow()),
    )


def get_by_token(session: Session, token: str) -> User | None:
    return session.scalar(select(User).join(ApiToken, ApiToken.user_id == User.id).where(_live(token)))


def token_row(session: Session, token: str) -> ApiToken | None:
    return session.scalar(select(ApiToken).where(_live(token)))


def tokens_of(session: Session, *, user_id: int) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)))


def revoke(session: Session, *, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
