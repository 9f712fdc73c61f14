"""which selection scored which asset; branch moves indexed by head and previous head

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "selection_scores",
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("stream", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("digest", "position"),
    )
    with op.batch_alter_table("branch_moves") as batch_op:
        batch_op.create_index(batch_op.f("ix_branch_moves_head"), ["head"], unique=False)
        batch_op.create_index(batch_op.f("ix_branch_moves_previous_head"), ["previous_head"],
                              unique=False)
    # The new table belongs to the selection-scores projection, which has already seen the
    # selections of an existing store: without its checkpoint it replays the log from the
    # start (its writes are idempotent) and fills the table as a rebuild would.
    op.execute("DELETE FROM projection_checkpoints WHERE name = 'selection-scores'")


def downgrade() -> None:
    with op.batch_alter_table("branch_moves") as batch_op:
        batch_op.drop_index(batch_op.f("ix_branch_moves_previous_head"))
        batch_op.drop_index(batch_op.f("ix_branch_moves_head"))
    op.drop_table("selection_scores")
