"""`strata reproduce` through the real command line: on a layer the code base does not
know (the invert plug-in of the test suite), the replay is identical and its event reads
back in every other command; on the tiny model, replaced weights are refused (exit 7,
nothing appended) and with --allow-model-drift --verify the divergence is recorded and
the command exits 5."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from strata.core.config import Settings
from strata.core.models.digest import WEIGHT_SUFFIXES
from strata.core.models.tiny import write_tiny_pipeline
from tests.api.cli.test_cli import Cli, write_png
from tests.core.layers.test_plugin_layer import plugin_cli, request_invert  # noqa: F401


def events(cli: Cli) -> list[dict]:
    return [json.loads(line) for line in
            cli("log", "--json", "--limit", "1000").stdout.splitlines()]


def test_reproduce_a_plugin_layer_and_read_the_record_back(
    plugin_cli: Cli, tmp_path: Path,  # noqa: F811
) -> None:
    cli = plugin_cli
    cli("add", str(write_png(tmp_path, "src.png", 1)))
    (source,) = cli.digests()
    job = request_invert(cli, source, 1.0)
    cli("worker", "--until-idle", "--poll", "0.1")
    (inverted,) = [d for d in cli.digests() if d != source]

    text = cli("reproduce", inverted[7:19]).stdout
    assert "invert invert (position" in text and ": identical" in text
    assert "import (position 1): imported" in text
    document = json.loads(cli("reproduce", inverted[7:19], "--json", "--verify").stdout)
    assert (document["type"], document["asset"], document["reproduction"]) == (
        "reproduction.verified", inverted, inverted)
    imported, invert = document["steps"]
    assert (imported["outcome"], imported["kind"]) == ("imported", "import")
    assert (invert["outcome"], invert["original_job"], invert["layer"]) == (
        "identical", job, "invert")
    assert invert["job_id"] != job
    assert invert["outputs"] == [{"original": inverted, "reproduction": inverted,
                                  "media_type": "image/png", "verdict": "identical",
                                  "figures": {}}]

    recorded = [e for e in events(cli) if e["type"].startswith("reproduction.")]
    assert [(e["type"], e["stream"], e["position"]) for e in recorded][-1] == (
        "reproduction.verified", f"reproduction:{document['reproduction_id']}",
        document["position"])
    # Other commands decode the event: its summary, not "unknown to this version".
    assert "reproduced: 1 imported, 1 identical" in cli("log").stdout
    audited = json.loads(cli("audit", inverted[7:19], "--json").stdout)
    assert [e["type"] for e in audited["events"]].count("reproduction.verified") == 2


def replace_weights(folder: Path, source: Path) -> None:
    for file in folder.rglob("*"):
        if file.suffix in WEIGHT_SUFFIXES:
            staged = file.with_name(file.name + ".new")
            shutil.copyfile(source / file.relative_to(folder), staged)
            os.replace(staged, file)


@pytest.mark.parametrize("backend", ["sqlite"])  # a model runs: once is enough
def test_changed_weights_refused_then_allowed_and_verified(
    backend: str, settings: Settings, tmp_path: Path,
) -> None:
    cli = Cli(settings, tmp_path)
    cli("init")
    cli("generate", "a red fox", "--n", "1", "--seed", "4", "--steps", "2", "--wait")
    (original,) = cli.digests()
    replace_weights(settings.home / "models" / "tiny",
                    write_tiny_pipeline(tmp_path / "other", seed=1))
    count = len(events(cli))

    refused = cli("reproduce", original[7:19], ok=False)
    assert refused.returncode == 7, refused.stderr
    assert "model 'tiny' has drifted" in refused.stderr
    assert "--allow-model-drift" in refused.stderr and "nothing was run" in refused.stderr
    assert len(events(cli)) == count

    diverged = cli("reproduce", original[7:19], "--allow-model-drift", "--verify", "--json",
                   ok=False)
    assert diverged.returncode == 5, diverged.stderr
    assert "the reproduction diverged at position" in diverged.stderr
    document = json.loads(diverged.stdout)
    assert document["type"] == "reproduction.diverged"
    (step,) = document["steps"]
    assert document["first_diverged"] == step["step"]
    assert document["why"].startswith("model drift: tiny ran ")
    assert step["outcome"] in ("different", "visually the same")
    (output,) = step["outputs"]
    assert set(output["figures"]) == {"phash_distance", "psnr_db"}
    assert output["reproduction"] == document["reproduction"] != original
    lineage = cli("lineage", original[7:19], "--down").stdout
    assert document["reproduction"].removeprefix("sha256:")[:12] in lineage


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_process_that_only_opens_the_store_decodes_a_reproduction(
    plugin_cli: Cli, tmp_path: Path,  # noqa: F811
) -> None:
    cli = plugin_cli
    cli("add", str(write_png(tmp_path, "src.png", 1)))
    (source,) = cli.digests()
    request_invert(cli, source, 1.0)
    cli("worker", "--until-idle", "--poll", "0.1")
    (inverted,) = [d for d in cli.digests() if d != source]
    cli("reproduce", inverted[7:19])
    script = ("from strata.core.service import Strata\nfrom strata.core.store import Store\n"
              "print(Strata(Store.open()).rebuild())\n")
    rebuilt = subprocess.run([sys.executable, "-c", script], env=cli.env, cwd=cli.cwd,
                             capture_output=True, text=True, timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stderr
