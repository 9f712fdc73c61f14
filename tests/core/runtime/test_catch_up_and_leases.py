"""A projection catching up from far behind never starves running jobs' leases.

Every test runs on SQLite and PostgreSQL. A projection that is new (no checkpoint, empty
tables) faces a long log; catching it up takes several lease periods. Meanwhile a job
runs in a worker thread whose heartbeat must keep renewing its lease, and a second
worker polls for abandoned jobs. What is proved: the lease never lapses during the
catch-up (sampled by the database's clock all along), the second worker never takes the
job, and the job completes exactly once, on its first attempt.

SQLite has one writer: a catch-up that held the write lock for its whole length, or that
took it back the instant it let it go, would make the heartbeat wait past the lease.
PostgreSQL's heartbeat needs no projection lock, so there the test guards the design.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ClassVar

from sqlalchemy import delete, select, update

from strata.core.layers.selection import (
    SelectionCompleted,
    SelectionExecutor,
    SelectionRequested,
)
from strata.core.ledger.event_types import AssetImported, ImportSource, SelectionRated
from strata.core.ledger.events import NewEvent
from strata.core.ledger.log import events_table
from strata.core.projections.base import table
from strata.core.runtime import jobs
from strata.core.runtime.executor import Executor, JobContext
from strata.core.runtime.worker import Worker
from strata.core.service import Strata, asset_stream
from strata.core.storage.db import db_now
from strata.core.storage.schema import JobLease, ProjectionCheckpoint, SelectionRow
from tests.helpers import png_bytes

LEASE = 1.0
# Events the new projection catches up on: several leases' worth on either backend
# (PostgreSQL applies them about three times slower than SQLite).
FILLER = {"sqlite": 100_000, "postgresql": 30_000}
CHUNK = 5_000  # events per quiet append while setting up


class Held(Executor):
    """Selects for real, but only once the test lets go: the job runs for as long as the
    catch-up does, however fast or slow the machine."""

    layer: ClassVar[str] = "selection"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.attempts: list[tuple[str, int]] = []

    def run(self, ctx: JobContext) -> SelectionCompleted:
        self.attempts.append((ctx.worker, ctx.attempt))
        self.started.set()
        while not self.release.wait(0.02):
            ctx.check()  # a lost lease interrupts the job (and fails the test below)
        return SelectionExecutor().run(ctx)


class Background:
    """A daemon thread running `step` until stopped; an exception it raises is re-raised
    by `stop`, so a failure in a thread fails the test."""

    def __init__(self, step: Callable[[], None]) -> None:
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, args=(step,), daemon=True)
        self.thread.start()

    def _loop(self, step: Callable[[], None]) -> None:
        try:
            while not self.halt.is_set():
                step()
        except BaseException as error:  # handed to the test's thread by stop()
            self.error = error

    def stop(self, timeout: float = 120.0) -> None:
        self.halt.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "a background thread did not stop"
        if self.error is not None:
            raise self.error


def lease_lapses(strata: Strata, job_id: str, seen: set[float], lapses: list[str]) -> None:
    """Sample the job's lease once: the clock is read before the lease, so a lease that
    reads as expired really was expired when it was read."""
    leases = table(JobLease)
    with strata.store.engine.connect() as conn:
        now = db_now(conn)
        expires = conn.scalar(select(leases.c.expires_at).where(leases.c.job_id == job_id))
    if expires is None:
        lapses.append(f"the lease of job {job_id} is gone while it runs")
    else:
        seen.add(expires)
        if expires < now:
            lapses.append(f"the lease expired {now - expires:.2f}s before it was renewed")
    time.sleep(0.01)


def test_a_far_behind_catch_up_never_starves_a_running_jobs_lease(strata: Strata) -> None:
    store = strata.store
    info = strata.blobs.ingest_bytes(png_bytes(1, (8, 8)))
    digest = info.digest
    strata.record(asset_stream(digest), [AssetImported(asset=info, source=ImportSource(name="a"))])
    # A long log of ratings. Only the curation projection takes them, and it is made new
    # below, so the others' checkpoints move to the head without replaying them.
    filler = FILLER[store.engine.dialect.name]
    for start in range(0, filler, CHUNK):
        store.ledger.append(asset_stream(digest), [
            NewEvent.of(SelectionRated(digest=digest, rating=1 + n % 5))
            for n in range(start, start + CHUNK)])
    checkpoint = table(ProjectionCheckpoint)
    with store.engine.begin() as conn:
        head = conn.scalar(select(events_table.c.position).order_by(
            events_table.c.position.desc()).limit(1))
        conn.execute(update(checkpoint).values(position=head))

    held = Held()
    payload = SelectionRequested(job_id=jobs.new_job_id(), candidates=[digest])
    jobs.request(strata, payload)
    job_id = payload.job_id
    holder = Worker(strata, {"selection": held}, name="holder", lease_seconds=LEASE)
    running = threading.Thread(target=holder.work_once, args=(job_id,), daemon=True)
    running.start()
    assert held.started.wait(60), "the holder did not start the job"

    # Curation is new in this version: no checkpoint, empty tables, the whole log to take.
    (curation,) = [p for p in store.projections.projections if p.name == "curation"]
    with store.engine.begin() as conn:
        for model in curation.models:
            conn.execute(delete(table(model)))
        conn.execute(delete(checkpoint).where(checkpoint.c.name == "curation"))

    thief = Worker(strata, {"selection": held}, name="thief", lease_seconds=LEASE,
                   poll_seconds=0.01)
    stolen: list[bool] = []
    seen: set[float] = set()
    lapses: list[str] = []

    def steal() -> None:
        stolen.append(thief.work_once(job_id))  # finds the job abandoned: takes it
        time.sleep(thief.poll_seconds)

    thieving = Background(steal)
    watching = Background(lambda: lease_lapses(strata, job_id, seen, lapses))

    began = time.perf_counter()
    # Far behind: the append is refused inside its write lock (CatchUpFirst), the
    # projections catch up in batches, and the append goes through after.
    (rated,) = strata.record(asset_stream(digest), [SelectionRated(digest=digest, rating=5)])
    took = time.perf_counter() - began
    watching.stop()
    held.release.set()
    thieving.stop()
    running.join(60)
    assert not running.is_alive()
    print(f"\n{store.engine.dialect.name}: caught up {filler + 2} events in {took:.2f}s "
          f"= {took / LEASE:.1f} leases of {LEASE}s; the lease was renewed "
          f"{len(seen) - 1} times meanwhile")

    assert lapses == []
    assert not any(stolen)
    assert held.attempts == [("holder", 1)]
    events = strata.ledger.read_stream(jobs.stream(job_id))
    assert [e.type for e in events] == ["selection.requested", "job.started",
                                        "selection.completed"]
    row = jobs.get(strata, job_id)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    with store.engine.connect() as conn:  # the new projection did catch up on everything
        assert conn.scalar(select(table(SelectionRow).c.rating)) == 5
        assert conn.scalar(select(checkpoint.c.position)
                           .where(checkpoint.c.name == "curation")) >= rated.position
