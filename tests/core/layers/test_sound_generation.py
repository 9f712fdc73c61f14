"""Sound from a prompt: the tiny AudioLDM pipeline run for real on the CPU. The WAV is read
back; the model's digest, seed, duration, scheduler and versions are recorded; the same
request gives the same bytes; bad requests are refused with nothing appended, replaced
weights fail the job."""

from __future__ import annotations

import io
import json
import math
import shutil
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from strata.core.config import Settings
from strata.core.errors import InvalidInput, ModelError
from strata.core.layers import build_executors
from strata.core.layers.sound import build_generate
from strata.core.models import registry as models
from strata.core.models.tiny_audio import write_tiny_audio_pipeline
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from tests.api.cli.test_cli import Cli

# The pipeline runs are about the executor, not the database.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_audio_pipeline(tmp_path_factory.mktemp("audio") / "tiny-audio")


@pytest.fixture
def audible(strata: Strata, audio_folder: Path) -> Strata:
    models.register(strata, "tiny-audio", audio_folder)
    return strata


def generate(strata: Strata, **options: Any) -> dict[str, Any]:
    """Request sound and run it with a fresh worker (nothing cached between runs)."""
    settings = {"prompt": "rain on a tin roof", "duration": 0.5, "seed": 3, "steps": 2,
                **options}
    request = build_generate(strata, settings.pop("prompt"), settings.pop("duration"),
                             **settings)
    jobs.request(strata, request)
    return Worker(strata, build_executors(("sound",))).wait_for(request.job_id)


def samples_of(data: bytes) -> tuple[tuple[int, int, int], np.ndarray]:
    with wave.open(io.BytesIO(data)) as wav:
        shape = (wav.getnchannels(), wav.getframerate(), wav.getsampwidth())
        return shape, np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


@sqlite_only
def test_sound_is_generated_read_back_and_recorded(audible: Strata,
                                                   audio_folder: Path) -> None:
    row = generate(audible, duration=0.75, seed=3, steps=2, cfg=3.0, negative_prompt="hiss")
    assert row["status"] == "completed", row
    (digest,) = row["outputs"]
    shape, samples = samples_of(audible.blobs.read_bytes(digest))
    assert shape == (1, 16_000, 2)  # mono, the vocoder's rate, 16-bit
    assert len(samples) == 12_000  # 0.75 s
    assert np.abs(samples).max() > 300  # noise, not silence

    requested, _started, completed = audible.ledger.read_stream(jobs.stream(row["job_id"]))
    asked = requested.data
    assert (asked["operation"], asked["prompt"], asked["negative_prompt"], asked["duration"],
            asked["seed"], asked["steps"], asked["cfg"], asked["scheduler"]) == (
        "generate", "rain on a tin roof", "hiss", 0.75, 3, 2, 3.0, "ddim")
    data = completed.data
    assert data["operation"] == "generate"
    assert data["model"]["name"] == "tiny-audio"
    assert data["model"]["digest"] == asked["model"]["digest"]
    assert data["model"]["digest"] == models.model_digest(audible, audio_folder)
    assert data["scheduler"]["class_name"] == "DDIMScheduler"
    assert (data["device"], data["dtype"]) == ("cpu", "float32")
    assert data["encoder"] == {"container": "wav", "sample_format": "s16",
                               "sample_rate": 16_000, "channels": 1}
    assert {"torch", "diffusers", "transformers", "pyav", "numpy"} <= set(data["versions"])
    assert data["outputs"][0]["seed"] == 3
    asset = data["outputs"][0]["asset"]
    assert (asset["media_type"], asset["sample_rate"], asset["channels"],
            asset["duration"]) == ("audio/wav", 16_000, 1, 0.75)
    assert completed.meta["executor"] == "sound/1"


@sqlite_only
def test_the_same_request_gives_the_same_bytes(audible: Strata) -> None:
    first = generate(audible, seed=9)["outputs"]
    again = generate(audible, seed=9)["outputs"]
    other_seed = generate(audible, seed=10)["outputs"]
    other_prompt = generate(audible, seed=9, prompt="a dog barking")["outputs"]
    assert first == again
    assert len({*first, *other_seed, *other_prompt}) == 3


@pytest.mark.parametrize(("options", "message"), [
    ({"duration": 0}, "greater than 0"),
    ({"duration": 0.05}, "0.1 to 60 s"),
    ({"duration": 61}, "0.1 to 60 s"),
    ({"duration": math.nan}, "finite number"),
    ({"prompt": ""}, "prompt"),
    ({"steps": 0}, "steps"),
    ({"cfg": -1}, "cfg"),
    ({"scheduler": "fastest"}, "unknown scheduler 'fastest'"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"dtype": "int8"}, "unknown dtype 'int8'"),
])
def test_bad_requests_are_refused_with_nothing_appended(
    audible: Strata, options: dict[str, Any], message: str
) -> None:
    settings = {"prompt": "rain", "duration": 1.0, **options}
    before = audible.ledger.head_position()
    with pytest.raises(InvalidInput, match=message):
        build_generate(audible, settings.pop("prompt"), settings.pop("duration"), **settings)
    assert audible.ledger.head_position() == before


def test_a_model_that_is_missing_or_not_for_sound_is_refused(
    audible: Strata, tiny_model_folder: Path
) -> None:
    with pytest.raises(ModelError, match="no model named 'nowhere'"):
        build_generate(audible, "rain", 1.0, model="nowhere")
    models.register(audible, "pictures", tiny_model_folder)
    before = audible.ledger.head_position()
    with pytest.raises(InvalidInput, match=r"'pictures' is not a text-to-audio pipeline "
                                           r"\(StableDiffusionPipeline\)"):
        build_generate(audible, "rain", 1.0, model="pictures")
    assert audible.ledger.head_position() == before


@sqlite_only
def test_replaced_weights_fail_the_job(audible: Strata, audio_folder: Path,
                                       tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(audio_folder, folder)
    models.register(audible, "copy", folder)
    other = write_tiny_audio_pipeline(tmp_path / "other", seed=1)
    weights = Path("vocoder", "model.safetensors")
    (folder / weights).write_bytes((other / weights).read_bytes())
    row = generate(audible, model="copy")
    assert (row["status"], row["error_class"], row["outputs"], row["attempts"]) == (
        "failed", "ModelDrift", [], 1)
    assert "the weights of model 'copy'" in row["error_message"]


@sqlite_only
def test_the_command_line_writes_the_tiny_model_and_generates(settings: Settings,
                                                              tmp_path: Path) -> None:
    cli = Cli(settings, tmp_path)
    cli("init", "--no-tiny")
    assert "model tiny-audio at" in cli("model", "tiny", "--kind", "audio").stdout
    cli("sound", "generate", "rain on a tin roof", "--duration", "0.5", "--seed", "2",
        "--steps", "1", "--wait")
    (line,) = cli("log", "--json", "--type", "sound.completed").stdout.splitlines()
    (output,) = json.loads(line)["data"]["outputs"]
    assert output["seed"] == 2
    assert (output["asset"]["media_type"], output["asset"]["duration"]) == ("audio/wav", 0.5)
