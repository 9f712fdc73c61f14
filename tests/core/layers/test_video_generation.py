"""Video from a prompt: AnimateDiff with the tiny motion adapter over the tiny image model,
for real on the CPU. The MP4 is decoded back with PyAV; both models' digests, the seeds,
frames, fps and encoder settings are recorded; the same request gives the same bytes;
bad requests are refused with nothing appended, replaced adapter weights fail the job."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from strata.core.config import Settings
from strata.core.errors import InvalidInput, ModelError
from strata.core.layers import build_executors
from strata.core.layers.generation import build_request
from strata.core.models import registry as models
from strata.core.models.digest import weights_digest
from strata.core.models.tiny_video import write_tiny_motion_adapter
from strata.core.provenance.recipe import recipe
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from tests.api.cli.test_cli import Cli

# The pipeline runs are about the executor, not the database.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture(scope="module")
def adapter_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_motion_adapter(tmp_path_factory.mktemp("adapter") / "tiny-motion")


@pytest.fixture
def animated(tiny: Strata, adapter_folder: Path) -> Strata:
    """A store with the tiny image model and the tiny motion adapter registered."""
    models.register(tiny, "tiny-motion", adapter_folder)
    return tiny


def generate(strata: Strata, **options: Any) -> dict[str, Any]:
    """Request a clip and run it with a fresh worker (nothing cached between runs)."""
    settings = {"prompt": "a red fox running", "n": 1, "seed": 3, "steps": 2, "frames": 4,
                "fps": 8, **options}
    request = build_request(strata, settings.pop("prompt"), model="tiny", video=True,
                            **settings)
    jobs.request(strata, request)
    return Worker(strata, build_executors(("generation",))).wait_for(request.job_id)


def decoded(data: bytes) -> tuple[dict[str, Any], list[np.ndarray]]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        facts = {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                 "size": (stream.codec_context.width, stream.codec_context.height),
                 "rate": stream.average_rate, "audio": len(container.streams.audio)}
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return facts, frames


@sqlite_only
def test_a_clip_is_generated_decoded_and_recorded(animated: Strata,
                                                  adapter_folder: Path) -> None:
    row = generate(animated, n=2, frames=4, fps=8)
    assert row["status"] == "completed", row
    first, second = row["outputs"]
    assert first != second  # one clip per seed
    requested, _started, completed = animated.ledger.read_stream(jobs.stream(row["job_id"]))
    assert requested.data["seeds"] == [3, 4]
    assert requested.data["video"]["frames"] == 4 and requested.data["video"]["fps"] == 8
    data = completed.data
    assert data["operation"] == "text-to-video"
    assert data["model"]["name"] == "tiny" and data["model"]["digest"].startswith("sha256:")
    assert data["motion_adapter"]["name"] == "tiny-motion"
    assert data["motion_adapter"]["digest"] == weights_digest(adapter_folder)
    assert data["motion_adapter"]["digest"] != data["model"]["digest"]
    assert [o["seed"] for o in data["outputs"]] == [3, 4]
    assert data["encoder"] == {"container": "mp4", "video_codec": "libx264",
                               "pix_fmt": "yuv420p", "x264_threads": 1,
                               "x264_preset": "medium", "x264_crf": 20, "x264_asm": False,
                               "fps": 8}
    assert {"torch", "diffusers", "pyav", "libavcodec", "numpy"} <= set(data["versions"])
    assert completed.meta["executor"] == "generation/1"

    facts, frames = decoded(animated.blobs.read_bytes(first))
    assert facts == {"codec": "h264", "pix_fmt": "yuv420p", "size": (64, 64), "rate": 8,
                     "audio": 0}
    assert len(frames) == 4
    # The frames are the pipeline's, not one picture repeated.
    assert not np.array_equal(frames[0], frames[-1])
    asset = completed.data["outputs"][0]["asset"]
    assert (asset["media_type"], asset["frames"], asset["fps"], asset["duration"]) == (
        "video/mp4", 4, 8.0, 0.5)
    made = recipe(animated, first)
    assert made["seed"] == 3 and made["video"]["frames"] == 4
    assert made["motion_adapter"]["digest"] == data["motion_adapter"]["digest"]


@sqlite_only
def test_the_same_request_gives_the_same_bytes(animated: Strata) -> None:
    first = generate(animated, seed=9)["outputs"]
    again = generate(animated, seed=9)["outputs"]
    other = generate(animated, seed=10)["outputs"]
    assert first == again
    assert other != first


@pytest.mark.parametrize(("options", "message"), [
    ({"frames": 0}, "frames"),
    ({"frames": 129}, "frames"),
    ({"frames": 33}, "at most 32 frames"),
    ({"fps": 0}, "fps"),
    ({"fps": 61}, "fps"),
    ({"width": 60}, "multiple of 8"),
])
def test_bad_clips_are_refused_with_nothing_appended(
    animated: Strata, options: dict[str, Any], message: str
) -> None:
    before = animated.ledger.head_position()
    with pytest.raises(InvalidInput, match=message):
        build_request(animated, "a fox", model="tiny", video=True, **options)
    assert animated.ledger.head_position() == before


def test_an_adapter_that_is_missing_or_does_not_fit_is_refused(
    animated: Strata, adapter_folder: Path, tiny_model_folder: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="no model named 'nowhere'"):
        build_request(animated, "a fox", model="tiny", video=True, motion_adapter="nowhere")
    models.register(animated, "an-image-model", tiny_model_folder)
    with pytest.raises(InvalidInput, match="'an-image-model' is not a motion adapter"):
        build_request(animated, "a fox", model="tiny", video=True,
                      motion_adapter="an-image-model")
    # An adapter made for a UNet of other channels (an SDXL one, say).
    wider = tmp_path / "wider"
    shutil.copytree(adapter_folder, wider)
    config = json.loads((wider / "config.json").read_text())
    (wider / "config.json").write_text(json.dumps({**config,
                                                   "block_out_channels": [320, 640]}))
    models.register(animated, "wider", wider)
    before = animated.ledger.head_position()
    with pytest.raises(InvalidInput, match=r"blocks of \[320, 640\] channels but model "
                                           r"'tiny' has \[32, 64\]"):
        build_request(animated, "a fox", model="tiny", video=True, motion_adapter="wider")
    assert animated.ledger.head_position() == before


@sqlite_only
def test_replaced_adapter_weights_fail_the_job(animated: Strata, adapter_folder: Path,
                                               tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    shutil.copytree(adapter_folder, folder)
    models.register(animated, "swapped", folder)
    other = write_tiny_motion_adapter(tmp_path / "other", seed=1)
    weights = "diffusion_pytorch_model.safetensors"
    (folder / weights).write_bytes((other / weights).read_bytes())
    row = generate(animated, motion_adapter="swapped")
    assert (row["status"], row["error_class"], row["outputs"], row["attempts"]) == (
        "failed", "ModelDrift", [], 1)
    assert "the weights of model 'swapped'" in row["error_message"]
    assert "are not the registered ones" in row["error_message"]


@sqlite_only
def test_the_command_line_makes_a_clip(settings: Settings, tmp_path: Path,
                                       tiny_model_folder: Path, adapter_folder: Path) -> None:
    cli = Cli(settings, tmp_path)
    cli("init", "--no-tiny")
    cli("model", "add", "tiny", str(tiny_model_folder))
    cli("model", "add", "tiny-motion", str(adapter_folder))
    refused = cli("generate", "a fox", "--frames", "4", ok=False)
    assert refused.returncode != 0 and "only apply to clips: add --video" in refused.stderr
    cli("generate", "a fox", "--video", "--frames", "3", "--fps", "6", "--steps", "1",
        "--seed", "5", "--wait")
    (line,) = cli("log", "--json", "--type", "generation.completed").stdout.splitlines()
    (output,) = json.loads(line)["data"]["outputs"]
    assert output["seed"] == 5  # --n defaults to one clip
    assert (output["asset"]["media_type"], output["asset"]["frames"],
            output["asset"]["fps"]) == ("video/mp4", 3, 6.0)


@sqlite_only
def test_an_iteration_changes_frames_and_fps_of_a_clip(animated: Strata) -> None:
    from strata.core.decisions.iteration import iterate

    (clip,) = generate(animated, frames=4, fps=8, seed=3)["outputs"]
    event = iterate(animated, clip, ["frames=2", "fps=4"], "keep")
    assert event.data["changes"]["video"]["to"]["frames"] == 2
    row = Worker(animated, build_executors(("generation",))).wait_for(event.data["job_id"])
    assert row["status"] == "completed", row
    facts, frames = decoded(animated.blobs.read_bytes(row["outputs"][0]))
    assert (len(frames), facts["rate"]) == (2, 4)
    made = recipe(animated, row["outputs"][0])
    assert made["seed"] == 3 and {"digest": clip, "role": "parent"} in made["inputs"]
    before = animated.ledger.head_position()
    with pytest.raises(InvalidInput, match="at most 32 frames"):
        iterate(animated, clip, ["frames=40"], "keep")
    with pytest.raises(InvalidInput, match="frames must be a whole number"):
        iterate(animated, clip, ["frames=2.5"], "keep")
    assert animated.ledger.head_position() == before


def test_frames_do_not_apply_to_pictures(animated: Strata) -> None:
    picture = build_request(animated, "a fox", model="tiny", seed=1)
    data = picture.model_dump(mode="json")
    with pytest.raises(InvalidInput, match="frames apply to clips; this request made pictures"):
        picture.reissued(data, {"frames": 8}, None, fresh_seeds=False)
