"""One current label per image, enforced by a partial unique index on annotation.is_current.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 19:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_current", sa.Boolean(), nullable=True))
    # The newest row of each image has been its current label so far.
    op.execute("UPDATE annotation SET is_current = true WHERE id IN (SELECT max(id) FROM annotation GROUP BY image_id)")
    op.create_index(
        "uq_annotation_current_image",
        "annotation",
        ["image_id"],
        unique=True,
        sqlite_where=sa.text("is_current"),
        postgresql_where=sa.text("is_current"),
    )


def downgrade() -> None:
    op.drop_index("uq_annotation_current_image", table_name="annotation")
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.drop_column("is_current")
