from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow


class Annotation(Base):
    """One label given to one image. Relabelling adds a row; the newest row is the current label."""

    __tablename__ = "annotation"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"), index=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("round.id", ondelete="SET NULL"))
    suggestion_id: Mapped[int | None] = mapped_column(ForeignKey("suggestion.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    duration_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    # True on the one current label of the image, NULL on history rows; the partial unique index
    # makes "one current label per image" a rule of the database, not only of the code.
    is_current: Mapped[bool | None] = mapped_column(Boolean, default=None)

    __table_args__ = (
        Index(
            "uq_annotation_current_image",
            "image_id",
            unique=True,
            sqlite_where=text("is_current"),
            postgresql_where=text("is_current"),
        ),
    )
