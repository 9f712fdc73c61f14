"""The tiny motion adapter and the tiny text-to-audio pipeline: written offline, the same
seed giving the same bytes, fitting the tiny image model, refusing to mix into a used
folder, and registered under their own names by `write_tiny(kind=…)`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.core.errors import ModelError
from strata.core.models import registry as models
from strata.core.models.digest import weights_digest
from strata.core.models.tiny import ModelFolderNotEmpty
from strata.core.models.tiny_audio import SAMPLE_RATE, write_tiny_audio_pipeline
from strata.core.models.tiny_video import MAX_FRAMES, write_tiny_motion_adapter
from strata.core.service import Strata


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return (write_tiny_motion_adapter(root / "a"), write_tiny_motion_adapter(root / "b"),
            write_tiny_motion_adapter(root / "c", seed=1))


@pytest.fixture(scope="module")
def audio_pipelines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("audio")
    return write_tiny_audio_pipeline(root / "a"), write_tiny_audio_pipeline(root / "b")


def test_the_motion_adapter_is_the_same_bytes_for_a_seed_and_fits_the_tiny_unet(
    adapters: tuple[Path, Path, Path], tiny_model_folder: Path
) -> None:
    first, again, other = adapters
    assert files_of(first) == files_of(again)
    assert set(files_of(first)) == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert weights_digest(first) != weights_digest(other)  # the seed decides the weights
    config = json.loads((first / "config.json").read_text())
    unet = json.loads((tiny_model_folder / "unet" / "config.json").read_text())
    assert config["_class_name"] == "MotionAdapter"
    assert config["block_out_channels"] == unet["block_out_channels"]
    assert config["motion_layers_per_block"] == unet["layers_per_block"]
    assert config["motion_max_seq_length"] == MAX_FRAMES


def test_the_audio_pipeline_is_the_same_bytes_and_loads_offline(
    audio_pipelines: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, again = audio_pipelines
    assert files_of(first) == files_of(again)
    index = json.loads((first / "model_index.json").read_text())
    assert index["_class_name"] == "AudioLDMPipeline"
    assert {"text_encoder", "tokenizer", "unet", "vae", "vocoder", "scheduler"} <= set(index)

    from diffusers import DiffusionPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipeline = DiffusionPipeline.from_pretrained(first, local_files_only=True)
    assert pipeline.vocoder.config.sampling_rate == SAMPLE_RATE
    # Byte-level vocabulary: any text is read without the unknown token.
    tokenizer = pipeline.tokenizer
    ids = tokenizer("un chien aboie ☃ über Straße").input_ids
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "un chien aboie ☃ über Straße"


def test_a_used_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    for write in (write_tiny_motion_adapter, write_tiny_audio_pipeline):
        folder = tmp_path / write.__name__
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
        with pytest.raises(ModelFolderNotEmpty):
            write(folder)
        assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["write_tiny_motion_adapter", "write_tiny_audio_pipeline"])  # no staging left


def test_write_tiny_registers_each_kind_under_its_name(strata: Strata) -> None:
    video = models.write_tiny(strata, kind="video")
    assert video.data["name"] == "tiny-motion"
    assert video.data["digest"] == weights_digest(Path(video.data["path"]))
    named = models.write_tiny(strata, "my-audio", kind="audio")
    assert named.data["name"] == "my-audio"
    assert (Path(named.data["path"]) / "model_index.json").is_file()
    with strata.view() as conn:
        assert [m.name for m in models.all_models(conn)] == ["my-audio", "tiny-motion"]
    with pytest.raises(ModelError, match="unknown tiny model kind 'music'"):
        models.write_tiny(strata, kind="music")
