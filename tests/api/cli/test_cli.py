"""The real command line, run as a child process against a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strata.core.config import Settings
from tests.conftest import settings_env
from tests.helpers import png_bytes


class Cli:
    def __init__(self, settings: Settings, cwd: Path) -> None:
        self.env = settings_env(settings)
        self.cwd = cwd

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-c", "from strata.api.cli.main import main; main()", *args],
            env={**self.env, "COLUMNS": "200"}, cwd=self.cwd, capture_output=True, text=True,
            timeout=120,
        )
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    def digests(self) -> list[str]:
        """Every asset the log made, in log order: imports, derivations, job outputs."""
        lines = self("log", "--json", "--limit", "1000").stdout.splitlines()
        found: list[str] = []
        for event in map(json.loads, lines):
            data = event["data"]
            made = [data.get("asset"), data.get("output", {}).get("asset"),
                    *(output["asset"] for output in data.get("outputs", []))]
            found += [asset["digest"] for asset in made if asset]
        return found


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Cli:
    runner = Cli(settings, tmp_path)
    runner("init", "--no-tiny")
    return runner


def write_png(folder: Path, name: str, seed: int) -> Path:
    path = folder / name
    path.write_bytes(png_bytes(seed))
    return path


def test_add_log_show_lineage_verify(cli: Cli, tmp_path: Path) -> None:
    a = write_png(tmp_path, "a.png", 1)
    b = write_png(tmp_path, "b.png", 2)
    assert "image/png" in cli("add", str(a)).stdout
    (parent,) = cli.digests()
    cli("add", str(b), "--from", parent[7:15], "--operation", "photoshop-retouch")
    child = cli.digests()[-1]

    log = cli("log").stdout
    assert "asset.imported" in log and "asset.derived" in log

    shown = cli("show", child[7:19]).stdout
    assert child in shown and "32x32" in shown and "photoshop-retouch" in shown
    assert parent[7:19] in shown

    tree = cli("lineage", child[7:19]).stdout
    assert child[7:19] in tree and parent[7:19] in tree
    down = cli("lineage", parent[7:19], "--down").stdout
    assert child[7:19] in down
    assert cli("lineage", child[7:19], "--roots").stdout.split() == [parent]
    assert cli("lineage", child[7:19], "--from", parent[7:19]).stdout.split() == [
        parent[7:19], "→", child[7:19]]
    unrelated = cli("lineage", parent[7:19], "--from", child[7:19], ok=False)
    assert unrelated.returncode == 4 and "does not descend from" in unrelated.stderr

    # Time travel: at position 1 the child did not exist yet.
    assert child[7:19] not in cli("lineage", parent[7:19], "--down", "--as-of", "1").stdout
    missing = cli("show", child[7:19], "--as-of", "1", ok=False)
    assert missing.returncode == 4 and "at position 1" in missing.stderr
    assert "asset.derived" not in cli("log", "--as-of", "1").stdout

    event_id = json.loads(cli("log", "--json").stdout.splitlines()[0])["event_id"]
    assert "asset.imported" in cli("show", event_id[:10]).stdout

    assert "verify OK: 2 events" in cli("verify").stdout
    assert "rebuilt the projections from 2 events" in cli("rebuild").stdout
    status = cli("status").stdout
    assert "events: 2" in status and "assets: 2" in status and "up to date" in status


def test_bad_input_is_refused_clearly_and_records_nothing(cli: Cli, tmp_path: Path) -> None:
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png_bytes(3)[:100])
    result = cli("add", str(truncated), ok=False)
    assert result.returncode == 2
    assert "cut.png" in result.stderr and "truncated" in result.stderr
    result = cli("add", str(tmp_path / "nope.png"), ok=False)
    assert result.returncode == 2 and "not a file" in result.stderr
    assert cli("log", "--json").stdout == ""


def test_hash_prefixes_short_unknown_and_malformed(cli: Cli, tmp_path: Path) -> None:
    # Ambiguous prefixes need thousands of assets to occur; tests/core/test_naming.py
    # plants them directly. Here: the command line's side of the same resolver.
    paths = [write_png(tmp_path, f"{n}.png", n) for n in range(3)]
    cli("add", *map(str, paths))
    digests = cli.digests()
    too_short = cli("show", digests[0][7:9], ok=False)
    assert too_short.returncode == 2 and "at least 4 hex digits" in too_short.stderr
    prefix = digests[0][7:13]
    assert digests[0] in cli("show", prefix).stdout
    unknown = cli("show", "ffff0000ffff", ok=False)
    assert unknown.returncode == 4 and "no asset or event matches" in unknown.stderr
    bad = cli("lineage", "../../etc/passwd", ok=False)
    assert bad.returncode == 2 and "does not name an asset" in bad.stderr


def test_verify_names_the_first_bad_position_and_corrupt_blobs(
    cli: Cli, tmp_path: Path, settings: Settings
) -> None:
    paths = [write_png(tmp_path, f"{n}.png", n) for n in range(3)]
    cli("add", *map(str, paths))
    digest = cli.digests()[1]
    blob = settings.objects_dir / digest[7:9] / digest[9:]
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    result = cli("verify", ok=False)
    assert result.returncode == 5 and f"corrupt blob {digest}" in result.stderr
    assert cli("verify", "--quick").returncode == 0  # --quick does not re-hash blobs
    blob.unlink()
    result = cli("verify", "--quick", ok=False)
    assert f"missing blob {digest} (referenced at position 2)" in result.stderr


def test_verify_detects_a_rewritten_event(cli: Cli, tmp_path: Path, settings: Settings) -> None:
    cli("add", *(str(write_png(tmp_path, f"{n}.png", n)) for n in range(3)))
    # Someone with raw database access drops the trigger and rewrites history.
    from sqlalchemy import text

    from strata.core.storage.db import make_engine

    engine = make_engine(settings.effective_database_url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER events_refuse_update"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_refuse_change"))
        changed = conn.execute(text(
            "UPDATE events SET data = replace(data, '\"1.png\"', '\"evil.png\"') "
            "WHERE position = 2"
        ))
        assert changed.rowcount == 1
    engine.dispose()
    result = cli("verify", "--quick", ok=False)
    assert result.returncode == 5
    assert "first bad position 2" in result.stderr


def test_commands_on_an_uninitialised_store_say_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["STRATA_HOME"] = str(tmp_path / "nowhere")
    result = subprocess.run(
        [sys.executable, "-c", "from strata.api.cli.main import main; main()", "log"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 6 and "run `strata init` first" in result.stderr
