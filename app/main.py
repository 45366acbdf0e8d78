"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from app.api.errors import ERROR_RESPONSES
from app.api.guard import BodyGuard, SecurityHeaders
from app.api.routes import annotations, images, latent, projects, representations, rounds, simulations, users
from app.core.db import session_factory, warm_pool
from app.core.settings import Settings, get_settings

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
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    task = asyncio.create_task(sweep_stale_rounds(max(1.0, settings.round_stale_seconds / 4)))
    # Beside startup, not before it: a database that is down or slow must not keep the API (and its
    # health check and error pages) from serving.
    warming = asyncio.create_task(asyncio.to_thread(_warm_pool, settings))
    try:
        yield
    finally:
        task.cancel()
        warming.cancel()


def _warm_pool(settings: Settings) -> None:
    try:
        warm_pool(settings)
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
        app.include_router(module.router, prefix="/api/v1", responses=ERROR_RESPONSES)

    app.add_middleware(BodyGuard, settings=settings)
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
