"""The executor runtime: workers claim jobs with a lease, run them, record one result.

Executors subscribe to their layer's `*.requested` events through the jobs projection,
which follows the log from its checkpoint. A worker claims a job by appending
`job.started` at the job stream's expected version and, in the same transaction, taking
a lease that its heartbeat thread keeps extending. A worker that dies stops
heartbeating; once its lease expires another worker appends the next `job.started` and
takes the job over. The result (`<layer>.completed` or `job.failed`) is appended at the
version of the worker's own `job.started`, so a worker that lost its job, or a job that
was cancelled meanwhile, can never record a second result.

Claims are safe under any contention without row locks: `job.started` is appended at the
version the worker read, under the log's write lock (an advisory lock on PostgreSQL), so
of several workers racing for one job exactly one claim commits and the others get a
ConcurrencyError and move on to the next job. An idle worker sleeps on an EventWaiter:
on PostgreSQL a new request wakes it at once (LISTEN/NOTIFY); it still looks every
`poll_seconds` for what no event announces (a retry falling due, a lease running out).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from strata.core.decisions import branches
from strata.core.errors import (
    ConcurrencyError,
    Interrupted,
    InvalidInput,
    JobError,
    JobFailure,
    ModelError,
    RetryableError,
    StrataError,
)
from strata.core.ledger.event_types import (
    JobCompleted,
    JobFailed,
    JobRequest,
    JobStarted,
)
from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.ledger.log import retry_on_conflict, utc_iso
from strata.core.ledger.notify import EventWaiter, pause
from strata.core.projections.base import table, upsert
from strata.core.runtime.executor import Executor, JobContext, JobInterrupted, Progress
from strata.core.runtime.jobs import stream
from strata.core.service import Strata
from strata.core.storage.db import db_now
from strata.core.storage.schema import JobLease, JobRow

log = logging.getLogger("strata.runtime")


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, RetryableError | TimeoutError | ConnectionError):
        return True
    # CUDA/MPS out-of-memory errors are worth another try once memory frees up.
    return "OutOfMemory" in type(error).__name__


def _max_attempts(row: Mapping[str, Any]) -> int:
    return int(json.loads(row["request"]).get("max_attempts", 1))


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        strata: Strata,
        executors: Mapping[str, Executor],
        *,
        name: str | None = None,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.5,
        backoff_seconds: float = 2.0,
        max_backoff_seconds: float = 300.0,
        on_progress: Progress | None = None,
        waiter: EventWaiter | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise InvalidInput("the lease must be longer than 0 seconds")
        self.strata = strata
        self.executors = dict(executors)
        self.name = name or default_worker_name()
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.on_progress = on_progress
        self.waiter = waiter or EventWaiter(strata.store.engine)
        self.running: JobContext | None = None  # the job this worker runs now
        # Set when Ctrl-C reached this process (see `run_here`): a library that turns the
        # KeyboardInterrupt into an error of its own must not fail the job.
        self.interrupt_requested = threading.Event()

    # --- finding and claiming -----------------------------------------------------------

    def claimable(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Jobs of this worker's layers that are waiting, due for a retry, or abandoned."""
        jobs, leases = table(JobRow), table(JobLease)
        with self.strata.view() as conn:
            now = db_now(conn)
            abandoned = and_(
                jobs.c.status == "running",
                or_(leases.c.expires_at.is_(None), leases.c.expires_at < now),
            )
            due = utc_iso(datetime.fromtimestamp(now, UTC))
            query = (
                select(jobs)
                .select_from(jobs.outerjoin(leases, leases.c.job_id == jobs.c.job_id))
                .where(jobs.c.layer.in_(list(self.executors)))
                .where(or_(
                    jobs.c.status == "requested",
                    and_(jobs.c.status == "retrying", jobs.c.retry_at <= due),
                    abandoned,
                ))
                .order_by(jobs.c.requested_position)
            )
            if job_id is not None:
                query = query.where(jobs.c.job_id == job_id)
            return [dict(r._mapping) for r in conn.execute(query.limit(50))]

    def claim(self, row: Mapping[str, Any]) -> tuple[JobContext, int] | None:
        """Append `job.started` and take the lease in one commit; None if someone was first."""
        attempt = row["attempts"] + 1
        job_id = row["job_id"]

        def take_lease(conn: Connection, _events: list[RecordedEvent]) -> None:
            expires = db_now(conn) + self.lease_seconds
            upsert(conn, JobLease, {"job_id": job_id, "attempt": attempt, "worker": self.name,
                                    "expires_at": expires},
                   keys=("job_id",), update_columns=("attempt", "worker", "expires_at"))

        requested = self.strata.ledger.read_stream(stream(job_id))[0]
        request = requested.payload
        if not isinstance(request, JobRequest):
            raise JobError(f"job {job_id}: its request ({requested.type}) is unknown to this "
                           "version of Strata; upgrade Strata on this worker")
        started = JobStarted(job_id=job_id, attempt=attempt, worker=self.name,
                             lease_seconds=self.lease_seconds)
        try:
            (event,) = self.strata.record(
                stream(job_id), [started], expected_version=row["stream_version"],
                within=take_lease, meta=self._meta(job_id, requested.event_id),
            )
        except ConcurrencyError:
            return None
        ctx = JobContext(job_id, attempt, request, self.strata, self.name, self.on_progress,
                         started_event_id=event.event_id)
        return ctx, event.version

    # --- running --------------------------------------------------------------------------

    def work_once(self, job_id: str | None = None) -> bool:
        """Claim and run one job (optionally a given one); False if there was none to take."""
        for row in self.claimable(job_id):
            if row["status"] == "running" and row["attempts"] >= _max_attempts(row):
                # Abandoned on its last attempt: a job that kills every worker that runs
                # it (an out-of-memory kill, say) must not be retried for ever.
                self._give_up(row)
                continue
            claimed = self.claim(row)
            if claimed is not None:
                self.run(row["layer"], *claimed)
                return True
        return False

    def _give_up(self, row: Mapping[str, Any]) -> None:
        failed = JobFailed(
            job_id=row["job_id"], attempt=row["attempts"], error_class="WorkerLost",
            message=f"the worker running attempt {row['attempts']} stopped heartbeating "
                    "and no attempts are left",
        )
        with contextlib.suppress(ConcurrencyError):  # someone else settled it first
            self.strata.record(stream(row["job_id"]), [failed],
                               expected_version=row["stream_version"],
                               within=self._release(row["job_id"]),
                               meta=self._meta(row["job_id"], None))

    def wait_for(self, job_id: str) -> dict[str, Any]:
        """Run the job here if it is free, else wait until whoever has it finishes it."""
        from strata.core.runtime.jobs import FINISHED, get

        while True:
            if self.interrupt_requested.is_set():
                raise KeyboardInterrupt  # not a job to claim again
            head = self.waiter.head()  # before looking: what is appended after wakes us
            self.work_once(job_id)
            row = get(self.strata, job_id)
            if row["status"] in FINISHED:
                return row
            self.waiter.wait(head, self.poll_seconds)

    def serve(self, stop: threading.Event, until_idle: bool = False) -> int:
        """Run jobs until `stop` is set (or, with `until_idle`, until none is left)."""
        done = 0
        while not stop.is_set():
            try:
                head = self.waiter.head()  # before looking: a request appended after wakes us
                worked = self.work_once()
            except SQLAlchemyError as error:
                # The database went away for a moment: a daemon waits and tries again;
                # any job it held is taken over once its lease runs out.
                log.error("worker %s: database error, retrying: %s", self.name, error)
                pause(max(self.poll_seconds, 1.0), stop)
                continue
            if worked:
                done += 1
            elif until_idle:
                return done
            else:
                try:
                    self.waiter.wait(head, self.poll_seconds, stop)
                except SQLAlchemyError:
                    continue  # said and waited for by the next look
        return done

    def serve_until_signalled(self, grace_seconds: float, until_idle: bool = False) -> int:
        """`serve` until SIGTERM or Ctrl-C: then no new job is taken, and the running one
        has `grace_seconds` to finish; after that it is interrupted at its next step and
        handed back (its lease dropped), so another worker takes it over at once."""
        if grace_seconds < 0:
            raise InvalidInput("the grace period cannot be negative")
        stop, served = threading.Event(), threading.Event()
        guard = threading.Thread(target=self._interrupt_after_grace,
                                 args=(stop, served, grace_seconds), daemon=True,
                                 name="shutdown-grace")
        guard.start()
        try:
            # Only an Event.set in the handler: the main thread never waits on `stop`'s
            # own lock (see notify.pause), so setting it from a handler cannot deadlock.
            with _handling_signals(lambda _signum, _frame: stop.set()):
                return self.serve(stop, until_idle)
        finally:
            served.set()
            stop.set()
            guard.join()

    def _interrupt_after_grace(self, stop: threading.Event, served: threading.Event,
                               grace_seconds: float) -> None:
        stop.wait()
        if served.wait(grace_seconds):
            return
        running = self.running
        if running is not None:
            log.warning("worker %s: job %s did not finish within the %gs grace period; "
                        "handing it back", self.name, running.job_id, grace_seconds)
            running.interrupted.set()

    def run(self, layer: str, ctx: JobContext, started_version: int) -> RecordedEvent | None:
        executor = self.executors[layer]
        stop_heartbeat = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(ctx, started_version, stop_heartbeat), daemon=True,
            name=f"heartbeat-{ctx.job_id[:8]}",
        )
        heartbeat.start()
        self.running = ctx
        try:
            result = executor.run(ctx)
        except JobInterrupted:
            self.drop_lease(ctx.job_id)
            if self.interrupt_requested.is_set():
                raise KeyboardInterrupt from None  # the Ctrl-C a library swallowed
            return None
        except KeyboardInterrupt:
            # Ctrl-C on `--wait`: hand the job back at once rather than after the lease.
            self.drop_lease(ctx.job_id)
            raise
        except Exception as error:
            # A library turned the Ctrl-C into its own error (diffusers' lazy imports do).
            if self.interrupt_requested.is_set() or _interrupted(error):
                self.drop_lease(ctx.job_id)
                raise KeyboardInterrupt from error
            return self._record_failure(ctx, started_version, error)
        finally:
            self.running = None
            stop_heartbeat.set()
            heartbeat.join()
        try:
            return self._record_result(ctx, started_version, result, executor)
        except StrataError as error:  # a result the log refuses is the job's failure
            return self._record_failure(ctx, started_version, error)

    def _record_result(self, ctx: JobContext, version: int, result: JobCompleted,
                       executor: Executor) -> RecordedEvent | None:
        """Append the result, and the branch move it causes, in one commit."""
        meta = {**self._meta(ctx.job_id, ctx.started_event_id),
                "executor": f"{executor.layer}/{executor.version}"}
        result = result.with_parent(ctx.request.parent)

        def attempt() -> RecordedEvent | None:
            parts: list[tuple[str, Sequence[Payload], int]] = [
                (stream(ctx.job_id), [result], version)]
            move = self._branch_move(ctx, result)
            if move is not None:
                parts.append(move)
            try:
                return self.strata.record_together(
                    parts, meta=meta, within=self._release(ctx.job_id))[0]
            except ConcurrencyError as error:
                if error.stream == stream(ctx.job_id):
                    return None  # cancelled or taken over meanwhile: that outcome stands
                raise  # someone else moved the branch meanwhile: move it from there

        return retry_on_conflict(attempt, tries=10)

    def _branch_move(
        self, ctx: JobContext, result: JobCompleted
    ) -> tuple[str, Sequence[Payload], int] | None:
        """A job requested on a branch advances its head to the job's first output."""
        if not (ctx.request.branch and result.outputs):
            return None
        return branches.advance_part(self.strata, ctx.request.branch,
                                     result.outputs[0].asset.digest, ctx.job_id)

    def _record_failure(self, ctx: JobContext, version: int,
                        error: Exception) -> RecordedEvent | None:
        retry_at = None
        if is_retryable(error) and ctx.attempt < ctx.request.max_attempts:
            delay = min(self.backoff_seconds * 2 ** (ctx.attempt - 1), self.max_backoff_seconds)
            with self.strata.store.engine.connect() as conn:
                retry_at = utc_iso(datetime.fromtimestamp(db_now(conn) + delay, UTC))
        expected = isinstance(error, InvalidInput | ModelError)
        failed = JobFailed(
            job_id=ctx.job_id, attempt=ctx.attempt, error_class=type(error).__name__,
            message=str(error) or type(error).__name__, retryable=retry_at is not None,
            retry_at=retry_at,
        )
        meta = self._meta(ctx.job_id, ctx.started_event_id)
        if not expected:  # an unexpected error: keep the trace for whoever debugs it
            meta["traceback"] = "".join(traceback.format_exception(error))[-4000:]
        try:
            (event,) = self.strata.record(stream(ctx.job_id), [failed], expected_version=version,
                                          within=self._release(ctx.job_id), meta=meta)
        except ConcurrencyError:
            return None
        return event

    def _meta(self, job_id: str, causation_id: str | None) -> dict[str, Any]:
        """Who recorded it, what caused it, and the job that ties the story together."""
        return {"worker": self.name, "correlation_id": job_id, "causation_id": causation_id}

    @staticmethod
    def _release(job_id: str) -> Callable[[Connection, list[RecordedEvent]], None]:
        def release(conn: Connection, _events: list[RecordedEvent]) -> None:
            leases = table(JobLease)
            conn.execute(delete(leases).where(leases.c.job_id == job_id))
        return release

    def _heartbeat(self, ctx: JobContext, started_version: int, stop: threading.Event) -> None:
        """Extend the lease; flag the job interrupted if it was lost or cancelled."""
        leases = table(JobLease)
        interval = self.lease_seconds / 3
        while not stop.wait(interval):
            try:
                with self.strata.store.engine.begin() as conn:
                    kept = conn.execute(
                        update(leases)
                        .where(leases.c.job_id == ctx.job_id, leases.c.attempt == ctx.attempt,
                               leases.c.worker == self.name)
                        .values(expires_at=db_now(conn) + self.lease_seconds)
                    ).rowcount
                version = self.strata.ledger.stream_version(stream(ctx.job_id))
            except SQLAlchemyError as error:
                # A passing database hiccup: try again next beat; the lease has two more
                # beats of slack before anyone may take the job over.
                log.warning("heartbeat for job %s failed: %s", ctx.job_id, error)
                continue
            if not kept or version > started_version:
                ctx.interrupted.set()
                return

    def drop_lease(self, job_id: str) -> None:
        """Release the lease of an interrupted job, if it is still this worker's."""
        leases = table(JobLease)
        with self.strata.store.engine.begin() as conn:
            conn.execute(delete(leases).where(leases.c.job_id == job_id,
                                              leases.c.worker == self.name))


def _interrupted(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the causes of `error`."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def run_here(strata: Strata, job_id: str, on_progress: Progress | None = None) -> dict[str, Any]:
    """Run a job in this process (or wait for the worker that has it) and return its row
    once completed. A job that fails or is cancelled raises JobFailure; Ctrl-C raises
    Interrupted, saying what became of the job."""
    from strata.core.layers import build_executors
    from strata.core.runtime.jobs import get

    row = get(strata, job_id)
    worker = Worker(strata, build_executors((row["layer"],)), on_progress=on_progress)
    try:
        with _noting_interrupts(worker):
            row = worker.wait_for(row["job_id"])
    except KeyboardInterrupt:
        # Ctrl-C may land between the claim's commit and the run that would release it.
        worker.drop_lease(job_id)
        raise Interrupted(_what_became_of(get(strata, job_id), worker.name)) from None
    if row["status"] != "completed":
        error = f": {row['error_class']}: {row['error_message']}" if row["error_class"] else ""
        raise JobFailure(f"job {row['job_id']} {row['status']}{error}")
    return row


@contextlib.contextmanager
def _handling_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """`handler` for Ctrl-C (SIGINT) and SIGTERM (a service manager stopping the worker)
    while the block runs; the previous handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier)


@contextlib.contextmanager
def _noting_interrupts(worker: Worker) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) raises KeyboardInterrupt, and the worker is told it came, even
    when a library catches the interrupt and raises something else (the cause chain is
    then lost) or nothing at all: the running job is flagged too, so it stops at its next
    step whatever became of the exception."""

    def on_interrupt(signum: int, frame: Any) -> None:
        worker.interrupt_requested.set()
        running = worker.running
        if running is not None:
            # Only other threads ever hold this event's lock (the heartbeat sets it), so
            # setting it here cannot wait on the thread the handler interrupted.
            running.interrupted.set()
        raise KeyboardInterrupt

    with _handling_signals(on_interrupt):
        yield


def _what_became_of(row: Mapping[str, Any], here: str) -> str:
    job = row["job_id"]
    if row["status"] in ("completed", "failed", "cancelled"):
        return f"interrupted; job {job} had already {row['status']}"
    if row["status"] == "running" and row["worker"] != here:
        return (f"stopped waiting; job {job} goes on in worker {row['worker']} "
                f"(`strata jobs` shows it; `strata cancel {job}` stops it)")
    return (f"interrupted; job {job} is left unfinished and free to take: a `strata worker` "
            f"runs it, `strata cancel {job}` drops it")
