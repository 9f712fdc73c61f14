"""Enhancement end to end: each operation against values worked out by hand, the same
bytes for the same request, operations run and recorded in the order given, alpha kept,
the model upscaler (a tiny StableDiffusionUpscalePipeline written here, nothing
downloaded) and its absence said clearly, and bad inputs refused with nothing appended."""

from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from strata.core.errors import InvalidInput, ModelError
from strata.core.layers import build_executors
from strata.core.layers.enhancement import build_request
from strata.core.models import registry as models
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata


def add_image(strata: Strata, tmp_path: Path, name: str, image: Image.Image) -> str:
    path = tmp_path / name
    image.save(path, format="PNG")
    (event,) = strata.add_files([path])
    return str(event.payload.asset.digest)  # type: ignore[attr-defined]


def row_image(pixels: list[tuple[int, int, int]]) -> Image.Image:
    image = Image.new("RGB", (len(pixels), 1))
    for x, pixel in enumerate(pixels):
        image.putpixel((x, 0), pixel)
    return image


def pixels_of(image: Image.Image) -> list[tuple[int, ...]]:
    return [image.getpixel((x, y)) for y in range(image.height)  # type: ignore[misc]
            for x in range(image.width)]


def enhance(strata: Strata, source: str, operations: list[dict[str, Any]],
            **options: Any) -> tuple[dict, Image.Image]:
    request = build_request(strata, source[7:19], operations, **options)
    jobs.request(strata, request)
    row = Worker(strata, build_executors(("enhancement",))).wait_for(request.job_id)
    assert row["status"] == "completed", row
    (digest,) = row["outputs"]
    return row, Image.open(io.BytesIO(strata.blobs.read_bytes(digest)))


BLACK_WITH_A_WHITE_DOT = [(0, 0, 0)] * 4 + [(255, 255, 255)] + [(0, 0, 0)] * 4

# (operation, input pixels in one row, expected output pixels), each worked out by hand.
CASES: dict[str, tuple[dict[str, Any], list[tuple[int, int, int]], list[tuple[int, ...]]]] = {
    # out = 255 * (in / 255) ** (1 / 2): 64 → 127.75 → 128; 0 and 255 stay.
    "gamma": ({"op": "gamma", "gamma": 2.0}, [(64, 0, 255)], [(128, 0, 255)]),
    # Each channel stretched from its own darkest..lightest to 0..255: red 50..150, so 100
    # → 127.5 → 128; green likewise; blue already spans 0..255.
    "auto-contrast": ({"op": "auto-contrast"}, [(50, 20, 0), (100, 120, 128), (150, 220, 255)],
                      [(0, 0, 0), (128, 128, 128), (255, 255, 255)]),
    # Channel means 100, 100, 50; their mean 83.33; gains 0.833, 0.833, 1.667:
    # 25 * 1.667 = 41.67 → 42, 150 * 0.833 = 125.
    "white-balance": ({"op": "white-balance"}, [(100, 50, 25), (100, 150, 75)],
                      [(83, 42, 42), (83, 125, 125)]),
    # Saturation 0 is the luma: 0.299 * 204 + 0.587 * 102 + 0.114 * 51 = 126.68 → 127.
    "saturation": ({"op": "saturation", "factor": 0.0}, [(204, 102, 51)], [(127, 127, 127)]),
    # The 3x3 median of a lone white dot is black; strength 1 takes the median whole.
    "denoise": ({"op": "denoise", "strength": 1.0}, BLACK_WITH_A_WHITE_DOT, [(0, 0, 0)] * 9),
    # 2x2 of one colour → 4x4 of that colour (Lanczos keeps a flat picture flat).
    "upscale": ({"op": "upscale", "factor": 2}, [(10, 200, 30)] * 2, [(10, 200, 30)] * 8),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_operation_gives_the_hand_computed_pixels_and_the_same_bytes_twice(
    strata: Strata, tmp_path: Path, name: str
) -> None:
    operation, given, expected = CASES[name]
    source = add_image(strata, tmp_path, "in.png", row_image(given)) if name not in (
        "denoise",) else add_image(strata, tmp_path, "in.png", _square(given))
    first, image = enhance(strata, source, [operation])
    assert pixels_of(image) == expected
    second, _ = enhance(strata, source, [operation])
    assert first["job_id"] != second["job_id"] and first["outputs"] == second["outputs"]


def _square(pixels: list[tuple[int, int, int]]) -> Image.Image:
    image = Image.new("RGB", (3, 3))
    for index, pixel in enumerate(pixels):
        image.putpixel((index % 3, index // 3), pixel)
    return image


def test_sharpen_steepens_an_edge_and_leaves_flat_areas_alone(
    strata: Strata, tmp_path: Path
) -> None:
    edge = add_image(strata, tmp_path, "edge.png",
                     row_image([(50, 50, 50)] * 3 + [(200, 200, 200)] * 3))
    flat = add_image(strata, tmp_path, "flat.png", row_image([(90, 90, 90)] * 6))
    operation = {"op": "sharpen", "radius": 1.0, "amount": 200, "threshold": 0}
    first, sharpened = enhance(strata, edge, [operation])
    values = [pixel[0] for pixel in pixels_of(sharpened)]
    assert values[2] < 50 and values[3] > 200  # overshoot on both sides of the edge
    assert values[0] <= 50 and values[5] >= 200
    assert pixels_of(enhance(strata, flat, [operation])[1]) == [(90, 90, 90)] * 6
    assert enhance(strata, edge, [operation])[0]["outputs"] == first["outputs"]


def test_operations_run_and_are_recorded_in_the_order_given(
    strata: Strata, tmp_path: Path
) -> None:
    source = add_image(strata, tmp_path, "in.png",
                       row_image([(50, 20, 0), (100, 120, 128), (150, 220, 255)]))
    gamma_first: list[dict[str, Any]] = [{"op": "gamma", "gamma": 2.0}, {"op": "auto-contrast"}]
    row, image = enhance(strata, source, gamma_first)
    other, _ = enhance(strata, source, list(reversed(gamma_first)))
    assert row["outputs"] != other["outputs"]
    # gamma 2 takes red 50, 100, 150 to 113, 160, 196; auto-contrast then stretches
    # 113..196 to 0..255: 160 → (160 - 113) * 255 / 83 = 144.4 → 144.
    assert [pixel[0] for pixel in pixels_of(image)] == [0, 144, 255]

    requested, _started, completed = strata.ledger.read_stream(jobs.stream(row["job_id"]))
    assert requested.data["operations"] == [{"op": "gamma", "gamma": 2.0},
                                            {"op": "auto-contrast"}]
    (output,) = completed.data["outputs"]
    assert output["inputs"] == [{"digest": source, "role": "source"}]
    assert output["params"]["operations"] == requested.data["operations"]
    assert {"pillow", "numpy", "python", "strata"} <= set(completed.data["versions"])
    assert completed.data["device"] is None  # no model ran
    assert completed.meta["executor"] == "enhancement/1"


def test_alpha_is_kept_and_scaled_with_the_picture(strata: Strata, tmp_path: Path) -> None:
    source = add_image(strata, tmp_path, "in.png", Image.new("RGBA", (2, 2), (40, 80, 120, 100)))
    _row, image = enhance(strata, source, [{"op": "upscale", "factor": 4},
                                           {"op": "saturation", "factor": 1.0}])
    assert image.mode == "RGBA" and image.size == (8, 8)
    assert set(pixels_of(image)) == {(40, 80, 120, 100)}


def write_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\0\0" * 800)
    return path


def test_bad_inputs_are_refused_and_nothing_is_appended(strata: Strata, tmp_path: Path) -> None:
    image = add_image(strata, tmp_path, "in.png", Image.new("RGB", (64, 64), "grey"))
    (sound,) = strata.add_files([write_wav(tmp_path / "beep.wav")])
    audio = sound.payload.asset.digest  # type: ignore[attr-defined]
    cases: list[tuple[str, list[dict[str, Any]], str]] = [
        (audio, [{"op": "gamma", "gamma": 2}], "is audio/wav, not an image"),
        (image, [], "operations: List should have at least 1 item"),
        (image, [{"op": "blur"}], "does not match any of the expected tags"),
        (image, [{"op": "upscale", "factor": 3}], "factor: Input should be 2 or 4"),
        (image, [{"op": "upscale", "factor": 2, "method": "magic"}], "method: Input should be"),
        (image, [{"op": "saturation", "factor": -1}], "factor: Input should be greater"),
        (image, [{"op": "gamma", "gamma": 0}], "gamma: Input should be greater than or equal"),
        (image, [{"op": "gamma", "gamma": float("inf")}], "gamma: Input should be a finite"),
        (image, [{"op": "sharpen", "radius": 0, "amount": 100}], "radius: Input should be"),
        (image, [{"op": "sharpen", "radius": 2, "amount": 0}], "amount: Input should be"),
        (image, [{"op": "denoise", "strength": 2}], "strength: Input should be less than"),
        (image, [{"op": "upscale", "factor": 4}] * 4, "more than the store's limit"),
    ]
    before = strata.ledger.head_position()
    for source, operations, message in cases:
        with pytest.raises(InvalidInput, match=message):
            build_request(strata, source[7:19], operations)
    with pytest.raises(InvalidInput, match="--model names an upscaler"):
        build_request(strata, image[7:19], [{"op": "gamma", "gamma": 2}], upscaler="tiny")
    assert strata.ledger.head_position() == before


def test_the_model_method_says_how_to_register_an_upscaler(tiny: Strata, tmp_path: Path) -> None:
    image = add_image(tiny, tmp_path, "in.png", Image.new("RGB", (16, 16), "grey"))
    before = tiny.ledger.head_position()
    upscale = [{"op": "upscale", "factor": 4, "method": "model"}]
    with pytest.raises(ModelError, match=r"none is registered: .*`strata model add NAME PATH`"):
        build_request(tiny, image[7:19], upscale)
    with pytest.raises(ModelError, match="'tiny' is a StableDiffusionPipeline, not an upscaler"):
        build_request(tiny, image[7:19], upscale, upscaler="tiny")
    with pytest.raises(ModelError, match="no model named 'x4'"):
        build_request(tiny, image[7:19], upscale, upscaler="x4")
    assert tiny.ledger.head_position() == before


@pytest.fixture(scope="session")
def tiny_upscaler_folder(tmp_path_factory: pytest.TempPathFactory,
                         tiny_model_folder: Path) -> Path:
    """A tiny seeded StableDiffusionUpscalePipeline (x4: a three-block VAE), with the tiny
    model's tokenizer and text encoder; shapes as in diffusers' own upscaler tests."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("models") / "upscaler"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            sample_size=32, in_channels=7, out_channels=4, block_out_channels=(32, 64),
            layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            num_class_embeds=351)  # one per noise level, 0..350
        torch.manual_seed(0)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, block_out_channels=(32, 32, 64), latent_channels=4,
            scaling_factor=0.08333,  # as the x4 upscaler's VAE
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3)
    StableDiffusionUpscalePipeline(
        vae=vae, unet=unet, max_noise_level=350,
        text_encoder=CLIPTextModel.from_pretrained(tiny_model_folder / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(tiny_model_folder / "tokenizer"),
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
    ).save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    return folder


@pytest.mark.parametrize("backend", ["sqlite"])  # a diffusers pipeline: one backend is enough
def test_a_registered_upscaler_runs_and_is_recorded(
    tiny: Strata, tmp_path: Path, tiny_upscaler_folder: Path
) -> None:
    models.register(tiny, "x4", tiny_upscaler_folder)
    image = add_image(tiny, tmp_path, "in.png", Image.new("RGBA", (16, 16), (200, 100, 50, 255)))
    with pytest.raises(InvalidInput, match="'x4' scales by 4, not by 2"):
        build_request(tiny, image[7:19], [{"op": "upscale", "factor": 2, "method": "model"}])
    operations = [{"op": "upscale", "factor": 4, "method": "model", "upscaler": {"steps": 1}},
                  {"op": "sharpen", "radius": 1.0, "amount": 50}]
    row, upscaled = enhance(tiny, image, operations)  # the only upscaler: chosen by default
    assert upscaled.size == (64, 64) and upscaled.mode == "RGBA"
    requested, _started, completed = tiny.ledger.read_stream(jobs.stream(row["job_id"]))
    run = requested.data["operations"][0]["upscaler"]
    assert run["model"]["name"] == "x4" and run["model"]["digest"].startswith("sha256:")
    assert (run["steps"], run["noise_level"], run["seed"]) == (1, 20, 0)
    assert completed.data["device"] == "cpu" and completed.data["dtype"] == "float32"
    assert {"torch", "diffusers", "pillow", "numpy"} <= set(completed.data["versions"])
    again, _ = enhance(tiny, image, operations, upscaler="x4")
    assert again["outputs"] == row["outputs"]
