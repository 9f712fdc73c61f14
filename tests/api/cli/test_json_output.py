"""`--json` on every read command: the shapes documented in docs/cli-json.md, key for key
and type for type, so that scripts can rely on them. One store per backend holds a bit of
everything (an import, a derivation, a branch with moves, a model, a waiting job); each
command is run once through the real command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from strata.core.decisions import branches
from strata.core.layers.generation import build_request
from strata.core.runtime import jobs
from strata.core.service import Strata
from tests.api.cli.test_cli import Cli, write_png

NullableStr = (str, type(None))
NullableInt = (int, type(None))
NullableDict = (dict, type(None))

EVENT = {"position": int, "event_id": str, "stream": str, "version": int, "type": str,
         "schema": int, "data": dict, "meta": dict, "recorded_at": str, "prev_hash": str,
         "hash": str}
ASSET = {"digest": str, "media_type": str, "size": int, "width": NullableInt,
         "height": NullableInt, "duration": (float, int, type(None)), "phash": NullableStr,
         "dhash": NullableStr, "fps": (float, int, type(None)), "frames": NullableInt,
         "sample_rate": NullableInt, "channels": NullableInt, "video_codec": NullableStr,
         "audio_codec": NullableStr, "label": NullableStr, "layer": str,
         "job_id": NullableStr, "created_position": int, "created_event_id": str}
EDGE = {"input_digest": str, "output_digest": str, "role": str, "layer": str,
        "operation": str, "event_id": str, "depth": int}
JOB = {"job_id": str, "layer": str, "status": str, "stream_version": int, "request": dict,
       "branch": NullableStr, "iterates_job": NullableStr, "attempts": int,
       "worker": NullableStr, "retry_at": NullableStr, "error_class": NullableStr,
       "error_message": NullableStr, "outputs": list, "requested_position": int,
       "updated_position": int, "abandoned_since": NullableStr}
STATUS = {"location": str, "events": int, "rows": dict, "projections": dict,
          "open_jobs": int, "abandoned_jobs": list, "current_branch": NullableStr}
BRANCH = {"name": str, "head": NullableStr, "version": int, "created_position": int,
          "updated_position": int, "current": bool}
MOVE = {"branch": str, "position": int, "action": str, "head": NullableStr,
        "previous_head": NullableStr, "reason": NullableStr, "recorded_at": str}
MODEL = {"name": str, "path": str, "digest": str, "format": str, "position": int}


def shaped(value: Any, shape: dict[str, Any]) -> dict[str, Any]:
    """`value` as a dict with exactly the documented keys, each of its documented type."""
    assert isinstance(value, dict), value
    assert set(value) == set(shape), sorted(set(value) ^ set(shape))
    for key, kind in shape.items():
        assert isinstance(value[key], kind), (key, value[key])
    return value


def test_every_read_command_prints_its_documented_json(tiny: Strata, tmp_path: Path) -> None:
    strata = tiny
    parent = strata.add_file(write_png(tmp_path, "a.png", 1)).data["asset"]["digest"]
    child = strata.add_file(write_png(tmp_path, "b.png", 2), [(parent, "source")],
                            "retouch").data["output"]["asset"]["digest"]
    branches.create(strata, "look", parent)
    branches.checkout(strata, "look")
    branches.advance(strata, "look", child)
    request = build_request(strata, "a fox", model="tiny", n=1, seed=1, steps=2, branch="look")
    jobs.request(strata, request)
    cli = Cli(strata.store.settings, tmp_path)

    def read(*args: str) -> Any:
        return json.loads(cli(*args, "--json").stdout)

    asset = read("show", child[7:19])
    shaped(asset, {"asset": dict, "parents": list, "children": list, "selection": NullableDict,
                   "review": NullableDict, "final": NullableDict, "branches": list,
                   "recipe": dict, "recorded_by": NullableDict})
    assert shaped(asset["asset"], ASSET)["digest"] == child
    (edge,) = asset["parents"]
    assert shaped(edge, EDGE)["input_digest"] == parent and edge["operation"] == "retouch"
    assert asset["children"] == [] and asset["branches"] == ["look"]
    assert asset["recipe"]["layer"] == "external" and "actor" in asset["recorded_by"]

    first = json.loads(cli("log", "--json", "--limit", "1000").stdout.splitlines()[0])
    event = read("show", first["event_id"][:12])
    assert shaped(event, EVENT) == shaped(first, EVENT)  # show and log: the same envelope

    walked = read("lineage", child[7:19])
    assert shaped(walked, {"asset": str, "direction": str, "edges": list})["direction"] == "up"
    assert [shaped(e, EDGE)["input_digest"] for e in walked["edges"]] == [parent]
    assert read("lineage", child[7:19], "--roots") == {"asset": child, "roots": [parent]}
    assert read("lineage", child[7:19], "--from", parent[7:19]) == {
        "from": parent, "to": child, "path": [parent, child]}

    (job,) = read("jobs")
    assert shaped(job, JOB)["job_id"] == request.job_id and job["status"] == "requested"
    assert job["request"]["prompt"] == "a fox" and job["branch"] == "look"

    status = shaped(read("status"), STATUS)
    assert status["events"] == strata.ledger.head_position() and status["open_jobs"] == 1
    assert status["rows"]["assets"] == 2 and status["current_branch"] == "look"
    assert set(status["projections"]) == {"checkpoints", "lagging", "problem"}

    (branch,) = read("branch")
    assert shaped(branch, BRANCH)["head"] == child and branch["current"] is True
    moves = read("branch", "log", "look")
    assert [shaped(m, MOVE)["action"] for m in moves] == ["created", "advanced"]
    assert moves[1]["previous_head"] == parent and moves[1]["head"] == child

    differences = read("diff", parent[7:19], child[7:19])
    assert differences and all(set(d) == {"parameter", "a", "b"} for d in differences)
    assert {"parameter": "operation", "a": None, "b": "retouch"} in differences

    (model,) = read("model", "list")
    assert shaped(model, MODEL)["name"] == "tiny" and model["digest"].startswith("sha256:")

