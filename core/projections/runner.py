"""Projections: tables built only from events, each with its checkpoint (rule 3).

Every projection is a function of the events it is shown, in position order. The runner
catches each one up from its own checkpoint: inside every append's transaction
(`apply_pending`), and before reads (`catch_up`, for events other processes appended).
`rebuild` empties the tables and replays the log from position 0, which must give exactly
the state incremental updates gave. The same code replays the log into a private
in-memory database to show the state as it was at an earlier position (time travel).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, Executable, Table, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from strata.core.layers.selection import SelectionCompleted
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetImported,
    AssetInfo,
    BranchAdvanced,
    BranchCreated,
    BranchRolledBack,
    FinalMarked,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobRequest,
    JobStarted,
    ModelRegistered,
    ProducedAsset,
    ReviewRecorded,
    SelectionPicked,
    SelectionRated,
    SelectionRejected,
)
from strata.core.ledger.events import Payload, RecordedEvent, UnknownPayload
from strata.core.ledger.log import events_after, events_table
from strata.core.storage.db import PROJECTION_LOCK, driver_sql, take_lock, write_transaction
from strata.core.storage.schema import (
    AssetRow,
    BranchMoveRow,
    BranchRow,
    DerivationRow,
    FinalRow,
    JobRow,
    ModelRow,
    ProjectionCheckpoint,
    ReviewRow,
    SelectionRow,
)

BATCH = 2000


def table(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined, no-any-return]


@lru_cache(maxsize=256)
def _upsert_statement(
    dialect: str, model: type, keys: tuple[str, ...], update_columns: tuple[str, ...] | None
) -> Executable:
    # Built once and executed with parameters: building a statement per row costs far
    # more than running it.
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    statement = insert(table(model))
    if update_columns is None:
        return statement.on_conflict_do_nothing(index_elements=list(keys))
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={c: statement.excluded[c] for c in update_columns}
    )


def upsert(
    conn: Connection, model: type, values: dict[str, Any] | list[dict[str, Any]],
    keys: Iterable[str], update_columns: Iterable[str] | None = None,
) -> None:
    """INSERT, or on a key conflict update `update_columns` (None: keep the existing row).

    A list of rows runs as one executemany, in order.
    """
    statement = _upsert_statement(conn.dialect.name, model, tuple(keys),
                                  None if update_columns is None else tuple(update_columns))
    conn.execute(statement, values)


class Batch:
    """Rows that only ever get inserted-or-ignored, queued and written together.

    Safe for tables that one projection alone writes with insert-or-ignore (assets,
    derivations): running them in order at the end of the batch gives the same rows as
    running them one by one, since the first insert of a key wins either way.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[type, tuple[str, ...]], list[dict[str, Any]]] = {}

    def insert_or_ignore(self, model: type, row: dict[str, Any], keys: tuple[str, ...]) -> None:
        self.pending.setdefault((model, keys), []).append(row)

    def flush(self, conn: Connection) -> None:
        cursor = conn.connection.cursor()
        for (model, keys), rows in self.pending.items():
            # Straight to the driver: SQLAlchemy's per-row parameter processing would
            # cost more than the inserts (rebuild speed rests on this).
            sql, columns = _insert_or_ignore_sql(model, keys)
            cursor.executemany(driver_sql(conn, sql),
                               [tuple(row[c] for c in columns) for row in rows])
        self.pending.clear()


@lru_cache(maxsize=32)
def _insert_or_ignore_sql(model: type, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    columns = tuple(c.name for c in table(model).columns)
    sql = (f"INSERT INTO {table(model).name} ({', '.join(columns)}) "
           f"VALUES ({', '.join(['?'] * len(columns))}) "
           f"ON CONFLICT ({', '.join(keys)}) DO NOTHING")
    return sql, columns


class Projection(ABC):
    name: str
    models: tuple[type, ...]
    handles: tuple[type[Payload], ...]  # payload classes (and their subclasses) it applies

    @abstractmethod
    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None: ...


class LineageProjection(Projection):
    """Assets and the derivation edges between them."""

    name = "lineage"
    models = (AssetRow, DerivationRow)
    handles = (AssetImported, AssetDerived, JobCompleted)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        if isinstance(payload, AssetImported):
            self._asset(batch, event, payload.asset, "import", None, payload.source.name)
        elif isinstance(payload, AssetDerived):
            self._produced(batch, event, payload.output, "external", payload.operation, None,
                           payload.source.name)
        elif isinstance(payload, JobCompleted):
            layer = event.type.split(".", 1)[0]
            for output in payload.outputs:
                self._produced(batch, event, output, layer, payload.operation, payload.job_id)

    def _produced(
        self, batch: Batch, event: RecordedEvent, output: ProducedAsset, layer: str,
        operation: str, job_id: str | None, label: str | None = None,
    ) -> None:
        self._asset(batch, event, output.asset, layer, job_id, label)
        for source in output.inputs:
            if source.digest == output.asset.digest:
                continue  # saved unchanged: an asset is not its own ancestor
            batch.insert_or_ignore(DerivationRow, {
                "output_digest": output.asset.digest,
                "input_digest": source.digest,
                "role": source.role,
                "event_position": event.position,
                "event_id": event.event_id,
                "layer": layer,
                "operation": operation,
            }, keys=("output_digest", "input_digest", "role"))

    def _asset(
        self, batch: Batch, event: RecordedEvent, asset: AssetInfo, layer: str,
        job_id: str | None, label: str | None,
    ) -> None:
        # The first event that mentions an asset is the one that made it; later imports
        # of the same bytes add nothing to the asset itself.
        batch.insert_or_ignore(AssetRow, {
            **asset.model_dump(),
            "label": label,
            "layer": layer,
            "job_id": job_id,
            "created_position": event.position,
            "created_event_id": event.event_id,
        }, keys=("digest",))


class JobsProjection(Projection):
    name = "jobs"
    models = (JobRow,)
    handles = (JobRequest, JobStarted, JobCompleted, JobFailed, JobCancelled)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        jobs = table(JobRow)
        changes: dict[str, Any]
        if isinstance(payload, JobRequest):
            # A job id requested twice (on another stream) cannot be undone in the log;
            # the first request stands and the projection must not wedge on the second.
            upsert(conn, JobRow, dict(
                job_id=payload.job_id,
                layer=event.type.split(".", 1)[0],
                status="requested",
                stream_version=event.version,
                request=json.dumps(event.data, sort_keys=True),
                branch=payload.branch,
                iterates_job=payload.iterates,
                attempts=0,
                requested_position=event.position,
                updated_position=event.position,
            ), keys=("job_id",))
            return
        if isinstance(payload, JobStarted):
            changes = {"status": "running", "attempts": payload.attempt,
                       "worker": payload.worker, "retry_at": None}
        elif isinstance(payload, JobCompleted):
            changes = {"status": "completed", "worker": None, "outputs": json.dumps(
                [o.asset.digest for o in payload.outputs])}
        elif isinstance(payload, JobFailed):
            changes = {
                "status": "retrying" if payload.retry_at else "failed",
                "retry_at": payload.retry_at,
                "error_class": payload.error_class,
                "error_message": payload.message,
                "worker": None,
            }
        elif isinstance(payload, JobCancelled):
            changes = {"status": "cancelled", "worker": None, "retry_at": None}
        else:
            return
        conn.execute(
            update(jobs)
            .where(jobs.c.job_id == payload.job_id)
            .values(stream_version=event.version, updated_position=event.position, **changes)
        )


class BranchesProjection(Projection):
    name = "branches"
    models = (BranchRow, BranchMoveRow)
    handles = (BranchCreated, BranchAdvanced, BranchRolledBack)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        if isinstance(payload, BranchCreated):
            exists = conn.scalar(select(table(BranchRow).c.name)
                                 .where(table(BranchRow).c.name == payload.name))
            if exists:  # created again outside its stream: the first creation stands
                return
            conn.execute(table(BranchRow).insert().values(
                name=payload.name, head=payload.head, version=event.version,
                created_position=event.position, updated_position=event.position,
            ))
            self._move(conn, event, payload.name, "created", payload.head, None, None)
        elif isinstance(payload, BranchAdvanced | BranchRolledBack):
            branches = table(BranchRow)
            conn.execute(
                update(branches)
                .where(branches.c.name == payload.name)
                .values(head=payload.head, version=event.version,
                        updated_position=event.position)
            )
            action = "advanced" if isinstance(payload, BranchAdvanced) else "rolled_back"
            reason = payload.reason if isinstance(payload, BranchRolledBack) else None
            self._move(conn, event, payload.name, action, payload.head, payload.previous_head,
                       reason)

    def _move(
        self, conn: Connection, event: RecordedEvent, branch: str, action: str,
        head: str | None, previous: str | None, reason: str | None,
    ) -> None:
        conn.execute(table(BranchMoveRow).insert().values(
            branch=branch, position=event.position, action=action, head=head,
            previous_head=previous, reason=reason, recorded_at=event.recorded_at,
        ))


class CurationProjection(Projection):
    """Human and automatic decisions: selections, ratings, reviews, finals."""

    name = "curation"
    models = (SelectionRow, ReviewRow, FinalRow)
    handles = (SelectionPicked, SelectionRejected, SelectionRated, ReviewRecorded,
               FinalMarked, SelectionCompleted)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        if isinstance(payload, SelectionPicked | SelectionRejected):
            decision = "picked" if isinstance(payload, SelectionPicked) else "rejected"
            self._selection(conn, event, payload.digest, decision=decision, note=payload.note)
        elif isinstance(payload, SelectionRated):
            self._selection(conn, event, payload.digest, rating=payload.rating,
                            note=payload.note)
        elif isinstance(payload, ReviewRecorded):
            upsert(conn, ReviewRow, {"digest": payload.digest, "verdict": payload.verdict,
                                     "note": payload.note, "position": event.position},
                   keys=("digest",), update_columns=("verdict", "note", "position"))
        elif isinstance(payload, FinalMarked):
            upsert(conn, FinalRow, {"digest": payload.digest, "note": payload.note,
                                    "position": event.position},
                   keys=("digest",), update_columns=("note", "position"))
        elif isinstance(payload, SelectionCompleted):
            for digest, facts in payload.scored.items():
                self._selection(conn, event, digest, quality=facts.score,
                                cluster=facts.cluster, rank=facts.rank)

    def _selection(self, conn: Connection, event: RecordedEvent, digest: str,
                   **changes: Any) -> None:
        values = {"digest": digest, "updated_position": event.position, **changes}
        upsert(conn, SelectionRow, values, keys=("digest",),
               update_columns=[k for k in values if k != "digest"])


class ModelsProjection(Projection):
    name = "models"
    models = (ModelRow,)
    handles = (ModelRegistered,)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        if isinstance(payload, ModelRegistered):
            # Registering a name again points it at new files; the old event stays.
            upsert(conn, ModelRow, {**payload.model_dump(), "position": event.position},
                   keys=("name",), update_columns=("path", "digest", "format", "position"))


ALL_PROJECTIONS: tuple[Projection, ...] = (
    LineageProjection(),
    JobsProjection(),
    BranchesProjection(),
    CurationProjection(),
    ModelsProjection(),
)


class ProjectionRunner:
    """Catches projections up with the log, and rebuilds them from scratch."""

    def __init__(self, engine: Engine, projections: tuple[Projection, ...] = ALL_PROJECTIONS,
                 source: Engine | None = None) -> None:
        self.engine = engine
        self.source = source or engine  # where the events are read (differs for time travel)
        self.projections = projections
        self._dispatch: dict[type, tuple[Projection, ...]] = {}

    def checkpoints(self, conn: Connection) -> dict[str, int]:
        rows = conn.execute(select(table(ProjectionCheckpoint))).all()
        found = {row.name: row.position for row in rows}
        return {p.name: found.get(p.name, 0) for p in self.projections}

    def catch_up(self, to_position: int | None = None) -> int:
        """Apply every event past each checkpoint; return the number of events applied."""
        if self._up_to_date(to_position):
            return 0  # the common case for readers: no write lock needed to find out
        applied = 0
        while True:
            with write_transaction(self.engine, PROJECTION_LOCK) as conn:
                done = self._apply_batch(conn, to_position)
            applied += done
            if done < BATCH:
                return applied

    def apply_pending(self, conn: Connection) -> int:
        """Catch up inside the caller's write transaction (an append's): the projections
        then commit together with the events they reflect."""
        take_lock(conn, PROJECTION_LOCK)
        applied = 0
        while (done := self._apply_batch(conn, None)) > 0:
            applied += done
        return applied

    def _up_to_date(self, to_position: int | None) -> bool:
        with self.engine.connect() as conn:
            behind = min(self.checkpoints(conn).values())
        with self.source.connect() as source:
            head = source.scalar(select(func.coalesce(func.max(events_table.c.position), 0)))
        return behind >= (head if to_position is None else min(head, to_position))

    def _apply_batch(self, conn: Connection, to_position: int | None) -> int:
        checkpoints = self.checkpoints(conn)
        start = min(checkpoints.values())
        if self.source is self.engine:
            rows = events_after(conn, start, to_position, BATCH)
        else:
            with self.source.connect() as source:
                rows = events_after(source, start, to_position, BATCH)
        batch = Batch()
        for event in rows:
            payload = event.payload
            if isinstance(payload, UnknownPayload):
                continue  # written by a newer Strata: nothing this version can project
            for projection in self._interested(type(payload)):
                if event.position > checkpoints[projection.name]:
                    projection.apply(conn, event, payload, batch)
        batch.flush(conn)
        if rows:
            last = rows[-1].position
            for projection in self.projections:
                upsert(conn, ProjectionCheckpoint, {"name": projection.name, "position": last},
                       keys=("name",), update_columns=("position",))
        return len(rows)

    def _interested(self, payload_type: type) -> tuple[Projection, ...]:
        found = self._dispatch.get(payload_type)
        if found is None:
            found = self._dispatch[payload_type] = tuple(
                p for p in self.projections if issubclass(payload_type, p.handles))
        return found

    def rebuild(self) -> int:
        """Drop everything the projections hold and replay the whole log.

        One transaction: readers see the old state until the new one is complete, and
        a rebuild that fails half-way leaves the old state in place.
        """
        with write_transaction(self.engine, PROJECTION_LOCK) as conn:
            for projection in self.projections:
                for model in projection.models:
                    conn.execute(delete(table(model)))
            conn.execute(delete(table(ProjectionCheckpoint)))
            return self.apply_pending(conn)
