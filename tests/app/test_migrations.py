"""The Alembic migrations upgrade and downgrade cleanly on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from app.core.migrate import downgrade, upgrade
from app.core.settings import Settings

TABLES = {
    "user",
    "api_token",
    "project",
    "project_member",
    "image",
    "round",
    "suggestion",
    "annotation",
    "simulation",
    "representation",
}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_upgrade_downgrade_upgrade(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        url = request.getfixturevalue("postgres_url").rsplit("/", 1)[0] + "/test"
        import psycopg

        plain = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS suggestlab_migration_check WITH (FORCE)")
            conn.execute("CREATE DATABASE suggestlab_migration_check")
        url = url.rsplit("/", 1)[0] + "/suggestlab_migration_check"
    settings = Settings(data_dir=tmp_path, database_url=url)
    upgrade(settings)
    assert _tables(url) == TABLES
    downgrade(settings, "base")
    assert _tables(url) == set()
    upgrade(settings)
    assert _tables(url) == TABLES
    if backend == "postgres":
        import psycopg

        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute("DROP DATABASE suggestlab_migration_check WITH (FORCE)")


def test_migrations_build_exactly_the_orm_schema(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import app.orm  # noqa: F401  (every ORM module, so the metadata is complete)
    from app.core.db import Base

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(Settings(data_dir=tmp_path, database_url=url))
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
