from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from app.annotations import service as annotations
from app.api.deps import CurrentUser, MemberImage, SessionDep, StorageDep
from app.images.ingest import content_type, thumbnail
from app.images.schemas import ImageRead
from app.storage import StorageError
from app.users.orm import Role, User

router = APIRouter(tags=["images"])

# Served bytes are only ever images we decoded ourselves, but nosniff keeps a browser from
# second-guessing the type, and the CSP stops anything embedded from running.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
    "Cache-Control": "private, max-age=86400, immutable",
}


def for_viewer(image: ImageRead, user: User) -> ImageRead:
    """An annotator never sees an image's ground truth: it is the answer they are asked for."""
    return image.model_copy(update={"ground_truth": None}) if user.role == Role.annotator else image


@router.get("/images/{image_id}", response_model=ImageRead)
def read_image(image: MemberImage, session: SessionDep, user: CurrentUser) -> ImageRead:
    """One image's metadata and current label (ground truth only for admins and engineers)."""
    current = annotations.current(session, image_id=image.id)
    read = ImageRead.model_validate(image).model_copy(update={"label": current.label if current else None})
    return for_viewer(read, user)


IMAGE_BYTES = {200: {"content": {"image/*": {}}, "description": "The image bytes."}}
PNG_BYTES = {200: {"content": {"image/png": {}}, "description": "A PNG."}}


@router.get("/images/{image_id}/file", response_class=Response, responses=IMAGE_BYTES)
def image_file(image: MemberImage, storage: StorageDep) -> Response:
    """The original image bytes."""
    try:
        data = storage.get(image.storage_key)
    except StorageError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "image file is missing from storage") from exc
    return Response(data, media_type=content_type(image), headers=SAFE_HEADERS)


@router.get("/images/{image_id}/thumbnail", response_class=Response, responses=PNG_BYTES)
def image_thumbnail(image: MemberImage, storage: StorageDep) -> Response:
    """A PNG thumbnail (160 px), generated once and kept in storage."""
    key = f"projects/{image.project_id}/thumbnails/{image.sha256}.png"
    try:
        data = storage.get(key) if storage.exists(key) else None
        if data is None:
            data = thumbnail(storage.get(image.storage_key))
            storage.put(key, data)
    except StorageError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "image file is missing from storage") from exc
    return Response(data, media_type="image/png", headers=SAFE_HEADERS)
