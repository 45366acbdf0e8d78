"""The API opens its database connection pool when it starts, on a real PostgreSQL database, so the
first annotators do not each pay for a new server backend; SQLite stays lazy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.core import ratelimit
from app.core.db import dispose_engines, session_factory, warm_pool
from app.core.settings import Settings, get_settings
from app.main import create_app, lifespan


@pytest.fixture
def env_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[str], Settings]]:
    """Points the process's settings (what the app reads) at a database URL for one test."""

    def use(url: str) -> Settings:
        monkeypatch.setenv("SUGGESTLAB_DATABASE_URL", url)
        monkeypatch.setenv("SUGGESTLAB_DATA_DIR", str(tmp_path))
        get_settings.cache_clear()
        return get_settings()

    yield use
    dispose_engines()
    get_settings.cache_clear()


def _engine(settings: Settings) -> Engine:
    return session_factory(settings).kw["bind"]


@pytest.mark.postgres
def test_the_api_opens_its_pool_at_startup_on_postgres(
    env_settings: Callable[[str], Settings], postgres_db_factory: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    settings = env_settings(postgres_db_factory())
    engine = _engine(settings)
    assert engine.pool.checkedin() == 0

    async def start_and_wait() -> int:
        # The real lifespan, as uvicorn runs it: startup does not wait for the pool, which fills
        # beside it.
        async with lifespan(FastAPI()):
            for _ in range(100):
                if engine.pool.checkedin() >= engine.pool.size():
                    break
                await asyncio.sleep(0.05)
            return engine.pool.checkedin()

    assert asyncio.run(start_and_wait()) == engine.pool.size() == 10
    # This database has no schema yet: the annotator's warm-up queries failed, the pool opened anyway.
    assert "the warm-up queries failed" in caplog.text
    # Warming again reuses the open connections instead of adding more.
    assert warm_pool(settings) == 10 and engine.pool.checkedin() == 10


@pytest.mark.postgres
def test_the_warm_up_runs_on_every_pooled_connection_and_rolls_back(
    env_settings: Callable[[str], Settings], postgres_db_factory: Callable[[], str]
) -> None:
    settings = env_settings(postgres_db_factory())
    backends: list[int] = []

    def queries(session: Session) -> None:
        backends.append(session.scalar(text("SELECT pg_backend_pid()")))
        session.execute(text("CREATE TABLE warm_up_probe (id int)"))

    assert warm_pool(settings, queries) == 10
    # Ten server backends, each has run the queries once, and none of their writes stayed.
    assert len(set(backends)) == 10
    with _engine(settings).connect() as conn:
        assert conn.scalar(text("SELECT to_regclass('warm_up_probe')")) is None


def test_startup_builds_the_request_path_before_serving(
    env_settings: Callable[[str], Settings],
    redis_db_factory: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The first requests of every API process arrive together (annotators starting their day); the
    # rate limiter (a Redis client import) and the routes are made at startup instead, by requests
    # that reach no data and count as no failed sign-in.
    broker = redis_db_factory()
    monkeypatch.setenv("SUGGESTLAB_BROKER_URL", broker)
    env_settings(f"sqlite:///{tmp_path / 'startup.db'}")
    ratelimit._limiter.cache_clear()
    app = create_app()

    async def start() -> None:
        async with lifespan(app):
            # Made before the first request is served, and already talking to the shared store.
            assert ratelimit._limiter.cache_info().currsize == 1

    try:
        asyncio.run(start())
        stored = redis.Redis.from_url(broker)

        def failures_counted() -> list[bytes]:
            return [key for key in stored.scan_iter() if b"auth-failure" in key and b"127.0.0.1" in key]

        assert failures_counted() == []
        ratelimit.failed("127.0.0.1")  # a real failure from the in-process client's address shows
        assert len(failures_counted()) == 1
    finally:
        ratelimit._limiter.cache_clear()


def test_sqlite_connections_stay_lazy(env_settings: Callable[[str], Settings], tmp_path: Path) -> None:
    settings = env_settings(f"sqlite:///{tmp_path / 'lazy.db'}")
    assert warm_pool(settings) == 0
    assert _engine(settings).pool.checkedin() == 0


def test_a_database_that_is_down_does_not_stop_startup(
    env_settings: Callable[[str], Settings], caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 9 here: the warm-up fails, is logged, and the lifespan still starts.
    env_settings("postgresql+psycopg://postgres@127.0.0.1:9/none?connect_timeout=2")

    async def start() -> None:
        async with lifespan(FastAPI()):
            await asyncio.sleep(0.5)

    asyncio.run(start())
    assert "could not open the database connection pool" in caplog.text
