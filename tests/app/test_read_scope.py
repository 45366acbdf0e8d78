"""A unit of work that only reads (the worker reading a round's inputs) takes no write lock on
SQLite, so the API's writers are not held for the seconds a million-image pool takes to read."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app import orm
from app.core.db import dispose_engines, plain_rows, read_scope, session_factory, session_scope
from app.core.migrate import upgrade
from app.core.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(data_dir=tmp_path)
    orm.Base.metadata.create_all(session_factory(settings).kw["bind"])
    with session_scope(settings) as session:
        session.add(orm.Project(name="before", classes=["a", "b"]))
    yield settings
    dispose_engines()


def _another_writer_commits(settings: Settings) -> bool:
    """Whether another connection (as another process would) takes the write lock within 0.2 s."""
    connection = sqlite3.connect(settings.data_dir / "suggestlab.db", timeout=0.2, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE project SET name = 'after'")
        connection.execute("COMMIT")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


def test_a_read_scope_leaves_the_database_to_writers_and_keeps_its_snapshot(settings: Settings) -> None:
    with read_scope(settings) as session:
        assert session.scalar(select(orm.Project.name)) == "before"
        assert _another_writer_commits(settings)
        # One transaction, one snapshot: the write that landed meanwhile is not half-seen.
        assert session.scalar(select(orm.Project.name)) == "before"
    with read_scope(settings) as session:
        assert session.scalar(select(orm.Project.name)) == "after"


def test_a_unit_of_work_that_may_write_still_takes_the_lock_up_front(settings: Settings) -> None:
    with session_scope(settings) as session:
        assert session.scalar(select(orm.Project.name)) == "before"
        assert not _another_writer_commits(settings)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_plain_rows_reads_what_the_orm_reads_on_each_backend(
    backend: str, tmp_path: Path, postgres_db_factory_lazy: Callable[[], str]
) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}" if backend == "sqlite" else postgres_db_factory_lazy()
    settings = Settings(database_url=url, data_dir=tmp_path)
    upgrade(settings)
    with session_scope(settings) as session:
        project, other = orm.Project(name="p", classes=["a"]), orm.Project(name="q", classes=["a"])
        session.add_all([project, other])
        session.flush()
        session.add_all(
            orm.Image(
                project_id=(project if i % 3 else other).id,
                storage_key=f"key-{i}",
                sha256=f"{i:064d}",
                format="PNG",
                width=8,
                height=8,
                original_name=f"{i}.png",
                split="validation" if i == 4 else "pool",
                synthetic=i == 5,
            )
            for i in range(9)
        )
        project_id = project.id
    query = (
        select(orm.Image.id, orm.Image.storage_key, orm.Image.synthetic)
        .where(orm.Image.project_id == project_id, orm.Image.split == orm.Split.pool.value)
        .order_by(orm.Image.id)
    )
    try:
        with read_scope(settings) as session:
            expected = [tuple(row) for row in session.execute(query)]
            got = plain_rows(session, query)
    finally:
        dispose_engines()
    assert [key for _, key, _ in expected] == ["key-1", "key-2", "key-5", "key-7", "key-8"]
    assert [(i, key, bool(synthetic)) for i, key, synthetic in got] == expected
