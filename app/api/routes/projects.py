from __future__ import annotations

import csv
import io
import json
import logging
import re
import zipfile
from collections.abc import Iterator
from typing import Annotated, BinaryIO, Literal

from fastapi import APIRouter, File, Form, HTTPException, Path, Query, Response, UploadFile, status
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotations import service as annotations
from app.annotations.orm import Annotation
from app.api.deps import (
    AdminProject,
    AdminUser,
    CurrentUser,
    EngineerProject,
    MemberProject,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from app.api.routes.images import for_viewer
from app.api.routes.representations import request_representation
from app.core.db import session_scope
from app.core.settings import Settings
from app.images.ingest import UploadError, ingest, ingest_runs, parse_labels_csv
from app.images.orm import Image, Split
from app.images.schemas import ImageList, ImageRead, UploadReport
from app.projects import service
from app.projects.orm import Project
from app.projects.schemas import MemberAdd, MemberList, MemberRead, ProjectCreate, ProjectList, ProjectRead
from app.rounds import service as rounds
from app.storage import Storage, StorageError
from app.users import service as users
from app.users.orm import User

router = APIRouter(tags=["projects"])
log = logging.getLogger("suggestlab.api")


@router.post("/projects", response_model=ProjectRead, status_code=status.HTTP_201_CREATED)
def create_project(body: ProjectCreate, session: SessionDep, user: AdminUser) -> ProjectRead:
    """Create a project with its ordered class list and settings."""
    if service.get_by_name(session, body.name) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"a project named {body.name!r} already exists")
    project = service.create(session, name=body.name, classes=body.classes, settings=body.settings, creator=user)
    return service.read(session, project)


@router.get("/projects", response_model=ProjectList)
def list_projects(session: SessionDep, user: CurrentUser) -> ProjectList:
    """Projects the caller can see (all of them for an admin), with counts."""
    rows = [service.read(session, p) for p in service.list_for(session, user=user)]
    return ProjectList(data=rows, count=len(rows))


@router.get("/projects/{project_id}", response_model=ProjectRead)
def read_project(project: MemberProject, session: SessionDep) -> ProjectRead:
    """One project with image, label and round counts and its open round."""
    return service.read(session, project)


@router.post(
    "/projects/{project_id}/members",
    response_model=MemberRead,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": MemberRead, "description": "Already a member (`added: false`)."}},
)
def add_member(project: AdminProject, body: MemberAdd, session: SessionDep, response: Response) -> MemberRead:
    """Give a user access to this project (200 with `added: false` if they already have it)."""
    user = users.get(session, body.user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    already = service.is_member(session, project_id=project.id, user_id=user.id)
    service.add_member(session, project=project, user=user)
    if already:
        response.status_code = status.HTTP_200_OK
    return MemberRead(project_id=project.id, user_id=user.id, name=user.name, role=user.role, added=not already)


@router.get("/projects/{project_id}/members", response_model=MemberList)
def list_members(project: AdminProject, session: SessionDep) -> MemberList:
    """The project's members with their roles."""
    rows = [
        MemberRead(project_id=project.id, user_id=u.id, name=u.name, role=u.role)
        for u in service.members(session, project_id=project.id)
    ]
    return MemberList(data=rows, count=len(rows))


@router.delete("/projects/{project_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(
    project: AdminProject, user_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep
) -> None:
    """Take a user's access to this project away (their labels stay)."""
    if not service.remove_member(session, project=project, user_id=user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not a member of this project")


@router.get("/projects/{project_id}/images", response_model=ImageList)
def list_images(
    project: MemberProject,
    session: SessionDep,
    user: CurrentUser,
    split: Split | None = None,
    labelled: bool | None = None,
    synthetic: bool | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ImageList:
    """Images of the project, filtered and paginated, with their current label."""
    latest = annotations.latest_ids_subquery()
    labelled_ids = select(Annotation.image_id).join(latest, latest.c.id == Annotation.id)
    query = select(Image).where(Image.project_id == project.id)
    if split is not None:
        query = query.where(Image.split == split.value)
    if synthetic is not None:
        query = query.where(Image.synthetic.is_(synthetic))
    if labelled is not None:
        query = query.where(Image.id.in_(labelled_ids) if labelled else Image.id.not_in(labelled_ids))
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(Image.id).offset((page - 1) * per_page).limit(per_page)))
    labels = dict(
        session.execute(  # type: ignore[arg-type]
            select(Annotation.image_id, Annotation.label)
            .join(latest, latest.c.id == Annotation.id)
            .where(Annotation.image_id.in_([r.id for r in rows]))
        ).all()
    )
    data = [for_viewer(ImageRead.model_validate(r).model_copy(update={"label": labels.get(r.id)}), user) for r in rows]
    return ImageList(data=data, count=count, page=page, per_page=per_page)


@router.get("/projects/{project_id}/metrics")
def project_metrics(project: MemberProject, session: SessionDep) -> dict[str, object]:
    """Per-round metrics: labels used, validation accuracy, per-class accuracy, timings."""
    data = [
        {
            "round_id": r.id,
            "index": r.index,
            "strategy": r.strategy,
            "status": r.status,
            "batch_size": r.batch_size,
            "labels": r.metrics.get("labels"),
            "accuracy": r.metrics.get("accuracy"),
            "per_class": r.metrics.get("per_class"),
            "class_counts": r.metrics.get("class_counts"),
            "timings": r.metrics.get("timings"),
            "effective_strategy": r.metrics.get("effective_strategy"),
            "created_at": r.created_at,
            "finished_at": r.finished_at,
        }
        for r in rounds.list_for(session, project_id=project.id)
    ]
    return {"project_id": project.id, "data": data, "count": len(data)}


EXPORT_MEDIA = {
    "csv": "text/csv",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "imagefolder": "application/zip",
}
EXPORT_FIELDS = [
    "image_id",
    "original_name",
    "sha256",
    "split",
    "synthetic",
    "label",
    "label_source",
    "annotator",
    "created_at",
    "duration_ms",
    "round_index",
    "file_url",
]


@router.get(
    "/projects/{project_id}/export",
    response_class=Response,
    responses={200: {"content": {m: {} for m in EXPORT_MEDIA.values()}, "description": "The labels."}},
)
def export_labels(
    project: EngineerProject,
    session: SessionDep,
    storage: StorageDep,
    format: Literal["csv", "json", "jsonl", "imagefolder"] = "csv",
) -> Response:
    """Every current label (annotations, plus the validation/test labels that came with uploads) with
    its source, annotator, time, duration, round and file URL: CSV, JSON, JSON Lines, or an
    ImageFolder-style zip (`<split>/<class>/<image id>.<ext>` plus labels.csv)."""
    rows = annotations.export_rows(session, project_id=project.id)
    extension = "zip" if format == "imagefolder" else format
    filename = f"suggestlab-project-{project.id}-labels.{extension}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "json":
        body: bytes | str = json.dumps({"project_id": project.id, "data": rows, "count": len(rows)})
    elif format == "jsonl":
        body = "".join(json.dumps(row) + "\n" for row in rows)
    elif format == "imagefolder":
        body = _imagefolder(session, storage, project, rows)
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        writer.writerows({k: _csv_safe(v) for k, v in row.items()} for row in rows)
        body = out.getvalue()
    return Response(body, media_type=EXPORT_MEDIA[format], headers=headers)


def _imagefolder(session: Session, storage: Storage, project: Project, rows: list[dict[str, object]]) -> bytes:
    """A zip in the layout torchvision's ImageFolder and most trainers read: one folder per split and
    class. Class names become folder names, so they are reduced to a safe file name (the labels.csv
    inside keeps the exact names)."""
    images = {i.id: i for i in session.scalars(select(Image).where(Image.id.in_([r["image_id"] for r in rows])))}
    out = io.BytesIO()
    listing = io.StringIO()
    writer = csv.writer(listing)
    writer.writerow(["path", "label", "split", "image_id", "original_name"])
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for row in rows:
            image = images[int(row["image_id"])]  # type: ignore[call-overload]
            try:
                data = storage.get(image.storage_key)
            except StorageError:
                continue  # a file missing from storage is left out rather than failing the export
            folder = _safe_name(str(row["label"]))
            path = f"{row['split']}/{folder}/{image.id}.{image.format.lower()}"
            archive.writestr(path, data)
            writer.writerow([_csv_safe(v) for v in (path, row["label"], row["split"], image.id, image.original_name)])
        archive.writestr("labels.csv", listing.getvalue())
    return out.getvalue()


def _safe_name(label: str) -> str:
    cleaned = re.sub(r"[^\w.+-]", "_", label).strip("._") or "class"
    return cleaned[:100]


def _csv_safe(value: object) -> object:
    """OWASP's CSV-injection defence: a cell that a spreadsheet would run as a formula is prefixed with
    a single quote, so it is shown as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@router.post(
    "/projects/{project_id}/images",
    response_model=dict[str, object],
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "The report (JSON lines: `progress`)"}},
)
def upload_images(
    project: AdminProject,
    session: SessionDep,
    user: AdminUser,
    settings: SettingsDep,
    storage: StorageDep,
    files: Annotated[list[UploadFile], File(description="Images and/or .zip archives")],
    split: Annotated[Split, Form()] = Split.pool,
    labels: Annotated[UploadFile | None, File(description="CSV with rows `filename,label`")] = None,
    progress: Annotated[
        bool,
        Query(
            description="stream JSON lines: one per run of up to 1,024 images as it is stored (each run "
            "committed, so a dropped connection keeps what was reported), then the report"
        ),
    ] = False,
) -> dict[str, object] | StreamingResponse:
    """Upload images or zip archives; returns a per-file report (accepted, duplicates, rejected)."""
    label_map = None
    if labels is not None and labels.filename:
        try:
            raw = labels.file.read(settings.max_file_bytes + 1)
            if len(raw) > settings.max_file_bytes:
                raise UploadError(f"labels CSV is larger than {settings.max_file_bytes} bytes")
            label_map = parse_labels_csv(raw)
        except UploadError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        unknown = sorted({v for v in label_map.values() if v not in project.classes})
        if unknown:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"labels CSV names unknown classes: {', '.join(unknown[:10])}"
            )
    for f in files:
        if f.size is not None and f.size > settings.max_upload_bytes:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"{f.filename}: upload too large")
    named = [(f.filename or "upload", f.file) for f in files]
    if progress:
        # The files stay open until the response is sent; the request's session does not.
        lines = _ingest_lines(project.id, user.id, named, split, label_map, settings, storage)
        return StreamingResponse(lines, media_type="application/x-ndjson")
    report = ingest(session, storage, settings, project=project, files=named, split=split, labels=label_map, user=user)
    _after_upload(session, project, split, report)
    return report.model_dump()


def _after_upload(session: Session, project: Project, split: Split, report: UploadReport) -> None:
    if split == Split.pool and report.accepted and service.settings_of(project).representation == "simclr":
        # The pool changed: learn its representation in the background. A full queue or a broker
        # outage must not undo an upload that is already stored; the next round asks again.
        session.commit()
        try:
            request_representation(session, project.id)
        except Exception:
            log.warning("could not queue a representation for project %s", project.id, exc_info=True)


def _ingest_lines(
    project_id: int,
    user_id: int,
    files: list[tuple[str, BinaryIO]],
    split: Split,
    labels: dict[str, str] | None,
    settings: Settings,
    storage: Storage,
) -> Iterator[bytes]:
    report = UploadReport()
    try:
        with session_scope(settings) as session:
            project, user = session.get_one(Project, project_id), session.get_one(User, user_id)
            for processed in ingest_runs(
                session, storage, settings, report, project=project, files=files, split=split, labels=labels, user=user
            ):
                session.commit()
                counts = {"accepted": len(report.accepted), "duplicates": len(report.duplicates)}
                yield _json_line({"processed": processed, **counts, "rejected": len(report.rejected)})
            _after_upload(session, project, split, report)
    except Exception:
        log.exception("upload to project %s stopped", project_id)
        # Runs already reported are stored; the report says what they were.
        yield _json_line({"error": "the upload stopped on a server error", "report": report.model_dump()})
        return
    yield _json_line({"done": True, "report": report.model_dump()})


def _json_line(value: dict[str, object]) -> bytes:
    return json.dumps(value).encode() + b"\n"
