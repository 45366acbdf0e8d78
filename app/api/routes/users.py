from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Cookie, Header, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, Field

from app.api.deps import SESSION_COOKIE, AdminUser, CurrentUser, SessionDep, SettingsDep, refuse_if_rate_limited
from app.core import ratelimit
from app.users import service
from app.users.orm import ApiToken, Role
from app.users.schemas import RoleChange, TokenIssued, TokenList, TokenRead, UserCreate, UserList, UserRead

router = APIRouter(tags=["users"])

# Path ids are bounded, so an absurd id is a 422, never a database overflow.
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/me", response_model=UserRead)
def read_me(user: CurrentUser) -> UserRead:
    """The caller's own user record (useful to check a token)."""
    return UserRead.model_validate(user)


@router.get("/users", response_model=UserList)
def list_users(session: SessionDep, _: AdminUser) -> UserList:
    """All users."""
    rows = service.list_all(session)
    return UserList(data=[UserRead.model_validate(u) for u in rows], count=len(rows))


@router.post("/users", response_model=UserRead, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, session: SessionDep, _: AdminUser) -> UserRead:
    """Create a user with a role (admin, engineer or annotator)."""
    if service.get_by_name(session, body.name) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"a user named {body.name!r} already exists")
    return UserRead.model_validate(service.create(session, name=body.name, role=body.role))


@router.patch("/users/{user_id}", response_model=UserRead)
def change_role(user_id: UserId, body: RoleChange, session: SessionDep, _: AdminUser) -> UserRead:
    """Change a user's role. The last admin cannot be demoted, so the service never locks itself out."""
    user = service.get(session, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    if user.role == Role.admin and body.role != Role.admin:
        admins = [u for u in service.list_all(session) if u.role == Role.admin]
        if len(admins) <= 1:
            raise HTTPException(status.HTTP_409_CONFLICT, "this is the last admin; make another user admin first")
    user.role = body.role
    session.flush()
    return UserRead.model_validate(user)


@router.post("/users/{user_id}/tokens", response_model=TokenIssued, status_code=status.HTTP_201_CREATED)
def issue_token(user_id: UserId, session: SessionDep, _: AdminUser) -> TokenIssued:
    """Issue a bearer token for a user; it is shown only in this response."""
    user = service.get(session, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    token = service.issue_token(session, user=user)
    row = service.token_row(session, token)
    return TokenIssued(token=token, user_id=user.id, id=row.id if row else None)


@router.get("/users/{user_id}/tokens", response_model=TokenList)
def list_tokens(user_id: UserId, session: SessionDep, _: AdminUser) -> TokenList:
    """A user's tokens (never the tokens themselves): kind, created, expiry, revocation."""
    if service.get(session, user_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    rows = [TokenRead.model_validate(t) for t in service.tokens_of(session, user_id=user_id)]
    return TokenList(data=rows, count=len(rows))


@router.delete("/tokens/{token_id}", response_model=TokenRead)
def revoke_token(token_id: TokenId, session: SessionDep, user: CurrentUser) -> TokenRead:
    """Revoke a token at once (admins: any token; everyone else: their own)."""
    row = session.get(ApiToken, token_id)
    if row is None or (user.role != Role.admin and row.user_id != user.id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "token not found")
    service.revoke(session, token=row)
    return TokenRead.model_validate(row)


class SessionCreate(BaseModel):
    token: str = Field(max_length=200)


class SessionRead(UserRead):
    token: str = Field(description="The session token: the browser's bearer token until sign-out.")


@router.post("/session", response_model=SessionRead)
def create_session(
    body: SessionCreate, session: SessionDep, response: Response, request: Request, settings: SettingsDep
) -> UserRead:
    """Sign the browser in: checks a token and sets an HttpOnly cookie holding a new session token,
    which authorises GET requests only and ends at sign-out or after `session_hours`."""
    client = refuse_if_rate_limited(request)
    user = service.get_by_token(session, body.token.strip())
    if user is None:
        ratelimit.failed(client)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token")
    lifetime = timedelta(hours=settings.session_hours)
    session_token = service.issue_token(session, user=user, kind="session", lifetime=lifetime)
    response.set_cookie(
        SESSION_COOKIE,
        session_token,
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        max_age=int(lifetime.total_seconds()),
    )
    return SessionRead(**UserRead.model_validate(user).model_dump(), token=session_token)


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
def delete_session(
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    cookie_token: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Sign the browser out: its session token (cookie or bearer) stops working at once. Long-lived
    API tokens are revoked only explicitly (DELETE /tokens/{id})."""
    scheme, _, bearer = (authorization or "").partition(" ")
    for candidate in (cookie_token, bearer.strip() if scheme.lower() == "bearer" else None):
        row = service.token_row(session, candidate) if candidate else None
        if row is not None and row.kind == "session":
            service.revoke(session, token=row)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=settings.cookie_secure)
