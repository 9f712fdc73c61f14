"""Commands that touch no model never import torch, diffusers or transformers, nor PyAV,
FastAPI, uvicorn or boto3 (a read command must start fast: see issue "Faster where users wait").

Run on a populated store — generations, a selection, an iteration, decisions, a branch —
so that every read command has real rows to show, and each must succeed: a command that
fails early proves nothing about what it would import when it works.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from strata.core.decisions import branches, curation
from strata.core.decisions.iteration import iterate
from strata.core.layers import build_executors, selection
from strata.core.layers.generation import build_request
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from tests.conftest import settings_env

# Every command runs in one fresh interpreter, in turn; after each, the probe notes which
# heavy modules are loaded, so a command that imports one is named.
PROBE = """
import json, sys
from strata.api.cli.main import main

report = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["strata", *args]
    try:
        main()
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    heavy = [m for m in ("torch", "diffusers", "transformers", "av", "fastapi", "uvicorn", "boto3")
             if m in sys.modules]
    report.append({"args": args, "code": code, "heavy": heavy})
print("REPORT " + json.dumps(report))
"""


@pytest.fixture
def populated(tiny: Strata) -> dict[str, str]:
    worker = Worker(tiny, build_executors())
    request = build_request(tiny, "a red fox", model="tiny", n=3, seed=1, steps=1)
    jobs.request(tiny, request)
    generated = worker.wait_for(request.job_id)
    first, second, _ = generated["outputs"]
    picking = selection.build_request(tiny, [request.job_id], top=2)
    jobs.request(tiny, picking)
    worker.wait_for(picking.job_id)
    curation.pick(tiny, first)
    curation.rate(tiny, first, 4, note="best light")
    branches.create(tiny, "look", first)
    iterated = iterate(tiny, first, ["steps=2"], branch="look")
    row = worker.wait_for(iterated.data["job_id"])
    (child,) = row["outputs"]
    curation.review(tiny, child, "approve")
    curation.mark_final(tiny, child)
    return {"first": first, "second": second, "child": child, "job": request.job_id}


def test_every_read_command_succeeds_without_a_model_library(
    tiny: Strata, populated: dict[str, str], tmp_path: Path
) -> None:
    first, child = populated["first"][7:19], populated["child"][7:19]
    event = tiny.store.ledger.read_all().__next__().event_id
    before_final = str(tiny.store.ledger.head_position() - 1)  # the child exists, not final
    signed = tmp_path / "head.checkpoint"
    commands = [
        ["--version"], ["log"], ["log", "--json"], ["log", "--type", "generation.completed"],
        ["show", child], ["show", child, "--json"], ["show", event[:8]],
        ["show", child, "--as-of", before_final], ["lineage", child], ["lineage", child, "--json"],
        ["lineage", first, "--down"], ["jobs"], ["jobs", "--json"], ["status"],
        ["status", "--json"], ["branch"], ["branch", "log", "look"],
        ["branch", "log", "look", "--json"], ["diff", first, child],
        ["diff", first, child, "--json"], ["model", "list"], ["model", "list", "--json"],
        ["provenance", child], ["provenance", child, "--format", "json"],
        ["provenance", child, "--format", "prov-json"], ["audit", child],
        ["keys", "init"], ["keys", "show"], ["checkpoint", "--out", str(signed)],
        ["verify"], ["verify", "--quick"], ["verify", "--checkpoint", str(signed)], ["rebuild"],
        ["find", "fox"], ["find", "layer:generation", "--json"], ["token", "list"],
    ]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)],
        env=settings_env(tiny.store.settings), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("REPORT ")]
    report = json.loads(line.removeprefix("REPORT "))
    assert [r["args"] for r in report] == commands
    failed = [(r["args"], r["code"]) for r in report if r["code"] != 0]
    assert failed == [], result.stderr
    heavy = [(r["args"], r["heavy"]) for r in report if r["heavy"]]
    assert heavy == []
