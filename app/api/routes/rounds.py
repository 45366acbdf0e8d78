from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from app.api.deps import EngineerProject, EngineerRound, EngineerUser, MemberProject, MemberRound, SessionDep
from app.core.queue import enqueue_round
from app.projects import service as projects
from app.rounds import service
from app.rounds.orm import RoundStatus
from app.rounds.schemas import (
    RoundAccepted,
    RoundCreate,
    RoundList,
    RoundRead,
    SuggestionList,
    SuggestionRead,
)
from models.strategies.registry import strategy_names

router = APIRouter(tags=["rounds"])


def _uses_synthetic(body: RoundCreate) -> bool:
    parts = body.params.get("parts") if body.strategy == "hybrid" else None
    return body.strategy == "si" or (isinstance(parts, dict) and "si" in parts)


@router.post("/projects/{project_id}/rounds", response_model=RoundAccepted, status_code=status.HTTP_202_ACCEPTED)
def create_round(body: RoundCreate, project: EngineerProject, user: EngineerUser, session: SessionDep) -> RoundAccepted:
    """Queue a round: retrain on every label so far, evaluate, and select the next batch."""
    names = strategy_names()
    if body.strategy not in names:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown strategy {body.strategy!r}; choose one of: {', '.join(names)}",
        )
    if _uses_synthetic(body) and not projects.settings_of(project).allow_synthetic:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "this project does not allow synthetic images (setting allow_synthetic)",
        )
    try:
        round_ = service.create(
            session, project=project, strategy=body.strategy, batch_size=body.batch_size, params=body.params, user=user
        )
    except service.RoundConflict as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "another round of this project is still queued or running"
        ) from exc
    # The worker must find the row when the task arrives, so the commit comes before the send.
    session.commit()
    try:
        enqueue_round(round_.id)
    except Exception as exc:
        service.fail(session, round_id=round_.id, error=f"could not reach the task queue: {exc}")
        session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the task queue is unavailable; the round was not started"
        ) from exc
    return RoundAccepted(id=round_.id, index=round_.index, status=RoundStatus(round_.status))


@router.get("/projects/{project_id}/rounds", response_model=RoundList)
def list_rounds(project: MemberProject, session: SessionDep) -> RoundList:
    """All rounds of the project, oldest first."""
    rows = [RoundRead.model_validate(r) for r in service.list_for(session, project_id=project.id)]
    return RoundList(data=rows, count=len(rows))


@router.get("/rounds/{round_id}", response_model=RoundRead)
def read_round(round_: MemberRound) -> RoundRead:
    """Status, phase, progress, metrics and error of one round."""
    return RoundRead.model_validate(round_)


@router.get("/rounds/{round_id}/suggestions", response_model=SuggestionList)
def list_suggestions(round_: MemberRound, session: SessionDep) -> SuggestionList:
    """The round's ranked suggestions with their score, reason and status."""
    rows = [SuggestionRead.model_validate(s) for s in service.suggestions(session, round_id=round_.id)]
    return SuggestionList(data=rows, count=len(rows))


@router.post("/rounds/{round_id}/cancel", response_model=RoundRead)
def cancel_round(round_: EngineerRound, session: SessionDep) -> RoundRead:
    """Cancel a queued or running round."""
    if not service.cancel(session, round_=round_):
        raise HTTPException(status.HTTP_409_CONFLICT, f"round is already {round_.status}")
    return RoundRead.model_validate(round_)
