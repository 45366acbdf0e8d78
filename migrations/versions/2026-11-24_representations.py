"""Representations: self-supervised encoders of a project's pool, trained as background jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "representation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=200), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("pool_size", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_representation_project_id_project"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_representation")),
    )
    with op.batch_alter_table("representation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_representation_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("representation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_representation_project_id"))
    op.drop_table("representation")
