"""The database tables: the event log, the projections built from it, and runtime state.

Typed SQLModel table classes; SQL that reads or writes them lives in the ledger,
projection and lineage modules, never in the faces. Alembic migrations build exactly
these tables (and the append-only triggers) on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# --- the log -----------------------------------------------------------------------------


class EventRow(SQLModel, table=True):
    """One immutable event. UPDATE and DELETE are refused by triggers."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("stream", "version", name="uq_events_stream_version"),
        Index("ix_events_type_position", "type", "position"),
    )

    # Assigned by the ledger under its append lock (max + 1), never by a sequence:
    # sequences leave gaps on rollback and can commit out of order.
    position: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    event_id: str = Field(unique=True, max_length=64)
    stream: str = Field(max_length=200)
    version: int
    type: str = Field(max_length=100)
    schema_version: int
    data: str = Field(sa_column=Column(Text, nullable=False))
    meta: str = Field(sa_column=Column(Text, nullable=False))
    recorded_at: str = Field(max_length=40)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    idempotency_key: str | None = Field(default=None, unique=True, max_length=200)
    # How many events the append that carried `idempotency_key` recorded (on that event only).
    batch_size: int | None = None


# --- projections (disposable: rebuilt from the log) --------------------------------------


class ProjectionCheckpoint(SQLModel, table=True):
    __tablename__ = "projection_checkpoints"

    name: str = Field(primary_key=True, max_length=100)
    position: int = Field(default=0, sa_type=BigInteger)


class AssetRow(SQLModel, table=True):
    __tablename__ = "assets"

    digest: str = Field(primary_key=True, max_length=71)
    media_type: str = Field(max_length=100)
    size: int = Field(sa_type=BigInteger)
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    phash: str | None = Field(default=None, max_length=64)
    dhash: str | None = Field(default=None, max_length=64)
    fps: float | None = None
    frames: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    video_codec: str | None = Field(default=None, max_length=40)
    audio_codec: str | None = Field(default=None, max_length=40)
    label: str | None = Field(default=None, max_length=500)
    layer: str = Field(max_length=40)
    job_id: str | None = Field(default=None, index=True, max_length=64)
    created_position: int = Field(sa_type=BigInteger, index=True)
    created_event_id: str = Field(max_length=64)


class DerivationRow(SQLModel, table=True):
    """A lineage edge: input asset → output asset, with the input's role."""

    __tablename__ = "derivations"
    __table_args__ = (Index("ix_derivations_input", "input_digest"),)

    output_digest: str = Field(primary_key=True, max_length=71)
    input_digest: str = Field(primary_key=True, max_length=71)
    role: str = Field(primary_key=True, max_length=40)
    event_position: int = Field(sa_type=BigInteger)
    event_id: str = Field(max_length=64)
    layer: str = Field(max_length=40)
    operation: str = Field(max_length=80)


class JobRow(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_layer_status", "layer", "status"),)

    job_id: str = Field(primary_key=True, max_length=64)
    layer: str = Field(max_length=40)
    status: str = Field(max_length=20)  # requested, running, retrying, completed, failed, cancelled
    stream_version: int
    request: str = Field(sa_column=Column(Text, nullable=False))
    branch: str | None = Field(default=None, max_length=200)
    iterates_job: str | None = Field(default=None, max_length=64)
    attempts: int = 0
    worker: str | None = Field(default=None, max_length=200)
    retry_at: str | None = Field(default=None, max_length=40)
    error_class: str | None = Field(default=None, max_length=200)
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    outputs: str | None = Field(default=None, sa_column=Column(Text))
    requested_position: int = Field(sa_type=BigInteger)
    updated_position: int = Field(sa_type=BigInteger)


class BranchRow(SQLModel, table=True):
    __tablename__ = "branches"

    name: str = Field(primary_key=True, max_length=200)
    head: str | None = Field(default=None, max_length=71)
    version: int
    created_position: int = Field(sa_type=BigInteger)
    updated_position: int = Field(sa_type=BigInteger)


class BranchMoveRow(SQLModel, table=True):
    """Every head a branch ever had: nothing is removed by a rollback."""

    __tablename__ = "branch_moves"

    branch: str = Field(primary_key=True, max_length=200)
    position: int = Field(primary_key=True, sa_type=BigInteger)
    action: str = Field(max_length=20)  # created, advanced, rolled_back
    # Indexed both ways: provenance looks up the moves to and away from its assets.
    head: str | None = Field(default=None, index=True, max_length=71)
    previous_head: str | None = Field(default=None, index=True, max_length=71)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    recorded_at: str = Field(max_length=40)


class SelectionRow(SQLModel, table=True):
    __tablename__ = "selections"

    digest: str = Field(primary_key=True, max_length=71)
    decision: str | None = Field(default=None, max_length=20)  # picked, rejected
    rating: int | None = None
    note: str | None = Field(default=None, sa_column=Column(Text))
    quality: float | None = None
    cluster: str | None = Field(default=None, max_length=71)  # representative of its cluster
    rank: int | None = None  # place among the latest automatic selection's choices
    # Human decisions and automatic scores come from two projections, each of which only
    # overwrites what an older event of its own wrote.
    updated_position: int = Field(default=0, sa_type=BigInteger)
    scored_position: int = Field(default=0, sa_type=BigInteger)


class SelectionScoreRow(SQLModel, table=True):
    """Which automatic selection scored which asset: one row per asset and
    `selection.completed` event, never changed, so the selections that scored an asset
    are found without reading every selection in the log."""

    __tablename__ = "selection_scores"

    digest: str = Field(primary_key=True, max_length=71)
    position: int = Field(primary_key=True, sa_type=BigInteger)
    stream: str = Field(max_length=200)  # the job's stream, where its request is too


class ReviewRow(SQLModel, table=True):
    __tablename__ = "reviews"

    digest: str = Field(primary_key=True, max_length=71)
    verdict: str = Field(max_length=20)  # approve, reject, changes
    note: str | None = Field(default=None, sa_column=Column(Text))
    position: int = Field(sa_type=BigInteger)


class FinalRow(SQLModel, table=True):
    __tablename__ = "finals"

    digest: str = Field(primary_key=True, max_length=71)
    note: str | None = Field(default=None, sa_column=Column(Text))
    position: int = Field(sa_type=BigInteger)


class ModelRow(SQLModel, table=True):
    """A registered model: its name, where its files are, and what its weights hash to."""

    __tablename__ = "models"

    name: str = Field(primary_key=True, max_length=200)
    path: str = Field(sa_column=Column(Text, nullable=False))
    digest: str = Field(max_length=71)
    format: str = Field(max_length=20)  # folder, single_file
    position: int = Field(sa_type=BigInteger)


# --- runtime state (not derived from the log, never rebuilt) -----------------------------


class JobLease(SQLModel, table=True):
    """The heartbeat of the worker that holds a job's current attempt."""

    __tablename__ = "job_leases"

    job_id: str = Field(primary_key=True, max_length=64)
    attempt: int
    worker: str = Field(max_length=200)
    expires_at: float


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
