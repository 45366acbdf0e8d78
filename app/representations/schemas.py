from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class RepresentationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    kind: str
    status: str
    phase: str
    progress: float
    pool_size: int
    metrics: dict[str, Any]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RepresentationList(BaseModel):
    data: list[RepresentationRead]
    count: int
