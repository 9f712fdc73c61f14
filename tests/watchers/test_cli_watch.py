"""`strata inbox watch` and `strata workspace checkout|watch` as child processes, stopped
by SIGTERM and Ctrl-C (SIGINT): they exit cleanly and leave nothing half-recorded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from strata.core.config import Settings
from tests.conftest import settings_env
from tests.helpers import png_bytes
from tests.watchers.helpers import PATIENCE_S

STRATA = [sys.executable, "-c", "from strata.api.cli.main import main; main()"]


def _strata(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*STRATA, *args], env=settings_env(settings), capture_output=True,
                            text=True, timeout=PATIENCE_S)
    assert result.returncode == 0, result.stderr
    return result


def _events(settings: Settings, type_: str) -> list[dict]:
    lines = _strata(settings, "log", "--json", "--type", type_, "--limit", "1000").stdout
    return [json.loads(line) for line in lines.splitlines()]


def _watch(settings: Settings, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([*STRATA, *args], env=settings_env(settings), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stderr is not None
    assert process.stderr.readline().startswith("watching")  # reconciled: it is watching
    return process


def _stop(process: subprocess.Popen[str], how: signal.Signals) -> tuple[str, str]:
    process.send_signal(how)
    out, err = process.communicate(timeout=PATIENCE_S)
    assert process.returncode == 0, err
    assert "stopped" in err
    return out, err


def test_inbox_watch_imports_and_stops_on_sigterm(settings: Settings, tmp_path: Path) -> None:
    _strata(settings, "init", "--no-tiny")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "already.png").write_bytes(png_bytes(1))
    process = _watch(settings, "inbox", "watch", str(inbox), "--settle", "0.1")
    (inbox / "new.png").write_bytes(png_bytes(2))
    (inbox / "broken.png").write_bytes(b"broken")
    assert process.stdout is not None
    printed = [process.stdout.readline(), process.stdout.readline()]  # waits for both
    out, err = _stop(process, signal.SIGTERM)
    assert len(_events(settings, "asset.imported")) == 2
    assert sorted(line.split("\t")[2].strip() for line in printed + out.splitlines()) == [
        str((inbox / "already.png").resolve()), str((inbox / "new.png").resolve())]
    assert "refused" in err and "broken.png" in err
    assert (inbox / "broken.png").exists()
    _strata(settings, "verify")


def test_workspace_checkout_and_watch_stop_on_ctrl_c(settings: Settings,
                                                     tmp_path: Path) -> None:
    _strata(settings, "init", "--no-tiny")
    (tmp_path / "a.png").write_bytes(png_bytes(3))
    _strata(settings, "add", str(tmp_path / "a.png"))
    digest = _events(settings, "asset.imported")[0]["data"]["asset"]["digest"]
    folder = tmp_path / "ws"
    listed = _strata(settings, "workspace", "checkout", digest[7:19], str(folder)).stdout
    assert listed.split("\t")[:2] == ["a.png", digest[7:19]]
    process = _watch(settings, "workspace", "watch", str(folder))
    (folder / "a.png").write_bytes(png_bytes(4))
    assert process.stdout is not None
    assert process.stdout.readline().startswith("edited\t")  # waits for the edit
    _stop(process, signal.SIGINT)
    (edit,) = _events(settings, "editing.external")
    assert edit["data"]["output"]["inputs"] == [{"digest": digest, "role": "source"}]
    shown = _strata(settings, "show", edit["data"]["output"]["asset"]["digest"][7:19]).stdout
    assert "external" in shown
    refused = subprocess.run([*STRATA, "iterate", edit["data"]["output"]["asset"]["digest"]],
                             env=settings_env(settings), capture_output=True, text=True,
                             timeout=PATIENCE_S)
    assert refused.returncode != 0 and "not produced by a Strata job" in refused.stderr
