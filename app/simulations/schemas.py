from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SimulationCreate(BaseModel):
    strategies: list[str] = Field(default_factory=lambda: ["random", "entropy", "snn"], min_length=1, max_length=12)
    initial: int = Field(20, ge=1, le=10_000)
    batch: int = Field(20, ge=1, le=10_000)
    rounds: int = Field(10, ge=1, le=100)
    seeds: int = Field(3, ge=1, le=10)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)


class SimulationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    params: dict[str, Any]
    status: str
    progress: float
    error: str | None
    files: dict[str, str]
    summary: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class SimulationList(BaseModel):
    data: list[SimulationRead]
    count: int
