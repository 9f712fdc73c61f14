"""batch sizes for idempotency keys; separate positions for selection scores

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Adding a nullable column rewrites no row, so the append-only triggers are not involved.
    op.add_column("events", sa.Column("batch_size", sa.Integer(), nullable=True))
    op.add_column("selections", sa.Column("scored_position", sa.BigInteger(), nullable=False,
                                          server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("selections") as batch_op:
        batch_op.drop_column("scored_position")
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_column("batch_size")
