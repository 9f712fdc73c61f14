"""The tiny pipeline, model digests, devices, schedulers and the pipeline cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from strata.core.models import tiny as tiny_model
from strata.core.models.digest import NoWeightFiles, weights_digest
from strata.core.models.pipelines import (
    SCHEDULERS,
    DeviceUnavailable,
    ModelError,
    ModelNotFound,
    PipelineCache,
    UnknownDevice,
    UnknownDtype,
    UnknownPipelineKind,
    UnknownScheduler,
    UnsupportedModel,
    choose_device,
    choose_dtype,
    library_versions,
    set_scheduler,
)
from strata.core.models.tiny import ModelFolderNotEmpty, write_tiny_pipeline

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from PIL import Image


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[None]:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import, so an earlier import in this
    # session would miss the variable; its module switch is patched as well.
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="module")
def tiny(offline: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny", seed=0)


def generate(pipeline: DiffusionPipeline, seed: int = 7, **options: Any) -> Image.Image:
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    return pipeline(
        "a lighthouse at dusk", num_inference_steps=4, generator=generator, **options
    ).images[0]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def tree(folder: Path) -> dict[str, bytes]:
    return {
        file.relative_to(folder).as_posix(): file.read_bytes()
        for file in sorted(folder.rglob("*"))
        if file.is_file()
    }


# The tiny pipeline


def test_tiny_pipeline_is_a_complete_model_of_a_few_megabytes(tiny: Path) -> None:
    files = tree(tiny)
    assert {"model_index.json", "unet/config.json", "vae/config.json"} <= files.keys()
    assert any(name.startswith("unet/") and name.endswith(".safetensors") for name in files)
    size = sum(len(content) for content in files.values())
    assert 1_000_000 < size < 12_000_000
    # No staging folder is left beside the model.
    assert [entry.name for entry in tiny.parent.iterdir()] == ["tiny"]


def test_tiny_pipeline_loads_offline_and_makes_a_64px_rgb_image(tiny: Path) -> None:
    pipeline = PipelineCache().get(tiny, "cpu", "float32")
    image = generate(pipeline)
    assert image.size == (64, 64)
    assert image.mode == "RGB"


def test_same_seed_gives_identical_png_bytes_across_fresh_loads(tiny: Path) -> None:
    first = png_bytes(generate(PipelineCache().get(tiny, "cpu", "float32"), seed=3))
    second = png_bytes(generate(PipelineCache().get(tiny, "cpu", "float32"), seed=3))
    other = png_bytes(generate(PipelineCache().get(tiny, "cpu", "float32"), seed=4))
    assert first == second
    assert first != other


def test_same_seed_writes_the_same_weights_and_another_seed_does_not(
    tiny: Path, tmp_path: Path
) -> None:
    import torch

    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    again = write_tiny_pipeline(tmp_path / "again", seed=0)
    # Writing a model leaves the caller's random state where it was.
    assert torch.equal(torch.rand(3), expected_draw)
    other = write_tiny_pipeline(tmp_path / "other", seed=1)
    assert weights_digest(again) == weights_digest(tiny)
    assert weights_digest(other) != weights_digest(tiny)


def test_writing_into_a_non_empty_folder_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = tree(folder)
    with pytest.raises(ModelFolderNotEmpty, match="not empty") as refused:
        write_tiny_pipeline(folder)
    assert isinstance(refused.value, ValueError)
    assert tree(folder) == before
    assert [entry.name for entry in tmp_path.iterdir()] == ["taken"]


def test_writing_into_an_empty_folder_is_allowed(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    assert (write_tiny_pipeline(folder) / "model_index.json").is_file()


def test_a_failed_write_leaves_neither_the_model_nor_its_staging_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(staging: Path, seed: int) -> None:
        (staging / "half-written.safetensors").write_bytes(b"\0" * 100)
        raise RuntimeError("power cut")

    monkeypatch.setattr(tiny_model, "_build_pipeline", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        write_tiny_pipeline(tmp_path / "tiny")
    assert list(tmp_path.iterdir()) == []


# Weight digests


def test_a_single_file_digest_is_the_sha256_of_the_file(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights" * 1000)
    expected = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert weights_digest(checkpoint) == f"sha256:{expected}"


def test_a_folder_digest_covers_weight_files_only(tiny: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny, tmp_path / "copy"))
    original = weights_digest(copy)
    assert original.startswith("sha256:") and len(original) == 7 + 64
    (copy / "README.md").write_text("notes")
    (copy / "scheduler" / "scheduler_config.json").write_text("{}")
    assert weights_digest(copy) == original
    (copy / "vae" / "diffusion_pytorch_model.safetensors").rename(copy / "vae" / "renamed.bin")
    assert weights_digest(copy) != original


def test_a_folder_without_weights_or_a_missing_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(NoWeightFiles, match="no weight files"):
        weights_digest(tmp_path)
    with pytest.raises(ModelNotFound, match="does not exist"):
        weights_digest(tmp_path / "missing")


def test_the_digest_cache_trusts_size_and_mtime_and_rereads_when_they_change(
    tiny: Path, tmp_path: Path
) -> None:
    model = Path(shutil.copytree(tiny, tmp_path / "model"))
    cache = tmp_path / "cache" / "digests.json"
    cached = weights_digest(model, cache_file=cache)
    entries = json.loads(cache.read_text())["files"]
    assert len(entries) == 3
    assert [entry.name for entry in cache.parent.iterdir()] == ["digests.json"]

    # Same size, same mtime, same inode, different bytes: only the cache can explain
    # getting the old digest back.
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    stat = weights.stat()
    with weights.open("r+b") as handle:
        handle.seek(stat.st_size // 2)
        handle.write(b"\xff" * 64)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights_digest(model, cache_file=cache) == cached
    really = weights_digest(model)
    assert really != cached

    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert weights_digest(model, cache_file=cache) == really


def test_a_damaged_digest_cache_is_rebuilt(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "digests.json"
    cache.write_text("{ not json")
    assert weights_digest(tiny, cache_file=cache) == weights_digest(tiny)
    assert len(json.loads(cache.read_text())["files"]) == 3


# Devices, dtypes, schedulers, library versions


def accelerator_present() -> bool:
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


def test_choose_device_falls_back_to_cpu() -> None:
    if accelerator_present():
        pytest.skip("this machine has an accelerator")
    assert choose_device() == "cpu"
    assert choose_device("cpu") == "cpu"


def test_choose_device_refuses_an_unavailable_or_unknown_device() -> None:
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="'cuda' is not available"):
            choose_device("cuda")
    with pytest.raises(DeviceUnavailable, match="'cuda:99'"):
        choose_device("cuda:99")
    with pytest.raises(UnknownDevice, match="'tpu'"):
        choose_device("tpu")


def test_choose_dtype_defaults_by_device_and_validates_names() -> None:
    assert choose_dtype("cpu") == "float32"
    assert choose_dtype("mps") == "float32"
    assert choose_dtype("cuda:0") == "float16"
    assert choose_dtype("cpu", "bfloat16") == "bfloat16"
    with pytest.raises(UnknownDtype, match="float32, float16, bfloat16"):
        choose_dtype("cpu", "int8")


def test_every_named_scheduler_swaps_in(tiny: Path) -> None:
    pipeline = PipelineCache().get(tiny, "cpu", "float32")
    for name, class_name in SCHEDULERS.items():
        set_scheduler(pipeline, name)
        assert type(pipeline.scheduler).__name__ == class_name
    assert generate(pipeline).size == (64, 64)


def test_an_unknown_scheduler_is_refused_with_the_valid_names(tiny: Path) -> None:
    pipeline = PipelineCache().get(tiny, "cpu", "float32")
    with pytest.raises(UnknownScheduler, match=r"'karras'.*ddim, euler, euler_a, dpmpp_2m"):
        set_scheduler(pipeline, "karras")
    assert type(pipeline.scheduler).__name__ == "DDIMScheduler"


def test_library_versions_are_read_without_importing() -> None:
    versions = library_versions()
    assert set(versions) == {"torch", "diffusers", "transformers"}
    assert all(versions.values())


def test_model_modules_do_not_import_torch_or_diffusers(tiny: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import strata.core.models.pipelines, strata.core.models.tiny\n"
        "from strata.core.models.digest import weights_digest\n"
        f"weights_digest(Path({str(tiny)!r}))\n"
        "strata.core.models.pipelines.library_versions()\n"
        "heavy = {'torch', 'diffusers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


# The pipeline cache


def test_the_cache_loads_once_and_derives_img2img_and_inpaint(tiny: Path) -> None:
    from PIL import Image

    cache = PipelineCache()
    text2img = cache.get(tiny, "cpu", "float32")
    assert cache.get(tiny / ".." / tiny.name, "cpu", "float32") is text2img
    img2img = cache.get(tiny, "cpu", "float32", kind="img2img")
    inpaint = cache.get(tiny, "cpu", "float32", kind="inpaint")
    assert cache.get(tiny, "cpu", "float32", kind="img2img") is img2img
    assert cache.get(tiny, "cpu", "float32", kind="inpaint") is inpaint
    assert img2img.unet is text2img.unet and inpaint.vae is text2img.vae

    source = generate(text2img)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    edited = generate(img2img, image=source, strength=0.6)
    filled = generate(inpaint, image=source, mask_image=mask)
    assert edited.size == filled.size == (64, 64)


def test_the_cache_refuses_what_it_cannot_load(tmp_path: Path) -> None:
    cache = PipelineCache()
    with pytest.raises(ModelNotFound, match="does not exist"):
        cache.get(tmp_path / "missing", "cpu", "float32")
    with pytest.raises(UnsupportedModel, match=r"no model_index\.json"):
        cache.get(tmp_path, "cpu", "float32")
    with pytest.raises(UnknownPipelineKind, match="text2img, img2img, inpaint"):
        cache.get(tmp_path, "cpu", "float32", kind="upscale")
    (tmp_path / "model.txt").write_text("not weights")
    with pytest.raises(UnsupportedModel, match=r"\.safetensors or \.ckpt"):
        cache.get(tmp_path / "model.txt", "cpu", "float32")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match=r"broken\.safetensors"):
        cache.get(broken, "cpu", "float32")
