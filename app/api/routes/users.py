from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel

from app.api.deps import SESSION_COOKIE, AdminUser, CurrentUser, SessionDep
from app.users import service
from app.users.schemas import TokenIssued, UserCreate, UserList, UserRead

router = APIRouter(tags=["users"])


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


@router.post("/users/{user_id}/tokens", response_model=TokenIssued, status_code=status.HTTP_201_CREATED)
def issue_token(user_id: int, session: SessionDep, _: AdminUser) -> TokenIssued:
    """Issue a bearer token for a user; it is shown only in this response."""
    user = service.get(session, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    return TokenIssued(token=service.issue_token(session, user=user), user_id=user.id)


class SessionCreate(BaseModel):
    token: str


@router.post("/session", response_model=UserRead)
def create_session(body: SessionCreate, session: SessionDep, response: Response) -> UserRead:
    """Sign the browser in: checks a token and sets an HttpOnly cookie that authorises GET requests."""
    user = service.get_by_token(session, body.token.strip())
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token")
    response.set_cookie(SESSION_COOKIE, body.token.strip(), httponly=True, samesite="strict", max_age=30 * 86400)
    return UserRead.model_validate(user)


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
def delete_session(response: Response) -> None:
    """Sign the browser out."""
    response.delete_cookie(SESSION_COOKIE)
