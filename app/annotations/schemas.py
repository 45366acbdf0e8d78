from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class AnnotationCreate(BaseModel):
    label: str = Field(min_length=1, max_length=200)
    duration_ms: int | None = Field(None, ge=0, le=24 * 3600 * 1000)
    relabel: bool = Field(
        False,
        description="Engineers and admins: replace another person's label on purpose (kept in the image's history).",
    )


class AnnotationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    image_id: int
    label: str
    annotator_id: int | None
    round_id: int | None
    suggestion_id: int | None
    created_at: datetime
    duration_ms: int | None


class LabelHistoryRow(BaseModel):
    id: int
    label: str
    annotator: str | None
    annotator_id: int | None
    round_id: int | None
    created_at: datetime
    current: bool


class LabelHistory(BaseModel):
    image_id: int
    data: list[LabelHistoryRow]
    count: int


class Undone(BaseModel):
    id: int
    image_id: int
    restored_suggestion_id: int | None


class NextRequest(BaseModel):
    limit: int = Field(10, ge=1, le=200)


class LeasedItem(BaseModel):
    suggestion_id: int
    image_id: int
    rank: int
    score: float | None
    synthetic: bool
    lease_expires_at: datetime
    file_url: str
    thumbnail_url: str
    model_guess: str | None = None


class RoundRef(BaseModel):
    id: int
    index: int
    batch_size: int
    done: int
    pending: int


class NextBatch(BaseModel):
    round: RoundRef | None
    data: list[LeasedItem]
    message: str | None = Field(None, description="Why nothing is offered, when data is empty.")


class ExportRow(BaseModel):
    image_id: int
    original_name: str
    sha256: str
    label: str
    annotator: str | None
    created_at: datetime
    round_index: int | None
