"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, status
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, configure_mappers

from app.annotations import service as annotation_service
from app.api.errors import ERROR_RESPONSES
from app.api.guard import AnnotatorQueue, BodyGuard, SecurityHeaders
from app.api.routes import annotations, images, latent, projects, representations, rounds, simulations, users
from app.core.db import session_factory, warm_pool
from app.core.settings import Settings, get_settings
from app.projects import service as project_service
from app.rounds.orm import Round
from app.users import service as user_service
from app.users.orm import Role, User

log = logging.getLogger("suggestlab.api")
FRONTEND = Path(__file__).resolve().parent.parent / "frontend"


async def sweep_stale_rounds(interval: float) -> None:
    """Every `interval` seconds: re-send rounds whose worker died (rounds.service.requeue_stale) and
    fail representation jobs whose worker died (representations.service.fail_stale)."""
    settings = get_settings()
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(_sweep_once, settings)
        except Exception:
            log.warning("stale-round sweep failed", exc_info=True)


def _sweep_once(settings: Settings) -> None:
    from app.core.db import session_scope
    from app.core.queue import enqueue_round
    from app.representations import service as representations
    from app.rounds.service import requeue_stale

    with session_scope(settings) as session:
        requeued = requeue_stale(
            session, stale_seconds=settings.round_stale_seconds, max_attempts=settings.round_max_attempts
        )
        lost = representations.fail_stale(session, stale_seconds=settings.representation_stale_seconds)
    if lost:
        log.warning("%s representation job(s) lost their worker; marked failed", lost)
    for round_id in requeued:
        log.warning("round %s lost its worker; queued again", round_id)
        enqueue_round(round_id)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    await warm_up(app)
    task = asyncio.create_task(sweep_stale_rounds(max(1.0, settings.round_stale_seconds / 4)))
    # Beside startup, not before it: a database that is down or slow must not keep the API (and its
    # health check and error pages) from serving.
    warming = asyncio.create_task(asyncio.to_thread(_warm_pool, settings))
    try:
        yield
    finally:
        task.cancel()
        warming.cancel()


API_PREFIX = "/api/v1"
# Requests that reach no database: a path no route has (every router is matched against it), and an
# annotator's request for work without a token (the authentication path and its rate limiter).
WARM_UP_REQUESTS: tuple[tuple[str, str, dict[str, int] | None], ...] = (
    ("GET", f"{API_PREFIX}/warm-up", None),
    ("POST", f"{API_PREFIX}/projects/1/next", {"limit": 1}),
)


async def warm_up(app: FastAPI, timeout: float = 10.0) -> None:
    """Does before the API serves what its first requests would otherwise do: configures the ORM
    mappers and sends a few requests through the app in-process.

    SQLAlchemy configures every mapper on the first query, FastAPI builds a router's routes (their
    pydantic validators) the first time a request is matched against it, and the rate limiter
    imports its Redis client on first use: about 210 ms of CPU per API process, which otherwise
    lands on the first requests each process serves, all at once when annotators arrive together
    (benchmarks/results/api_load.md, stop 23). Bounded, and never fatal: an unreachable
    rate-limiter store must not keep the API from starting.
    """
    configure_mappers()
    transport = httpx.ASGITransport(app=app)

    async def send_all() -> None:
        async with httpx.AsyncClient(transport=transport, base_url="http://warm-up") as client:
            for method, path, body in WARM_UP_REQUESTS:
                await client.request(method, path, json=body)

    try:
        await asyncio.wait_for(send_all(), timeout)
    except Exception:
        log.warning("warming the routes up failed; the first requests build them instead", exc_info=True)


def annotator_queries(session: Session) -> None:
    """An annotator's reads (who, which project, the open round, a lease, an image to label) against
    ids that do not exist, so each pooled connection and the statement cache have seen them."""
    nobody = User(id=0, name="warm-up", role=Role.annotator)
    user_service.get_by_token(session, "warm-up")
    project_service.visible(session, project_id=0, user=nobody)
    annotation_service.open_round_progress(session, project_id=0)
    annotation_service.lease_next(session, round_=Round(id=0), user=nobody, limit=1, lease_seconds=1)
    project_service.image_to_label(session, image_id=0, user=nobody)
    annotation_service.open_suggestion(session, project_id=0, image_id=0)


def _warm_pool(settings: Settings) -> None:
    try:
        warm_pool(settings, annotator_queries)
    except Exception:  # the database is not reachable yet: requests open connections as before
        log.warning("could not open the database connection pool at startup", exc_info=True)


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        lifespan=lifespan,
        title="SuggestLab",
        version="0.1.0",
        description="Active-learning annotation service: which images to label next.",
    )
    for module in (users, projects, images, rounds, annotations, simulations, latent, representations):
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)

    app.add_middleware(BodyGuard, settings=settings)
    app.add_middleware(AnnotatorQueue, limit=settings.annotator_concurrency)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(OperationalError)
    async def database_unavailable(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return JSONResponse(
            {"detail": "the database is unavailable or busy right now; retry in a few seconds"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await database_unavailable(_, exc)  # type: ignore[arg-type]
        raise exc

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        with session_factory()() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok"}

    app.mount("/static", StaticFiles(directory=FRONTEND / "static"), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(FRONTEND / "index.html")

    return app
