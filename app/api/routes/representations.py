from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, status
from sqlalchemy.orm import Session

from app.api.deps import EngineerProject, MemberProject, SessionDep
from app.core.queue import enqueue_representation
from app.core.settings import get_settings
from app.representations import service
from app.representations.schemas import RepresentationList, RepresentationRead

router = APIRouter(tags=["representations"])
log = logging.getLogger("suggestlab.api")


def request_representation(session: Session, project_id: int) -> int | None:
    """Queues a representation job after committing; None if one is already queued or training.
    Raises on a broker outage, after marking the job failed."""
    row = service.request(session, project_id=project_id, stale_seconds=get_settings().representation_stale_seconds)
    if row is None:
        return None
    session.commit()
    try:
        enqueue_representation(row.id)
    except Exception:
        row.status, row.phase, row.error = "failed", "failed", "could not reach the task queue"
        session.commit()
        raise
    return row.id


@router.get("/projects/{project_id}/representations", response_model=RepresentationList)
def list_representations(project: MemberProject, session: SessionDep) -> RepresentationList:
    """The project's learned representations, newest first, with status, progress and training metrics."""
    rows = [RepresentationRead.model_validate(r) for r in service.list_for(session, project_id=project.id)]
    return RepresentationList(data=rows, count=len(rows))


@router.post(
    "/projects/{project_id}/representations", response_model=RepresentationRead, status_code=status.HTTP_202_ACCEPTED
)
def train_representation(project: EngineerProject, session: SessionDep) -> RepresentationRead:
    """Learn a new self-supervised representation of the pool now (a background job; rounds never wait)."""
    try:
        requested = request_representation(session, project.id)
    except Exception as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the task queue is unavailable") from exc
    if requested is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "a representation of this project is already queued or training")
    row = service.active(session, project_id=project.id)
    assert row is not None
    return RepresentationRead.model_validate(row)
