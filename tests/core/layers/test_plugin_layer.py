"""The plug-in contract: a layer defined in the test suite (tests/plugins/invert_layer.py)
goes request → worker → completed → `strata log` → `strata show` recipe → lineage →
`iterate` → `strata diff` with no edit to core/ or api/, loaded through STRATA_PLUGINS as a
third-party layer would be. Without the plug-in, its events read back raw and the store
refuses to record past them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageOps

from strata.core.config import Settings
from tests.api.cli.test_cli import Cli, write_png

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = "tests.plugins.invert_layer"


@pytest.fixture
def plugin_cli(settings: Settings, tmp_path: Path) -> Cli:
    runner = Cli(settings, tmp_path)
    runner.env = {**runner.env, "STRATA_PLUGINS": PLUGIN, "PYTHONPATH": str(ROOT)}
    runner("init", "--no-tiny")
    return runner


def request_invert(cli: Cli, source: str, strength: float) -> str:
    """A new layer has no command of its own: request it through core, in a process of
    its own, the way any other face would."""
    script = ("from strata.core.service import Strata\nfrom strata.core.store import Store\n"
              f"from {PLUGIN} import request\n"
              f"print(request(Strata(Store.open()), {source!r}, {strength!r}))\n")
    result = subprocess.run([sys.executable, "-c", script], env=cli.env, cwd=cli.cwd,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def image_of(cli: Cli, digest: str) -> Image.Image:
    home = Path(cli.env["STRATA_HOME"]) / "objects"
    hex_digest = digest.removeprefix("sha256:")
    return Image.open(io.BytesIO((home / hex_digest[:2] / hex_digest[2:]).read_bytes()))


def test_a_layer_from_outside_runs_through_every_face(plugin_cli: Cli, tmp_path: Path) -> None:
    cli = plugin_cli
    cli("add", str(write_png(tmp_path, "src.png", 1)))
    (source,) = cli.digests()

    assert "invert" in cli("worker", "--help").stdout  # the default serves every layer
    job = request_invert(cli, source, 1.0)
    served = cli("worker", "--until-idle", "--poll", "0.1")
    assert "stopped after 1 job(s)" in served.stderr

    log = cli("log").stdout.splitlines()  # not a terminal: one tab-separated line each
    summaries = {line.split("\t")[1]: line.split("\t")[6] for line in log}
    assert summaries["invert.requested"] == f"invert {source[7:19]} at strength 1.0"
    (output,) = [d for d in cli.digests() if d != source]
    assert summaries["invert.completed"] == f"invert: 1 output(s) {output[7:19]}"

    expected = ImageOps.invert(image_of(cli, source).convert("RGB"))
    assert ImageChops.difference(image_of(cli, output).convert("RGB"), expected).getbbox() is None

    shown = json.loads(cli("show", output, "--json").stdout)
    recipe = shown["recipe"]
    assert (recipe["layer"], recipe["operation"], recipe["strength"]) == ("invert", "invert", 1.0)
    assert recipe["source"] == source and recipe["job_id"] == job
    assert recipe["inputs"] == [{"digest": source, "role": "source"}]
    assert recipe["pillow"]  # what the completion recorded is part of the recipe

    lineage = json.loads(cli("lineage", output, "--json").stdout)
    assert [(e["input_digest"], e["role"], e["layer"], e["operation"])
            for e in lineage["edges"]] == [(source, "source", "invert", "invert")]

    cli("iterate", output[7:19], "--set", "strength=0.5", "--wait")
    (again,) = [d for d in cli.digests() if d not in (source, output)]
    half = Image.blend(image_of(cli, source).convert("RGB"), expected, 0.5)
    assert ImageChops.difference(image_of(cli, again).convert("RGB"), half).getbbox() is None
    edges = json.loads(cli("lineage", again, "--json", "--depth", "1").stdout)["edges"]
    assert {(e["input_digest"], e["role"]) for e in edges} == {(source, "source"),
                                                             (output, "parent")}
    changed = {row["parameter"]: (row["a"], row["b"])
               for row in json.loads(cli("diff", output, again, "--json").stdout)}
    assert changed["strength"] == (1.0, 0.5)
    assert "timings" not in changed and "made_at" not in changed

    # Without the plug-in its events are unknown here: they read back raw, and this
    # process refuses to rebuild past them (the projections stay as they were).
    bare = Cli(Settings(home=Path(cli.env["STRATA_HOME"]),
                        database_url=cli.env.get("STRATA_DATABASE_URL")), cli.cwd)
    assert "(unknown to this version)" in bare("log").stdout
    refused = bare("rebuild", ok=False)
    assert refused.returncode == 6, refused.stderr
    assert "'invert.requested'" in refused.stderr and "upgrade Strata" in refused.stderr
    assert json.loads(cli("show", output, "--json").stdout)["recipe"] == recipe
