"""An imported file's recipe in use: `show`, `provenance`, `diff` and `iterate` (which
re-issues it as a Strata generation on a registered model, with the differences listed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.core.config import Settings
from strata.core.decisions.iteration import iterate
from strata.core.errors import InvalidInput, JobError, ModelError
from strata.core.interop.recipe import RECONSTRUCTED
from strata.core.layers import build_executors
from strata.core.layers.generation import build_request
from strata.core.provenance.ancestry import provenance
from strata.core.provenance.recipe import diff, recipe
from strata.core.provenance.report import FORMATS, render
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from tests.api.cli.test_cli import Cli
from tests.core.interop import samples
from tests.helpers import png_bytes


def import_a1111(strata: Strata, folder: Path, text: str = samples.A1111) -> str:
    folder.mkdir(exist_ok=True)
    (event,) = strata.add_files([samples.png(folder / "fox.png", {"parameters": text})])
    return str(event.data["asset"]["digest"])


def test_recipe_and_diff_of_imported_files(strata: Strata, tmp_path: Path) -> None:
    a = import_a1111(strata, tmp_path / "a")
    found = recipe(strata, a)
    assert found["reconstructed"] == RECONSTRUCTED
    assert (found["tool"], found["tool_version"], found["operation"]) == (
        "AUTOMATIC1111", "v1.10.1", "txt2img")
    assert (found["seed"], found["steps"], found["width"]) == (1234567, 28, 512)
    assert found["model"] == {"name": "sd_xl_base_1.0", "hash": "31e35c80fc"}
    assert found["loras"]["fox_style"] == {"weight": 1.2, "hash": "0123abcd"}
    assert [found["passes"][n]["kind"] for n in ("2", "3")] == ["hires", "adetailer"]
    assert found["raw_metadata"] == {"parameters": samples.A1111}

    b = import_a1111(strata, tmp_path / "b", samples.A1111.replace("Seed: 1234567", "Seed: 42")
                     .replace("Steps: 28", "Steps: 30"))
    # Only the parameters read differ; the raw text they were read from is not a parameter.
    assert diff(strata, a, b) == [
        ("passes.2.seed", 1234567, 42), ("passes.3.seed", 1234567, 42),
        ("passes.3.steps", 28, 30), ("seed", 1234567, 42), ("steps", 28, 30)]


def test_provenance_keeps_the_recipe_read_from_the_file(strata: Strata,
                                                       tmp_path: Path) -> None:
    digest = import_a1111(strata, tmp_path)
    (step,) = provenance(strata, digest).steps
    assert step.kind == "import" and step.made_outside_strata
    embedded = step.facts["embedded"]
    assert embedded["note"] == RECONSTRUCTED and embedded["passes"][0]["seed"] == 1234567
    for fmt in FORMATS:  # every rendering takes the nested recipe
        assert render(strata, digest, fmt)
    assert "31e35c80fc" in json.loads(render(strata, digest, "json"))["steps"][0]["facts"][
        "embedded"]["passes"][0]["model_hash"]


def test_show_prints_the_reconstructed_recipe(settings: Settings, tmp_path: Path) -> None:
    cli = Cli(settings, tmp_path)
    cli("init", "--no-tiny")
    path = samples.png(tmp_path / "fox.png", {"parameters": samples.A1111})
    cli("add", str(path))
    (digest,) = cli.digests()
    shown = cli("show", digest[7:19]).stdout
    assert f"recipe, {RECONSTRUCTED}:" in shown
    assert "tool: AUTOMATIC1111" in shown and "seed: 1234567" in shown
    assert f"raw metadata: parameters ({len(samples.A1111):,} characters)" in shown
    shown_json = json.loads(cli("show", digest[7:19], "--json").stdout)
    assert shown_json["recipe"]["raw_metadata"] == {"parameters": samples.A1111}


def test_the_command_line_iterates_an_import_on_the_model_given(
    settings: Settings, tmp_path: Path, tiny_model_folder: Path
) -> None:
    cli = Cli(settings, tmp_path)
    cli("init", "--no-tiny")
    cli("model", "add", "fox-model", str(tiny_model_folder))
    cli("add", str(samples.png(tmp_path / "fox.png", {"parameters": samples.A1111})))
    (digest,) = cli.digests()
    said = cli("iterate", digest[7:19], "--set", "steps=2", "--set", "size=64x64",
               "--model", "fox-model").stdout
    assert f"iterating the recipe read from {digest[7:19]} (not verified)" in said
    assert "steps 28 → 2" in said
    (request,) = [json.loads(line) for line in cli("log", "--json").stdout.splitlines()
                  if '"generation.requested"' in line]
    assert request["data"]["model"]["name"] == "fox-model"
    assert request["data"]["parent"] == digest


def test_iterating_an_import_reissues_it_on_a_registered_model(tiny: Strata,
                                                               tmp_path: Path) -> None:
    digest = import_a1111(tiny, tmp_path)
    event = iterate(tiny, digest, ["steps=2", "size=64x64"])
    data = event.data
    assert event.type == "generation.requested"
    assert data["prompt"] == "masterpiece, a red fox in the snow"  # LoRA tags left out
    assert (data["seeds"], data["steps"], data["scheduler"], data["model"]["name"]) == (
        [1234567], 2, "dpmpp_2m", "tiny")
    assert (data["parent"], data["iterates"]) == (digest, None)
    changes = data["changes"]
    # What the file said stays the `from` of a setting the user changed too.
    assert changes["steps"] == {"from": 28, "to": 2}
    assert changes["width"] == {"from": 512, "to": 64}
    assert changes["scheduler"] == {"from": "DPM++ 2M Karras", "to": "dpmpp_2m"}
    assert changes["model"]["from"] == {"name": "sd_xl_base_1.0", "hash": "31e35c80fc"}
    assert changes["loras"] == {"from": {"add_detail": 0.8, "fox_style": 1.2}, "to": None}
    assert changes["passes"] == {"from": ["txt2img", "hires", "adetailer"], "to": ["txt2img"]}
    assert "seed" not in changes and "negative_prompt" not in changes

    row = Worker(tiny, build_executors()).wait_for(data["job_id"])
    assert row["status"] == "completed"
    made = row["outputs"][0]
    assert recipe(tiny, made)["inputs"] == [{"digest": digest, "role": "parent"}]
    differences = {key: (a, b) for key, a, b in diff(tiny, digest, made)}
    assert differences["model.name"] == ("sd_xl_base_1.0", "tiny")
    assert "seed" not in differences and "prompt" in differences


def test_what_cannot_be_iterated_says_why(tiny: Strata, tmp_path: Path) -> None:
    digest = import_a1111(tiny, tmp_path)
    with pytest.raises(ModelError, match="no model named 'missing'"):
        iterate(tiny, digest, [], model="missing")
    plain_file = tmp_path / "plain.png"
    plain_file.write_bytes(png_bytes(5))
    (plain,) = tiny.add_files([plain_file])
    with pytest.raises(JobError, match="not produced by a Strata job"):
        iterate(tiny, plain.data["asset"]["digest"], [])
    request = build_request(tiny, "a fox", model="tiny", steps=1, seed=3)
    jobs.request(tiny, request)
    made = Worker(tiny, build_executors()).wait_for(request.job_id)["outputs"][0]
    with pytest.raises(InvalidInput, match="a model is chosen only for an imported file"):
        iterate(tiny, made, [], model="tiny")
