"""time travel as a query: the versions mutable projection rows replace, kept by triggers

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from strata.core.projections.asof import HISTORY, MUTABLE, drop_history_ddl, history_ddl

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The projections that write the mutable tables (curation and selection-scores share
# `selections`).
WRITERS = ("jobs", "branches", "curation", "selection-scores", "models")


def upgrade() -> None:
    bind = op.get_bind()
    for history in HISTORY.values():
        history.create(bind)
    for statement in history_ddl(bind.dialect.name):
        op.execute(statement)
    # An existing store's rows hold only their latest versions: empty the mutable tables
    # and let their projections replay the log from the start (their writes are
    # idempotent), so the triggers keep every version a rebuild would.
    for mutable in MUTABLE:
        op.execute(f"DELETE FROM {mutable.name}")
    names = ", ".join(f"'{name}'" for name in WRITERS)
    op.execute(f"DELETE FROM projection_checkpoints WHERE name IN ({names})")


def downgrade() -> None:
    bind = op.get_bind()
    for statement in drop_history_ddl(bind.dialect.name):
        op.execute(statement)
    for history in HISTORY.values():
        history.drop(bind)
