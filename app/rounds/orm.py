from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow


class RoundStatus(StrEnum):
    queued = "queued"
    training = "training"
    selecting = "selecting"
    ready = "ready"
    closed = "closed"
    failed = "failed"
    cancelled = "cancelled"


ACTIVE_STATUSES = (RoundStatus.queued, RoundStatus.training, RoundStatus.selecting)
_ACTIVE_SQL = "status IN ('queued', 'training', 'selecting')"


class SuggestionStatus(StrEnum):
    pending = "pending"
    labelled = "labelled"
    skipped = "skipped"


class Round(Base):
    __tablename__ = "round"
    __table_args__ = (
        UniqueConstraint("project_id", "index"),
        # At most one queued/running round per project, enforced by the database so that two
        # simultaneous POSTs cannot both get in.
        Index(
            "uq_round_one_active_per_project",
            "project_id",
            unique=True,
            sqlite_where=text(_ACTIVE_SQL),
            postgresql_where=text(_ACTIVE_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    batch_size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=RoundStatus.queued)
    phase: Mapped[str | None] = mapped_column(String(40), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    artifacts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The latent map's t-SNE layout: built after the round by a light job, the first time someone
    # looks (worker.maps); the map shows a PCA projection until then.
    map_key: Mapped[str | None] = mapped_column(String(500), default=None)
    map_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    map_error: Mapped[str | None] = mapped_column(Text, default=None)


class Suggestion(Base):
    __tablename__ = "suggestion"
    __table_args__ = (UniqueConstraint("round_id", "image_id"), UniqueConstraint("round_id", "rank"))

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=SuggestionStatus.pending)
    lease_holder_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
