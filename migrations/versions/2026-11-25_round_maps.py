"""Rounds keep their latent map (a 2-D t-SNE layout) built after the round, on request.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(sa.Column("map_key", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("map_requested_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("map_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_column("map_error")
        batch_op.drop_column("map_requested_at")
        batch_op.drop_column("map_key")
