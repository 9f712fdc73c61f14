"""A process that ingests blobs and appends events is killed with SIGKILL at random moments.

An importer process opens the store and imports random PNGs for ever (a few KB to ~200 KB, so
that hashing, fsync and decoding take measurable time), some derived from earlier assets
and some re-importing bytes already stored. The test kills it after a random 0.05-0.6 s,
fifty times over on the same store, and then checks what "blob before event" and
"projections are disposable" promise:

- verify(rehash=True) passes: the chain is intact, no event references a missing blob,
  no stored blob is corrupt;
- every asset row (and every digest an event names) is a complete blob whose bytes hash
  to its digest, and no temporary file of a killed ingest is ever listed as a blob or
  shows up as an asset;
- the projections after catching up equal the projections rebuilt from position 0.

Each importer is its own process with its own Store (engines never cross processes). A
fresh interpreter costs more CPU to start than the kill window lasts, so a launcher script
imports Strata once and forks one importer per run; that keeps 50 kills per backend (both
backends, 50 each) to roughly 20-30 s each on two cores.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from strata.core.config import Settings
from strata.core.ledger.events import Payload
from strata.core.projections.base import table
from strata.core.provenance.verify import referenced_digests, verify
from strata.core.service import Strata
from strata.core.storage.schema import AssetRow, DerivationRow, ProjectionCheckpoint
from strata.core.store import Store
from tests.conftest import settings_env

KILLS = 50
SEED = 20261125

LAUNCHER = r"""
import os
import random
import sys
import traceback
from pathlib import Path

import imagehash
from PIL import Image
from sqlalchemy import select

from strata.core.projections.base import table
from strata.core.storage.schema import AssetRow
from strata.core.service import Strata
from strata.core.store import Store

# The first perceptual hash imports scipy (~0.3 s), a store's first opening its database
# driver and an import's first file the C2PA reader (~0.2 s each): pay for them once,
# before any fork, or a busy machine kills every child before its first append. The
# store is closed again, so no child inherits a connection.
imagehash.phash(Image.new("RGB", (8, 8)))
Store.open().close()
import strata.core.interop.c2pa_credentials


def import_forever(seed, work):
    rng = random.Random(seed)
    strata = Strata(Store.open())  # its own engine: STRATA_HOME / STRATA_DATABASE_URL
    with strata.store.engine.connect() as conn:
        known = list(conn.scalars(select(table(AssetRow).c.digest)))
    done = os.open(work / "recorded", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    made = []
    n = 0
    while True:
        n += 1
        parents = []
        if made and rng.random() < 0.15:
            path = rng.choice(made)  # the same bytes again: the blob is already stored
        else:
            side = rng.randint(40, 260)  # 4.8 KB to 203 KB of incompressible pixels
            image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
            path = work / f"{n}.png"
            image.save(path, compress_level=1)
            made.append(path)
            if known and rng.random() < 0.5:
                parents = [(rng.choice(known), rng.choice(["source", "mask", "reference"]))]
        event = strata.add_file(path, parents=parents,
                                operation="edit" if parents else "external")
        payload = event.payload
        known.append((payload.output.asset if parents else payload.asset).digest)
        os.write(done, b"recorded\n")


print("ready", flush=True)
while command := sys.stdin.readline().split():
    if command[0] == "start":  # start SEED WORK: fork an importer, answer its pid
        seed, work = int(command[1]), Path(command[2])
        work.mkdir(parents=True, exist_ok=True)
        pid = os.fork()
        if pid == 0:
            try:
                err = os.open(work / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(err, 2)
                import_forever(seed, work)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(1)
        print(pid, flush=True)
    elif command[0] == "reap":  # reap PID: wait for it, answer its exit code (-9: SIGKILL)
        _, status = os.waitpid(int(command[1]), 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
"""


class Launcher:
    """A Python process that has imported Strata once and forks one importer per run.

    Starting a fresh interpreter costs ~0.5-1 s of CPU, more than the kill window, so the
    importers are forked from this pre-imported launcher instead; each one still opens its
    own Store (the launcher closes its only one before forking) and is a separate process
    that the test kills with SIGKILL.
    """

    def __init__(self, script: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**env, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            cwd=script.parent, text=True,
        )
        assert self._ask(None) == "ready", "the launcher did not start"

    def _ask(self, line: str | None) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        if line is not None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def start(self, seed: int, work: Path) -> int:
        return int(self._ask(f"start {seed} {work}"))

    def reap(self, pid: int) -> int:
        return int(self._ask(f"reap {pid}"))

    def close(self) -> None:
        self.process.kill()
        self.process.communicate()


def _dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every projection table (and the checkpoints), in a stable order."""
    models = [m for p in store.projections.projections for m in p.models]
    dumped = {}
    with store.engine.connect() as conn:
        for model in [*models, ProjectionCheckpoint]:
            rows = conn.execute(select(table(model))).all()
            dumped[table(model).name] = sorted((tuple(r) for r in rows), key=repr)
    return dumped


def test_sigkilled_importer_leaves_a_verifiable_store(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    began = time.monotonic()
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER)
    rng = random.Random(SEED)
    blobs = store.blobs

    completed_imports = 0  # add_file calls that returned before their importer was killed
    kills_leaving_temp_files = 0
    temp_files = 0
    launcher = Launcher(script, settings_env(settings))
    live: int | None = None  # the importer's pid until it has been reaped
    try:
        for run in range(KILLS):
            work = tmp_path / f"work-{run}"
            live = launcher.start(rng.randrange(2**32), work)
            time.sleep(rng.uniform(0.05, 0.6))
            os.kill(live, signal.SIGKILL)
            exit_code, live = launcher.reap(live), None
            # Killed by us, not dead of an exception of its own.
            assert exit_code == -signal.SIGKILL, (work / "stderr").read_text()
            recorded = work / "recorded"
            completed_imports += recorded.read_text().count("recorded") if recorded.exists() else 0
            now = len(blobs.stale_temporary_files())
            assert now - temp_files in (0, 1)  # one ingest in flight, one file at most
            kills_leaving_temp_files += now > temp_files
            temp_files = now
    finally:
        if live is not None:  # started, not yet reaped: still ours to end
            os.kill(live, signal.SIGKILL)
        launcher.close()
    killing = time.monotonic() - began

    # The children really worked: events were recorded, and some kills landed mid-ingest.
    head = store.ledger.head_position()
    assert head > 0 and completed_imports > 0
    assert head >= completed_imports  # killed between append and note

    # The log verifies: chain intact, every referenced blob present, every blob intact.
    report = verify(store.ledger, blobs, rehash=True)
    assert report.ok, report
    assert report.events == head

    # Independently: every digest any event names is a complete blob that hashes to it.
    stored = set(blobs.iter_digests())
    named: set[str] = set()
    for event in store.ledger.read_all():
        assert isinstance(event.payload, Payload)
        named.update(referenced_digests(event.payload))
    assert named <= stored
    assert all(blobs.verify(digest) for digest in named)

    # Temporary files of killed ingests are never blobs and never assets.
    temporary = blobs.stale_temporary_files()
    assert all(t.parent == blobs.spool and t.name.endswith(".part") for t in temporary)
    temporary_names = {t.name for t in temporary}
    for digest in stored:
        path = blobs.path_of(digest)
        assert path.parent.parent == blobs.root and path.name not in temporary_names

    strata = Strata(store)
    store.projections.catch_up()
    with store.engine.connect() as conn:
        assets = table(AssetRow)
        rows = conn.execute(select(assets.c.digest, assets.c.size)).all()
        derivations = conn.scalar(select(func.count()).select_from(table(DerivationRow)))
    # Every asset is a complete, intact blob of the recorded size, and the assets are
    # exactly what the log produced: no temp file, nothing half-ingested.
    assert {digest for digest, _ in rows} == named
    for digest, size in rows:
        assert digest in stored and blobs.verify(digest)
        assert blobs.path_of(digest).stat().st_size == size

    # Projections are disposable: rebuilding from position 0 gives the very same state.
    caught_up = _dump(store)
    assert caught_up["assets"]
    assert strata.rebuild() == head
    assert _dump(store) == caught_up

    # A kill leaves at most one thing behind, and only what a cleanup may remove: a blob
    # published before its event was appended (an orphan, never an asset) or one spooled
    # temporary file; the temporary files left are exactly those the kills left.
    orphans = len(stored) - len(rows)
    assert 0 <= orphans <= KILLS
    assert len(temporary) == kills_leaving_temp_files <= KILLS
    assert orphans + len(temporary) <= KILLS

    elapsed = time.monotonic() - began
    print(
        f"\n{store.engine.dialect.name}: {KILLS} kills in "
        f"{killing:.1f}s, {head} events, {completed_imports} completed imports, "
        f"{len(rows)} assets, {derivations} derivations, {len(stored) - len(rows)} orphan "
        f"blobs, {len(temporary)} temp files left by {kills_leaving_temp_files} kills; "
        f"{elapsed:.1f}s"
    )
