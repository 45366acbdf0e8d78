from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.annotations.orm import Annotation
from app.core.db import utcnow
from app.images.orm import Image, Split
from app.rounds.orm import Round, Suggestion, SuggestionStatus
from app.rounds.service import open_round_select
from app.users.orm import User


class LeaseConflict(Exception):
    """The item is leased to another annotator."""


def latest_ids_subquery():  # type: ignore[no-untyped-def]
    return select(func.max(Annotation.id).label("id")).group_by(Annotation.image_id).subquery()


def current(session: Session, *, image_id: int) -> Annotation | None:
    return session.scalar(
        select(Annotation).where(Annotation.image_id == image_id).order_by(Annotation.id.desc()).limit(1)
    )


def history(session: Session, *, image_id: int) -> list[tuple[Annotation, str | None]]:
    """Every label the image has had, oldest first, with who gave it: the audit trail of relabels."""
    return [
        (annotation, name)
        for annotation, name in session.execute(
            select(Annotation, User.name)
            .outerjoin(User, User.id == Annotation.annotator_id)
            .where(Annotation.image_id == image_id)
            .order_by(Annotation.id)
        ).all()
    ]


def current_labels(session: Session, *, project_id: int) -> dict[int, str]:
    """{image_id: label} for every image of the project that has a label now."""
    latest = latest_ids_subquery()
    rows = session.execute(
        select(Annotation.image_id, Annotation.label)
        .join(latest, latest.c.id == Annotation.id)
        .join(Image, Image.id == Annotation.image_id)
        .where(Image.project_id == project_id)
    )
    return {image_id: label for image_id, label in rows}


def _lease_is_free(user: User, now):  # type: ignore[no-untyped-def]
    return or_(
        Suggestion.lease_holder_id.is_(None),
        Suggestion.lease_holder_id == user.id,
        Suggestion.lease_expires_at < now,
    )


class Leased(NamedTuple):
    suggestion: Suggestion
    synthetic: bool


def _is_synthetic():  # type: ignore[no-untyped-def]
    return select(Image.synthetic).where(Image.id == Suggestion.image_id).scalar_subquery()


def lease_next(session: Session, *, round_: Round, user: User, limit: int, lease_seconds: int) -> list[Leased]:
    """Leases up to `limit` pending suggestions to `user`, their own live leases first, in rank order,
    each with whether its image is synthetic.

    Two annotators asking at the same moment can never both win the same item: on PostgreSQL the
    free items are locked with SKIP LOCKED (each caller takes different rows without waiting), on
    SQLite each claim is a conditional UPDATE.
    """
    now = utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    if session.get_bind().dialect.name == "postgresql":
        return _lease_next_postgres(session, round_=round_, user=user, limit=limit, now=now, expires=expires)
    base = select(Suggestion.id).where(Suggestion.round_id == round_.id, Suggestion.status == SuggestionStatus.pending)
    mine = list(
        session.scalars(
            base.where(Suggestion.lease_holder_id == user.id, Suggestion.lease_expires_at >= now)
            .order_by(Suggestion.rank)
            .limit(limit)
        )
    )
    claimed: list[int] = []
    if mine:
        session.execute(update(Suggestion).where(Suggestion.id.in_(mine)).values(lease_expires_at=expires))
        claimed.extend(mine)
    while len(claimed) < limit:
        # SQLite (one writer at a time): each claim is a conditional UPDATE, retried past lost races.
        free = list(
            session.scalars(
                base.where(_lease_is_free(user, now), Suggestion.id.not_in(claimed or [-1]))
                .order_by(Suggestion.rank)
                .limit(limit - len(claimed))
            )
        )
        if not free:
            break
        for suggestion_id in free:
            result = session.execute(
                update(Suggestion)
                .where(
                    Suggestion.id == suggestion_id,
                    Suggestion.status == SuggestionStatus.pending,
                    _lease_is_free(user, now),
                )
                .values(lease_holder_id=user.id, lease_expires_at=expires)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                claimed.append(suggestion_id)
    session.flush()
    if not claimed:
        return []
    rows = session.execute(
        select(Suggestion, _is_synthetic()).where(Suggestion.id.in_(claimed)).order_by(Suggestion.rank)
    )
    return [Leased(suggestion, bool(synthetic)) for suggestion, synthetic in rows]


def _lease_next_postgres(
    session: Session, *, round_: Round, user: User, limit: int, now: datetime, expires: datetime
) -> list[Leased]:
    # One statement: the caller's live leases first, then free items by rank, locked with SKIP
    # LOCKED (annotators asking at once take different rows instead of queueing on each other's
    # locks; PostgreSQL re-checks the WHERE clause on the rows it locks, so a lease taken meanwhile
    # is never overwritten), renewed or taken, and returned with whether each image is synthetic.
    # Every round trip is a wake-up of another process on a busy machine; this replaces five.
    mine_first = case((and_(Suggestion.lease_holder_id == user.id, Suggestion.lease_expires_at >= now), 0), else_=1)
    chosen = (
        select(Suggestion.id)
        .where(
            Suggestion.round_id == round_.id,
            Suggestion.status == SuggestionStatus.pending,
            _lease_is_free(user, now),
        )
        .order_by(mine_first, Suggestion.rank)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(Suggestion)
        .where(Suggestion.id.in_(chosen))
        .values(lease_holder_id=user.id, lease_expires_at=expires)
        .returning(Suggestion, _is_synthetic()),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).all()
    return sorted((Leased(suggestion, bool(synthetic)) for suggestion, synthetic in rows), key=lambda s: s[0].rank)


def open_round_progress(session: Session, *, project_id: int) -> tuple[Round, int, int] | None:
    """The project's open round (its newest ready one) with its (done, pending) counts, in one query."""
    of_round = select(func.count()).where(Suggestion.round_id == Round.id)
    row = session.execute(
        open_round_select(
            project_id,
            of_round.scalar_subquery(),
            of_round.where(Suggestion.status == SuggestionStatus.pending).scalar_subquery(),
        )
    ).first()
    if row is None:
        return None
    round_, total, pending = row
    return round_, total - pending, pending


def open_suggestion(session: Session, *, project_id: int, image_id: int) -> tuple[Round | None, Suggestion | None]:
    """The project's open round (its newest ready one) and the image's suggestion in it, in one query."""
    row = session.execute(
        open_round_select(project_id, Suggestion).outerjoin(
            Suggestion, and_(Suggestion.round_id == Round.id, Suggestion.image_id == image_id)
        )
    ).first()
    return (None, None) if row is None else (row[0], row[1])


class LabelledByOther(Exception):
    """The item already carries another annotator's label (or skip)."""


def annotate(
    session: Session,
    *,
    image: Image,
    user: User,
    label: str,
    duration_ms: int | None,
    suggestion: Suggestion | None,
    may_override: bool = False,
    image_locked: bool = False,
) -> tuple[Annotation, bool]:
    """Records a label; returns (annotation, created). Re-sending the current label is a no-op.

    Without `may_override` (annotators) the suggestion is claimed by one conditional UPDATE: it must
    be pending with a lease that is free, expired or the caller's, or already finished by the caller.
    Two annotators racing for one item, or a label racing a skip, cannot both win. Admins and
    engineers may relabel anyone's work; the new row records who did, the old one stays as history.
    `image_locked` says the caller already holds the image's row lock in this transaction.
    """
    now = utcnow()
    # Lock first, read after: on PostgreSQL two concurrent submits queue on the image row here, and
    # the second then sees the first's label (idempotent) instead of adding a duplicate row.
    if not image_locked:
        session.execute(select(Image.id).where(Image.id == image.id).with_for_update())
    latest = current(session, image_id=image.id)
    if latest is not None and latest.label == label and latest.annotator_id == user.id:
        return latest, False
    if suggestion is not None:
        finished = (SuggestionStatus.labelled, SuggestionStatus.skipped)
        claim = Suggestion.id == suggestion.id
        if not may_override:
            claim = and_(
                claim,
                or_(
                    and_(Suggestion.status == SuggestionStatus.pending, _lease_is_free(user, now)),
                    and_(Suggestion.status.in_(finished), Suggestion.lease_holder_id == user.id),
                ),
            )
        # One statement claims the suggestion and closes the image's pending suggestions in every
        # other round; RETURNING says whether the claim won. A lost claim raises, and the request's
        # rollback undoes the rest.
        closed = set(
            session.scalars(
                update(Suggestion)
                .where(
                    Suggestion.image_id == image.id,
                    or_(claim, and_(Suggestion.id != suggestion.id, Suggestion.status == SuggestionStatus.pending)),
                )
                .values(
                    status=SuggestionStatus.labelled,
                    lease_holder_id=case((Suggestion.id == suggestion.id, user.id), else_=Suggestion.lease_holder_id),
                    lease_expires_at=None,
                )
                .returning(Suggestion.id),
                execution_options={"synchronize_session": False},
            )
        )
        if suggestion.id not in closed:
            session.refresh(suggestion)
            if suggestion.status == SuggestionStatus.pending:
                raise LeaseConflict
            raise LabelledByOther
        # The row is what the UPDATE wrote; setting it here spares a read back.
        set_committed_value(suggestion, "status", SuggestionStatus.labelled)
        set_committed_value(suggestion, "lease_holder_id", user.id)
        set_committed_value(suggestion, "lease_expires_at", None)
    elif latest is not None and latest.annotator_id != user.id and not may_override:
        raise LabelledByOther
    annotation = Annotation(
        image_id=image.id,
        label=label,
        annotator_id=user.id,
        round_id=suggestion.round_id if suggestion else None,
        suggestion_id=suggestion.id if suggestion else None,
        duration_ms=duration_ms,
    )
    if latest is not None:
        latest.is_current = None
        session.flush()
    annotation.is_current = True
    session.add(annotation)
    if suggestion is None:
        # Labelled by any path: the image's pending suggestions in every round are done too, so no
        # annotator is served an image that already has its label (with a suggestion, the claim
        # above did this in the same statement).
        session.execute(
            update(Suggestion)
            .where(Suggestion.image_id == image.id, Suggestion.status == SuggestionStatus.pending)
            .values(status=SuggestionStatus.labelled, lease_expires_at=None)
        )
    session.flush()
    return annotation, True


def undo(session: Session, *, annotation: Annotation, lease_seconds: int) -> int | None:
    """Deletes an annotation; a suggestion it completed goes back to pending, leased to the same person."""
    suggestion = session.get(Suggestion, annotation.suggestion_id) if annotation.suggestion_id else None
    user_id = annotation.annotator_id
    session.execute(select(Image.id).where(Image.id == annotation.image_id).with_for_update())
    was_current, image_id = annotation.is_current, annotation.image_id
    session.delete(annotation)
    session.flush()
    if was_current:
        # The label before it becomes current again (relabel history), if there is one.
        previous = current(session, image_id=image_id)
        if previous is not None:
            previous.is_current = True
            session.flush()
    if suggestion is None or suggestion.status != SuggestionStatus.labelled:
        return None
    still_labelled = session.scalar(select(func.count()).where(Annotation.suggestion_id == suggestion.id))
    if still_labelled:
        return None
    suggestion.status = SuggestionStatus.pending
    suggestion.lease_holder_id = user_id
    suggestion.lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)
    session.flush()
    return suggestion.id


def unskip(session: Session, *, suggestion: Suggestion, user: User, lease_seconds: int) -> bool:
    """Undoes a skip: the item is pending again, leased to whoever skipped it. Only the person who
    skipped may undo it (one conditional UPDATE, so a double undo changes nothing twice)."""
    result = session.execute(
        update(Suggestion)
        .where(
            Suggestion.id == suggestion.id,
            Suggestion.status == SuggestionStatus.skipped,
            Suggestion.lease_holder_id == user.id,
        )
        .values(
            status=SuggestionStatus.pending,
            lease_holder_id=user.id,
            lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
        )
    )
    session.refresh(suggestion)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def skip(session: Session, *, suggestion: Suggestion, user: User) -> Suggestion:
    """Skips a pending item whose lease is free or the caller's (one conditional UPDATE, so a skip
    racing a label cannot both win); skipping one's own finished item again is a no-op."""
    result = session.execute(
        update(Suggestion)
        .where(
            Suggestion.id == suggestion.id,
            Suggestion.status == SuggestionStatus.pending,
            _lease_is_free(user, utcnow()),
        )
        .values(status=SuggestionStatus.skipped, lease_holder_id=user.id, lease_expires_at=None)
    )
    session.refresh(suggestion)
    if not result.rowcount:  # type: ignore[attr-defined]
        if suggestion.status == SuggestionStatus.pending:
            raise LeaseConflict
        if suggestion.lease_holder_id != user.id:
            raise LabelledByOther
    return suggestion


def export_rows(session: Session, *, project_id: int) -> list[dict[str, object]]:
    latest = latest_ids_subquery()
    rows = session.execute(
        select(Annotation, Image, User.name, Round.index)
        .join(latest, latest.c.id == Annotation.id)
        .join(Image, Image.id == Annotation.image_id)
        .outerjoin(User, User.id == Annotation.annotator_id)
        .outerjoin(Round, and_(Round.id == Annotation.round_id))
        .where(Image.project_id == project_id)
        .order_by(Image.id)
    )
    out: list[dict[str, object]] = [
        {
            "image_id": image.id,
            "original_name": image.original_name,
            "sha256": image.sha256,
            "split": image.split,
            "synthetic": image.synthetic,
            "label": annotation.label,
            "label_source": "annotation",
            "annotator": name,
            "created_at": annotation.created_at.isoformat(),
            "duration_ms": annotation.duration_ms,
            "round_index": round_index,
            "file_url": f"/api/v1/images/{image.id}/file",
        }
        for annotation, image, name, round_index in rows
    ]
    # Validation and test labels arrive with the upload (their ground truth); the pool's ground truth
    # is the simulation oracle, not a label anyone gave, so it stays out.
    annotated = {row["image_id"] for row in out}
    uploaded = session.scalars(
        select(Image)
        .where(
            Image.project_id == project_id,
            Image.split.in_([Split.validation, Split.test]),
            Image.ground_truth.is_not(None),
        )
        .order_by(Image.id)
    )
    out += [
        {
            "image_id": image.id,
            "original_name": image.original_name,
            "sha256": image.sha256,
            "split": image.split,
            "synthetic": image.synthetic,
            "label": image.ground_truth,
            "label_source": "upload",
            "annotator": None,
            "created_at": image.uploaded_at.isoformat(),
            "duration_ms": None,
            "round_index": None,
            "file_url": f"/api/v1/images/{image.id}/file",
        }
        for image in uploaded
        if image.id not in annotated
    ]
    return sorted(out, key=lambda row: row["image_id"])  # type: ignore[arg-type,return-value]
