"""find: per-asset facts, typed parameters, full-text prompts and perceptual-hash chunks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# SQLite: an external-content FTS5 table over find_texts, kept in step by triggers (a
# rebuild's DELETE FROM find_texts empties it row by row through the delete trigger).
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE find_texts_fts USING fts5("
    "text, content='find_texts', content_rowid='rowid', tokenize='unicode61')",
    "CREATE TRIGGER find_texts_ai AFTER INSERT ON find_texts BEGIN "
    "INSERT INTO find_texts_fts(rowid, text) VALUES (new.rowid, new.text); END",
    "CREATE TRIGGER find_texts_ad AFTER DELETE ON find_texts BEGIN "
    "INSERT INTO find_texts_fts(find_texts_fts, rowid, text) "
    "VALUES ('delete', old.rowid, old.text); END",
)
# PostgreSQL: a stored tsvector (the 'simple' configuration: no stemming, as FTS5's
# unicode61 tokenizer) with a GIN index.
POSTGRES_FTS = (
    "ALTER TABLE find_texts ADD COLUMN tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED",
    "CREATE INDEX ix_find_texts_tsv ON find_texts USING gin (tsv)",
)


def upgrade() -> None:
    op.create_table(
        "find_assets",
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("layer", sa.String(length=40), nullable=False),
        sa.Column("operation", sa.String(length=80), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("made", sa.String(length=40), nullable=False),
        sa.Column("phash", sa.BigInteger(), nullable=True),
        sa.Column("ph0", sa.Integer(), nullable=True),
        sa.Column("ph1", sa.Integer(), nullable=True),
        sa.Column("ph2", sa.Integer(), nullable=True),
        sa.Column("ph3", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("digest"),
    )
    for column in ("layer", "actor", "made"):
        op.create_index(f"ix_find_assets_{column}", "find_assets", [column])
    op.create_index("ix_find_assets_position", "find_assets", ["position", "digest"])
    op.create_index("ix_find_assets_phash", "find_assets", ["phash"])
    for i in range(4):  # each chunk with the whole hash: candidates read no table row
        op.create_index(f"ix_find_assets_ph{i}", "find_assets", [f"ph{i}", "phash"])
    op.create_table(
        "find_params",
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("num", sa.Float(), nullable=True),
        sa.Column("txt", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("digest", "name", "position"),
    )
    op.create_index("ix_find_params_num", "find_params", ["name", "num", "digest"])
    op.create_index("ix_find_params_txt", "find_params", ["name", "txt", "digest"])
    # One asset's parameter by name, with its value: checking a candidate reads no row.
    op.create_index("ix_find_params_asset", "find_params", ["digest", "name", "num", "txt"])
    op.create_table(
        "find_texts",
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("digest", "position", "key"),
    )
    for statement in SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else POSTGRES_FTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER find_texts_ad")
        op.execute("DROP TRIGGER find_texts_ai")
        op.execute("DROP TABLE find_texts_fts")
    op.drop_table("find_texts")
    op.drop_table("find_params")
    op.drop_table("find_assets")
