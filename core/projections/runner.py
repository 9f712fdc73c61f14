"""The projection runner: catches projections up with the log, and rebuilds them.

Every projection keeps its own checkpoint (the last position it applied) and moves it
only forward. The runner catches projections up inside every append's transaction
(`apply_pending`), so a reader never sees an event its projections lack, and before
reads (`catch_up`, for events other processes appended), in batches that each commit on
their own, so a projection far behind (new in this version, or with a lost checkpoint)
never holds the write lock for its whole catch-up: each commit comes after about
BATCH_SECONDS, and on SQLite the lock then stays free for PAUSE_SECONDS, long enough for
any writer waiting on it (a worker's heartbeat renewing its job's lease) to get in; of
several catch-ups at once, one goes on while the others wait. `rebuild` empties the
tables and replays the log from position 0, checking the hash chain as it goes; it must give
exactly the state incremental updates gave. The same code replays the log into a private
database to show the state as it was at an earlier position (time travel).

The runner never moves a checkpoint past an event it cannot decode (a type or schema
from a newer Strata, or a layer plug-in that is not loaded here): the projections stop
just before it, reads still answer, and appends and rebuilds are refused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, bindparam, delete, func, select

from strata.core.config import strata_version
from strata.core.errors import ChainBroken, LogShortened, StoreFromNewerVersion
from strata.core.ledger.events import RecordedEvent, UnknownPayload
from strata.core.ledger.log import (
    ChainWalker,
    events_after,
    events_table,
    row_to_event,
    rows_after,
)
from strata.core.projections.asof import clear_history
from strata.core.projections.base import Batch, Projection, table
from strata.core.projections.bulk import secondary_indexes_dropped
from strata.core.storage.db import PROJECTION_LOCK, is_sqlite, take_lock, write_transaction
from strata.core.storage.schema import ProjectionCheckpoint

BATCH = 2000  # events at most per batch
BATCH_SECONDS = 0.25  # a catch-up holds the write lock about this long at a time
# SQLite has no queue of waiting writers: each one polls, at most 100 ms apart once it has
# waited a while (SQLite's busy handler). Between batches the lock stays free a little
# longer than that, so every waiting writer gets its turn before the next batch.
PAUSE_SECONDS = 0.15


_CHECKPOINTS_SQL = f"SELECT name, position FROM {table(ProjectionCheckpoint).name}"


class CatchUpFirst(Exception):
    """The projections are too far behind to catch up inside an append's write lock:
    roll the append back, catch up in batches, and append again."""


@dataclass(frozen=True)
class ProjectionState:
    """Where the projections stand against the log, and why they stop short if they do."""

    head: int
    checkpoints: dict[str, int]
    stopped_before: RecordedEvent | None  # the first event this version cannot decode

    @property
    def seen(self) -> int:
        return max(self.checkpoints.values(), default=0)

    @property
    def lagging(self) -> dict[str, int]:
        return {name: p for name, p in self.checkpoints.items() if p < self.head}

    @property
    def problem(self) -> str | None:
        """Why the projections do not reflect the whole log, in words; None if they do."""
        if self.seen > self.head:
            return str(log_shortened(self.head, self.seen))
        if self.stopped_before is not None:
            return str(newer_event(self.stopped_before))
        return None


def newer_event(event: RecordedEvent) -> StoreFromNewerVersion:
    return StoreFromNewerVersion(
        f"the projections stop before position {event.position}: its event type "
        f"{event.type!r} (schema {event.schema}) is unknown to this Strata "
        f"({strata_version()}) — written by a newer version, or by a layer plug-in that "
        "is not loaded here; upgrade Strata on this machine (or install the plug-in). "
        "Reads still answer up to that position; appends and rebuilds are refused."
    )


def log_shortened(head: int, seen: int) -> LogShortened:
    return LogShortened(
        f"the log ends at position {head}, but the projections have seen position {seen}: "
        "the newest events were deleted from the database. Restore the database from a "
        "backup (and check it with `strata verify --checkpoint`); nothing more is recorded "
        "until then"
    )


class ProjectionRunner:
    def __init__(self, engine: Engine, projections: Sequence[Projection],
                 source: Engine | None = None) -> None:
        self.engine = engine
        self.source = source or engine  # where the events are read (differs for time travel)
        self.projections = tuple(projections)
        self._dispatch: dict[type, tuple[Projection, ...]] = {}
        self._current_query: Select[Any] | None = None  # built on first use

    def checkpoints(self, conn: Connection) -> dict[str, int]:
        # Straight to the driver: every append asks twice (see Batch).
        cursor = conn.connection.cursor()
        cursor.execute(_CHECKPOINTS_SQL)
        found = dict(cursor.fetchall())
        return {p.name: found.get(p.name, 0) for p in self.projections}

    def state(self) -> ProjectionState:
        with self.engine.connect() as conn:
            checkpoints = self.checkpoints(conn)
        with self.source.connect() as source:
            head = _head(source)
            behind = min(checkpoints.values(), default=head)
            stopped = None
            if behind < head:
                (first,) = events_after(source, behind, None, 1)
                if isinstance(first.payload, UnknownPayload):
                    stopped = first
        return ProjectionState(head, checkpoints, stopped)

    # --- catching up -----------------------------------------------------------------------

    def catch_up(self, to_position: int | None = None) -> int:
        """Apply every event past each checkpoint, one committed batch at a time; return
        how many events were applied. Stops quietly before an undecodable event."""
        if self._up_to_date(to_position):
            return 0  # the common case for readers: no write lock needed to find out
        # A private replay (time travel) has nobody to let in; the store's own database has.
        shared = self.source is self.engine
        applied, left_at = 0, None
        while True:
            deadline = time.monotonic() + BATCH_SECONDS if shared else None
            with write_transaction(self.engine, PROJECTION_LOCK) as conn:
                if left_at is not None and self._behind(conn) != left_at:
                    # Another thread or process took the lock in our pause and is catching
                    # up: leave it be. Two catch-ups taking turns would keep the lock busy
                    # through each other's pauses, and a waiting heartbeat out of it.
                    done, stopped, more = 0, None, True
                else:
                    done, stopped, more = self._apply_until(conn, to_position, deadline=deadline)
                left_at = self._behind(conn)
            applied += done
            if stopped is not None or not more:
                return applied
            if shared and is_sqlite(self.engine):
                # PostgreSQL queues waiters on its advisory lock, and heartbeats do not
                # take it; SQLite's waiting writers need the lock to stay free a while.
                time.sleep(PAUSE_SECONDS)

    def apply_pending(self, conn: Connection, appended: Sequence[RecordedEvent],
                      far_behind_ok: bool = False) -> int:
        """Catch up inside an append's write transaction, so the projections commit together
        with the events they reflect. Raises (rolling the append back) on a shortened log or
        an undecodable event, and CatchUpFirst when the projections are so far behind that
        they should catch up in batches first."""
        take_lock(conn, PROJECTION_LOCK)
        checkpoints = self.checkpoints(conn)
        first_new = appended[0].position
        if max(checkpoints.values(), default=0) >= first_new:
            raise log_shortened(first_new - 1, max(checkpoints.values()))
        behind = first_new - min(checkpoints.values(), default=0)
        if behind > BATCH + len(appended) and not far_behind_ok:
            raise CatchUpFirst()
        return self._apply_all(conn)

    def _apply_all(self, conn: Connection, chain: ChainWalker | None = None) -> int:
        applied, stopped, _ = self._apply_until(conn, None, chain)
        if stopped is not None:
            raise newer_event(stopped)
        return applied

    def _apply_until(
        self, conn: Connection, to_position: int | None, chain: ChainWalker | None = None,
        deadline: float | None = None,
    ) -> tuple[int, RecordedEvent | None, bool]:
        """Apply batch after batch until the log (or `to_position`) is reached, an
        undecodable event stops it, or `deadline` (a time.monotonic() value) passes;
        return as `_apply_batch` does."""
        applied = 0
        while True:
            done, stopped, more = self._apply_batch(conn, to_position, chain, deadline)
            applied += done
            if (stopped is not None or not more
                    or (deadline is not None and time.monotonic() >= deadline)):
                return applied, stopped, more

    def _behind(self, conn: Connection) -> int:
        """The oldest checkpoint: where the next batch starts."""
        return min(self.checkpoints(conn).values(), default=0)

    def _up_to_date(self, to_position: int | None) -> bool:
        if to_position is None and self.source is self.engine:
            with self.engine.connect() as conn:
                return self.is_current(conn)
        with self.engine.connect() as conn:
            behind = self._behind(conn)
        with self.source.connect() as source:
            head = _head(source)
        return behind >= (head if to_position is None else min(head, to_position))

    def is_current(self, conn: Connection) -> bool:
        """Whether every projection has applied the whole log, in one query on `conn` (a
        connection to the store's database): every request of a reader asks it."""
        if self._current_query is None:
            checkpoints = table(ProjectionCheckpoint)
            head = select(func.coalesce(func.max(events_table.c.position), 0)).scalar_subquery()
            # One bound parameter per name, values fixed here: an expanding list would be
            # spliced into the SQL again on every call.
            self._current_query = select(func.count(), head).where(
                checkpoints.c.name.in_([bindparam(f"projection_{i}", p.name)
                                        for i, p in enumerate(self.projections)]),
                checkpoints.c.position >= head)
        caught_up, log_head = conn.execute(self._current_query).one()
        # An empty log has nothing to apply, though no checkpoint has been written yet
        # (without this, every read of a new store would run a catch-up).
        return caught_up == len(self.projections) or log_head == 0

    def _apply_batch(
        self, conn: Connection, to_position: int | None, chain: ChainWalker | None = None,
        deadline: float | None = None,
    ) -> tuple[int, RecordedEvent | None, bool]:
        """Apply up to BATCH events past the oldest checkpoint, stopping early once
        `deadline` has passed; return how many were applied, the undecodable event the
        batch stopped before if any, and whether events past the batch may remain."""
        checkpoints = self.checkpoints(conn)
        start = min(checkpoints.values(), default=0)
        if self.source is self.engine:
            rows = rows_after(conn, start, to_position, BATCH)
        else:
            with self.source.connect() as source:
                rows = rows_after(source, start, to_position, BATCH)
        batch = Batch()
        last, stopped, applied = start, None, 0
        meta_cache: dict[str, Any] = {}
        for row in rows:
            if deadline is not None and applied and time.monotonic() >= deadline:
                break
            event = row_to_event(row, meta_cache)
            if chain is not None:
                breaks = chain.step(event, stored=(row[6], row[7]))
                if breaks:
                    raise ChainBroken(
                        f"refused to rebuild: the hash chain is broken at position "
                        f"{breaks[0].position} ({breaks[0].reason}); run `strata verify`")
            payload = event.payload
            if isinstance(payload, UnknownPayload):
                stopped = event
                break
            for projection in self._interested(type(payload)):
                if event.position > checkpoints[projection.name]:
                    projection.apply(conn, event, payload, batch)
            last, applied = event.position, applied + 1
        for name, position in checkpoints.items():
            if position < last:  # a checkpoint never moves backwards
                batch.upsert(ProjectionCheckpoint, {"name": name, "position": last},
                             keys=("name",), update_columns=("position",), newer="position")
        batch.flush(conn)
        return applied, stopped, applied < len(rows) or len(rows) == BATCH

    def _interested(self, payload_type: type) -> tuple[Projection, ...]:
        found = self._dispatch.get(payload_type)
        if found is None:
            found = self._dispatch[payload_type] = tuple(
                p for p in self.projections if issubclass(payload_type, p.handles))
        return found

    # --- rebuilding --------------------------------------------------------------------------

    def rebuild(self) -> int:
        """Drop everything the projections hold and replay the whole log, checking the hash
        chain on the way.

        One transaction: readers see the old state until the new one is complete, and
        a rebuild that fails half-way (a broken chain, an undecodable event) leaves the
        old state in place.
        """
        with write_transaction(self.engine, PROJECTION_LOCK) as conn:
            for projection in self.projections:
                for model in projection.models:
                    conn.execute(delete(table(model)))
            clear_history(conn)  # the versions time travel reads are projections too
            conn.execute(delete(table(ProjectionCheckpoint)))
            tables = [table(m).name for p in self.projections for m in p.models]
            with secondary_indexes_dropped(conn, tables):
                return self._apply_all(conn, ChainWalker())


def _head(conn: Connection) -> int:
    return int(conn.scalar(select(func.coalesce(func.max(events_table.c.position), 0))) or 0)
