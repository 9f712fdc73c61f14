"""The executor runtime: claims, leases, takeover, retries, cancellation, one result per job.

Every test runs on SQLite and PostgreSQL. Workers in other processes are real
`tests/core/runtime/worker_child.py` processes opening the same store through the environment;
workers in this process share one pipeline cache, so the tiny model loads once.
What is proved:

- a worker SIGKILLed mid-job keeps its lease until it expires; only then does a second
  worker take the job over (attempt 2) and complete it, exactly once;
- two worker processes racing for 20 jobs run each exactly once: one `job.started`, one
  `generation.completed` per job;
- a job that cannot succeed (its model folder is gone, its size is out of range) fails
  after one attempt with a clear error and changes nothing else;
- retryable errors are retried with exponential, capped backoff up to `max_attempts`,
  never before their `retry_at`; other errors fail the job at once;
- cancelling stops a waiting job for good and a running one at its next step; a finished
  job cannot be cancelled;
- a worker that lost its job (lease taken over, job cancelled) records nothing and stops;
- a completed job advances its branch to its first output, a failed one does not;
- progress is reported step by step up to the total.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select, text

from strata.core import layers
from strata.core.config import Settings
from strata.core.decisions import branches
from strata.core.errors import (
    BranchNotFound,
    Interrupted,
    InvalidInput,
    JobError,
    ModelError,
    RetryableError,
)
from strata.core.layers.generation import GenerationExecutor, build_request
from strata.core.ledger.event_types import JobCompleted, JobFailed
from strata.core.ledger.events import RecordedEvent
from strata.core.models import registry as models
from strata.core.models.pipelines import PipelineCache
from strata.core.models.tiny import write_tiny_pipeline
from strata.core.projections import views
from strata.core.projections.base import table
from strata.core.provenance.verify import verify
from strata.core.runtime import jobs
from strata.core.runtime.executor import Executor, JobContext
from strata.core.runtime.jobs import FINISHED
from strata.core.runtime.worker import Worker, run_here
from strata.core.service import Strata
from strata.core.storage.schema import AssetRow
from tests.conftest import settings_env
from tests.helpers import png_bytes

CHILD = Path(__file__).with_name("worker_child.py")
START_TIMEOUT = 120.0  # a child imports torch and loads the model: seconds on a busy machine
LEASE = 2.0
PROMPT = "a lighthouse at dusk"


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def environment() -> Iterator[None]:
    """Offline, and one torch thread per process (children inherit the variables).

    Nothing may download. With two or more intra-op threads per process on a machine
    whose cores are busy (two workers, PostgreSQL, other tests), torch's threads spin
    against each other and a step takes ten times longer; one thread keeps it steady.
    """
    import huggingface_hub.constants
    import torch

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_pipeline(tmp_path_factory.mktemp("runtime-models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def pipelines() -> PipelineCache:
    return PipelineCache()


@pytest.fixture
def tiny(strata: Strata, tiny_folder: Path) -> str:
    models.register(strata, "tiny", tiny_folder)
    return "tiny"


@pytest.fixture
def executors(pipelines: PipelineCache) -> dict[str, Executor]:
    return {"generation": GenerationExecutor(pipelines)}


def request(strata: Strata, *, n: int = 1, steps: int = 2, model: str = "tiny",
            max_attempts: int | None = None, **options: Any) -> str:
    payload = build_request(strata, PROMPT, model=model, n=n, seed=7, steps=steps, **options)
    if max_attempts is not None:
        payload = payload.model_copy(update={"max_attempts": max_attempts})
    jobs.request(strata, payload)
    return payload.job_id


def job_events(strata: Strata, job_id: str) -> list[RecordedEvent]:
    return strata.ledger.read_stream(jobs.stream(job_id))


def types(events: list[RecordedEvent]) -> list[str]:
    return [e.type for e in events]


def seconds(stamp: str) -> float:
    """An ISO time as written by the runtime and the ledger, as a Unix time."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def asset_count(strata: Strata) -> int:
    with strata.view() as conn:
        return conn.scalar(select(func.count()).select_from(table(AssetRow)))


def branch_row(strata: Strata, name: str) -> dict[str, Any]:
    with strata.view() as conn:
        row = views.branch(conn, name)
    assert row is not None
    return row


def lease_rows(strata: Strata) -> list[tuple]:
    with strata.store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            text("SELECT job_id, attempt, worker, expires_at FROM job_leases"))]


def expire_leases(strata: Strata) -> None:
    with strata.store.engine.begin() as conn:
        conn.execute(text("UPDATE job_leases SET expires_at = 0"))


def run_until_finished(worker: Worker, strata: Strata, job_id: str,
                       timeout: float = 60.0) -> list[str]:
    """Run the job as often as it is due; the job's status after each attempt.

    After a retryable failure the job must not be claimable before its retry_at.
    """
    statuses: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ran = worker.work_once(job_id)
        row = jobs.get(strata, job_id)
        if ran:
            statuses.append(row["status"])
            if row["status"] == "retrying" and seconds(row["retry_at"]) > time.time() + 0.05:
                assert worker.claimable(job_id) == [], "claimable before its retry_at"
        if row["status"] in FINISHED:
            return statuses
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish within {timeout}s: {statuses}")


class Child:
    """A worker_child.py process; its stdout lines arrive through a queue."""

    def __init__(self, settings: Settings, log: Path, *args: str) -> None:
        self.log = log
        self._stderr = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), *args], env=settings_env(settings),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.log.read_text()[-3000:]

    def expect(self, prefix: str, timeout: float = START_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {prefix!r} line from the worker in {timeout}s; stderr:\n{self.stderr()}"
                ) from None
            if line is None:
                raise AssertionError(f"the worker exited ({self.process.wait()}) before a "
                                     f"{prefix!r} line; stderr:\n{self.stderr()}")
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.reader.join(10)  # it reads to the end of stdout before that is closed
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()


@pytest.fixture
def spawn(settings: Settings, tmp_path: Path) -> Iterator[Any]:
    """Start worker children on this test's store; any still running are killed after."""
    started: list[Child] = []

    def start(*args: str) -> Child:
        child = Child(settings, tmp_path / f"worker-{len(started)}.log", *args)
        started.append(child)
        return child

    yield start
    for child in started:
        child.close()


class Flaky(Executor):
    """Raises `error` on the first `failures` attempts, then generates for real."""

    layer: ClassVar[str] = "generation"

    def __init__(self, inner: Executor, failures: int, error: type[Exception] = RetryableError,
                 ) -> None:
        self.inner = inner
        self.failures = failures
        self.error = error
        self.attempts: list[int] = []

    def run(self, ctx: JobContext) -> JobCompleted:
        self.attempts.append(ctx.attempt)
        if len(self.attempts) <= self.failures:
            raise self.error(f"device busy on attempt {ctx.attempt}")
        return self.inner.run(ctx)


# --- 1. a killed worker's job is taken over after its lease -------------------------------


def test_a_worker_killed_mid_job_is_taken_over_once_its_lease_expires(
    strata: Strata, tiny: str, executors: dict[str, Executor], spawn: Any,
) -> None:
    steps = 12
    job_id = request(strata, n=1, steps=steps)
    # Each of the doomed worker's steps lasts 0.5 s more, so it is still denoising, and
    # has renewed its lease a few times, when it is killed after its 4th step.
    doomed = spawn("once", "--job", job_id, "--name", "doomed", "--lease", str(LEASE),
                   "--step-delay", "0.5")
    doomed.expect("ready")
    doomed.expect(f"progress {job_id} 4 {steps}")
    assert jobs.get(strata, job_id)["status"] == "running"
    doomed.process.send_signal(signal.SIGKILL)
    assert doomed.process.wait(10) == -signal.SIGKILL
    killed_at = time.time()

    # The dead worker's heartbeat kept its lease alive up to its death: nobody may take
    # the job until that lease runs out.
    [(_, attempt, holder, expires_at)] = lease_rows(strata)
    assert (attempt, holder) == (1, "doomed")
    assert expires_at > killed_at
    started_at = seconds(job_events(strata, job_id)[1].recorded_at)
    assert expires_at > started_at + LEASE  # renewed by the heartbeat since the claim
    rescuer = Worker(strata, executors, name="rescuer", lease_seconds=LEASE, poll_seconds=0.05)
    assert rescuer.claimable(job_id) == []

    row = rescuer.wait_for(job_id)
    assert row["status"] == "completed"
    assert row["attempts"] == 2

    events = job_events(strata, job_id)
    assert types(events) == ["generation.requested", "job.started", "job.started",
                             "generation.completed"]
    first, second = events[1], events[2]
    assert (first.data["attempt"], first.data["worker"]) == (1, "doomed")
    assert (second.data["attempt"], second.data["worker"]) == (2, "rescuer")
    assert seconds(second.recorded_at) >= expires_at  # taken over only once the lease ran out
    assert seconds(second.recorded_at) - seconds(first.recorded_at) >= LEASE
    assert events[3].meta["worker"] == "rescuer"

    outputs = events[3].data["outputs"]
    assert len(outputs) == 1
    assert all(strata.blobs.exists(o["asset"]["digest"]) for o in outputs)
    assert row["outputs"] == [o["asset"]["digest"] for o in outputs]
    assert lease_rows(strata) == []  # the result released the lease
    assert verify(strata.ledger, strata.blobs).ok


# --- 2. two worker processes racing ---------------------------------------------------------


def test_two_worker_processes_run_each_of_twenty_jobs_exactly_once(
    strata: Strata, tiny: str, spawn: Any,
) -> None:
    job_ids = [request(strata, n=1, steps=2) for _ in range(20)]
    workers = [spawn("serve", "--name", name) for name in ("w1", "w2")]
    for worker in workers:
        worker.expect("ready")
    for worker in workers:
        worker.send("go")
    done = [int(worker.expect("done", timeout=180).split()[1]) for worker in workers]
    assert [worker.process.wait(30) for worker in workers] == [0, 0]
    assert sum(done) == 20

    ran_by: Counter[str] = Counter()
    for job_id in job_ids:
        events = job_events(strata, job_id)
        assert types(events) == ["generation.requested", "job.started", "generation.completed"]
        assert events[2].meta["worker"] == events[1].data["worker"]
        ran_by[events[1].data["worker"]] += 1
        assert jobs.get(strata, job_id)["status"] == "completed"
    # Which worker ran how many depends on timing; together they ran each job once.
    assert set(ran_by) <= {"w1", "w2"}
    assert [ran_by["w1"], ran_by["w2"]] == done
    assert len(list(strata.ledger.read_all(types=["generation.completed"]))) == 20
    assert lease_rows(strata) == []
    assert verify(strata.ledger, strata.blobs).ok


# --- 3. jobs that cannot succeed ------------------------------------------------------------


def test_a_model_whose_folder_was_removed_fails_the_job_and_changes_nothing(
    strata: Strata, tiny_folder: Path, executors: dict[str, Executor], tmp_path: Path,
) -> None:
    folder = Path(shutil.copytree(tiny_folder, tmp_path / "vanishing")).resolve()
    models.register(strata, "vanishing", folder)
    branches.create(strata, "main")
    job_id = request(strata, model="vanishing", branch="main")
    shutil.rmtree(folder)
    head = strata.ledger.head_position()
    blobs = set(strata.blobs.iter_digests())
    assets = asset_count(strata)

    worker = Worker(strata, executors)
    assert worker.work_once(job_id)

    new = list(strata.ledger.read_all(from_position=head + 1))
    assert types(new) == ["job.started", "job.failed"]
    failed = new[1].payload
    assert isinstance(failed, JobFailed)
    assert failed.error_class == "ModelNotFound"
    assert str(folder) in failed.message
    assert (failed.attempt, failed.retryable, failed.retry_at) == (1, False, None)
    assert "traceback" not in new[1].meta  # an expected error: the message says it all
    row = jobs.get(strata, job_id)
    assert (row["status"], row["attempts"], row["outputs"]) == ("failed", 1, [])
    assert row["error_class"] == "ModelNotFound"
    assert set(strata.blobs.iter_digests()) == blobs
    assert asset_count(strata) == assets
    assert branch_row(strata, "main")["head"] is None
    assert lease_rows(strata) == []
    assert worker.claimable() == []


def test_an_image_size_out_of_range_fails_after_one_attempt(
    strata: Strata, tiny: str, pipelines: PipelineCache,
) -> None:
    job_id = request(strata, width=128, height=128)
    worker = Worker(strata, {"generation": GenerationExecutor(pipelines, max_pixels=64 * 64)})
    assert worker.work_once(job_id)
    assert not worker.work_once(job_id)  # not retried

    events = job_events(strata, job_id)
    assert types(events) == ["generation.requested", "job.started", "job.failed"]
    failed = events[2].payload
    assert isinstance(failed, JobFailed)
    assert failed.error_class == "InvalidInput"
    assert "128x128 is out of range" in failed.message
    assert not failed.retryable
    row = jobs.get(strata, job_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "out of range" in row["error_message"]
    assert asset_count(strata) == 0


# --- 4. retries ------------------------------------------------------------------------------


def retry_delays(events: list[RecordedEvent]) -> list[float]:
    """For each failure with a retry: seconds from its recording to its retry_at.

    retry_at is set a moment before the event is recorded, so this is at most the delay.
    """
    return [seconds(e.data["retry_at"]) - seconds(e.recorded_at)
            for e in events if e.type == "job.failed" and e.data["retry_at"]]


def test_retryable_errors_are_retried_with_exponential_backoff_until_success(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    job_id = request(strata, max_attempts=3)
    flaky = Flaky(executors["generation"], failures=2)
    worker = Worker(strata, {"generation": flaky}, backoff_seconds=0.2, poll_seconds=0.01)

    assert run_until_finished(worker, strata, job_id) == ["retrying", "retrying", "completed"]
    assert flaky.attempts == [1, 2, 3]
    events = job_events(strata, job_id)
    assert types(events) == ["generation.requested",
                             "job.started", "job.failed",
                             "job.started", "job.failed",
                             "job.started", "generation.completed"]
    assert [e.data["attempt"] for e in events if e.type == "job.started"] == [1, 2, 3]
    failures = [e for e in events if e.type == "job.failed"]
    assert all(f.data["retryable"] and f.data["error_class"] == "RetryableError"
               for f in failures)
    first, second = retry_delays(events)
    assert 0.05 < first <= 0.2 + 1e-3  # retry_at is set just before the event is stamped
    assert max(0.1, first) < second <= 0.4 + 1e-3  # doubled
    # No attempt started before the retry_at of the failure before it.
    for failure, restart in zip(events[2::2], events[3::2], strict=False):
        assert seconds(restart.recorded_at) >= seconds(failure.data["retry_at"])
    row = jobs.get(strata, job_id)
    assert (row["status"], row["attempts"], row["retry_at"]) == ("completed", 3, None)
    assert len(row["outputs"]) == 1


def test_a_job_that_keeps_failing_fails_after_max_attempts(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    job_id = request(strata, max_attempts=3)
    flaky = Flaky(executors["generation"], failures=99)
    worker = Worker(strata, {"generation": flaky}, backoff_seconds=0.1, poll_seconds=0.01)

    assert run_until_finished(worker, strata, job_id) == ["retrying", "retrying", "failed"]
    assert flaky.attempts == [1, 2, 3]
    events = job_events(strata, job_id)
    assert types(events) == ["generation.requested"] + ["job.started", "job.failed"] * 3
    failures = [e.payload for e in events if e.type == "job.failed"]
    assert [f.retryable for f in failures] == [True, True, False]
    assert [f.retry_at is None for f in failures] == [False, False, True]
    first, second = retry_delays(events)
    assert 0.025 < first <= 0.1 + 1e-3
    assert max(0.05, first) < second <= 0.2 + 1e-3
    row = jobs.get(strata, job_id)
    assert (row["status"], row["attempts"], row["error_class"]) == ("failed", 3, "RetryableError")
    assert worker.claimable() == []
    assert lease_rows(strata) == []


def test_backoff_is_capped_and_max_attempts_is_the_requests_own(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    job_id = request(strata, max_attempts=4)
    flaky = Flaky(executors["generation"], failures=99)
    worker = Worker(strata, {"generation": flaky}, backoff_seconds=0.1,
                    max_backoff_seconds=0.15, poll_seconds=0.01)
    assert run_until_finished(worker, strata, job_id) == ["retrying"] * 3 + ["failed"]
    assert flaky.attempts == [1, 2, 3, 4]
    delays = retry_delays(job_events(strata, job_id))
    assert len(delays) == 3
    assert 0.05 < delays[0] <= 0.1 + 1e-3
    assert all(0.1 < d <= 0.15 + 1e-3 for d in delays[1:])  # 0.2 and 0.4, capped


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the runtime retries."""


@pytest.mark.parametrize(("error", "status", "traceback"), [
    (RetryableError, "retrying", True),
    (TimeoutError, "retrying", True),
    (ConnectionError, "retrying", True),
    (OutOfMemoryError, "retrying", True),
    (RuntimeError, "failed", True),
    (InvalidInput, "failed", False),
    (ModelError, "failed", False),
])
def test_which_errors_are_retried_and_which_keep_a_traceback(
    strata: Strata, tiny: str, executors: dict[str, Executor],
    error: type[Exception], status: str, traceback: bool,
) -> None:
    job_id = request(strata, max_attempts=2)
    worker = Worker(strata, {"generation": Flaky(executors["generation"], 99, error)},
                    backoff_seconds=30)
    assert worker.work_once(job_id)
    row = jobs.get(strata, job_id)
    assert (row["status"], row["error_class"]) == (status, error.__name__)
    assert row["error_message"] == "device busy on attempt 1"
    failed = job_events(strata, job_id)[-1]
    assert ("traceback" in failed.meta) == traceback
    if traceback:
        assert "device busy on attempt 1" in failed.meta["traceback"]
    assert worker.claimable(job_id) == []  # failed for good, or not due for 30 s


# --- 5. cancelling ---------------------------------------------------------------------------


def test_a_cancelled_waiting_job_is_never_run(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    job_id = request(strata)
    cancelled = jobs.cancel(strata, job_id, reason="not needed")
    assert cancelled.data["reason"] == "not needed"
    assert jobs.get(strata, job_id)["status"] == "cancelled"

    worker = Worker(strata, executors)
    assert worker.claimable() == []
    assert not worker.work_once()
    assert worker.wait_for(job_id)["status"] == "cancelled"
    assert types(job_events(strata, job_id)) == ["generation.requested", "job.cancelled"]
    with pytest.raises(JobError, match="already cancelled"):
        jobs.cancel(strata, job_id)


def run_in_background(worker: Worker, job_id: str) -> tuple[threading.Thread, dict]:
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["ran"] = worker.work_once(job_id)
        except BaseException as error:  # reported to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, outcome


def test_a_cancelled_running_job_stops_at_its_next_step_and_records_nothing_more(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    steps = 400  # far longer than the test waits: it must be interrupted
    job_id = request(strata, steps=steps)
    progress: list[int] = []
    first_step = threading.Event()

    def on_progress(_job: str, done: int, _total: int) -> None:
        progress.append(done)
        first_step.set()

    worker = Worker(strata, executors, lease_seconds=0.6, on_progress=on_progress)
    thread, outcome = run_in_background(worker, job_id)
    assert first_step.wait(60)
    jobs.cancel(strata, job_id, reason="changed my mind")
    thread.join(30)
    assert not thread.is_alive(), "the worker did not stop after the cancel"
    assert outcome == {"ran": True}  # JobInterrupted was handled quietly

    assert progress[-1] < steps
    assert types(job_events(strata, job_id)) == ["generation.requested", "job.started",
                                                 "job.cancelled"]
    row = jobs.get(strata, job_id)
    assert (row["status"], row["outputs"]) == ("cancelled", [])
    assert asset_count(strata) == 0
    assert list(strata.blobs.iter_digests()) == []
    assert worker.claimable() == []


def test_a_finished_job_cannot_be_cancelled(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    job_id = request(strata)
    assert Worker(strata, executors).work_once(job_id)
    before = job_events(strata, job_id)
    with pytest.raises(JobError, match="already completed; nothing to cancel"):
        jobs.cancel(strata, job_id)
    assert job_events(strata, job_id) == before


# --- 6. at most one result ----------------------------------------------------------------


def test_a_stale_worker_cannot_record_a_second_result(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    branches.create(strata, "main")
    job_id = request(strata, branch="main")
    a = Worker(strata, executors, name="A")
    b = Worker(strata, executors, name="B")

    (row,) = a.claimable(job_id)
    claimed = a.claim(row)
    assert claimed is not None
    ctx_a, version_a = claimed
    assert b.claim(row) is None  # the same snapshot: A was first
    assert b.claimable(job_id) == []  # A's lease is live

    expire_leases(strata)  # A stalls past its lease
    (row_b,) = b.claimable(job_id)
    assert (row_b["status"], row_b["attempts"]) == ("running", 1)
    claimed_b = b.claim(row_b)
    assert claimed_b is not None
    ctx_b, version_b = claimed_b
    assert ctx_b.attempt == 2
    assert b.run("generation", ctx_b, version_b) is not None

    # A wakes up with a result of its own: it is refused, and nothing moves.
    executor = executors["generation"]
    late = executor.run(ctx_a)
    assert a._record_result(ctx_a, version_a, late, executor) is None
    assert a._record_failure(ctx_a, version_a, RetryableError("late")) is None
    assert a.run("generation", ctx_a, version_a) is None

    events = job_events(strata, job_id)
    assert types(events) == ["generation.requested", "job.started", "job.started",
                             "generation.completed"]
    assert events[3].meta["worker"] == "B"
    advanced = list(strata.ledger.read_all(types=["branch.advanced"]))
    assert len(advanced) == 1
    assert advanced[0].data["job_id"] == job_id
    assert verify(strata.ledger, strata.blobs).ok


def test_a_worker_whose_job_was_taken_over_stops_at_its_next_step(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    steps = 400
    job_id = request(strata, steps=steps)
    progress: list[int] = []
    first_step = threading.Event()

    def on_progress(_job: str, done: int, _total: int) -> None:
        progress.append(done)
        first_step.set()

    a = Worker(strata, executors, name="A", lease_seconds=0.6, on_progress=on_progress)
    thread, outcome = run_in_background(a, job_id)
    assert first_step.wait(60)
    expire_leases(strata)  # as if A had stalled
    b = Worker(strata, executors, name="B", lease_seconds=30)
    (row,) = b.claimable(job_id)
    assert b.claim(row) is not None
    thread.join(30)
    assert not thread.is_alive(), "A kept working on a job it lost"
    assert outcome == {"ran": True}
    assert progress[-1] < steps
    assert types(job_events(strata, job_id)) == ["generation.requested", "job.started",
                                                 "job.started"]
    assert [r[1:3] for r in lease_rows(strata)] == [(2, "B")]  # A did not touch B's lease
    jobs.cancel(strata, job_id)  # B is not really running it


# --- 7. branches -----------------------------------------------------------------------------


def test_a_completed_job_advances_its_branch_and_a_failed_one_does_not(
    strata: Strata, tiny: str, executors: dict[str, Executor], pipelines: PipelineCache,
) -> None:
    branches.create(strata, "main")
    first = request(strata, n=2, branch="main")
    worker = Worker(strata, executors)
    assert worker.work_once(first)
    outputs = jobs.get(strata, first)["outputs"]
    assert len(outputs) == 2
    main = branch_row(strata, "main")
    assert main["head"] == outputs[0]
    (advanced,) = strata.ledger.read_all(types=["branch.advanced"])
    assert advanced.data == {"name": "main", "head": outputs[0], "previous_head": None,
                             "job_id": first}
    completed = job_events(strata, first)[-1]
    # One commit: the result and the move it causes are recorded together or not at all.
    assert (completed.position + 1, completed.recorded_at) == (
        advanced.position, advanced.recorded_at)

    too_big = request(strata, width=128, height=128, branch="main")
    small_only = Worker(strata, {"generation": GenerationExecutor(pipelines, max_pixels=4096)})
    assert small_only.work_once(too_big)
    assert jobs.get(strata, too_big)["status"] == "failed"
    assert branch_row(strata, "main") == main

    second = request(strata, n=1, branch="main", negative_prompt="fog")
    assert worker.work_once(second)
    head = branch_row(strata, "main")["head"]
    assert head == jobs.get(strata, second)["outputs"][0] != outputs[0]
    moves = [e.data for e in strata.ledger.read_all(types=["branch.advanced"])]
    assert [(m["previous_head"], m["job_id"]) for m in moves] == [(None, first),
                                                                   (outputs[0], second)]


def test_a_result_moves_the_branch_from_wherever_another_writer_left_it(
    strata: Strata, tiny: str, executors: dict[str, Executor], tmp_path: Path,
) -> None:
    picked = tmp_path / "picked.png"
    picked.write_bytes(png_bytes(5))
    elsewhere = strata.add_file(picked).data["asset"]["digest"]
    branches.create(strata, "main")
    job_id = request(strata, branch="main")
    worker = Worker(strata, executors)
    (row,) = worker.claimable(job_id)
    claimed = worker.claim(row)
    assert claimed is not None
    branches.advance(strata, "main", elsewhere)  # someone moves the head while the job runs
    assert worker.run("generation", *claimed) is not None
    output = jobs.get(strata, job_id)["outputs"][0]
    moves = [e.data for e in strata.ledger.read_all(types=["branch.advanced"])]
    assert [(m["previous_head"], m["head"]) for m in moves] == [(None, elsewhere),
                                                                 (elsewhere, output)]


def test_a_job_on_a_missing_branch_is_refused_before_it_is_recorded(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    head = strata.ledger.head_position()
    with pytest.raises(BranchNotFound, match="no branch named 'nowhere'"):
        request(strata, branch="nowhere")
    assert strata.ledger.head_position() == head


# --- 8. progress -----------------------------------------------------------------------------


def test_progress_is_reported_for_every_step_up_to_the_total(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    calls: list[tuple[str, int, int]] = []
    worker = Worker(strata, executors, on_progress=lambda *call: calls.append(call))
    job_id = request(strata, n=2, steps=3)
    assert worker.work_once(job_id)
    assert calls == [(job_id, 1, 3), (job_id, 2, 3), (job_id, 3, 3)]

    # More seeds than one batch holds: the steps of every batch add up to one total.
    calls.clear()
    job_id = request(strata, n=9, steps=2)
    assert worker.work_once(job_id)
    assert calls == [(job_id, done, 4) for done in (1, 2, 3, 4)]
    assert len(jobs.get(strata, job_id)["outputs"]) == 9


# --- takeover and max_attempts -----------------------------------------------------------------


def test_an_abandoned_job_on_its_last_attempt_is_not_run_again(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    job_id = request(strata, max_attempts=1)
    a = Worker(strata, executors, name="A")
    (row,) = a.claimable(job_id)
    assert a.claim(row) is not None
    expire_leases(strata)  # A died
    Worker(strata, executors, name="B").work_once(job_id)
    attempts = [e.data["attempt"] for e in job_events(strata, job_id) if e.type == "job.started"]
    assert max(attempts) <= 1
    assert jobs.get(strata, job_id)["status"] == "failed"


# --- a result the log cannot hold ----------------------------------------------------------


class Unrecordable(Executor):
    """Does the work, then returns a result with a NaN in it (not canonical JSON)."""

    layer: ClassVar[str] = "generation"

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def run(self, ctx: JobContext) -> JobCompleted:
        result = self.inner.run(ctx)
        timings = result.timings.model_copy(update={"total_s": float("nan")})  # type: ignore[attr-defined]
        return result.model_copy(update={"timings": timings})


def test_a_result_the_log_refuses_fails_the_job_and_the_worker_goes_on(
    strata: Strata, tiny: str, executors: dict[str, Executor],
) -> None:
    broken = request(strata)
    fine = request(strata, negative_prompt="fog")
    worker = Worker(strata, {"generation": Unrecordable(executors["generation"])})
    assert worker.work_once(broken)
    failed = job_events(strata, broken)[-1]
    assert failed.type == "job.failed"
    assert failed.data["error_class"] == "InvalidInput"
    assert "canonical JSON" in failed.data["message"]
    assert jobs.get(strata, broken)["status"] == "failed"
    assert Worker(strata, executors).work_once(fine)
    assert jobs.get(strata, fine)["status"] == "completed"


def test_a_serving_worker_survives_a_passing_database_error(
    strata: Strata, executors: dict[str, Executor], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.exc import OperationalError

    worker = Worker(strata, executors, poll_seconds=0.01)
    calls: list[int] = []

    def unlucky_once(job_id: str | None = None) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        return False

    monkeypatch.setattr(worker, "work_once", unlucky_once)
    assert worker.serve(threading.Event(), until_idle=True) == 0
    assert len(calls) == 2


def test_leases_run_on_the_database_clock_not_the_workers(
    strata: Strata, tiny: str, executors: dict[str, Executor], monkeypatch: pytest.MonkeyPatch,
) -> None:
    if strata.store.engine.dialect.name == "sqlite":
        pytest.skip("an embedded SQLite store has one machine and one clock")
    job_id = request(strata)
    worker = Worker(strata, executors, lease_seconds=30)
    real = time.time()
    monkeypatch.setattr(time, "time", lambda: real + 3600)  # this worker's clock runs an hour fast
    (row,) = worker.claimable(job_id)
    assert worker.claim(row) is not None
    monkeypatch.undo()
    with strata.store.engine.connect() as conn:
        expires = conn.execute(text("SELECT expires_at FROM job_leases")).scalar_one()
    assert abs(expires - (real + 30)) < 10  # by the database's clock, not the skewed one


class InterruptedWhileImporting(Executor):
    """Ctrl-C lands while a library imports lazily, and the library wraps it (as diffusers'
    lazy modules do: RuntimeError "Failed to import …" from the KeyboardInterrupt)."""

    layer: ClassVar[str] = "generation"

    def run(self, ctx: JobContext) -> JobCompleted:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise RuntimeError("Failed to import diffusers.pipelines.auto_pipeline") from interrupt


def test_a_ctrl_c_a_library_wrapped_is_still_an_interrupt_not_a_failure(
    strata: Strata, tiny: str,
) -> None:
    job_id = request(strata)
    worker = Worker(strata, {"generation": InterruptedWhileImporting()})
    with pytest.raises(KeyboardInterrupt):
        worker.work_once(job_id)
    assert types(job_events(strata, job_id)) == ["generation.requested", "job.started"]
    assert lease_rows(strata) == []  # handed back at once
    assert worker.claimable() != []


class SwallowsTheInterrupt(Executor):
    """A library that catches Ctrl-C and carries on as if nothing came (seen once in CI:
    `generate --wait` went on for minutes after its SIGINT, printing nothing)."""

    layer: ClassVar[str] = "generation"

    def __init__(self) -> None:
        self.steps_run = 0

    def run(self, ctx: JobContext) -> JobCompleted:
        for step in range(1, 201):
            if step == 3:
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(1.0)  # the handler runs here and raises
                except BaseException:  # the library swallows it
                    pass
            self.steps_run = step
            ctx.progress(step, 200)
            time.sleep(0.005)
        raise AssertionError("the job ran to its end after Ctrl-C")


def test_a_ctrl_c_a_library_swallowed_stops_the_job_at_its_next_step(
    strata: Strata, tiny: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = request(strata)
    executor = SwallowsTheInterrupt()
    monkeypatch.setattr(layers, "build_executors", lambda names: {"generation": executor})
    with pytest.raises(Interrupted, match="left unfinished and free to take"):
        run_here(strata, job_id)
    assert executor.steps_run == 3  # stopped at the step after the swallowed interrupt
    assert types(job_events(strata, job_id)) == ["generation.requested", "job.started"]
    assert lease_rows(strata) == []  # handed back at once, not claimed again


class FailsOnItsOwn(Executor):
    """A library that caught the interrupt and raised an error of its own, cause lost."""

    layer: ClassVar[str] = "generation"

    def run(self, ctx: JobContext) -> JobCompleted:
        raise RuntimeError("Could not import module 'PreTrainedModel'")


def test_an_error_after_ctrl_c_reached_the_process_is_an_interrupt(
    strata: Strata, tiny: str,
) -> None:
    job_id = request(strata)
    worker = Worker(strata, {"generation": FailsOnItsOwn()})
    worker.interrupt_requested.set()  # as run_here's SIGINT handler does
    with pytest.raises(KeyboardInterrupt):
        worker.work_once(job_id)
    assert types(job_events(strata, job_id)) == ["generation.requested", "job.started"]
    assert lease_rows(strata) == []
