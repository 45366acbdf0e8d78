"""A unit of work that only reads (the worker reading a round's inputs) takes no write lock on
SQLite, so the API's writers are not held for the seconds a million-image pool takes to read."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app import orm
from app.core.db import dispose_engines, read_scope, session_factory, session_scope
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
