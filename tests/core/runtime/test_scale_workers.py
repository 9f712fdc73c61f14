"""Workers at scale: several worker processes share one store, lose one to kill -9, and stop
cleanly on SIGTERM.

The workers are real processes (multiprocessing, spawned: nothing inherited but the
environment) that open the store from STRATA_HOME / STRATA_DATABASE_URL as `strata
worker` does and serve through `Worker.serve_until_signalled`, the loop `strata worker`
runs. They serve the test suite's plug-in layer (tests/plugins/invert_layer.py: Pillow
only), cheap enough for hundreds of jobs on two cores. What is proved:

- 4 workers and 200 jobs on PostgreSQL, one worker SIGKILLed in the middle of a job:
  every job completes exactly once (one `invert.completed`, no `job.failed`), the killed
  worker's job is taken over once its lease runs out, no event is lost or duplicated and
  the hash chain verifies;
- SIGTERM: a worker takes no new job, finishes the one it runs within the grace period
  and exits 0; a job that outlasts the grace period is interrupted at its next step and
  handed back at once (its lease dropped, not left to expire) for another worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from typing import ClassVar

import pytest
from sqlalchemy import func, select

from strata.core.config import Settings
from strata.core.ledger.event_types import AssetImported, ImportSource
from strata.core.ledger.log import events_table
from strata.core.projections.base import table
from strata.core.provenance.verify import verify
from strata.core.runtime import jobs
from strata.core.runtime.executor import Executor, JobContext
from strata.core.runtime.worker import Worker
from strata.core.service import Strata, asset_stream
from strata.core.storage.schema import JobLease
from strata.core.store import Store
from tests.conftest import settings_env
from tests.helpers import png_bytes
from tests.plugins.invert_layer import InvertCompleted, InvertExecutor
from tests.plugins.invert_layer import request as request_invert

SPAWN = multiprocessing.get_context("spawn")
GENEROUS = 240.0  # seconds: a bound that tells "finished" from "stuck", never a speed


class Stepping(Executor):
    """Inverts after `steps` steps of `step_seconds`, checking for interruption at each."""

    layer: ClassVar[str] = "invert"

    def __init__(self, steps: int, step_seconds: float) -> None:
        self.steps, self.step_seconds = steps, step_seconds

    def run(self, ctx: JobContext) -> InvertCompleted:
        for done in range(1, self.steps + 1):
            time.sleep(self.step_seconds)
            ctx.progress(done, self.steps)
        return InvertExecutor().run(ctx)


def serve(env: dict[str, str], name: str, lease: float, grace: float, steps: int,
          step_seconds: float, said: Queue) -> None:
    """A worker process: open the store from the environment and serve until a signal."""
    os.environ.clear()
    os.environ.update(env)
    store = Store.open()
    worker = Worker(Strata(store), {"invert": Stepping(steps, step_seconds)}, name=name,
                    lease_seconds=lease, poll_seconds=0.5)
    said.put(("ready", name))
    done = worker.serve_until_signalled(grace)
    said.put(("stopped", name, done))
    store.close()


class Workers:
    """Worker processes for one test, each stopped (or killed) by the end of it."""

    def __init__(self, settings: Settings) -> None:
        self.env = settings_env(settings)
        self.said: Queue = SPAWN.Queue()
        self.processes: dict[str, SpawnProcess] = {}

    def start(self, name: str, *, lease: float = 60.0, grace: float = 60.0, steps: int = 1,
              step_seconds: float = 0.0) -> None:
        process = SPAWN.Process(target=serve, args=(self.env, name, lease, grace, steps,
                                                    step_seconds, self.said), daemon=True)
        process.start()
        self.processes[name] = process

    def hear(self, what: str, count: int) -> list[tuple]:
        heard = []
        while len(heard) < count:
            message = self.said.get(timeout=GENEROUS)
            if message[0] == what:
                heard.append(message)
        return heard

    def signal(self, name: str, sig: int) -> None:
        pid = self.processes[name].pid
        assert pid is not None
        os.kill(pid, sig)

    def stop_all(self) -> list[int | None]:
        for name, process in self.processes.items():
            if process.is_alive():
                self.signal(name, signal.SIGTERM)
        for process in self.processes.values():
            process.join(GENEROUS)
        return [process.exitcode for process in self.processes.values()]


@pytest.fixture
def workers(strata: Strata) -> Iterator[Workers]:
    started = Workers(strata.store.settings)
    yield started
    for process in started.processes.values():
        if process.is_alive():
            process.kill()
            process.join(10)


def a_source(strata: Strata) -> str:
    info = strata.blobs.ingest_bytes(png_bytes(7, (16, 16)))
    strata.record(asset_stream(info.digest),
                  [AssetImported(asset=info, source=ImportSource(name="source.png"))])
    return info.digest


def job_row(strata: Strata, job_id: str) -> dict:
    return jobs.get(strata, job_id)


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + GENEROUS
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


def result_by(strata: Strata, job_id: str) -> tuple[str, str, int]:
    """The job's last event: its type, the worker that recorded it, the job's attempts."""
    last = strata.ledger.read_stream(jobs.stream(job_id))[-1]
    return last.type, last.meta["worker"], job_row(strata, job_id)["attempts"]


def has_lease(strata: Strata, job_id: str) -> bool:
    leases = table(JobLease)
    with strata.store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(leases)
                           .where(leases.c.job_id == job_id)) > 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres"])
def test_four_workers_run_200_jobs_exactly_once_though_one_is_killed(
    strata: Strata, workers: Workers
) -> None:
    source = a_source(strata)
    lease = 2.0
    survivors = ["w1", "w2", "w3"]
    for name in survivors:
        workers.start(name, lease=lease)
    # The victim's jobs never end by themselves: it is surely in the middle of one when
    # it is killed.
    workers.start("victim", lease=lease, steps=10**6, step_seconds=0.05)
    workers.hear("ready", 4)

    job_ids = [request_invert(strata, source, strength=n / 200) for n in range(200)]
    wait_until(lambda: any(job_row(strata, j)["worker"] == "victim" for j in job_ids[:40]),
               "the victim to take a job")
    workers.signal("victim", signal.SIGKILL)
    (taken,) = [j for j in job_ids if job_row(strata, j)["worker"] == "victim"]
    wait_until(lambda: all(job_row(strata, j)["status"] in jobs.FINISHED for j in job_ids),
               "every job to finish")
    exits = workers.stop_all()
    assert exits == [0, 0, 0, -signal.SIGKILL]
    done = sum(message[2] for message in workers.hear("stopped", 3))
    assert done == 200

    events = list(strata.ledger.read_all())
    by_job = Counter((e.stream, e.type) for e in events if e.stream.startswith("job:"))
    for job_id in job_ids:
        assert job_row(strata, job_id)["status"] == "completed"
        assert by_job[(jobs.stream(job_id), "invert.completed")] == 1
        assert by_job[(jobs.stream(job_id), "job.failed")] == 0
    assert by_job[(jobs.stream(taken), "job.started")] == 2  # the victim's, then a survivor's
    started = [e for e in strata.ledger.read_stream(jobs.stream(taken))
               if e.type == "job.started"]
    assert started[0].data["worker"] == "victim" and started[1].data["worker"] in survivors
    assert sum(by_job[(jobs.stream(j), "job.started")] for j in job_ids) == 201

    # No event lost, none duplicated: positions 1..N, ids unique, the chain intact.
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    with strata.store.engine.connect() as conn:
        distinct = conn.scalar(select(func.count(func.distinct(events_table.c.event_id))))
    assert distinct == len(events) == 1 + 200 * 3 + 1
    report = verify(strata.ledger, strata.blobs)
    assert report.ok, report


def test_sigterm_lets_the_running_job_finish_and_takes_no_other(
    strata: Strata, workers: Workers
) -> None:
    source = a_source(strata)
    first, second = (request_invert(strata, source), request_invert(strata, source, 0.5))
    workers.start("finisher", grace=GENEROUS, steps=20, step_seconds=0.05)
    workers.hear("ready", 1)
    wait_until(lambda: job_row(strata, first)["status"] == "running", "the first job to start")
    workers.signal("finisher", signal.SIGTERM)
    assert workers.stop_all() == [0]
    assert workers.hear("stopped", 1) == [("stopped", "finisher", 1)]
    assert result_by(strata, first) == ("invert.completed", "finisher", 1)
    assert job_row(strata, second)["status"] == "requested"
    assert not has_lease(strata, first)


def test_sigterm_hands_back_a_job_that_outlasts_the_grace_period(
    strata: Strata, workers: Workers
) -> None:
    source = a_source(strata)
    job_id = request_invert(strata, source)
    # A lease far longer than the test: only a hand-back lets another worker in now.
    workers.start("leaver", lease=GENEROUS * 4, grace=0.3, steps=10**6, step_seconds=0.05)
    workers.hear("ready", 1)
    wait_until(lambda: job_row(strata, job_id)["status"] == "running", "the job to start")
    workers.signal("leaver", signal.SIGTERM)
    assert workers.stop_all() == [0]
    workers.hear("stopped", 1)
    assert not has_lease(strata, job_id)

    here = Worker(strata, {"invert": InvertExecutor()}, name="here")
    assert here.work_once(job_id)
    assert result_by(strata, job_id) == ("invert.completed", "here", 2)
