"""The watchers' speed: how soon a finished file is committed, and the inbox's burst rate.

    python bench/watchers.py [--files N] [--burst N] [--settle S] [--dir PATH]

1. latency: an inbox watcher (a real watchdog observer, in a thread) on an empty folder; N
   files (default 200) written one after another, each waited for. For each, the time from
   the end of its last write (the file closed) to the moment the watcher reports its
   `asset.imported` committed; p50 and p95. Target: p95 < 1 s, debounce included.
2. burst: N files (default 1,000) written into a watched inbox as fast as Python writes
   them, timed from the first write to the last import committed; beside it, `strata add`
   of the same files in one command (Strata.add_files with every path, what the command
   calls) into a fresh store. Target: the inbox's rate >= 70 % of `strata add`'s.

Each case uses its own fresh SQLite store in a temporary folder; the files are distinct
64x64 PNGs made beforehand.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from strata.core.config import Settings
from strata.core.service import Strata
from strata.core.store import Store
from strata.watchers.files import Notice
from strata.watchers.inbox import Inbox
from strata.watchers.settle import Timing


def pngs(count: int, salt: int) -> list[bytes]:
    from PIL import Image

    made = []
    for seed in range(count):
        rng = random.Random(salt * 1_000_003 + seed)
        image = Image.frombytes("RGB", (64, 64), rng.randbytes(64 * 64 * 3))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        made.append(buffer.getvalue())
    return made


def fresh(root: Path, name: str) -> Strata:
    return Strata(Store.open(Settings(home=root / name), create=True))


class Watched:
    """An inbox watcher in a thread; `committed` has the time of each import reported."""

    def __init__(self, strata: Strata, folder: Path, timing: Timing) -> None:
        folder.mkdir()
        self.committed: dict[str, float] = {}
        self.arrived = threading.Condition()
        self.inbox = Inbox(strata, folder, self._note, timing=timing)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.inbox.run, args=(self.stop,), daemon=True)

    def _note(self, notice: Notice) -> None:
        with self.arrived:
            self.committed[notice.path.name] = time.perf_counter()
            self.arrived.notify_all()

    def wait_for(self, count: int) -> None:
        with self.arrived:
            while not self.arrived.wait_for(lambda: len(self.committed) >= count, 120):
                raise SystemExit(f"gave up: {len(self.committed)} of {count} imported")

    def __enter__(self) -> Watched:
        self.thread.start()
        self.inbox.started.wait(60)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def latency(root: Path, count: int, timing: Timing) -> list[float]:
    folder = root / "latency-inbox"
    delays = []
    files = pngs(count, salt=1)
    with Watched(fresh(root, "latency"), folder, timing) as watched:
        for number, data in enumerate(files, start=1):
            name = f"file-{number:04}.png"
            with (folder / name).open("wb") as handle:
                handle.write(data)
            written = time.perf_counter()  # after the close
            watched.wait_for(number)
            delays.append(watched.committed[name] - written)
    return delays


def burst(root: Path, count: int, timing: Timing) -> float:
    folder = root / "burst-inbox"
    files = pngs(count, salt=2)
    with Watched(fresh(root, "burst"), folder, timing) as watched:
        begin = time.perf_counter()
        for number, data in enumerate(files):
            (folder / f"burst-{number:04}.png").write_bytes(data)
        watched.wait_for(count)
        return time.perf_counter() - begin


def add(root: Path, count: int) -> float:
    folder = root / "add-files"
    folder.mkdir()
    paths = []
    for number, data in enumerate(pngs(count, salt=2)):
        path = folder / f"burst-{number:04}.png"
        path.write_bytes(data)
        paths.append(path)
    strata = fresh(root, "add")
    begin = time.perf_counter()
    strata.add_files(paths)
    return time.perf_counter() - begin


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200, help="files for the latency")
    parser.add_argument("--burst", type=int, default=1000, help="files in the burst")
    parser.add_argument("--settle", type=float, default=0.3, help="the settle interval (s)")
    parser.add_argument("--dir", type=Path, default=None, help="work here (default: a "
                        "temporary folder)")
    args = parser.parse_args(argv)
    timing = Timing(interval=args.settle)
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        root = Path(work)
        delays = latency(root, args.files, timing)
        print(f"latency, last write → committed, {args.files} files (settle "
              f"{args.settle} s): p50 {statistics.median(delays) * 1000:.0f} ms, "
              f"p95 {percentile(delays, 0.95) * 1000:.0f} ms, "
              f"max {max(delays) * 1000:.0f} ms  (target p95 < 1000 ms)")
        watched = burst(root, args.burst, timing)
        direct = add(root, args.burst)
        ratio = direct / watched
        print(f"burst of {args.burst}: inbox {args.burst / watched:.0f} files/s "
              f"({watched:.2f} s), strata add in one command {args.burst / direct:.0f} "
              f"files/s ({direct:.2f} s): {ratio:.0%} of strata add's rate (target >= 70%)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
