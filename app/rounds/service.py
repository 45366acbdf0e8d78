from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.projects.orm import Project
from app.rounds.orm import ACTIVE_STATUSES, Round, RoundStatus, Suggestion, SuggestionStatus
from app.users.orm import User


class RoundConflict(Exception):
    """Another round of the project is still queued or running."""


def get(session: Session, round_id: int) -> Round | None:
    return session.get(Round, round_id)


def open_round_select(project_id: int, *columns: Any) -> Select[Any]:
    """The project's open round, its newest ready one (the batch annotators are working on), with
    any further columns a caller reads in the same query."""
    return (
        select(Round, *columns)
        .where(Round.project_id == project_id, Round.status == RoundStatus.ready)
        .order_by(Round.index.desc())
        .limit(1)
    )


def active(session: Session, *, project_id: int) -> Round | None:
    return session.scalar(
        select(Round).where(Round.project_id == project_id, Round.status.in_([s.value for s in ACTIVE_STATUSES]))
    )


def waiting_behind(session: Session, *, round_: Round) -> str | None:
    """Why a queued round has not started: the rounds (of any project) ahead of it on the training
    queue. Only counts are given, so no other project's names reach this project's members."""
    if round_.status != RoundStatus.queued:
        return None
    running = session.scalar(
        select(func.count()).where(Round.status.in_([RoundStatus.training, RoundStatus.selecting]))
    )
    ahead = session.scalar(select(func.count()).where(Round.status == RoundStatus.queued, Round.id < round_.id))
    if not running and not ahead:
        return "waiting for a worker to take it from the training queue"
    return f"queued behind {running or 0} running and {ahead or 0} earlier queued round(s) on the training queue"


def list_for(session: Session, *, project_id: int) -> list[Round]:
    return list(session.scalars(select(Round).where(Round.project_id == project_id).order_by(Round.index)))


def create(
    session: Session, *, project: Project, strategy: str, batch_size: int, params: dict[str, Any], user: User
) -> Round:
    if active(session, project_id=project.id) is not None:
        raise RoundConflict
    index = (session.scalar(select(func.max(Round.index)).where(Round.project_id == project.id)) or 0) + 1
    round_ = Round(
        project_id=project.id,
        index=index,
        strategy=strategy,
        batch_size=batch_size,
        params=params,
        status=RoundStatus.queued,
        phase="queued",
        created_by_id=user.id,
    )
    try:
        # The partial unique index settles a race between two simultaneous requests.
        with session.begin_nested():
            session.add(round_)
    except IntegrityError as exc:
        raise RoundConflict from exc
    return round_


def open_with_pending(session: Session, *, project_id: int) -> list[tuple[Round, int]]:
    """Ready rounds of the project that still have pending suggestions, with how many."""
    rows = session.execute(
        select(Round, func.count(Suggestion.id))
        .join(Suggestion, Suggestion.round_id == Round.id)
        .where(
            Round.project_id == project_id,
            Round.status == RoundStatus.ready,
            Suggestion.status == SuggestionStatus.pending,
        )
        .group_by(Round.id)
        .order_by(Round.index)
    ).all()
    return [(round_, int(n)) for round_, n in rows]


def cancel(session: Session, *, round_: Round) -> bool:
    """Cancels a queued or running round; returns False if it had already ended."""
    result = session.execute(
        update(Round)
        .where(Round.id == round_.id, Round.status.in_([s.value for s in ACTIVE_STATUSES]))
        .values(status=RoundStatus.cancelled, phase="cancelled", finished_at=utcnow())
    )
    session.refresh(round_)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def fail(session: Session, *, round_id: int, error: str) -> None:
    session.execute(
        update(Round)
        .where(Round.id == round_id, Round.status.in_([s.value for s in ACTIVE_STATUSES]))
        .values(status=RoundStatus.failed, phase="failed", error=error, finished_at=utcnow())
    )


def suggestions(session: Session, *, round_id: int) -> list[Suggestion]:
    return list(session.scalars(select(Suggestion).where(Suggestion.round_id == round_id).order_by(Suggestion.rank)))


def requeue_stale(session: Session, *, stale_seconds: float, max_attempts: int) -> list[int]:
    """Rounds whose worker went quiet: queued again (returned, to be re-sent) or failed for good.

    Each change is a conditional UPDATE, so several API processes sweeping at once cannot both
    re-send the same round.
    """
    cutoff = utcnow() - timedelta(seconds=stale_seconds)
    running = (RoundStatus.training.value, RoundStatus.selecting.value)
    stale = session.execute(
        select(Round.id, Round.attempts).where(Round.status.in_(running), Round.heartbeat_at < cutoff)
    ).all()
    requeued: list[int] = []
    for round_id, attempts in stale:
        values: dict[str, Any]
        if attempts >= max_attempts:
            values = {
                "status": RoundStatus.failed,
                "phase": "failed",
                "finished_at": utcnow(),
                "error": f"the worker stopped responding (no heartbeat for {stale_seconds:.0f} s) "
                f"on each of {attempts} attempts",
            }
        else:
            values = {"status": RoundStatus.queued, "phase": "requeued: worker lost"}
        result = session.execute(
            update(Round)
            .where(Round.id == round_id, Round.status.in_(running), Round.heartbeat_at < cutoff)
            .values(**values)
        )
        if result.rowcount and values["status"] == RoundStatus.queued:  # type: ignore[attr-defined]
            requeued.append(round_id)
    return requeued
