"""Compositing end to end: blend modes checked pixel by pixel against values computed by
hand from the W3C formulas (core/imaging/blend.py), partial alpha on both sides, opacity
and masks, placement and scale, z-order and roles in the record, the same bytes for the
same request, and every bad input refused with nothing appended."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from strata.core.errors import AssetNotFound, InvalidInput
from strata.core.layers import build_executors
from strata.core.layers.compositing import build_request, build_request_from_spec, parse_layer
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata

BACK_RGB, LAYER_RGB = (51, 153, 204), (204, 102, 51)  # (0.2, 0.6, 0.8) and (0.8, 0.4, 0.2)
# Four pixels, left to right, top to bottom: (backdrop alpha, layer alpha).
ALPHAS = [(255, 255), (255, 153), (102, 153), (0, 255)]

# Worked by hand from Cs' = (1 - ab)Cs + ab B(Cb, Cs), co = as Cs' + (1 - as) ab Cb,
# ao = as + (1 - as) ab, Co = co / ao, rounded half up to 8 bits. For example multiply,
# pixel 3 (ab = 0.4, as = 0.6), red: Cs' = 0.6 * 0.8 + 0.4 * 0.16 = 0.544,
# co = 0.6 * 0.544 + 0.4 * 0.4 * 0.2 = 0.3584, ao = 0.76, Co = 0.4716 → 120.25 → 120.
# Pixel 4 has no backdrop (ab = 0): every mode gives the layer itself.
EXPECTED = {
    "normal": [(204, 102, 51, 255), (143, 122, 112, 255), (172, 113, 83, 194)],
    "multiply": [(41, 61, 41, 255), (45, 98, 106, 255), (120, 100, 80, 194)],
    "screen": [(214, 194, 214, 255), (149, 177, 210, 255), (175, 142, 135, 194)],
    "overlay": [(82, 133, 173, 255), (69, 141, 186, 255), (133, 122, 122, 194)],
    "soft-light": [(89, 141, 180, 255), (74, 146, 189, 255), (135, 125, 124, 194)],
    "add": [(255, 255, 255, 255), (173, 214, 235, 255), (188, 161, 148, 194)],
    "difference": [(153, 51, 153, 255), (112, 92, 173, 255), (156, 97, 115, 194)],
}


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def add_image(strata: Strata, tmp_path: Path, name: str, image: Image.Image) -> str:
    path = tmp_path / name
    path.write_bytes(png(image))
    (event,) = strata.add_files([path])
    return str(event.payload.asset.digest)  # type: ignore[attr-defined]


def rgba_pixels(rgb: tuple[int, int, int], alphas: list[int]) -> Image.Image:
    image = Image.new("RGBA", (2, 2))
    image.putdata([(*rgb, alpha) for alpha in alphas])
    return image


def pixels_of(image: Image.Image) -> list[tuple[int, ...]]:
    """Every pixel, row by row."""
    return [image.getpixel((x, y)) for y in range(image.height)  # type: ignore[misc]
            for x in range(image.width)]


def run(strata: Strata, request: object) -> tuple[dict, Image.Image]:
    jobs.request(strata, request)  # type: ignore[arg-type]
    row = Worker(strata, build_executors(("compositing",))).wait_for(request.job_id)  # type: ignore[attr-defined]
    assert row["status"] == "completed", row
    (digest,) = row["outputs"]
    return row, Image.open(io.BytesIO(strata.blobs.read_bytes(digest)))


@pytest.fixture
def pair(strata: Strata, tmp_path: Path) -> tuple[str, str]:
    backdrop = add_image(strata, tmp_path, "back.png",
                         rgba_pixels(BACK_RGB, [b for b, _ in ALPHAS]))
    layer = add_image(strata, tmp_path, "layer.png", rgba_pixels(LAYER_RGB, [a for _, a in ALPHAS]))
    return backdrop, layer


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_each_blend_mode_pixel_by_pixel(strata: Strata, pair: tuple[str, str], mode: str) -> None:
    backdrop, layer = pair
    request = build_request(strata, [f"{layer[7:19]}:0,0,1,1,{mode}"], background=backdrop[7:19])
    _row, image = run(strata, request)
    assert image.mode == "RGBA" and image.size == (2, 2)
    assert pixels_of(image) == [*EXPECTED[mode], (*LAYER_RGB, 255)]


def test_soft_light_darkest_backdrops_use_the_polynomial(strata: Strata, tmp_path: Path) -> None:
    # Cb = 10/255 <= 1/4 and Cs = 230/255 > 1/2: D(Cb) = ((16Cb - 12)Cb + 4)Cb = 0.13937,
    # B = Cb + (2Cs - 1)(D - Cb) = 0.11973 → 30.53 → 31 (sqrt(Cb) instead would give 43).
    dark = add_image(strata, tmp_path, "dark.png", Image.new("RGB", (1, 1), (10, 10, 10)))
    light = add_image(strata, tmp_path, "light.png", Image.new("RGB", (1, 1), (230, 230, 230)))
    _row, image = run(strata, build_request(strata, [f"{light[7:19]}:blend=soft-light"],
                                            background=dark[7:19]))
    assert pixels_of(image) == [(31, 31, 31, 255)]


def test_opacity_and_a_mask_scale_the_layer_alpha(strata: Strata, tmp_path: Path) -> None:
    backdrop = add_image(strata, tmp_path, "back.png", Image.new("RGB", (2, 2), BACK_RGB))
    layer = add_image(strata, tmp_path, "layer.png", Image.new("RGB", (2, 2), LAYER_RGB))
    mask = add_image(strata, tmp_path, "mask.png", Image.new("L", (2, 2), 102))  # 0.4
    request = build_request(strata, [f"{layer[7:19]}:opacity=0.5,mask={mask[7:19]}"],
                            background=backdrop[7:19])
    row, image = run(strata, request)
    # as = 0.5 * 0.4 = 0.2: 0.2 * Cs + 0.8 * Cb, e.g. red 0.2 * 204 + 0.8 * 51 = 81.6 → 82.
    assert set(pixels_of(image)) == {(82, 143, 173, 255)}
    (completed,) = [e for e in strata.ledger.read_stream(jobs.stream(row["job_id"]))
                    if e.type == "compositing.completed"]
    (output,) = completed.data["outputs"]
    assert output["inputs"] == [{"digest": backdrop, "role": "source"},
                                {"digest": layer, "role": "layer"},
                                {"digest": mask, "role": "mask"}]


def test_layers_are_placed_scaled_and_recorded_in_z_order(strata: Strata, tmp_path: Path) -> None:
    red = add_image(strata, tmp_path, "red.png", Image.new("RGB", (2, 2), (255, 0, 0)))
    blue = add_image(strata, tmp_path, "blue.png", Image.new("RGB", (2, 2), (0, 0, 255)))
    request = build_request(
        strata, [f"{red[7:19]}:1,1,2", f"{blue[7:19]}:-1,3,1,1,normal"], canvas="4x5",
        background="#00ff0080")
    row, image = run(strata, request)
    pixels = {(x, y): image.getpixel((x, y)) for x in range(4) for y in range(5)}
    green = (0, 255, 0, 128)
    assert pixels[(0, 0)] == pixels[(3, 0)] == pixels[(0, 1)] == green
    # red scaled to 4x4 at (1, 1): it covers x 1..3, y 1..4; blue at (-1, 3) covers x 0, y 3..4.
    assert all(pixels[(x, y)] == (255, 0, 0, 255) for x in range(1, 4) for y in (1, 2))
    assert pixels[(0, 3)] == pixels[(0, 4)] == (0, 0, 255, 255)
    assert pixels[(1, 3)] == (255, 0, 0, 255)  # blue's left column fell off the canvas
    assert pixels[(0, 2)] == green

    requested, _started, completed = strata.ledger.read_stream(jobs.stream(row["job_id"]))
    assert [(layer["asset"], layer["x"], layer["y"], layer["scale"])
            for layer in requested.data["layers"]] == [(red, 1, 1, 2.0), (blue, -1, 3, 1.0)]
    (output,) = completed.data["outputs"]
    assert [i["role"] for i in output["inputs"]] == ["layer", "layer"]
    assert [i["digest"] for i in output["inputs"]] == [red, blue]
    assert output["params"]["layers"] == requested.data["layers"]
    assert output["params"]["background"] == "#00ff0080"
    assert {"pillow", "numpy", "python", "strata"} <= set(completed.data["versions"])
    assert completed.meta["executor"] == "compositing/1"


def test_the_same_request_gives_the_same_bytes(strata: Strata, pair: tuple[str, str]) -> None:
    backdrop, layer = pair
    layers = [f"{layer[7:19]}:0,0,1.5,0.7,soft-light", f"{backdrop[7:19]}:1,0,1,0.3,difference"]
    first = run(strata, build_request(strata, layers, background="white"))[0]
    second = run(strata, build_request(strata, layers, background="white"))[0]
    other = run(strata, build_request(strata, layers, background="black"))[0]
    assert first["job_id"] != second["job_id"]
    assert first["outputs"] == second["outputs"] != other["outputs"]


def test_a_spec_file_is_the_same_request_as_the_options(
    strata: Strata, pair: tuple[str, str], tmp_path: Path
) -> None:
    backdrop, layer = pair
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"canvas": "3x2", "background": "red", "layers": [
        {"asset": layer[7:19], "x": 1, "blend": "screen", "mask": backdrop[7:19]}]}))
    from_spec = build_request_from_spec(strata, spec)
    from_options = build_request(strata, [f"{layer[7:19]}:1,,,,screen,mask={backdrop[7:19]}"],
                                 canvas="3x2", background="red")
    assert from_spec.parameters() == from_options.parameters()


def test_layer_settings_parse_by_position_and_by_name() -> None:
    assert parse_layer("abcd") == {"asset": "abcd"}
    assert parse_layer("abcd:1,-2") == {"asset": "abcd", "x": "1", "y": "-2"}
    assert parse_layer("abcd:,,0.5,,multiply,mask=ef01") == {
        "asset": "abcd", "scale": "0.5", "blend": "multiply", "mask": "ef01"}
    assert parse_layer("abcd:blend=add,y=3") == {"asset": "abcd", "blend": "add", "y": "3"}
    whole = "sha256:" + "ab" * 32  # a whole digest carries a colon of its own
    assert parse_layer(f"{whole}:4,5") == {"asset": whole, "x": "4", "y": "5"}
    assert parse_layer(whole) == {"asset": whole}
    for bad, message in [("abcd:1,2,3,4,normal,6", "by position"),
                         ("abcd:x=1,2", "by position"),
                         ("abcd:angle=3", "unknown setting 'angle'"),
                         ("abcd:1,x=2", "x is given twice")]:
        with pytest.raises(InvalidInput, match=message):
            parse_layer(bad)


def write_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\0\0" * 800)
    return path


def test_bad_inputs_are_refused_and_nothing_is_appended(
    strata: Strata, pair: tuple[str, str], tmp_path: Path
) -> None:
    _backdrop, layer = pair
    big = add_image(strata, tmp_path, "big.png", Image.new("RGB", (3, 2), "white"))
    (sound,) = strata.add_files([write_wav(tmp_path / "beep.wav")])
    audio = sound.payload.asset.digest  # type: ignore[attr-defined]
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"layers": [{"asset": layer}], "opacity": 1}))
    L = layer[7:19]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"layer_specs": [f"{L}:0,0,1,1,dodge"]}, "blend: Input should be 'normal'"),
        ({"layer_specs": [f"{L}:opacity=1.5"]}, "opacity: Input should be less than or equal"),
        ({"layer_specs": [f"{L}:opacity=nan"]}, "opacity: Input should be a finite number"),
        ({"layer_specs": [f"{L}:scale=0"]}, "scale: Input should be greater than 0"),
        ({"layer_specs": [f"{L}:scale=-2"]}, "scale: Input should be greater than 0"),
        ({"layer_specs": [f"{L}:x=left"]}, "x: Input should be a valid integer"),
        ({"layer_specs": [L], "canvas": "20000x20000"}, "more than the store's limit"),
        ({"layer_specs": [L], "canvas": "0x8"}, "expected WIDTHxHEIGHT"),
        ({"layer_specs": [L], "canvas": "8 by 8"}, "expected WIDTHxHEIGHT"),
        ({"layer_specs": [audio[7:19]]}, "is audio/wav, not an image"),
        ({"layer_specs": [f"{L}:mask={audio[7:19]}"]}, "is audio/wav, not an image"),
        ({"layer_specs": [L], "background": audio[7:19]}, "is audio/wav, not an image"),
        ({"layer_specs": [f"{L}:mask={big[7:19]}"]}, "its mask is 3x2, the layer 2x2"),
        ({"layer_specs": [L], "background": big[7:19], "canvas": "2x2"},
         "differs from the background asset's 3x2"),
        ({"layer_specs": [L], "background": "no-such-colour"}, "is not a colour"),
        ({"layer_specs": []}, "at least one --layer"),
    ]
    before = strata.ledger.head_position()
    for options, message in cases:
        with pytest.raises(InvalidInput, match=message):
            build_request(strata, **options)
    with pytest.raises(InvalidInput, match="unknown keys opacity"):
        build_request_from_spec(strata, spec)
    with pytest.raises(AssetNotFound, match="no asset matches 'ffff0000'"):
        build_request(strata, ["ffff0000"])
    assert strata.ledger.head_position() == before
