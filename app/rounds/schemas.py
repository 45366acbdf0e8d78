from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.rounds.orm import RoundStatus, SuggestionStatus


class RoundCreate(BaseModel):
    strategy: str = Field(
        "auto",
        description="A registered strategy name (auto, random, entropy, margin, snn, ...); auto when left out.",
    )
    batch_size: int = Field(20, ge=1, le=5000)
    params: dict[str, Any] = Field(default_factory=dict)
    close_open: bool = Field(
        False,
        description=(
            "Confirm that the open round closes when this one is ready. Without it a round cannot start while "
            "the open round has pending suggestions (409). Until then annotators keep labelling the open round, "
            "whose pending images this round does not select; what is left pending returns to the pool."
        ),
    )


class RoundAccepted(BaseModel):
    id: int
    index: int
    status: RoundStatus


class RoundRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    index: int
    strategy: str
    params: dict[str, Any]
    batch_size: int
    status: RoundStatus
    phase: str | None
    progress: float
    metrics: dict[str, Any]
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    waiting_behind: str | None = Field(
        None, description="For a queued round: what it waits behind on the training queue."
    )


class RoundList(BaseModel):
    data: list[RoundRead]
    count: int


class SuggestionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    round_id: int
    image_id: int
    rank: int
    score: float | None
    reason: dict[str, Any]
    status: SuggestionStatus
    lease_holder_id: int | None
    lease_expires_at: datetime | None


class SuggestionList(BaseModel):
    data: list[SuggestionRead]
    count: int
