"""A generation worker in a process of its own, driven by tests/core/runtime/test_worker.py.

The store comes from the environment (STRATA_HOME, STRATA_DATABASE_URL: see
tests.conftest.settings_env), as it would for `strata worker`. Lines on stdout:

    ready NAME              the worker is built and the registered models are loaded
    progress JOB DONE TOTAL after each denoising step (mode "once" only; with
                            --step-delay S the step then lasts S seconds longer)
    done N                  the number of jobs this worker ran

Modes:
    once [--job ID]   claim and run one job (the given one, else the first claimable)
    serve             wait for a line on stdin, then serve until no job is left
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from pathlib import Path

from strata.core.layers import build_executors
from strata.core.layers.generation import GenerationExecutor
from strata.core.models import registry as models
from strata.core.models.pipelines import choose_device, choose_dtype
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from strata.core.store import Store


def reporter(step_delay: float) -> Callable[[str, int, int], None]:
    def report(job_id: str, done: int, total: int) -> None:
        print(f"progress {job_id} {done} {total}", flush=True)
        time.sleep(step_delay)  # a slow step: the job is still running when the test acts

    return report


def preload(strata: Strata, executor: GenerationExecutor) -> None:
    """Load every registered model now, so a race between workers starts level."""
    with strata.view() as conn:
        registered = models.all_models(conn)
    device = choose_device(executor.device)
    for model in registered:
        executor.pipelines.get(Path(model.path), device, choose_dtype(device))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("once", "serve"))
    parser.add_argument("--job")
    parser.add_argument("--name")
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--step-delay", type=float, default=0.0)
    args = parser.parse_args()

    store = Store.open()
    strata = Strata(store)
    executors = build_executors(("generation",))
    report = reporter(args.step_delay) if args.mode == "once" else None
    worker = Worker(strata, executors, name=args.name, lease_seconds=args.lease,
                    poll_seconds=0.05, on_progress=report)
    generation = executors["generation"]
    assert isinstance(generation, GenerationExecutor)
    preload(strata, generation)
    print(f"ready {worker.name}", flush=True)
    if args.mode == "once":
        done = int(worker.work_once(args.job))
    else:
        input()  # the parent says go to every worker at once
        done = worker.serve(threading.Event(), until_idle=True)
    print(f"done {done}", flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
