from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.images.orm import Split


class ImageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    original_name: str
    split: Split
    sha256: str
    format: str
    width: int
    height: int
    synthetic: bool
    source_image_id: int | None
    ground_truth: str | None
    label: str | None = None
    uploaded_at: datetime


class ImageList(BaseModel):
    data: list[ImageRead]
    count: int
    page: int
    per_page: int


class Duplicate(BaseModel):
    file: str
    image_id: int


class Rejected(BaseModel):
    file: str
    reason: str


class UploadReport(BaseModel):
    accepted: list[int] = []
    duplicates: list[Duplicate] = []
    rejected: list[Rejected] = []
    unused_labels: list[str] = Field(default=[], description="labels CSV rows naming no uploaded file (first 100)")
    unused_label_count: int = 0
