from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from app.annotations import service as annotations
from app.api.deps import MemberImage, SessionDep, StorageDep
from app.images.ingest import content_type, thumbnail
from app.images.schemas import ImageRead
from app.storage import StorageError

router = APIRouter(tags=["images"])

# Served bytes are only ever images we decoded ourselves, but nosniff keeps a browser from
# second-guessing the type, and the CSP stops anything embedded from running.
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
    "Cache-Control": "private, max-age=86400, immutable",
}


@router.get("/images/{image_id}", response_model=ImageRead)
def read_image(image: MemberImage, session: SessionDep) -> ImageRead:
    """One image's metadata and current label."""
    current = annotations.current(session, image_id=image.id)
    return ImageRead.model_validate(image).model_copy(update={"label": current.label if current else None})


@router.get("/images/{image_id}/file")
def image_file(image: MemberImage, storage: StorageDep) -> Response:
    """The original image bytes."""
    try:
        data = storage.get(image.storage_key)
    except StorageError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "image file is missing from storage") from exc
    return Response(data, media_type=content_type(image), headers=SAFE_HEADERS)


@router.get("/images/{image_id}/thumbnail")
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
