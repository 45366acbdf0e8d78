"""Request dependencies: the session, the caller, and loaders that check access before a route runs.

Access rules live here and nowhere else: a row of a project the caller is not a member of is a 404
(its existence is not leaked); a visible row with the wrong role is a 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Cookie, Depends, Header, HTTPException, Path, Request, status
from sqlalchemy.orm import Session

from app.annotations.orm import Annotation
from app.core import ratelimit
from app.core.db import session_factory
from app.core.settings import Settings, get_settings
from app.images.orm import Image
from app.projects import service as projects
from app.projects.orm import Project
from app.rounds.orm import Round, Suggestion
from app.storage import Storage, get_storage
from app.users import service as users
from app.users.orm import Role, User

ANY_ROLE = (Role.admin, Role.engineer, Role.annotator)
# Ids are 32-bit in every supported database: a larger one is a 422, never an overflow error.
MAX_ID = 2**31 - 1
ENGINEER = (Role.admin, Role.engineer)
ADMIN = (Role.admin,)


def get_session() -> Iterator[Session]:
    # The request owns the transaction: services only flush, this commits or rolls back.
    session = session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function" commits before the response is sent, so a client that reads right after a
# write always sees it, and a failed commit becomes an error response instead of a lost write.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def settings_dependency() -> Settings:
    # Settings come from the environment only: a dependency with parameters (or a pydantic model
    # argument) would let FastAPI fill it from the request body. `async` because it does no I/O: a
    # plain def would cost a hop through the thread pool on every request.
    return get_settings()


def storage_dependency() -> Storage:
    # A plain def: the first call may reach the S3 endpoint (it checks the bucket), which must not
    # block the event loop.
    return get_storage()


SettingsDep = Annotated[Settings, Depends(settings_dependency)]
StorageDep = Annotated[Storage, Depends(storage_dependency)]


SESSION_COOKIE = "suggestlab_session"


def refuse_if_rate_limited(request: Request) -> str:
    """The client's address, or 429 with Retry-After while it is over the authentication-failure limit."""
    client = request.client.host if request.client else "unknown"
    wait = ratelimit.blocked(client)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed sign-ins from this address; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    return client


def get_current_user(
    request: Request,
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
    cookie_token: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
) -> User:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if not token and cookie_token and request.method in ("GET", "HEAD"):
        # The browser UI's session cookie authenticates reads only (image tags, download links), so a
        # cross-site form can never make it write; every write needs the bearer header.
        token = cookie_token
    client = refuse_if_rate_limited(request)
    user = users.get_by_token(session, token) if token else None
    if user is None:
        if token:
            ratelimit.failed(client)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def _check_role(user: User, roles: tuple[Role, ...]) -> None:
    if user.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this action needs the {allowed} role")


def require(*roles: Role) -> Callable[[User], Awaitable[User]]:
    async def dependency(user: CurrentUser) -> User:
        _check_role(user, roles)
        return user

    return dependency


AdminUser = Annotated[User, Depends(require(*ADMIN))]
EngineerUser = Annotated[User, Depends(require(*ENGINEER))]

T = TypeVar("T")


def _visible_project(session: Session, user: User, project_id: int, what: str) -> Project:
    project = projects.visible(session, project_id=project_id, user=user)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")
    _keep(session, project)
    return project


def project_access(*roles: Role) -> Callable[..., Project]:
    def dependency(
        session: SessionDep, user: CurrentUser, project_id: Annotated[int, Path(ge=1, le=MAX_ID)]
    ) -> Project:
        project = _visible_project(session, user, project_id, "project")
        _check_role(user, roles)
        return project

    return dependency


def row_access(model: type[Any], param: str, what: str, project_of: Callable[[Session, Any], int], roles):  # type: ignore[no-untyped-def]
    def dependency(session: SessionDep, user: CurrentUser, row_id: int = Path(alias=param, ge=1, le=MAX_ID)) -> Any:
        row = session.get(model, row_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")
        _visible_project(session, user, project_of(session, row), what)
        _check_role(user, roles)
        return row

    return dependency


def _image_project(_: Session, image: Image) -> int:
    return image.project_id


def _round_project(_: Session, round_: Round) -> int:
    return round_.project_id


def _suggestion_project(session: Session, suggestion: Suggestion) -> int:
    round_ = session.get(Round, suggestion.round_id)
    assert round_ is not None
    return round_.project_id


def _annotation_project(session: Session, annotation: Annotation) -> int:
    image = session.get(Image, annotation.image_id)
    assert image is not None
    return image.project_id


def _keep(session: Session, project: Project) -> None:
    # The identity map holds rows weakly: a route that reads this project again (an image's route
    # checks its classes) would query it a second time once the dependency has dropped it.
    session.info.setdefault("visible_projects", []).append(project)


def image_to_label(session: SessionDep, user: CurrentUser, image_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Image:
    # Labelling is the hot path of the service: the image, its project, the caller's membership and
    # the image's row lock come in one query instead of three.
    found = projects.image_to_label(session, image_id=image_id, user=user)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "image not found")
    _keep(session, found[1])
    return found[0]


def image_access(*roles: Role) -> Callable[..., Image]:
    return row_access(Image, "image_id", "image", _image_project, roles)


def round_access(*roles: Role) -> Callable[..., Round]:
    return row_access(Round, "round_id", "round", _round_project, roles)


def suggestion_access(*roles: Role) -> Callable[..., Suggestion]:
    return row_access(Suggestion, "suggestion_id", "suggestion", _suggestion_project, roles)


def annotation_access(*roles: Role) -> Callable[..., Annotation]:
    return row_access(Annotation, "annotation_id", "annotation", _annotation_project, roles)


MemberProject = Annotated[Project, Depends(project_access(*ANY_ROLE))]
EngineerProject = Annotated[Project, Depends(project_access(*ENGINEER))]
AdminProject = Annotated[Project, Depends(project_access(*ADMIN))]
MemberImage = Annotated[Image, Depends(image_access(*ANY_ROLE))]
# A member's image with its row locked until the request's transaction ends (labelling).
ImageToLabel = Annotated[Image, Depends(image_to_label)]
EngineerImage = Annotated[Image, Depends(image_access(*ENGINEER))]
MemberRound = Annotated[Round, Depends(round_access(*ANY_ROLE))]
EngineerRound = Annotated[Round, Depends(round_access(*ENGINEER))]
MemberSuggestion = Annotated[Suggestion, Depends(suggestion_access(*ANY_ROLE))]
MemberAnnotation = Annotated[Annotation, Depends(annotation_access(*ANY_ROLE))]
