from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

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


def request(session: Session, *, project_id: int) -> Representation | None:
    """A queued representation job for the project, or None when one is already queued or training.
    The caller commits, then enqueues the returned id."""
    if active(session, project_id=project_id) is not None:
        return None
    row = Representation(project_id=project_id)
    session.add(row)
    session.flush()
    return row
