"""Strata's own exports come back whole: a file exported from one store and imported into
another (each backend) keeps the recipe that made it there and the link to the original
digest; a sidecar that does not describe the file, or a hostile `strata` chunk, is
recorded as such and never blocks the import."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from strata.core.av import encode_mp4
from strata.core.config import Settings
from strata.core.decisions.iteration import iterate
from strata.core.interop.export import export
from strata.core.interop.recipe import FROM_ANOTHER_STORE
from strata.core.models import registry as models
from strata.core.provenance.recipe import recipe
from strata.core.service import Strata
from strata.core.store import Store
from tests.api.cli.test_cli import Cli
from tests.core.interop import samples
from tests.core.interop.test_export import generate


@pytest.fixture
def origin(tmp_path: Path, tiny_model_folder: Path) -> Iterator[Strata]:
    """Another store (SQLite) with the tiny model, where the exports are made; the store
    under test (`strata`, each backend) imports them."""
    opened = Store.open(Settings(home=tmp_path / "origin"), create=True)
    made = Strata(opened)
    models.register(made, "tiny", tiny_model_folder)
    yield made
    opened.close()


def same_recipe(there: dict[str, Any], here: dict[str, Any]) -> None:
    """Every entry of the original's recipe is in the import's, equal; only the layer
    differs (here the asset was imported), and that one is kept as `original_layer`."""
    assert {k: here.get(k) for k in there if k != "layer"} == {
        k: v for k, v in there.items() if k != "layer"}
    assert (here["layer"], here["original_layer"]) == ("import", there["layer"])


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_an_export_imported_into_another_store_keeps_its_recipe(
        origin: Strata, strata: Strata, tmp_path: Path, fmt: str) -> None:
    made = generate(origin)
    target = tmp_path / f"fox.{fmt}"
    export(origin, made, target, fmt)
    (event,) = strata.add_files([target])
    embedded = event.data["embedded"]
    assert (embedded["format"], embedded["note"], embedded["verified"]) == (
        "strata", FROM_ANOTHER_STORE, False)
    assert embedded["original_digest"] == made
    imported = event.data["asset"]["digest"]
    assert imported != made  # the export added its metadata to the bytes

    there, here = recipe(origin, made), recipe(strata, imported)
    same_recipe(there, here)
    assert there["prompt"].startswith("a red fox") and there["seed"] == 7
    assert here["original_digest"] == made and here["reconstructed"] == FROM_ANOTHER_STORE
    assert "strata" in here["raw_metadata"]  # the provenance JSON it was read from, verbatim


def test_an_imported_export_iterates_as_a_generation_here(
        origin: Strata, tiny: Strata, tmp_path: Path) -> None:
    made = generate(origin)
    export(origin, made, tmp_path / "fox.png", "png")
    (event,) = tiny.add_files([tmp_path / "fox.png"])
    imported = event.data["asset"]["digest"]
    request = iterate(tiny, imported, ["steps=3"]).data
    there = recipe(origin, made)
    assert (request["prompt"], request["seeds"], request["scheduler"]) == (
        there["prompt"], [there["seed"]], there["scheduler"]["name"])
    assert (request["parent"], request["iterates"]) == (imported, None)
    assert request["changes"]["steps"] == {"from": there["steps"], "to": 3}
    assert "scheduler" not in request["changes"] and "seed" not in request["changes"]


def test_a_video_export_comes_back_with_its_sidecar(origin: Strata, strata: Strata,
                                                    tmp_path: Path) -> None:
    made = generate(origin)
    frames = [Image.new("RGB", (32, 32), (i * 40, 0, 0)) for i in range(4)]
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(encode_mp4(frames, 8, (32, 32), np.zeros((2, 4410), np.float32)))
    (derived,) = origin.add_files([clip], parents=[(made, "source")], operation="animate")
    video = derived.data["output"]["asset"]["digest"]
    (tmp_path / "out").mkdir()
    done = export(origin, video, tmp_path / "out" / "fox.mp4")
    assert done.sidecar is not None

    (event,) = strata.add_files([tmp_path / "out" / "fox.mp4"])
    assert event.data["asset"]["digest"] == video  # exported as stored
    assert event.data["embedded"]["original_digest"] == video
    there, here = recipe(origin, video), recipe(strata, video)
    same_recipe(there, here)
    assert here["operation"] == "animate"
    assert here["inputs"] == [{"digest": made, "role": "source"}]

    # The same sidecar beside other bytes describes them not: said, and the file goes in.
    other = tmp_path / "other.mp4"
    other.write_bytes(encode_mp4(frames[::-1], 8, (32, 32), np.zeros((2, 4410), np.float32)))
    other.with_name("other.mp4.strata.json").write_bytes(done.sidecar.read_bytes())
    (stale,) = strata.add_files([other])
    found = stale.data["embedded"]
    assert found["format"] == "strata" and found["step"] is None
    assert "describes other bytes" in found["error"] and "sidecar" in found["raw"]


@pytest.mark.parametrize(("provenance", "error"), [
    ("{not json", "invalid JSON"),
    (json.dumps({"format": "strata-provenance", "asset": "sha256:" + "0" * 64,
                 "assets": "nothing", "steps": [7]}), "names no step that made"),
    (json.dumps({"format": "strata-provenance", "asset": ["a list"]}), "is not a digest"),
    (json.dumps([1, 2]), "not Strata's provenance JSON"),
])
def test_a_hostile_strata_chunk_is_recorded_and_the_file_goes_in(
        strata: Strata, tmp_path: Path, provenance: str, error: str) -> None:
    path = samples.png(tmp_path / "forged.png", {"strata": provenance, "parameters": "a cat"})
    (event,) = strata.add_files([path])
    found = event.data["embedded"]
    assert found["format"] == "strata" and error in found["error"]
    assert found["original_digest"] is None and found["step"] is None
    assert found["raw"] == {"strata": provenance, "parameters": "a cat"}
    assert recipe(strata, event.data["asset"]["digest"])["metadata_error"] == found["error"]


def test_show_and_recipe_in_the_other_store(origin: Strata, settings: Settings,
                                            tmp_path: Path) -> None:
    made = generate(origin)
    export(origin, made, tmp_path / "fox.png")
    there = recipe(origin, made)
    cli = Cli(settings, tmp_path)
    cli("init", "--no-tiny")
    cli("add", str(tmp_path / "fox.png"))
    (digest,) = cli.digests()
    shown = cli("show", digest[7:19]).stdout
    assert f"recipe, {FROM_ANOTHER_STORE}:" in shown
    assert f"original_digest: {made}" in shown and "prompt: a red fox" in shown
    same_recipe(there, json.loads(cli("show", digest[7:19], "--json").stdout)["recipe"])
