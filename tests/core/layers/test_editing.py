"""Editing end to end: diffusion edits on the tiny model (CPU), Pillow edits, bad inputs.

Outputs are read back from the blob store and checked pixel by pixel against the source or
against hand-computed values; every operation is run twice and must give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from strata.core.decisions.iteration import iterate
from strata.core.errors import InvalidInput
from strata.core.layers import build_executors
from strata.core.layers.editing import (
    EditingRequested,
    build_request,
    feathered,
    parse_box,
)
from strata.core.projections.lineage import walk
from strata.core.provenance.recipe import recipe
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata


def source_pixels(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8)


def add_image(strata: Strata, folder: Path, pixels: np.ndarray, name: str = "src.png",
              mode: str | None = None) -> str:
    path = folder / name
    Image.fromarray(pixels, mode=mode).save(path)
    event = strata.add_file(path)
    return str(event.data["asset"]["digest"])


@pytest.fixture
def worker(strata: Strata) -> Worker:
    """One worker per test, so the model loads once (its pipeline cache is the worker's)."""
    return Worker(strata, build_executors(("editing",)))


def run(worker: Worker, request: EditingRequested) -> tuple[dict[str, Any], np.ndarray]:
    """Submit and run one edit; its completion's data and its output's pixels."""
    strata = worker.strata
    jobs.request(strata, request)
    row = worker.wait_for(request.job_id)
    assert row["status"] == "completed", row
    completed = strata.ledger.read_stream(jobs.stream(request.job_id))[-1]
    assert completed.type == "editing.completed"
    assert completed.meta["executor"] == "editing/1"
    (digest,) = row["outputs"]
    with Image.open(io.BytesIO(strata.blobs.read_bytes(digest))) as image:
        pixels = np.asarray(image)
    return completed.data, pixels


def output_of(data: dict[str, Any]) -> str:
    return str(data["outputs"][0]["asset"]["digest"])


def twice(worker: Worker, operation: str, source: str, **options: Any
          ) -> tuple[dict[str, Any], np.ndarray]:
    """Run the same edit twice; both runs must store the same bytes."""
    strata = worker.strata
    first, pixels = run(worker, build_request(strata, operation, source, **options))
    second, _ = run(worker, build_request(strata, operation, source, **options))
    assert output_of(first) == output_of(second)
    stored = strata.blobs.read_bytes(output_of(first))
    assert output_of(first) == "sha256:" + hashlib.sha256(stored).hexdigest()
    return first, pixels


class TestDiffusionEdits:
    """The model runs; SQLite only (the claims are about the executor, not the database)."""

    @pytest.fixture
    def backend(self) -> str:
        return "sqlite"

    def test_inpaint_changes_only_the_masked_region(self, tiny: Strata,
                                                    tmp_path: Path, worker: Worker) -> None:
        # 60x44: not a multiple of 8, so the pipeline works on 64x48 and the result is
        # resized back before it is pasted through the mask.
        pixels = source_pixels(60, 44)
        source = add_image(tiny, tmp_path, pixels)
        data, out = twice(worker, "inpaint", source, box=(8, 4, 20, 12), prompt="a red fox",
                          steps=2, seed=3)
        inside = np.zeros((44, 60), dtype=bool)
        inside[4:16, 8:28] = True
        assert out.shape == pixels.shape
        assert np.array_equal(out[~inside], pixels[~inside])  # every pixel outside, exactly
        assert (out[inside] != pixels[inside]).mean() > 0.5  # the region was repainted

        (produced,) = data["outputs"]
        mask = next(i["digest"] for i in produced["inputs"] if i["role"] == "mask")
        assert {(i["digest"], i["role"]) for i in produced["inputs"]} == {
            (source, "source"), (mask, "mask")}
        with Image.open(io.BytesIO(tiny.blobs.read_bytes(mask))) as mask_image:
            assert mask_image.size == (60, 44)
            assert np.array_equal(np.asarray(mask_image) == 255, inside)
        with tiny.view() as conn:  # the box's mask is an asset derived from the source
            (edge,) = walk(conn, mask, "up", depth=1)
        assert (edge.input_digest, edge.role, edge.operation) == (
            source, "source", "mask from box 8,4,20,12")
        assert produced["seed"] == 3
        assert produced["params"] == {"mask_threshold": 128, "working_size": [64, 48]}
        assert data["model"]["name"] == "tiny" and data["model"]["digest"].startswith("sha256:")
        assert data["scheduler"]["class_name"] == "DDIMScheduler"
        assert (data["device"], data["dtype"]) == ("cpu", "float32")
        assert {"torch", "diffusers", "pillow", "numpy", "python", "strata"} <= set(
            data["versions"])
        made = recipe(tiny, output_of(data))
        assert (made["operation"], made["strength"], made["steps"], made["seed"]) == (
            "inpaint", 1.0, 2, 3)
        assert made["model"]["digest"] == data["model"]["digest"]
        assert "angle" not in made and "box" not in made  # other operations' fields

    def test_feathering_fades_inwards_and_never_outside(self, tiny: Strata,
                                                        tmp_path: Path, worker: Worker) -> None:
        pixels = source_pixels(64, 48, seed=1)
        source = add_image(tiny, tmp_path, pixels)
        hard, hard_out = run(worker, build_request(tiny, "inpaint", source, box=(16, 8, 32, 24),
                                                 prompt="fox", steps=2, seed=5))
        soft, soft_out = twice(worker, "inpaint", source, box=(16, 8, 32, 24), prompt="fox",
                               steps=2, seed=5, feather=4)
        inside = np.zeros((48, 64), dtype=bool)
        inside[8:32, 16:48] = True
        assert np.array_equal(soft_out[~inside], pixels[~inside])
        # Deep inside (beyond the feather) the generated pixels, as without feathering.
        assert np.array_equal(soft_out[16:24, 24:40], hard_out[16:24, 24:40])
        # On the edge, each pixel lies between the source's and the generated one.
        edge = (slice(8, 32), 16)
        low = np.minimum(pixels[edge], hard_out[edge]).astype(int)
        high = np.maximum(pixels[edge], hard_out[edge]).astype(int)
        assert ((soft_out[edge] >= low - 1) & (soft_out[edge] <= high + 1)).all()
        assert not np.array_equal(soft_out[edge], hard_out[edge])
        assert recipe(tiny, output_of(soft))["feather"] == 4
        assert output_of(hard) != output_of(soft)

    def test_a_mask_of_another_size_is_fit_only_when_asked(self, tiny: Strata,
                                                           tmp_path: Path, worker: Worker) -> None:
        pixels = source_pixels(64, 48, seed=2)
        source = add_image(tiny, tmp_path, pixels)
        small = np.zeros((24, 32), dtype=np.uint8)
        small[0:12, 0:16] = 255  # the top-left quarter
        mask_file = tmp_path / "mask.png"
        Image.fromarray(small, mode="L").save(mask_file)
        head = tiny.ledger.head_position()
        with pytest.raises(InvalidInput, match=r"mask is 32x24 but the source is 64x48.*"
                                               r"--fit-mask"):
            build_request(tiny, "inpaint", source, mask=str(mask_file), prompt="fox", steps=2)
        assert tiny.ledger.head_position() == head  # nothing, not even the mask file

        data, out = twice(worker, "inpaint", source, mask=str(mask_file), fit_mask=True,
                          prompt="fox", steps=2, seed=1)
        (produced,) = data["outputs"]
        assert produced["params"]["mask_size"] == [32, 24]
        assert recipe(tiny, output_of(data))["fit_mask"] is True
        inside = np.zeros((48, 64), dtype=bool)
        inside[0:24, 0:32] = True
        assert np.array_equal(out[~inside], pixels[~inside])
        # The file became an asset of its own, recorded once though used twice.
        mask = next(i["digest"] for i in produced["inputs"] if i["role"] == "mask")
        assert mask == "sha256:" + hashlib.sha256(mask_file.read_bytes()).hexdigest()
        imported = [e for e in tiny.ledger.read_all() if e.type == "asset.imported"]
        assert [e.data["asset"]["digest"] for e in imported].count(mask) == 1

    def test_outpaint_grows_the_canvas_and_keeps_the_original(
            self, tiny: Strata, tmp_path: Path, worker: Worker) -> None:
        pixels = source_pixels(40, 32, seed=3)
        source = add_image(tiny, tmp_path, pixels)
        data, out = twice(worker, "outpaint", source, left=8, right=16, bottom=8,
                          prompt="more sky", steps=2, seed=9)
        assert out.shape == (40, 64, 3)
        assert np.array_equal(out[0:32, 8:48], pixels)  # the original, untouched
        assert not np.array_equal(out[:, 0:8], np.repeat(pixels[:, :1], 8, axis=1)[:40])
        made = recipe(tiny, output_of(data))
        assert (made["left"], made["right"], made["top"], made["bottom"]) == (8, 16, 0, 8)

    def test_img2img_and_erase_reproduce_and_iterate(self, tiny: Strata,
                                                     tmp_path: Path, worker: Worker) -> None:
        pixels = source_pixels(64, 48, seed=4)
        source = add_image(tiny, tmp_path, pixels)
        data, out = twice(worker, "img2img", source, prompt="oil painting", strength=0.5,
                          steps=4, seed=2)
        assert out.shape == pixels.shape and not np.array_equal(out, pixels)
        assert data["operation"] == "img2img"
        _, erased = twice(worker, "erase", source, box=(0, 0, 16, 16), steps=2, seed=2)
        assert np.array_equal(erased[16:], pixels[16:])
        assert not np.array_equal(erased[:16, :16], pixels[:16, :16])

        # iterate on an edit: the same request with the change, the same seed, the parent.
        edited = output_of(data)
        event = iterate(tiny, edited, ["strength=0.75"])
        assert event.data["changes"] == {"strength": {"from": 0.5, "to": 0.75}}
        assert (event.data["seed"], event.data["parent"]) == (2, edited)
        row = worker.wait_for(event.data["job_id"])
        with tiny.view() as conn:
            edges = {(e.input_digest, e.role) for e in walk(conn, row["outputs"][0], "up",
                                                             depth=1)}
        assert edges == {(source, "source"), (edited, "parent")}
        fresh = iterate(tiny, edited, [], seed="new")
        assert fresh.data["seed"] != 2


def gradient(width: int, height: int) -> np.ndarray:
    """Pixel (x, y) is (x, y, x + y): every position tells where it came from."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x, y, x + y], axis=-1).astype(np.uint8)


def test_crop_keeps_the_box(strata: Strata, tmp_path: Path, worker: Worker) -> None:
    pixels = gradient(32, 24)
    source = add_image(strata, tmp_path, pixels)
    data, out = twice(worker, "crop", source, box=(5, 3, 10, 7))
    assert out.shape == (7, 10, 3)
    assert tuple(out[0, 0]) == (5, 3, 8) and tuple(out[6, 9]) == (14, 9, 23)
    assert np.array_equal(out, pixels[3:10, 5:15])
    (produced,) = data["outputs"]
    assert produced["inputs"] == [{"digest": source, "role": "source"}]
    assert data["model"] is None and set(data["versions"]) == {"pillow", "python", "strata"}
    made = recipe(strata, output_of(data))
    assert (made["operation"], made["box"]) == ("crop", [5, 3, 10, 7])
    assert "seed" not in made and "steps" not in made and "strength" not in made


def test_rotate_flip_and_resize(strata: Strata, tmp_path: Path, worker: Worker) -> None:
    pixels = gradient(16, 8)
    source = add_image(strata, tmp_path, pixels)
    _, quarter = twice(worker, "rotate", source, angle=90)
    assert np.array_equal(quarter, np.rot90(pixels))  # counter-clockwise, canvas 8x16
    _, tilted = twice(worker, "rotate", source, angle=30, expand=True)
    cos, sin = math.cos(math.radians(30)), math.sin(math.radians(30))
    # The canvas holds the rotated rectangle (Pillow rounds its corners' bounds outwards).
    height, width = 16 * sin + 8 * cos, 16 * cos + 8 * sin
    assert 0 <= tilted.shape[0] - height < 2 and 0 <= tilted.shape[1] - width < 2
    assert tuple(tilted[0, 0]) == (0, 0, 0)  # a corner the picture does not reach: the fill
    _, same_canvas = twice(worker, "rotate", source, angle=30, expand=False)
    assert same_canvas.shape == pixels.shape
    _, mirrored = twice(worker, "flip", source, direction="horizontal")
    assert np.array_equal(mirrored, pixels[:, ::-1])
    _, upside_down = twice(worker, "flip", source, direction="vertical")
    assert np.array_equal(upside_down, pixels[::-1])
    data, doubled = twice(worker, "resize", source, width=32, height=16, resample="nearest")
    assert np.array_equal(doubled, pixels.repeat(2, axis=0).repeat(2, axis=1))
    _, smooth = twice(worker, "resize", source, width=24, height=12)
    assert smooth.shape == (12, 24, 3)
    assert recipe(strata, output_of(data))["resample"] == "nearest"


def test_pillow_edits_keep_transparency(strata: Strata, tmp_path: Path,
                                        worker: Worker) -> None:
    pixels = np.zeros((8, 8, 4), dtype=np.uint8)
    pixels[..., 3] = np.arange(8, dtype=np.uint8)[None, :] * 30
    source = add_image(strata, tmp_path, pixels, mode="RGBA")
    _, out = twice(worker, "flip", source, direction="horizontal")
    assert np.array_equal(out[..., 3], pixels[:, ::-1, 3])


def test_feathering_is_a_ramp_inside_the_mask() -> None:
    mask = Image.new("L", (20, 20), 0)
    mask.paste(255, (5, 5, 15, 15))
    alpha = np.asarray(feathered(mask, 2))
    inside = np.asarray(mask) == 255
    assert (alpha[~inside] == 0).all()
    assert alpha[10, 10] == 255  # beyond the feather
    # A 5-wide box blur on the edge column: 3 of 5 columns are in the mask.
    assert alpha[10, 5] == round(255 * 3 / 5) and alpha[10, 6] == round(255 * 4 / 5)


def test_bad_edits_are_refused_before_anything_is_appended(tiny: Strata,
                                                           tmp_path: Path) -> None:
    source = add_image(tiny, tmp_path, source_pixels(32, 24))
    (tmp_path / "notes.json").write_text('{"not": "an image"}')
    text = str(tiny.add_file(tmp_path / "notes.json").data["asset"]["digest"])
    (tmp_path / "mask.json").write_text("[1, 2, 3]")
    black = tmp_path / "black.png"
    Image.new("L", (32, 24), 0).save(black)
    head = tiny.ledger.head_position()
    diffusion = {"prompt": "fox", "steps": 2}
    refused: list[tuple[str, str, dict[str, Any], str]] = [
        ("crop", source, {"box": (0, 0, 0, 5)}, "holds no pixel"),
        ("crop", source, {"box": (20, 10, 20, 5)}, "reaches outside the 32x24 image"),
        ("crop", source, {"box": (-1, 0, 4, 4)}, "outside the image"),
        ("crop", text, {"box": (0, 0, 4, 4)}, "application/json, not an image"),
        ("inpaint", source, {"box": (30, 0, 8, 8), **diffusion}, "reaches outside"),
        ("inpaint", source, {"box": (0, 0, 0, 8), **diffusion}, "holds no pixel"),
        ("inpaint", source, {"mask": str(tmp_path / "mask.json"), **diffusion},
         "is not an image"),
        ("inpaint", source, {"mask": text, **diffusion}, "application/json, not an image"),
        ("inpaint", source, {"mask": str(black), **diffusion}, "selects no pixel"),
        ("inpaint", source, diffusion, "needs a mask"),
        ("inpaint", source, {"box": (0, 0, 8, 8), "prompt": "", "steps": 2}, "needs a prompt"),
        ("img2img", source, {**diffusion, "strength": 0}, "greater than 0"),
        ("img2img", source, {**diffusion, "strength": 1.5}, "less than or equal to 1"),
        ("img2img", source, {**diffusion, "strength": float("nan")}, "finite"),
        ("img2img", source, {**diffusion, "strength": 0.2}, "runs no step"),
        ("img2img", source, {**diffusion, "mask": str(black)}, "takes no mask"),
        ("outpaint", source, diffusion, "needs some pixels"),
        ("outpaint", source, {**diffusion, "left": 8190}, "at most 8192 pixels a side"),
        ("rotate", source, {"angle": float("inf")}, "finite"),
        ("rotate", source, {"angle": 720}, "less than or equal to 360"),
        ("resize", source, {"width": 0, "height": 8}, "greater than or equal to 1"),
        ("resize", source, {"width": 8, "height": 8, "resample": "magic"}, "unknown resampling"),
        ("flip", source, {"direction": "diagonal"}, "horizontal"),
        ("crop", source, {"box": (0, 0, 4, 4), "angle": 90}, "crop takes no angle"),
        ("crop", source, {"box": (0, 0, 4, 4), "colour": "red"}, "colour"),
        ("sharpen", source, {}, "unknown edit 'sharpen'"),
    ]
    for operation, ref, options, message in refused:
        with pytest.raises(InvalidInput, match=message):
            build_request(tiny, operation, ref, **options)
    assert tiny.ledger.head_position() == head


def test_the_executor_refuses_a_mismatched_mask_it_was_sent_directly(
    tiny: Strata, tmp_path: Path, worker: Worker
) -> None:
    """A request made without build_request (the HTTP face, a script) meets the same
    rule in the worker: the job fails with the reason, no output is stored."""
    source = add_image(tiny, tmp_path, source_pixels(32, 24))
    mask = add_image(tiny, tmp_path, np.full((8, 8), 255, dtype=np.uint8), "mask.png",
                     mode="L")
    made = build_request(tiny, "inpaint", source, box=(0, 0, 4, 4), prompt="fox", steps=2,
                         seed=1)
    request = made.model_copy(update={"mask": mask})
    jobs.request(tiny, request)
    row = worker.wait_for(request.job_id)
    assert row["status"] == "failed" and not row["outputs"]
    assert "the mask is 8x8 but the source is 32x24" in row["error_message"]


def test_parse_box() -> None:
    assert parse_box("1, 2,3,4") == (1, 2, 3, 4)
    for bad in ("1,2,3", "a,b,c,d", "1.5,2,3,4"):
        with pytest.raises(InvalidInput, match="x,y,w,h"):
            parse_box(bad)
