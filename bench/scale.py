"""Benchmarks of Strata scaled out: workers on PostgreSQL, notifications, S3 blobs.

    python bench/scale.py [--quick] [--postgres URL] [--keep]

Needs a PostgreSQL server (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres,
or STRATA_TEST_POSTGRES_URL): a database is made for the run and dropped after it. The S3
server is moto's, started on loopback for the run. Progress goes to stderr; the results go
to stdout as a markdown table (bench/ledger.py's report), ready to paste into a README.

What is measured, all in the same run:

1. job throughput of 1, 2 and 4 `strata worker` processes (the loop `strata worker`
   runs, in spawned processes) on the tiny diffusion model (64x64, 4 steps, one image a
   job) against PostgreSQL, timed from "go" to the last result; every worker has loaded
   the model and made one image before the clock starts, with one torch thread each;
2. the delay from a request's commit to the commit of its claim (`recorded_at` of
   `job.started` minus that of the request, both the database host's clock), with one
   idle worker woken by LISTEN/NOTIFY against the same worker polling every 0.5 s
   (`strata worker`'s default `--poll`); requests come one at a time at random moments;
3. single-event appends (`Ledger.append`, one transaction each) on PostgreSQL beside
   SQLite (WAL, synchronous=FULL);
4. blob uploads (`ingest_path` of random files: hashing, checking, publishing) to the
   loopback S3 server beside the local folder store.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from ledger import Row, environment, fmt_rate, imported_event, log, print_report, verdict
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from strata.core.config import Settings
from strata.core.ledger.log import Ledger
from strata.core.runtime import jobs
from strata.core.service import Strata
from strata.core.store import Store

SPAWN = multiprocessing.get_context("spawn")
PROMPT = "a lighthouse on a cliff at dusk"
POLL_TODAY = 0.5  # `strata worker --poll` default: what polling alone would give


# --- a PostgreSQL database for the run ------------------------------------------------------


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    name = f"strata_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fresh_schema(database_url: str) -> str:
    """A URL onto a new, empty schema of the run's database (each measure starts clean)."""
    schema = f"s_{uuid.uuid4().hex[:10]}"
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def open_store(home: Path, database_url: str | None, blob_url: str | None = None) -> Strata:
    settings = Settings(home=home, database_url=database_url, blob_url=blob_url)
    return Strata(Store.open(settings, create=True))


def child_env(strata: Strata) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["STRATA_HOME"] = str(strata.store.settings.home)
    if strata.store.settings.database_url:
        env["STRATA_DATABASE_URL"] = strata.store.settings.database_url
    return env


# --- worker processes ------------------------------------------------------------------------


def generation_worker(env: dict[str, str], threads: int, ready: Any, go: Event,
                      finished: Any) -> None:
    """Load the tiny model, say ready, wait for go, serve until no job is left."""
    os.environ.clear()
    os.environ.update(env)
    import threading

    import torch

    from strata.core.layers import build_executors
    from strata.core.layers.generation import GenerationExecutor
    from strata.core.models import registry as models
    from strata.core.models.pipelines import choose_device, choose_dtype
    from strata.core.runtime.worker import Worker

    torch.set_num_threads(threads)
    strata = Strata(Store.open())
    executor = build_executors(("generation",))["generation"]
    assert isinstance(executor, GenerationExecutor)
    with strata.view() as conn:
        for model in models.all_models(conn):
            device = choose_device(executor.device)
            pipeline = executor.pipelines.get(Path(model.path), device, choose_dtype(device))
    worker = Worker(strata, {"generation": executor})
    # One image before the clock starts: a pipeline's first call allocates and warms up.
    pipeline.set_progress_bar_config(disable=True)
    pipeline(prompt=PROMPT, num_inference_steps=4, width=64, height=64)
    ready.put(worker.name)
    go.wait()
    done = worker.serve(threading.Event(), until_idle=True)
    finished.put((done, time.time()))
    strata.store.close()


def enhancement_worker(env: dict[str, str], listen: bool, ready: Any, stop: Event) -> None:
    """An idle worker waiting for enhancement requests: notified, or polling every 0.5 s."""
    os.environ.clear()
    os.environ.update(env)
    import threading

    from strata.core.layers import build_executors
    from strata.core.ledger.notify import EventWaiter
    from strata.core.runtime.worker import Worker

    strata = Strata(Store.open())
    waiter = EventWaiter(strata.store.engine, listen=listen,
                         poll_seconds=None if listen else POLL_TODAY)
    worker = Worker(strata, build_executors(("enhancement",)), waiter=waiter,
                    poll_seconds=2.0 if listen else POLL_TODAY)
    if waiter.listener is not None:
        waiter.listener.connected.wait(60)
    halt = threading.Event()

    def relay() -> None:  # the parent's stop (another process's event) ends serve
        stop.wait()
        halt.set()

    threading.Thread(target=relay, daemon=True).start()
    ready.put(worker.name)
    worker.serve(halt)
    strata.store.close()


def wait_ready(ready: Any, workers: list[Any]) -> None:
    """Until every worker said ready; a worker that died on the way stops the run."""
    said = 0
    while said < len(workers):
        try:
            ready.get(timeout=2)
            said += 1
        except queue.Empty:
            if any(w.exitcode is not None for w in workers):
                raise SystemExit("a worker process died before it was ready (see above)") from None


# --- 1. throughput ---------------------------------------------------------------------------


def bench_throughput(root: Path, database: str, jobs_per_run: int) -> list[Row]:
    from strata.core.layers.generation import build_request
    from strata.core.models import registry as models

    rates: dict[int, float] = {}
    for count in (1, 2, 4):
        strata = open_store(root / f"throughput-{count}", fresh_schema(database))
        models.write_tiny(strata)
        for n in range(jobs_per_run):
            jobs.request(strata, build_request(strata, PROMPT, model="tiny", n=1, seed=n,
                                               steps=4, width=64, height=64))
        ready, finished, go = SPAWN.Queue(), SPAWN.Queue(), SPAWN.Event()
        # One thread each: torch's threads spin while they wait, and on a busy machine two
        # of them in one process were slower than one (see the README's figures).
        threads = 1
        workers = [SPAWN.Process(target=generation_worker,
                                 args=(child_env(strata), threads, ready, go, finished))
                   for _ in range(count)]
        for worker in workers:
            worker.start()
        wait_ready(ready, workers)
        began = time.time()
        go.set()
        results = [finished.get(timeout=3600) for _ in workers]
        for worker in workers:
            worker.join()
        done = sum(n for n, _ in results)
        assert done == jobs_per_run, f"{done} of {jobs_per_run} jobs ran"
        rates[count] = done / (max(at for _, at in results) - began)
        log(f"{count} worker(s), {threads} torch thread(s) each: {rates[count]:.2f} jobs/s")
        strata.store.close()
    rows = [Row(f"job throughput, {count} worker(s) (tiny model, PostgreSQL)",
                fmt_rate(rates[count], "jobs/s"),
                "1 worker" if count > 1 else "—",
                f"{rates[count] / rates[1]:.2f}x" if count > 1 else "—",
                "—", "info") for count in (1, 2, 4)]
    return rows


# --- 2. request to claim ---------------------------------------------------------------------


def claim_delays(strata: Strata, source: str, listen: bool, samples: int) -> list[float]:
    from strata.core.layers.enhancement import build_request

    ready, stop = SPAWN.Queue(), SPAWN.Event()
    worker = SPAWN.Process(target=enhancement_worker,
                           args=(child_env(strata), listen, ready, stop))
    worker.start()
    wait_ready(ready, [worker])
    rng = random.Random(5)
    delays = []
    try:
        for _ in range(samples):
            time.sleep(rng.uniform(0.02, 0.3))  # the worker idle, at a random point of a poll
            request = build_request(strata, source, [{"op": "auto-contrast"}])
            jobs.request(strata, request)
            while jobs.get(strata, request.job_id)["status"] not in jobs.FINISHED:
                time.sleep(0.01)
            requested, started = strata.ledger.read_stream(jobs.stream(request.job_id))[:2]
            delays.append((_when(started.recorded_at) - _when(requested.recorded_at)) * 1000)
    finally:
        stop.set()
        worker.join(60)
    return sorted(delays)


def _when(recorded_at: str) -> float:
    return datetime.fromisoformat(recorded_at.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def bench_claim_delay(root: Path, database: str, samples: int) -> list[Row]:
    from PIL import Image

    strata = open_store(root / "claims", fresh_schema(database))
    Image.effect_noise((16, 16), 40).convert("RGB").save(root / "source.png")
    (imported,) = strata.add_files([root / "source.png"])
    source = imported.data["asset"]["digest"]
    notified = claim_delays(strata, source, listen=True, samples=samples)
    polled = claim_delays(strata, source, listen=False, samples=samples)
    strata.store.close()
    log(f"request to claim: notified p50 {percentile(notified, 50):.1f} ms, "
        f"polled p50 {percentile(polled, 50):.1f} ms")
    rows = []
    for p in (50, 95):
        ours, theirs = percentile(notified, p), percentile(polled, p)
        rows.append(Row(f"request → claim p{p}, LISTEN/NOTIFY ({samples} jobs)",
                        f"{ours:.1f} ms", f"polling every {POLL_TODAY} s: {theirs:.1f} ms",
                        f"{theirs / ours:.0f}x sooner",
                        "≤ 50 ms" if p == 95 else "—",
                        verdict(ours <= 50) if p == 95 else "info"))
    return rows


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- 3. appends ------------------------------------------------------------------------------


def append_rate(ledger: Ledger, count: int) -> float:
    rng = random.Random(1)
    events = [imported_event(f"append-{n}", rng) for n in range(count)]
    began = time.perf_counter()
    for event in events:
        ledger.append(f"asset:{event.data['asset']['digest']}", [event], expected_version=0)
    return count / (time.perf_counter() - began)


def bench_appends(root: Path, database: str, count: int) -> list[Row]:
    postgres = open_store(root / "appends-pg", fresh_schema(database))
    sqlite = open_store(root / "appends-sqlite", None)
    pg_rate = append_rate(postgres.ledger, count)
    sqlite_rate = append_rate(sqlite.ledger, count)
    postgres.store.close()
    sqlite.store.close()
    return [Row(f"single-event appends, PostgreSQL ({count})", fmt_rate(pg_rate, "events/s"),
                f"SQLite: {fmt_rate(sqlite_rate, 'events/s')}",
                f"{pg_rate / sqlite_rate:.2f}x", "—", "info")]


# --- 4. blobs --------------------------------------------------------------------------------

MOTO = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


@contextmanager
def moto_server(root: Path) -> Iterator[None]:
    """moto's S3 on loopback, and boto3's default chain pointed at it, for the block."""
    child = subprocess.Popen([sys.executable, "-c", MOTO], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None and child.stdin is not None
    saved = dict(os.environ)
    try:
        port = int(child.stdout.readline())
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            os.environ.pop(name, None)
        os.environ.update({
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
        import boto3

        boto3.client("s3").create_bucket(Bucket="strata-bench")
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def upload_rate(strata: Strata, files: list[Path]) -> float:
    began = time.perf_counter()
    for path in files:
        strata.blobs.ingest_path(path)
    return sum(p.stat().st_size for p in files) / (time.perf_counter() - began) / 1e6


def bench_blobs(root: Path, count: int, size_mb: int) -> list[Row]:
    folder = root / "files"
    folder.mkdir()
    files = [_write(folder / f"f{n}.bin", os.urandom(size_mb * 1_000_000))
             for n in range(2 * count)]  # two sets: each store gets bytes new to it
    local = open_store(root / "blobs-local", None)
    local_rate = upload_rate(local, files[:count])
    local.store.close()
    with moto_server(root):
        remote = open_store(root / "blobs-s3", None, "s3://strata-bench/blobs")
        s3_rate = upload_rate(remote, files[count:])
        remote.store.close()
        raw_rate = raw_upload_rate(files[count:])
    ratio = s3_rate / local_rate
    return [Row(f"blob upload, S3 on loopback (moto; {count} x {size_mb} MB)",
                f"{s3_rate:.0f} MB/s", f"local folder: {local_rate:.0f} MB/s",
                f"{ratio * 100:.0f}%", "≥ 50%", verdict(ratio >= 0.5)),
            Row("(the same files by boto3's upload_file alone, no Strata)",
                f"{raw_rate:.0f} MB/s", f"local folder: {local_rate:.0f} MB/s",
                f"{raw_rate / local_rate * 100:.0f}%", "—", "info")]


def raw_upload_rate(files: list[Path]) -> float:
    """What the server itself takes: the S3 store's ceiling on this machine."""
    import boto3

    client = boto3.client("s3")
    began = time.perf_counter()
    for path in files:
        client.upload_file(str(path), "strata-bench", f"raw/{path.name}")
    return sum(p.stat().st_size for p in files) / (time.perf_counter() - began) / 1e6


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--postgres", default=os.environ.get(
        "STRATA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
        help="an administrative URL of the PostgreSQL server (a database is made on it)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    quick = args.quick
    jobs_per_run = 12 if quick else 40
    samples = 30 if quick else 100
    appends = 500 if quick else 2_000
    files, size_mb = (4, 8) if quick else (10, 16)

    root = Path(tempfile.mkdtemp(prefix="strata-bench-scale-"))
    started = time.perf_counter()
    rows: list[Row] = []
    try:
        env = environment(root)
        log(env)
        with postgres_database(args.postgres) as database:
            rows += bench_claim_delay(root, database, samples)
            rows += bench_appends(root, database, appends)
            rows += bench_blobs(root, files, size_mb)
            rows += bench_throughput(root, database, jobs_per_run)
            with create_engine(database).connect() as conn:
                server = conn.scalar(text("SHOW server_version"))
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_report("scale-out", quick, time.perf_counter() - started,
                 env.replace(f" · temporary folder {root}", "") + f" · PostgreSQL {server}",
                 rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
