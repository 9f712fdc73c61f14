"""`strata composite` and `strata enhance` from the command line: options and a spec file
make the same composite, enhancement operations are recorded in the order they were
typed, and refusals exit with their family's code having appended nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.core.config import Settings
from tests.api.cli.test_cli import Cli, write_png


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Cli:
    runner = Cli(settings, tmp_path)
    runner("init", "--no-tiny")
    return runner


def events_of(cli: Cli, event_type: str) -> list[dict]:
    """The data of every event of one type, in log order."""
    lines = cli("log", "--json", "--limit", "1000").stdout.splitlines()
    return [event["data"] for event in map(json.loads, lines) if event["type"] == event_type]


def test_composite_from_options_and_from_a_spec(cli: Cli, tmp_path: Path) -> None:
    cli("add", str(write_png(tmp_path, "a.png", 1)), str(write_png(tmp_path, "b.png", 2)))
    a, b = cli.digests()
    made = cli("composite", "--layer", a[7:19], "--layer", f"{b[7:19]}:4,-2,0.5,0.6,screen",
               "--background", "white", "--wait")
    assert "requested compositing job" in made.stdout
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"background": "white", "layers": [
        {"asset": a[7:19]}, {"asset": b[7:19], "x": 4, "y": -2, "scale": 0.5, "opacity": 0.6,
                             "blend": "screen"}]}))
    cli("composite", "--spec", str(spec), "--wait")
    first, second = [d for d in cli.digests() if d not in (a, b)]
    assert first == second  # the same request: the same bytes
    (completed, _again) = events_of(cli, "compositing.completed")
    assert [(i["digest"], i["role"]) for i in completed["outputs"][0]["inputs"]] == [
        (a, "layer"), (b, "layer")]
    before = len(cli("log", "--limit", "1000").stdout.splitlines())
    refused = cli("composite", "--layer", f"{a[7:19]}:blend=dodge", ok=False)
    assert refused.returncode == 2 and "blend: Input should be 'normal'" in refused.stderr
    mixed = cli("composite", "--spec", str(spec), "--layer", a[7:19], ok=False)
    assert mixed.returncode == 2 and "either --spec or --layer" in mixed.stderr
    assert len(cli("log", "--limit", "1000").stdout.splitlines()) == before


def test_enhance_keeps_the_order_typed(cli: Cli, tmp_path: Path) -> None:
    cli("add", str(write_png(tmp_path, "a.png", 1)))
    (source,) = cli.digests()
    cli("enhance", source[7:19], "--gamma", "2", "--sharpen", "1.5,120", "--auto-contrast",
        "--upscale", "2", "--wait")
    cli("enhance", source[7:19], "--upscale", "2", "--auto-contrast", "--sharpen", "1.5,120",
        "--gamma", "2")
    first, second = events_of(cli, "enhancement.requested")
    assert [op["op"] for op in first["operations"]] == [
        "gamma", "sharpen", "auto-contrast", "upscale"]
    assert [op["op"] for op in second["operations"]] == [
        "upscale", "auto-contrast", "sharpen", "gamma"]
    assert first["operations"][1] == {"op": "sharpen", "radius": 1.5, "amount": 120,
                                      "threshold": 0}
    (completed,) = events_of(cli, "enhancement.completed")
    assert completed["outputs"][0]["asset"]["width"] == 64  # 32 px, upscaled by 2

    before = len(cli("log", "--limit", "1000").stdout.splitlines())
    twice = cli("enhance", source[7:19], "--gamma", "2", "--gamma", "3", ok=False)
    assert twice.returncode == 2 and "--gamma is given 2 times" in twice.stderr
    no_model = cli("enhance", source[7:19], "--upscale", "4", "--method", "model", ok=False)
    assert no_model.returncode == 7
    assert "none is registered" in no_model.stderr and "strata model add" in no_model.stderr
    nothing = cli("enhance", source[7:19], ok=False)
    assert nothing.returncode == 2 and "nothing to do" in nothing.stderr
    assert len(cli("log", "--limit", "1000").stdout.splitlines()) == before
