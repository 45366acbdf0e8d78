"""Engine, session factory and the declarative base shared by every ORM module."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, Select, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from app.core.settings import Settings, get_settings

log = logging.getLogger("suggestlab.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC and hands back aware UTC, so SQLite and PostgreSQL compare alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # The API and the worker are separate processes writing one file: WAL lets readers
            # run beside a writer, and autocommit mode hands transaction control to "begin" below.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A deferred transaction that reads and then writes can fail with SQLITE_BUSY without
            # waiting; taking the write lock up front makes concurrent writers queue instead. A
            # unit of work that only reads (read_scope) needs no lock: WAL gives it a snapshot.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


_factories: dict[str, sessionmaker[Session]] = {}
_readers: dict[str, Engine] = {}
# The execution option that marks a read-only unit of work (see read_scope).
READ_ONLY = "suggestlab_read_only"


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    url = (settings or get_settings()).database_url
    if url not in _factories:
        _factories[url] = sessionmaker(make_engine(url), expire_on_commit=False)
    return _factories[url]


def warm_pool(settings: Settings | None = None, queries: Callable[[Session], object] | None = None) -> int:
    """Opens the engine's whole steady pool now, running `queries` on each connection in a
    transaction that is rolled back; returns how many connections it holds.

    A server database forks a backend per connection and the dialect queries the server on the
    first one; each backend then reads the catalog of every table on its first query of it, and
    SQLAlchemy compiles each statement on its first use. Left lazy, those costs all land in the
    first second of use, when the first annotators arrive together and each concurrent request
    takes a connection of its own. SQLite connections are cheap and left lazy.
    """
    engine = session_factory(settings).kw["bind"]
    if engine.dialect.name == "sqlite":
        return 0
    held = []
    try:
        for _ in range(engine.pool.size()):
            conn = engine.connect()
            held.append(conn)
            if queries is not None:
                with Session(bind=conn) as session:
                    try:
                        queries(session)
                    except SQLAlchemyError:
                        # A schema not migrated yet, say: the connections are still worth opening.
                        log.warning("the warm-up queries failed; the pool opens without them", exc_info=True)
                        queries = None
                    finally:
                        session.rollback()
    finally:
        for conn in held:
            conn.close()  # back to the pool, open
    return len(held)


def dispose_engines() -> None:
    """Drop pooled connections, for a process that was forked after they were opened."""
    for factory in _factories.values():
        bind = factory.kw.get("bind")
        if bind is not None:
            bind.dispose(close=False)
    _factories.clear()
    _readers.clear()


def plain_rows(session: Session, statement: Select[Any]) -> list[tuple[Any, ...]]:
    """Every row of a select as the driver's plain tuples, without SQLAlchemy's per-row result
    processing, which a million-row read (a round's pool) pays a million times. Only for columns
    whose driver values are already what the caller wants (ints, strings; a boolean comes back as
    0/1 on SQLite) and parameters the driver takes as they are."""
    connection = session.connection()
    compiled = statement.compile(dialect=connection.dialect)
    params: Any = compiled.construct_params()
    if compiled.positional:
        params = [params[name] for name in compiled.positiontup or ()]
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


@contextmanager
def read_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A unit of work that only reads, rolled back at the end. On SQLite it takes no write lock: a
    worker reading a million-image pool (seconds) would otherwise hold every writer of the API
    (labels, leases) for that long. Nothing may be written through it."""
    factory = session_factory(settings)
    url = (settings or get_settings()).database_url
    if url not in _readers:
        _readers[url] = factory.kw["bind"].execution_options(**{READ_ONLY: True})
    session = factory(bind=_readers[url])
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A unit of work outside a request: commit on success, roll back on error."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
