"""The database tables: the event log, the projections built from it, and runtime state.

Plain SQLAlchemy Core tables on one shared `metadata` (no ORM: every command reads and
writes through Core statements or the driver, and a read command must not pay for
importing an ORM at start). Each table is named in code by a small class whose
`__table__` it is (`table(AssetRow)` in core.projections.base), so the rest of the code
names tables by class as before. SQL that reads or writes them lives in the ledger,
projection and lineage modules, never in the faces. Alembic migrations build exactly
these tables (and the append-only triggers) on SQLite and PostgreSQL;
tests/core/storage/test_schema.py checks that they agree.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
"""Every table Strata's migrations make (the find indexes and API tokens included)."""


class Rows:
    """Names one table in code: `__table__` is the table."""

    __table__: ClassVar[Table]


# --- the log -----------------------------------------------------------------------------


class EventRow(Rows):
    """One immutable event. UPDATE and DELETE are refused by triggers."""

    __table__ = Table(
        "events", metadata,
        # Assigned by the ledger under its append lock (max + 1), never by a sequence:
        # sequences leave gaps on rollback and can commit out of order.
        Column("position", BigInteger, primary_key=True, autoincrement=False),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("stream", String(200), nullable=False),
        Column("version", Integer, nullable=False),
        Column("type", String(100), nullable=False),
        Column("schema_version", Integer, nullable=False),
        Column("data", Text, nullable=False),
        Column("meta", Text, nullable=False),
        Column("recorded_at", String(40), nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        Column("idempotency_key", String(200), unique=True),
        # How many events the append that carried `idempotency_key` recorded (on that
        # event only).
        Column("batch_size", Integer),
        UniqueConstraint("stream", "version", name="uq_events_stream_version"),
        Index("ix_events_type_position", "type", "position"),
    )


# --- projections (disposable: rebuilt from the log) --------------------------------------


class ProjectionCheckpoint(Rows):
    __table__ = Table(
        "projection_checkpoints", metadata,
        Column("name", String(100), primary_key=True),
        Column("position", BigInteger, nullable=False, default=0),
    )


class AssetRow(Rows):
    __table__ = Table(
        "assets", metadata,
        Column("digest", String(71), primary_key=True),
        Column("media_type", String(100), nullable=False),
        Column("size", BigInteger, nullable=False),
        Column("width", Integer),
        Column("height", Integer),
        Column("duration", Float),
        Column("phash", String(64)),
        Column("dhash", String(64)),
        Column("fps", Float),
        Column("frames", Integer),
        Column("sample_rate", Integer),
        Column("channels", Integer),
        Column("video_codec", String(40)),
        Column("audio_codec", String(40)),
        Column("label", String(500)),
        Column("layer", String(40), nullable=False),
        Column("job_id", String(64), index=True),
        Column("created_position", BigInteger, nullable=False, index=True),
        Column("created_event_id", String(64), nullable=False),
    )


class DerivationRow(Rows):
    """A lineage edge: input asset → output asset, with the input's role."""

    __table__ = Table(
        "derivations", metadata,
        Column("output_digest", String(71), primary_key=True),
        Column("input_digest", String(71), primary_key=True),
        Column("role", String(40), primary_key=True),
        Column("event_position", BigInteger, nullable=False),
        Column("event_id", String(64), nullable=False),
        Column("layer", String(40), nullable=False),
        Column("operation", String(80), nullable=False),
        Index("ix_derivations_input", "input_digest"),
    )


class JobRow(Rows):
    __table__ = Table(
        "jobs", metadata,
        Column("job_id", String(64), primary_key=True),
        Column("layer", String(40), nullable=False),
        # requested, running, retrying, completed, failed, cancelled
        Column("status", String(20), nullable=False),
        Column("stream_version", Integer, nullable=False),
        Column("request", Text, nullable=False),
        Column("branch", String(200)),
        Column("iterates_job", String(64)),
        Column("attempts", Integer, nullable=False, default=0),
        Column("worker", String(200)),
        Column("retry_at", String(40)),
        Column("error_class", String(200)),
        Column("error_message", Text),
        Column("outputs", Text),
        Column("requested_position", BigInteger, nullable=False),
        Column("updated_position", BigInteger, nullable=False),
        Index("ix_jobs_layer_status", "layer", "status"),
    )


class BranchRow(Rows):
    __table__ = Table(
        "branches", metadata,
        Column("name", String(200), primary_key=True),
        Column("head", String(71)),
        Column("version", Integer, nullable=False),
        Column("created_position", BigInteger, nullable=False),
        Column("updated_position", BigInteger, nullable=False),
    )


class BranchMoveRow(Rows):
    """Every head a branch ever had: nothing is removed by a rollback."""

    __table__ = Table(
        "branch_moves", metadata,
        Column("branch", String(200), primary_key=True),
        Column("position", BigInteger, primary_key=True),
        Column("action", String(20), nullable=False),  # created, advanced, rolled_back
        # Indexed both ways: provenance looks up the moves to and away from its assets.
        Column("head", String(71), index=True),
        Column("previous_head", String(71), index=True),
        Column("reason", Text),
        Column("recorded_at", String(40), nullable=False),
    )


class SelectionRow(Rows):
    __table__ = Table(
        "selections", metadata,
        Column("digest", String(71), primary_key=True),
        Column("decision", String(20)),  # picked, rejected
        Column("rating", Integer),
        Column("note", Text),
        Column("quality", Float),
        Column("cluster", String(71)),  # representative of its cluster
        Column("rank", Integer),  # place among the latest automatic selection's choices
        # Human decisions and automatic scores come from two projections, each of which
        # only overwrites what an older event of its own wrote.
        Column("updated_position", BigInteger, nullable=False, default=0),
        Column("scored_position", BigInteger, nullable=False, default=0),
    )


class SelectionScoreRow(Rows):
    """Which automatic selection scored which asset: one row per asset and
    `selection.completed` event, never changed, so the selections that scored an asset
    are found without reading every selection in the log."""

    __table__ = Table(
        "selection_scores", metadata,
        Column("digest", String(71), primary_key=True),
        Column("position", BigInteger, primary_key=True),
        Column("stream", String(200), nullable=False),  # the job's stream, with its request
    )


class ReviewRow(Rows):
    __table__ = Table(
        "reviews", metadata,
        Column("digest", String(71), primary_key=True),
        Column("verdict", String(20), nullable=False),  # approve, reject, changes
        Column("note", Text),
        Column("position", BigInteger, nullable=False),
    )


class FinalRow(Rows):
    __table__ = Table(
        "finals", metadata,
        Column("digest", String(71), primary_key=True),
        Column("note", Text),
        Column("position", BigInteger, nullable=False),
    )


class ModelRow(BaseModel):
    """A registered model: its name, where its files are, and what its weights hash to.
    Also the value the model registry reads a row into (`ModelRow.model_validate`)."""

    __table__: ClassVar[Table] = Table(
        "models", metadata,
        Column("name", String(200), primary_key=True),
        Column("path", Text, nullable=False),
        Column("digest", String(71), nullable=False),
        Column("format", String(20), nullable=False),  # folder, single_file
        Column("position", BigInteger, nullable=False),
    )

    name: str
    path: str
    digest: str
    format: str
    position: int


# --- runtime state (not derived from the log, never rebuilt) -----------------------------


class JobLease(Rows):
    """The heartbeat of the worker that holds a job's current attempt."""

    __table__ = Table(
        "job_leases", metadata,
        Column("job_id", String(64), primary_key=True),
        Column("attempt", Integer, nullable=False),
        Column("worker", String(200), nullable=False),
        Column("expires_at", Float, nullable=False),
    )


PROJECTION_TABLES = (
    AssetRow,
    DerivationRow,
    JobRow,
    BranchRow,
    BranchMoveRow,
    SelectionRow,
    SelectionScoreRow,
    ReviewRow,
    FinalRow,
    ModelRow,
)
