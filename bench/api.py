"""HTTP API benchmark: requests per second and p99 latency of Strata's routes, each
beside a baseline served by the same app in the same run.

1. asset metadata (`GET /assets/{ref}`)        beside a trivial FastAPI endpoint: ≥ 50%
2. a lineage query (`GET /assets/{ref}/lineage` up a chain of 30 steps) beside the same
   trivial endpoint: ≥ 50%
3. an event append (`POST /assets/{ref}/rating`) beside the trivial endpoint (info)
4. a 10 MB download (`GET /assets/{ref}/content`) beside a plain FileResponse of the same
   file: ≥ 80%

The server is uvicorn in a child process on a loopback port (the app of `strata serve`,
plus the two baseline routes); the client sends one request at a time from this
process, and the contenders take turns round by round so that a noisy machine slows both
alike. Run it from the checkout: `python bench/api.py [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
from ledger import Row, log, percentile, print_report, verdict

CHAIN = 30
DOWNLOAD_BYTES = 10 * 1024 * 1024


def bench_app(home: str, plain_file: str):  # type: ignore[no-untyped-def]
    """The app `strata serve` runs, with the baselines beside it."""
    from fastapi.responses import FileResponse

    from strata.api.http.app import create_app
    from strata.core.config import Settings

    app = create_app(Settings(home=Path(home)))

    @app.get("/bench/trivial")
    def trivial() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/bench/file")
    def plain() -> FileResponse:
        return FileResponse(plain_file, media_type="application/octet-stream")

    return app


def serve(home: str, plain_file: str, port: int) -> None:
    import uvicorn

    uvicorn.run(bench_app(home, plain_file), host="127.0.0.1", port=port, log_level="warning")


def prepare(root: Path) -> tuple[dict[str, str], Path]:
    """A store with a lineage chain and a 10 MB asset: the digests the routes ask for."""
    from PIL import Image

    from strata.core.config import Settings
    from strata.core.service import Strata
    from strata.core.store import Store

    store = Store.open(Settings(home=root / "store"), create=True)
    strata = Strata(store)
    files = root / "files"
    files.mkdir()
    previous: str | None = None
    for step in range(CHAIN + 1):
        path = files / f"{step}.png"
        Image.new("RGB", (64, 64), (step * 8 % 256, 40, 200 - step)).save(path)
        event = strata.add_file(path, [(previous, "source")] if previous else [], "retouch")
        asset = event.data.get("asset") or event.data["output"]["asset"]
        previous = asset["digest"]
    big = files / "big.bin"
    big.write_bytes(os.urandom(DOWNLOAD_BYTES))
    download = strata.add_file(big).data["asset"]["digest"]
    store.close()
    assert previous is not None
    return {"tip": previous, "download": download}, big


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_cpu(pid: int) -> float:
    """CPU seconds the server process has used (user + system, every thread), from
    /proc: unlike the request rate, it does not depend on what else the machine runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(contenders: dict[str, Callable[[], object]], rounds: int, per_round: int,
            cpu: Callable[[], float]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Latencies of each contender, taking turns round by round, and the server's CPU
    seconds per request for each."""
    latencies: dict[str, list[float]] = {name: [] for name in contenders}
    used = dict.fromkeys(contenders, 0.0)
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            call = contenders[name]
            before = cpu()
            for _ in range(per_round):
                start = time.perf_counter()
                call()
                latencies[name].append(time.perf_counter() - start)
            used[name] += cpu() - before
    return latencies, {name: used[name] / len(latencies[name]) for name in names}


def compare(label: str, ours: list[float], base: list[float], base_label: str,
            target: float | None) -> Row:
    rate, base_rate = len(ours) / sum(ours), len(base) / sum(base)
    ratio = rate / base_rate
    return Row(
        f"{label}", f"{rate:,.0f} req/s, p99 {percentile(ours, 99) * 1000:.1f} ms",
        f"{base_label}: {base_rate:,.0f} req/s, p99 {percentile(base, 99) * 1000:.1f} ms",
        f"{ratio:.0%}", f"≥ {target:.0%}" if target is not None else "-",
        verdict(ratio >= target) if target is not None else "info")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--serve", nargs=3, metavar=("HOME", "FILE", "PORT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return 0
    began = time.perf_counter()
    rounds, per_round, downloads = (4, 25, 3) if args.quick else (10, 100, 10)
    with tempfile.TemporaryDirectory(prefix="strata-bench-api-") as tmp:
        root = Path(tmp)
        log("preparing a store: a lineage chain and a 10 MB asset")
        digests, big = prepare(root)
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(root / "store"),
                                   str(big), str(port)])
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=60) as http:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        http.get("/bench/trivial").raise_for_status()
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise
                        time.sleep(0.1)
                tip, download = digests["tip"], digests["download"]

                def get(path: str, params: dict | None = None) -> Callable[[], object]:
                    def call() -> object:
                        response = http.get(path, params=params)
                        response.raise_for_status()
                        return response.content
                    return call

                def rate() -> object:
                    return http.post(f"/assets/{tip}/rating",
                                     json={"rating": 3}).raise_for_status()

                trivial = get("/bench/trivial")
                for warm in (trivial, get(f"/assets/{tip}"), get(f"/assets/{tip}/lineage")):
                    warm()
                log(f"1-3. metadata, lineage ({CHAIN} steps), append: {rounds} rounds of "
                    f"{per_round}")
                cpu = partial(server_cpu, server.pid)
                small, small_cpu = measure(
                    {"trivial": trivial, "metadata": get(f"/assets/{tip}"),
                     "lineage": get(f"/assets/{tip}/lineage"), "append": rate},
                    rounds, per_round, cpu)
                log(f"4. 10 MB download: {rounds} rounds of {downloads}")
                large, large_cpu = measure({"plain": get("/bench/file"),
                                            "content": get(f"/assets/{download}/content")},
                                           rounds, downloads, cpu)
        finally:
            server.terminate()
            server.wait(timeout=30)
    rows = [
        compare("asset metadata (GET /assets/{ref})", small["metadata"], small["trivial"],
                "trivial endpoint", 0.5),
        compare(f"lineage, {CHAIN} ancestors (GET …/lineage)", small["lineage"],
                small["trivial"], "trivial endpoint", 0.5),
        compare("event append (POST …/rating)", small["append"], small["trivial"],
                "trivial endpoint", None),
        compare("10 MB download (GET …/content)", large["content"], large["plain"],
                "plain FileResponse", 0.8),
    ]
    env = (f"python {platform.python_version()} · {os.cpu_count()} CPUs · uvicorn on "
           "127.0.0.1, one client sending one request at a time · SQLite store · load "
           f"average {os.getloadavg()[0]:.1f} at the end")
    print_report("HTTP API", args.quick, time.perf_counter() - began, env, rows)
    # The same contest in the server's CPU time per request: steadier than the rates on a
    # busy machine, where the server waits for a core between requests.
    print("\nServer CPU time per request (every thread of the server process):\n")
    for name, seconds in {**small_cpu, **{f"download: {k}": v for k, v in large_cpu.items()}
                          }.items():
        print(f"- {name}: {seconds * 1000:.2f} ms")
    return 0 if all(r.result != "MISS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
