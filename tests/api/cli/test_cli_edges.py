"""The command line's edges (issue 14.5): abandoned jobs, Ctrl-C on `--wait`, all-or-nothing
imports and derivation cycles, the decompression-bomb limit, positions and limits out of
range, and plain lines instead of a table when standard output is not a terminal.

What core decides is tested on core directly; the command line once per behaviour, in a
child process against the same store.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import text

from strata.api.cli import app as cli_app
from strata.core.errors import InvalidInput
from strata.core.layers.generation import build_request
from strata.core.projections import views
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from strata.core.status import store_status
from tests.api.cli.test_cli import Cli, write_png
from tests.helpers import png_bytes

START_TIMEOUT = 120.0  # the child imports torch and loads the model: slow on a busy machine


def plain_cli(strata: Strata, tmp_path: Path) -> Cli:
    """The command line on the fixture's store, with standard output a pipe whatever the
    environment says (FORCE_COLOR or TTY_COMPATIBLE would make Rich draw a table)."""
    cli = Cli(strata.store.settings, tmp_path)
    cli.env = {k: v for k, v in cli.env.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    return cli


def request_job(strata: Strata, steps: int = 2) -> str:
    payload = build_request(strata, "a lighthouse", model="tiny", n=1, seed=7, steps=steps)
    jobs.request(strata, payload)
    return payload.job_id


def lease_of(strata: Strata, job_id: str) -> list[tuple]:
    with strata.store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            text("SELECT worker, expires_at FROM job_leases WHERE job_id = :job"),
            {"job": job_id})]


# --- abandoned jobs ---------------------------------------------------------------------


def test_a_job_whose_worker_died_shows_as_abandoned_with_what_to_do(
    tiny: Strata, tmp_path: Path
) -> None:
    strata = tiny
    job_id = request_job(strata)
    # A worker claims the job (job.started and a lease) and dies without a word.
    claimed = Worker(strata, {}, name="gone-worker", lease_seconds=30).claim(
        jobs.get(strata, job_id))
    assert claimed is not None
    with strata.view() as conn:
        assert views.job(conn, job_id)["abandoned_since"] is None  # its lease still runs
    assert store_status(strata).abandoned_jobs == []
    # Its lease runs out (on the database's clock, as leases do).
    with strata.store.engine.begin() as conn:
        conn.execute(text("UPDATE job_leases SET expires_at = expires_at - 3600"))

    with strata.view() as conn:
        row = views.job(conn, job_id)
    assert row["status"] == "running" and row["worker"] == "gone-worker"
    assert row["abandoned_since"] is not None and row["abandoned_since"].endswith("Z")
    report = store_status(strata)
    assert [job["job_id"] for job in report.abandoned_jobs] == [job_id]
    assert report.as_json()["abandoned_jobs"] == [job_id]

    cli = plain_cli(strata, tmp_path)
    (line,) = cli("jobs").stdout.splitlines()
    job, layer, status, attempts, outputs, note = line.split("\t")
    assert (job, layer, status, attempts, outputs) == (job_id[:12], "generation", "abandoned",
                                                       "1", "0")
    assert "worker gone-worker stopped heartbeating" in note
    assert row["abandoned_since"] in note
    assert "`strata worker` takes it over" in note and f"`strata cancel {job_id[:12]}`" in note

    status = cli("status").stdout
    assert "open jobs: 1 (1 abandoned by their worker)" in status
    assert (f"abandoned: generation job {job_id} (attempt 1, since {row['abandoned_since']}): "
            f"run `strata worker` to take it over, or `strata cancel {job_id[:12]}`") in status


def test_ctrl_c_on_wait_says_what_became_of_the_job_and_hands_it_back(
    tiny: Strata, tmp_path: Path
) -> None:
    strata = tiny
    cli = Cli(strata.store.settings, tmp_path)
    # 1,000 steps: minutes of work, so the interrupt lands while the model runs.
    child = subprocess.Popen(
        [sys.executable, "-c", "from strata.api.cli.main import main; main()",
         "generate", "a lighthouse", "--n", "16", "--seed", "3", "--steps", "500", "--wait"],
        env={**cli.env, "OMP_NUM_THREADS": "1"}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        job_id = None
        deadline = time.monotonic() + START_TIMEOUT
        while job_id is None and child.poll() is None and time.monotonic() < deadline:
            with strata.view() as conn:
                running = views.jobs(conn, ("running",))
            job_id = running[0]["job_id"] if running else None
            time.sleep(0.1)
        if job_id is None:
            child.kill()
            pytest.fail("the job never started: " + "".join(child.communicate()))
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=START_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, stderr
    assert f"requested generation job {job_id}" in stdout
    assert stderr.strip() == (
        f"error: interrupted; job {job_id} is left unfinished and free to take: a `strata "
        f"worker` runs it, `strata cancel {job_id}` drops it")
    # The lease was dropped at once: another worker may take the job now, not in 30 s.
    assert lease_of(strata, job_id) == []
    with strata.view() as conn:
        row = views.job(conn, job_id)
    assert row["status"] == "running" and row["abandoned_since"] == "lease released"
    assert [r["job_id"] for r in Worker(strata, {"generation": None}).claimable(  # type: ignore[dict-item]
        job_id)] == [job_id]


# --- imports: all or nothing, no cycles -------------------------------------------------


def test_a_refused_file_imports_none_of_the_others(strata: Strata, tmp_path: Path) -> None:
    good = write_png(tmp_path, "a.png", 1)
    cut = tmp_path / "trunc.png"
    cut.write_bytes(png_bytes(2)[:100])
    with pytest.raises(InvalidInput, match=r"trunc\.png"):
        strata.add_files([good, cut])
    assert strata.ledger.head_position() == 0
    result = plain_cli(strata, tmp_path)("add", str(good), str(cut), ok=False)
    assert result.returncode == 2 and "trunc.png" in result.stderr
    assert result.stdout == "" and strata.ledger.head_position() == 0


def test_a_refused_file_leaves_no_blob_of_the_others(strata: Strata, tmp_path: Path) -> None:
    good = write_png(tmp_path, "a.png", 1)
    cut = tmp_path / "trunc.png"
    cut.write_bytes(png_bytes(2)[:100])
    with pytest.raises(InvalidInput):
        strata.add_files([good, cut])
    assert list(strata.blobs.iter_digests()) == []
    assert strata.blobs.stale_temporary_files() == []  # nor a temporary file


def test_an_asset_cannot_be_its_own_ancestor(strata: Strata, tmp_path: Path) -> None:
    a = write_png(tmp_path, "a.png", 1)
    b = write_png(tmp_path, "b.png", 2)
    c = write_png(tmp_path, "c.png", 3)
    digest_a = strata.add_file(a).data["asset"]["digest"]
    digest_b = strata.add_file(b, [(digest_a, "source")]).data["output"]["asset"]["digest"]
    strata.add_file(c, [(digest_b, "source")])  # A → B → C
    head = strata.ledger.head_position()
    for path, parent, relation in ((a, digest_a, "itself"), (b, digest_b, "itself"),
                                   (a, digest_b, "which was made from it"),
                                   (a, digest_b[:12], "which was made from it")):
        with pytest.raises(InvalidInput, match=f"{relation}.*own ancestor"):
            strata.add_file(path, [(parent, "source")])
    # Several files: the one that would close a cycle refuses them all.
    d = write_png(tmp_path, "d.png", 4)
    blobs_before = set(strata.blobs.iter_digests())
    with pytest.raises(InvalidInput, match="own ancestor"):
        strata.add_files([d, b], [(digest_b, "mask")])
    assert strata.ledger.head_position() == head
    assert set(strata.blobs.iter_digests()) == blobs_before  # not even d.png's bytes

    result = plain_cli(strata, tmp_path)("add", str(a), "--from", digest_b[7:19], ok=False)
    assert result.returncode == 2
    assert f"{digest_a[:19]}… cannot be derived from {digest_b[:19]}…" in result.stderr
    assert strata.ledger.head_position() == head


# --- the decompression-bomb limit ---------------------------------------------------------


def test_a_bomb_is_refused_naming_the_configured_limit(
    strata: Strata, tmp_path: Path
) -> None:
    from PIL import Image

    pillow_default = Image.MAX_IMAGE_PIXELS
    limit = 1234  # Pillow's own check fires above twice this: 2,468 pixels
    between = tmp_path / "between.png"
    between.write_bytes(png_bytes(1, (40, 40)))  # 1,600 pixels: over the limit, under twice it
    beyond = tmp_path / "beyond.png"
    beyond.write_bytes(png_bytes(2, (64, 64)))  # 4,096 pixels: over twice the limit
    strata.blobs.max_image_pixels = limit
    for path in (between, beyond):
        with pytest.raises(InvalidInput) as refused:
            strata.blobs.ingest_path(path)
        message = str(refused.value)
        assert path.name in message and "decompression bomb" in message
        assert "limit of 1,234 pixels (STRATA_MAX_IMAGE_PIXELS)" in message
        assert "2,468" not in message and "2468" not in message
    assert list(strata.blobs.iter_digests()) == []
    # Our limit held only while Strata opened the files: the rest of the process (an
    # executor decoding its inputs) keeps Pillow's own.
    assert pillow_default == Image.MAX_IMAGE_PIXELS

    # Through the configuration: the variable is what the message names.
    cli = plain_cli(strata, tmp_path)
    cli.env["STRATA_MAX_IMAGE_PIXELS"] = str(limit)
    result = cli("add", str(beyond), ok=False)
    assert result.returncode == 2 and "the limit of 1,234 pixels" in result.stderr
    assert strata.ledger.head_position() == 0


# --- positions, limits and types out of range ---------------------------------------------


def test_out_of_range_positions_limits_and_types_are_refused(
    strata: Strata, tmp_path: Path
) -> None:
    digest = strata.add_file(write_png(tmp_path, "a.png", 1)).data["asset"]["digest"]
    for position in (2, 99, -1):
        with pytest.raises(InvalidInput, match="--as-of"), strata.view(position):
            pass
    with strata.view(1) as conn:  # the last position is fine
        assert views.asset_row(conn, digest) is not None

    cli = plain_cli(strata, tmp_path)
    for args, message in (
        (["log", "--as-of", "99"], "--as-of 99 is past the end of the log (its last position "
                                   "is 1); leave --as-of out for the current state"),
        (["show", digest[7:19], "--as-of", "5"], "--as-of 5 is past the end of the log"),
        (["log", "--limit", "-5"], "--limit must be 1 or more, not -5"),
        (["jobs", "--limit", "0"], "--limit must be 1 or more, not 0"),
        (["log", "--type", "nosuch.type"], "no event type 'nosuch.type' is known to this "
                                           "version or found in the log"),
    ):
        result = cli(*args, ok=False)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == "" and message in result.stderr, (args, result.stderr)


# --- plain lines for pipes, a table for people --------------------------------------------


def test_piped_output_is_complete_tab_separated_lines(strata: Strata, tmp_path: Path) -> None:
    names = [f"{'a-very-long-name-that-no-table-column-could-hold-' * 3}{n}.png" for n in (1, 2)]
    paths = [write_png(tmp_path, name, n) for n, name in enumerate(names)]
    events = strata.add_files(paths)
    cli = plain_cli(strata, tmp_path)

    lines = cli("log").stdout.splitlines()
    assert len(lines) == 2  # no header, no rule
    for line, event, name in zip(lines, events, names, strict=True):
        position, type_, stream, version, event_id, when, summary = line.split("\t")
        assert (int(position), type_, stream, int(version)) == (
            event.position, "asset.imported", event.stream, 1)
        assert len(stream) == len("asset:") + 64  # the whole stream name
        assert event.event_id.startswith(event_id) and when == event.recorded_at[:19]
        assert summary.endswith(name)  # the whole file name, nothing folded or cut

    added = cli("add", str(paths[0])).stdout.splitlines()  # the same bytes: the same event
    assert [line.split("\t") for line in added] == [
        [events[0].data["asset"]["digest"][7:19], "image/png", str(paths[0])]]


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The commands' console, as if standard output were an 80-column terminal."""
    screen = io.StringIO()
    monkeypatch.setattr(cli_app, "console", Console(file=screen, force_terminal=True, width=80,
                                                    color_system=None, highlight=False))
    return screen


def test_a_terminal_gets_a_table_with_a_header(terminal: io.StringIO) -> None:
    long = "x" * 150
    cli_app.print_rows(("pos", "summary"), [(1, long), (2, "short\tcell")])
    lines = terminal.getvalue().splitlines()
    assert lines[0].split() == ["pos", "summary"]
    assert all(len(line) <= 80 for line in lines)  # fitted to the terminal…
    assert "".join(line.strip().removeprefix("1").strip() for line in lines[1:-1]) == long
    assert "\t" not in terminal.getvalue() and "short cell" in lines[-1]  # …folded, not cut
