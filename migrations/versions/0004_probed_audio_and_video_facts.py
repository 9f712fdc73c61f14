"""the facts probed from audio and video assets

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    ("fps", sa.Float()),
    ("frames", sa.Integer()),
    ("sample_rate", sa.Integer()),
    ("channels", sa.Integer()),
    ("video_codec", sa.String(length=40)),
    ("audio_codec", sa.String(length=40)),
)


def upgrade() -> None:
    # Nullable columns on a projection table: existing rows keep None, which is what the
    # events recorded before probing say (`strata rebuild` gives the same).
    for name, type_ in COLUMNS:
        op.add_column("assets", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assets") as batch_op:
        for name, _type in reversed(COLUMNS):
            batch_op.drop_column(name)
