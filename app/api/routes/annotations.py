from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from app.annotations import service
from app.annotations.schemas import (
    AnnotationCreate,
    AnnotationRead,
    LabelHistory,
    LabelHistoryRow,
    LeasedItem,
    NextBatch,
    NextRequest,
    RoundRef,
    Undone,
)
from app.api.deps import (
    CurrentUser,
    EngineerImage,
    ImageToLabel,
    MemberAnnotation,
    MemberProject,
    MemberSuggestion,
    SessionDep,
    SettingsDep,
)
from app.images.orm import Split
from app.projects import service as projects
from app.projects.orm import Project
from app.rounds import service as rounds
from app.rounds.orm import Round, RoundStatus
from app.rounds.schemas import SuggestionRead
from app.users.orm import Role

router = APIRouter(tags=["annotation"])


@router.post("/projects/{project_id}/next", response_model=NextBatch)
def lease_next(
    project: MemberProject, body: NextRequest, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> NextBatch:
    """Lease up to `limit` pending suggestions of the open round to the caller."""
    found = service.open_round_progress(session, project_id=project.id)
    if found is None:
        running = rounds.active(session, project_id=project.id)
        if running is not None:
            message = f"round {running.index} is {running.status}; its batch appears here when it is ready"
        else:
            message = "no round is ready; an engineer has to start one"
        return NextBatch(round=None, data=[], message=message)
    # Leasing changes no suggestion's status, so the counts read with the round still hold after it.
    round_, done, pending = found
    leased = service.lease_next(
        session, round_=round_, user=user, limit=body.limit, lease_seconds=settings.lease_seconds
    )
    show_guess = projects.settings_of(project).show_model_guess
    items = [
        LeasedItem(
            suggestion_id=s.id,
            image_id=s.image_id,
            rank=s.rank,
            score=s.score,
            synthetic=synthetic,
            lease_expires_at=s.lease_expires_at,  # type: ignore[arg-type]
            file_url=f"/api/v1/images/{s.image_id}/file",
            thumbnail_url=f"/api/v1/images/{s.image_id}/thumbnail",
            model_guess=s.reason.get("predicted") if show_guess else None,
        )
        for s, synthetic in leased
    ]
    message = None
    if not items:
        message = (
            f"all {done} suggestions of round {round_.index} are done; an engineer can start the next round"
            if pending == 0
            else "the remaining items are leased to other annotators right now"
        )
    ref = RoundRef(id=round_.id, index=round_.index, batch_size=round_.batch_size, done=done, pending=pending)
    return NextBatch(round=ref, data=items, message=message)


@router.post(
    "/images/{image_id}/annotations",
    response_model=AnnotationRead,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": AnnotationRead, "description": "The same label again: the stored one, unchanged."}},
)
def annotate(
    image: ImageToLabel, body: AnnotationCreate, session: SessionDep, user: CurrentUser, response: Response
) -> AnnotationRead:
    """Label an image. Annotators may label only images suggested in the open round."""
    project = session.get(Project, image.project_id)
    assert project is not None
    if body.label not in project.classes:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown class {body.label!r}; the project's classes are: {', '.join(project.classes)}",
        )
    if image.split != Split.pool:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"{image.split} images carry their label from the upload and are not annotated"
        )
    _, suggestion = service.open_suggestion(session, project_id=project.id, image_id=image.id)
    if suggestion is None and user.role == Role.annotator:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "annotators can label only images suggested in the open round")
    try:
        annotation, created = service.annotate(
            session,
            image=image,
            user=user,
            label=body.label,
            duration_ms=body.duration_ms,
            suggestion=suggestion,
            may_override=user.role != Role.annotator and body.relabel,
            image_locked=True,
        )
    except service.LeaseConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "this item is leased to another annotator") from exc
    except service.LabelledByOther as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "another annotator already finished this item; relabelling their work needs an engineer or admin "
            'and an explicit "relabel": true',
        ) from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return AnnotationRead.model_validate(annotation)


@router.get("/images/{image_id}/annotations", response_model=LabelHistory)
def label_history(image: EngineerImage, session: SessionDep) -> LabelHistory:
    """Every label this image has had, oldest first, with its annotator: who relabelled what, and when."""
    rows = [
        LabelHistoryRow(
            id=a.id,
            label=a.label,
            annotator=name,
            annotator_id=a.annotator_id,
            round_id=a.round_id,
            created_at=a.created_at,
            current=bool(a.is_current),
        )
        for a, name in service.history(session, image_id=image.id)
    ]
    return LabelHistory(image_id=image.id, data=rows, count=len(rows))


@router.delete("/annotations/{annotation_id}", response_model=Undone)
def undo(annotation: MemberAnnotation, session: SessionDep, user: CurrentUser, settings: SettingsDep) -> Undone:
    """Undo a label; the suggestion it completed goes back to the same annotator."""
    if user.role == Role.annotator and annotation.annotator_id != user.id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "annotators can undo only their own labels")
    ids = annotation.id, annotation.image_id
    restored = service.undo(session, annotation=annotation, lease_seconds=settings.lease_seconds)
    return Undone(id=ids[0], image_id=ids[1], restored_suggestion_id=restored)


@router.delete("/suggestions/{suggestion_id}/skip", response_model=SuggestionRead)
def undo_skip(
    suggestion: MemberSuggestion, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> SuggestionRead:
    """Undo your own skip: the item is pending again and leased to you."""
    round_ = session.get(Round, suggestion.round_id)
    if round_ is None or round_.status != RoundStatus.ready:
        raise HTTPException(status.HTTP_409_CONFLICT, "this suggestion's round is no longer open")
    if not service.unskip(session, suggestion=suggestion, user=user, lease_seconds=settings.lease_seconds):
        raise HTTPException(status.HTTP_409_CONFLICT, "only a skip of your own, still in place, can be undone")
    return SuggestionRead.model_validate(suggestion)


@router.post("/suggestions/{suggestion_id}/skip", response_model=SuggestionRead)
def skip(suggestion: MemberSuggestion, session: SessionDep, user: CurrentUser) -> SuggestionRead:
    """Skip a suggested item; it is not offered again in this round."""
    round_ = session.get(Round, suggestion.round_id)
    if round_ is None or round_.status != RoundStatus.ready:
        raise HTTPException(status.HTTP_409_CONFLICT, "this suggestion's round is no longer open")
    try:
        service.skip(session, suggestion=suggestion, user=user)
    except service.LeaseConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "this item is leased to another annotator") from exc
    except service.LabelledByOther as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "another annotator already finished this item") from exc
    return SuggestionRead.model_validate(suggestion)
