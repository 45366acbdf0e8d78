from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.representations.orm import ACTIVE, Representation


def active(session: Session, *, project_id: int) -> Representation | None:
    return session.scalar(
        select(Representation).where(Representation.project_id == project_id, Representation.status.in_(ACTIVE))
    )


def latest_ready(session: Session, *, project_id: int) -> Representation | None:
    return session.scalar(
        select(Representation)
        .where(Representation.project_id == project_id, Representation.status == "ready")
        .order_by(Representation.id.desc())
        .limit(1)
    )


def list_for(session: Session, *, project_id: int) -> list[Representation]:
    return list(
        session.scalars(
            select(Representation).where(Representation.project_id == project_id).order_by(Representation.id.desc())
        )
    )


def fail_stale(session: Session, *, stale_seconds: float, project_id: int | None = None) -> int:
    """Training jobs whose worker went quiet (no heartbeat for `stale_seconds`) are failed, so
    they stop blocking a new one; returns how many. A conditional UPDATE: a job that reports again
    is left alone, and one that was failed here stops at its next report."""
    cutoff = utcnow() - timedelta(seconds=stale_seconds)
    query = update(Representation).where(
        Representation.status == "training",
        func.coalesce(Representation.heartbeat_at, Representation.started_at) < cutoff,
    )
    if project_id is not None:
        query = query.where(Representation.project_id == project_id)
    result = session.execute(
        query.values(
            status="failed",
            phase="failed",
            finished_at=utcnow(),
            error=f"the worker stopped reporting (no heartbeat for {stale_seconds:.0f} s)",
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def request(session: Session, *, project_id: int, stale_seconds: float) -> Representation | None:
    """A queued representation job for the project, or None when one is already queued or training
    (a training job that went quiet for `stale_seconds` no longer counts). The caller commits, then
    enqueues the returned id."""
    fail_stale(session, stale_seconds=stale_seconds, project_id=project_id)
    if active(session, project_id=project_id) is not None:
        return None
    row = Representation(project_id=project_id)
    session.add(row)
    session.flush()
    return row
