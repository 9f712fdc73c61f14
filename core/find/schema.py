"""The tables of the find indexes: projections, rebuilt from the log like every other.

- `find_assets`: one row per asset (the first event that made it), with what the search
  filters and shows (layer, operation, media type, actor, when) and its 64-bit perceptual
  hash, whole and cut into four 16-bit chunks: the multi-index hashing structure behind
  `like:` (see core.find.hamming). Each chunk's index carries the whole hash, so finding
  the candidates reads no table row; (position, digest) serves newest-first order.
- `find_params`: typed parameter rows, one per recipe entry of every event that made an
  asset (numbers in `num`, text lower-cased in `txt`), indexed by (name, value) for
  equality and ranges, and by (digest, name, value) so that checking one asset's
  parameter reads one index entry (core.find.search checks candidates so).
- `find_texts`: the prompts and negative prompts of those recipes (imported tools'
  included), with a full-text index: an FTS5 table on SQLite, a stored tsvector with a
  GIN index on PostgreSQL.

Migration 0007 builds them in a store; the DDL below builds the full-text part when the
tables are created from the models (the private database of time travel).
"""

from __future__ import annotations

from sqlalchemy import DDL, BigInteger, Column, Float, Index, Integer, String, Table, Text, event

from strata.core.projections.base import table
from strata.core.storage.schema import Rows, metadata

# Longer text parameters are cut here: they are for equality and prefix matches, and
# PostgreSQL's B-tree refuses entries over about 2,700 bytes.
MAX_TEXT_VALUE = 500


class FindAssetRow(Rows):
    __table__ = Table(
        "find_assets", metadata,
        Column("digest", String(71), primary_key=True),
        Column("position", BigInteger, nullable=False),
        Column("layer", String(40), nullable=False, index=True),
        Column("operation", String(80), nullable=False),
        Column("media_type", String(100), nullable=False),
        Column("actor", String(200), index=True),
        Column("made", String(40), nullable=False, index=True),  # recorded_at (ISO, UTC)
        Column("phash", BigInteger),  # signed 64-bit
        *(Column(f"ph{i}", Integer) for i in range(4)),
        Index("ix_find_assets_position", "position", "digest"),
        Index("ix_find_assets_phash", "phash"),
        *(Index(f"ix_find_assets_ph{i}", f"ph{i}", "phash") for i in range(4)),
    )


class FindParamRow(Rows):
    __table__ = Table(
        "find_params", metadata,
        # Keyed (digest, name, …): checking one candidate's parameter is one key lookup.
        Column("digest", String(71), primary_key=True),
        Column("name", String(200), primary_key=True),
        Column("position", BigInteger, primary_key=True),
        Column("num", Float),
        Column("txt", String(MAX_TEXT_VALUE)),
        Index("ix_find_params_num", "name", "num", "digest"),
        Index("ix_find_params_txt", "name", "txt", "digest"),
        # One asset's parameter by name, with its value: checking a candidate reads no row.
        Index("ix_find_params_asset", "digest", "name", "num", "txt"),
    )


class FindTextRow(Rows):
    __table__ = Table(
        "find_texts", metadata,
        Column("digest", String(71), primary_key=True),
        Column("position", BigInteger, primary_key=True),
        # the recipe key: prompt, passes.2.prompt
        Column("key", String(200), primary_key=True),
        Column("kind", String(20), nullable=False),  # prompt or negative
        Column("text", Text, nullable=False),
    )


# The same statements as migration 0007's.
_SQLITE_FTS = (
    "CREATE VIRTUAL TABLE find_texts_fts USING fts5("
    "text, content='find_texts', content_rowid='rowid', tokenize='unicode61')",
    "CREATE TRIGGER find_texts_ai AFTER INSERT ON find_texts BEGIN "
    "INSERT INTO find_texts_fts(rowid, text) VALUES (new.rowid, new.text); END",
    "CREATE TRIGGER find_texts_ad AFTER DELETE ON find_texts BEGIN "
    "INSERT INTO find_texts_fts(find_texts_fts, rowid, text) "
    "VALUES ('delete', old.rowid, old.text); END",
)
_POSTGRES_FTS = (
    "ALTER TABLE find_texts ADD COLUMN tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED",
    "CREATE INDEX ix_find_texts_tsv ON find_texts USING gin (tsv)",
)
for _statement in _SQLITE_FTS:
    event.listen(table(FindTextRow), "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in _POSTGRES_FTS:
    event.listen(table(FindTextRow), "after_create",
                 DDL(_statement).execute_if(dialect="postgresql"))

FIND_TABLES = (FindAssetRow, FindParamRow, FindTextRow)
