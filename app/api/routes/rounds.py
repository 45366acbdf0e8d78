from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, status
from sqlalchemy.orm import Session

from app.api.deps import (
    CurrentUser,
    EngineerProject,
    EngineerRound,
    EngineerUser,
    MemberProject,
    MemberRound,
    SessionDep,
)
from app.core.queue import enqueue_round
from app.projects import service as projects
from app.projects.orm import Project
from app.projects.schemas import OpenRound
from app.rounds import service
from app.rounds.orm import Round, RoundStatus
from app.rounds.schemas import (
    RoundAccepted,
    RoundCreate,
    RoundList,
    RoundRead,
    SuggestionList,
    SuggestionRead,
)
from app.users.orm import Role
from models.strategies.params import StrategyParamsError, check_round_params
from models.strategies.registry import strategy_names

router = APIRouter(tags=["rounds"])
log = logging.getLogger("suggestlab.api")


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
    try:
        # The worker builds the strategy with the same check; refusing here keeps a typo from queueing
        # a round that can only fail.
        check_round_params(body.strategy, body.params)
    except StrategyParamsError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    if _uses_synthetic(body) and not projects.settings_of(project).allow_synthetic:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "this project does not allow synthetic images (setting allow_synthetic)",
        )
    counts = projects.counts(session, project_id=project.id)
    if counts.pool - counts.labelled <= 0:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "the pool has no unlabelled images to select from; upload images to the pool first",
        )
    open_rounds = service.open_with_pending(session, project_id=project.id)
    if open_rounds and not body.close_open:
        open_round, pending = open_rounds[-1]
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"round {open_round.index} still has {pending} pending suggestion(s); label or skip them first, "
            "or start the new round with close_open=true (the open round closes when the new one is ready)",
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
        # The broker's address stays in the server log; members (annotators too) read round errors.
        log.warning("could not enqueue round %s: %s", round_.id, exc)
        service.fail(session, round_id=round_.id, error="could not reach the task queue; start the round again")
        session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the task queue is unavailable; the round was not started"
        ) from exc
    return RoundAccepted(id=round_.id, index=round_.index, status=RoundStatus(round_.status))


@router.get("/projects/{project_id}/rounds", response_model=RoundList)
def list_rounds(project: MemberProject, session: SessionDep) -> RoundList:
    """All rounds of the project, oldest first."""
    rows = [_read(session, r) for r in service.list_for(session, project_id=project.id)]
    return RoundList(data=rows, count=len(rows))


def _read(session: Session, round_: Round) -> RoundRead:
    row = RoundRead.model_validate(round_)
    row.waiting_behind = service.waiting_behind(session, round_=round_)
    return row


@router.get("/projects/{project_id}/open-round", response_model=OpenRound | None)
def read_open_round(project: MemberProject, session: SessionDep) -> OpenRound | None:
    """The round annotators are working on, or null: one indexed lookup, cheap enough to poll (the
    labelling page does, to follow a new round)."""
    round_ = projects.open_round(session, project_id=project.id)
    return OpenRound(id=round_.id, index=round_.index) if round_ else None


@router.get("/rounds/{round_id}", response_model=RoundRead)
def read_round(round_: MemberRound, session: SessionDep) -> RoundRead:
    """Status, phase, progress, metrics and error of one round; a queued one says what it waits behind."""
    return _read(session, round_)


@router.get("/rounds/{round_id}/suggestions", response_model=SuggestionList)
def list_suggestions(round_: MemberRound, session: SessionDep, user: CurrentUser) -> SuggestionList:
    """The round's ranked suggestions with their score, reason and status."""
    rows = [SuggestionRead.model_validate(s) for s in service.suggestions(session, round_id=round_.id)]
    project = session.get(Project, round_.project_id)
    if user.role == Role.annotator and project is not None and not projects.settings_of(project).show_model_guess:
        # The model's guess is hidden from annotators unless the project shows it on purpose.
        rows = [r.model_copy(update={"reason": _without_guess(r.reason)}) for r in rows]
    return SuggestionList(data=rows, count=len(rows))


def _without_guess(reason: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reason.items() if k not in ("predicted", "predicted_index")}


@router.post("/rounds/{round_id}/cancel", response_model=RoundRead)
def cancel_round(round_: EngineerRound, session: SessionDep) -> RoundRead:
    """Cancel a queued or running round."""
    if not service.cancel(session, round_=round_):
        raise HTTPException(status.HTTP_409_CONFLICT, f"round is already {round_.status}")
    return RoundRead.model_validate(round_)
