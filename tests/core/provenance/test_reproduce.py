"""`reproduce`: the ancestry replayed on the CPU through the real executors and the tiny
model gives "identical" for every step; a step whose weights were replaced is refused
(nothing appended), and with drift allowed is reported with figures and named as the
first divergence; imports and external edits are taken as given; the verdict's
thresholds hold at their boundaries."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from strata.core.decisions import branches
from strata.core.errors import JobError
from strata.core.layers import build_executors, editing, enhancement, motion
from strata.core.layers.generation import build_request
from strata.core.ledger.event_types import AssetInfo, JobRequest
from strata.core.models import registry as models
from strata.core.models.tiny import write_tiny_pipeline
from strata.core.projections import views
from strata.core.projections.lineage import walk
from strata.core.provenance import reproduce as rp
from strata.core.provenance.ancestry import provenance
from strata.core.provenance.report import FORMATS, render
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from tests.core.models.test_model_identity import replace_weights
from tests.core.provenance.story import make_story
from tests.helpers import png_bytes


@pytest.fixture
def backend() -> str:
    return "sqlite"  # heavy runs of real models; the CLI tests cover both backends


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline with other seeded weights: same shapes, other digest."""
    return write_tiny_pipeline(tmp_path_factory.mktemp("other") / "tiny", seed=1)


@pytest.fixture
def model_copy(tiny_model_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_folder, tmp_path / "model"))


def chain(strata: Strata, model: str) -> dict[str, str]:
    """generation (two seeds, on a branch) → inpaint of a box → enhance (upscale, colour)
    → Ken Burns motion; the digests of each stage."""
    worker = Worker(strata, build_executors())

    def run(request: JobRequest) -> list[str]:
        jobs.request(strata, request)
        row = worker.wait_for(request.job_id)
        assert row["status"] == "completed", row["error_message"]
        return list(row["outputs"])

    branches.create(strata, "look")
    picked, _ = run(build_request(strata, "a lighthouse", model=model, n=2, seed=5, steps=2,
                                  branch="look"))
    (inpainted,) = run(editing.build_request(
        strata, "inpaint", picked, box=(8, 8, 24, 16), prompt="warm light", steps=2, seed=9,
        model=model, branch="look"))
    (enhanced,) = run(enhancement.build_request(strata, inpainted, [
        {"op": "upscale", "factor": 2}, {"op": "saturation", "factor": 1.2}], branch="look"))
    (video,) = run(motion.build_request(strata, [enhanced], duration=0.5, fps=8, zoom=1.2,
                                        pan=(0.1, 0.0), branch="look"))
    return {"generated": picked, "inpainted": inpainted, "enhanced": enhanced,
            "video": video}


def head(strata: Strata, branch: str = "look") -> str | None:
    with strata.view() as conn:
        found = views.branch(conn, branch)
    return found["head"] if found else None


def test_a_chain_reproduces_identically_step_by_step(tiny: Strata) -> None:
    made = chain(tiny, "tiny")
    before = head(tiny)
    said: list[str] = []
    event = rp.reproduce(tiny, made["video"], say=said.append)

    assert event.type == "reproduction.verified"
    payload = event.payload
    assert isinstance(payload, rp.ReproductionVerified)
    assert payload.asset == payload.reproduction == made["video"]
    steps = [(s.kind, s.layer, s.operation, s.outcome) for s in payload.steps]
    assert steps == [
        ("job", "generation", "text-to-image", "identical"),
        ("external", "external", "mask from box 8,8,24,16", "external"),
        ("job", "editing", "inpaint", "identical"),
        ("job", "enhancement", "enhance", "identical"),
        ("job", "motion", "kenburns", "identical")]
    generation = payload.steps[0]
    # The whole batch is replayed (denoised together, as recorded) and compared.
    assert [o.verdict for o in generation.outputs] == ["identical", "identical"]
    assert all(o.original == o.reproduction for s in payload.steps for o in s.outputs)
    assert payload.steps[1].note and "cannot be replayed" in payload.steps[1].note
    assert len(said) == 5 and said[2].endswith(": identical")
    # Each replay is a new job of the same layer, caused by the step it replays, and the
    # branch the originals advanced did not move.
    for step in (s for s in payload.steps if s.kind == "job"):
        assert step.job_id and step.job_id != step.original_job
        requested = tiny.ledger.read_stream(jobs.stream(step.job_id))[0]
        assert requested.type == f"{step.layer}.requested"
        assert requested.meta["causation_id"] == step.step
        assert requested.data["branch"] is None
        # Requests that left the device open run where the originals ran.
        assert requested.data.get("device", "cpu") == "cpu"
    assert {s.layer for s in payload.steps if s.job_id and tiny.ledger.read_stream(
        jobs.stream(s.job_id))[0].data.get("device")} == {"generation", "editing"}
    assert head(tiny) == before
    # Identical outputs are the original assets: no link, no new asset.
    with tiny.view() as conn:
        assert all(e.role != "reference" for e in walk(conn, made["generated"], "down"))
    assert [e.data["operation"] for e in tiny.ledger.read_all(types=["asset.derived"])] == [
        "mask from box 8,8,24,16"]


def test_changed_weights_are_refused_and_with_drift_allowed_named_with_figures(
    strata: Strata, model_copy: Path, other_weights: Path,
) -> None:
    recorded = models.register(strata, "m", model_copy).data["digest"]
    made = chain(strata, "m")
    replace_weights(model_copy, other_weights)
    position = strata.ledger.head_position()

    with pytest.raises(rp.ReproductionRefused) as refused:
        rp.reproduce(strata, made["video"])
    message = str(refused.value)
    assert "'m' has drifted" in message and "--allow-model-drift" in message
    assert recorded.removeprefix("sha256:")[:12] in message
    assert strata.ledger.head_position() == position  # nothing appended, nothing ran

    event = rp.reproduce(strata, made["video"], allow_model_drift=True)
    payload = event.payload
    assert isinstance(payload, rp.ReproductionDiverged)
    generation, _mask, inpaint, enhance, video = payload.steps
    assert payload.first_diverged == generation.step
    assert payload.why.startswith("model drift: m ran ")
    assert [d.model_dump() for d in generation.drift] == [{
        "name": "m", "path": str(model_copy.resolve()), "recorded": recorded,
        "ran": models.model_digest(strata, model_copy)}]
    assert generation.outcome in ("different", "visually the same")
    for output in generation.outputs:
        assert output.verdict == generation.outcome != "identical"
        assert set(output.figures) == {"phash_distance", "psnr_db"}
        assert (output.verdict == "visually the same") == (
            output.figures["phash_distance"] <= rp.MAX_PHASH_DISTANCE
            and output.figures["psnr_db"] >= rp.MIN_PSNR_DB)
    # The replay goes on with its own outputs, and says where its inputs parted.
    assert inpaint.drift and enhance.outcome != "identical"
    assert enhance.causes == [
        f"inputs reproduced differently by the step(s) at position {inpaint.position}"]
    assert video.outcome != "identical" and payload.reproduction not in (None, made["video"])
    # Each reproduction that differs is an ordinary asset linked to its original.
    with strata.view() as conn:
        below = {(e.output_digest, e.role) for e in walk(conn, made["video"], "down")}
        above = {(e.input_digest, e.role) for e in walk(conn, payload.reproduction, "up")}
    assert below == {(payload.reproduction, "reference")}
    assert (made["video"], "reference") in above
    # Every provenance format reads the reproduction, reference link included.
    for fmt in FORMATS:
        assert render(strata, payload.reproduction, fmt)
    assert any(e.input == made["video"] and e.role == "reference"
               for e in provenance(strata, payload.reproduction).edges)


def test_the_recorded_weights_are_used_where_they_still_are(
    strata: Strata, model_copy: Path, other_weights: Path,
) -> None:
    models.register(strata, "m", model_copy)
    request = build_request(strata, "a fox", model="m", n=1, seed=2, steps=2)
    jobs.request(strata, request)
    (original,) = Worker(strata, build_executors(("generation",))).wait_for(
        request.job_id)["outputs"]
    models.register(strata, "m", other_weights)  # the name now points elsewhere

    payload = rp.reproduce(strata, original).payload
    assert isinstance(payload, rp.ReproductionVerified)
    (step,) = payload.steps
    assert (step.outcome, step.drift) == ("identical", [])


def test_imports_external_edits_and_decisions_are_taken_as_given(
    tiny: Strata, tmp_path: Path,
) -> None:
    story = make_story(tiny, tmp_path)
    selections = len(list(tiny.ledger.read_all(types=["selection.requested"])))
    payload = rp.reproduce(tiny, story.final).payload
    assert isinstance(payload, rp.ReproductionVerified)
    assert [(s.layer, s.outcome) for s in payload.steps] == [
        ("generation", "identical"), ("generation", "identical"), ("import", "imported"),
        ("external", "external")]
    assert payload.steps[2].note == "imported: no recipe, taken as given"
    # The retouch was made outside Strata: there is no reproduction of the final itself.
    assert payload.reproduction is None
    # Picks, ratings, reviews, the selection and the rollback are decisions, not re-run.
    assert payload.decisions == len(provenance(tiny, story.final).decisions) >= 5
    assert len(list(tiny.ledger.read_all(types=["selection.requested"]))) == selections
    # The iteration is replayed on the reproduction of the asset it started from.
    iteration = payload.steps[1]
    replayed = tiny.ledger.read_stream(jobs.stream(iteration.job_id or ""))[0]
    assert replayed.data["parent"] == story.chosen and replayed.data["steps"] == 3


def test_nothing_to_replay_is_refused_with_nothing_appended(strata: Strata,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(1, (16, 16)))
    digest = strata.add_file(path).data["asset"]["digest"]
    position = strata.ledger.head_position()
    with pytest.raises(JobError, match="nothing to replay"):
        rp.reproduce(strata, digest)
    assert strata.ledger.head_position() == position


# --- the verdict's thresholds ---------------------------------------------------------------


def stored(strata: Strata, data: bytes) -> AssetInfo:
    return strata.blobs.ingest_bytes(data)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_verdicts_at_the_psnr_boundary(strata: Strata) -> None:
    rng = np.random.default_rng(0)
    base = np.zeros((64, 64, 4), dtype=np.uint8)
    base[..., :3] = rng.integers(60, 190, (64, 64, 3))
    base[..., 3] = 255
    # Changing n of the 16,384 values by 10 gives MSE = 100 n / 16384: PSNR is 40 dB at
    # n = 1065.3, so 1065 changes stay above the threshold and 1066 fall below it.
    flat = rng.permutation(64 * 64)[:1066]

    def changed(count: int) -> AssetInfo:
        pixels = base.copy()
        rows, cols = np.unravel_index(flat[:count], (64, 64))
        pixels[rows, cols, 0] += 10
        return stored(strata, png(pixels))

    original = stored(strata, png(base))
    assert rp._compare(strata, original, original).verdict == "identical"
    near, far = rp._compare(strata, original, changed(1065)), rp._compare(
        strata, original, changed(1066))
    assert near.figures["phash_distance"] <= rp.MAX_PHASH_DISTANCE
    assert near.figures["psnr_db"] == pytest.approx(40.0017, abs=1e-3)
    assert near.verdict == "visually the same"
    assert far.figures["psnr_db"] == pytest.approx(39.9976, abs=1e-3)
    assert far.verdict == "different"
    other = rp._compare(strata, original, stored(strata, png_bytes(7, (64, 64))))
    assert other.verdict == "different" and other.figures["phash_distance"] > 4
    resized = rp._compare(strata, original, stored(strata, png_bytes(7, (32, 64))))
    assert (resized.verdict, resized.figures) == ("different", {"sizes": [[64, 64], [32, 64]]})


def test_audio_and_video_verdicts(strata: Strata) -> None:
    from strata.core import av

    time = np.arange(48_000) / 48_000
    tone = np.stack([0.5 * np.sin(2 * np.pi * 440 * time)] * 2)
    quiet = np.random.default_rng(1).normal(0, 0.002, tone.shape)  # about -54 dBFS
    original = stored(strata, av.wav_bytes(tone))
    close = rp._compare(strata, original, stored(strata, av.wav_bytes(tone + quiet)))
    assert close.verdict == "visually the same" and close.figures["audio_samples"] == 48_000
    assert 50 < close.figures["audio_psnr_db"] < 60
    loud = rp._compare(strata, original, stored(strata, av.wav_bytes(tone + 10 * quiet)))
    assert loud.verdict == "different" and loud.figures["audio_psnr_db"] < 40
    short = rp._compare(strata, original, stored(strata, av.wav_bytes(tone[:, :24_000])))
    assert (short.verdict, short.figures["audio_samples"]) == ("different", [48_000, 24_000])

    def clip(shift: int, count: int = 4) -> AssetInfo:
        frames = [Image.fromarray(np.roll(np.asarray(Image.open(io.BytesIO(
            png_bytes(3, (32, 32)))).convert("RGB")), shift + i, axis=1)) for i in range(count)]
        return stored(strata, av.encode_mp4(frames, 4, (32, 32)))

    video = clip(0)
    assert rp._compare(strata, video, video).verdict == "identical"
    moved = rp._compare(strata, video, clip(8))
    assert moved.verdict == "different" and moved.figures["frames"] == 4
    assert moved.figures["min_frame_psnr_db"] < rp.MIN_PSNR_DB
    longer = rp._compare(strata, video, clip(0, 5))
    assert (longer.verdict, longer.figures["frames"]) == ("different", [4, 5])


@pytest.mark.slow
def test_the_demo_final_reproduces_identically(strata: Strata) -> None:
    from strata.core.demo import run_demo

    result = run_demo(strata, lambda _line: None)
    payload = rp.reproduce(strata, result.final).payload
    assert isinstance(payload, rp.ReproductionVerified)
    assert payload.reproduction == result.final
    outcomes = {(s.layer, s.operation): s.outcome for s in payload.steps}
    # The inpainting's mask is drawn from a box: a step made outside any job, taken as given.
    (mask,) = [key for key in outcomes if key[1].startswith("mask from box")]
    assert mask[0] == "external" and outcomes.pop(mask) == "external"
    assert set(outcomes.values()) == {"identical"}
    assert {layer for layer, _ in outcomes} == {
        "generation", "editing", "compositing", "enhancement", "motion", "sound"}


def test_a_replay_that_fails_is_the_divergence(strata: Strata, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(1, (16, 16)))
    source = strata.add_file(path).data["asset"]["digest"]
    request = enhancement.build_request(strata, source, [{"op": "auto-contrast"}])
    jobs.request(strata, request)
    (enhanced,) = Worker(strata, build_executors(("enhancement",))).wait_for(
        request.job_id)["outputs"]
    hex_digest = source.removeprefix("sha256:")
    (strata.store.settings.resolved_home / "objects" / hex_digest[:2] / hex_digest[2:]).unlink()

    payload = rp.reproduce(strata, enhanced).payload
    assert isinstance(payload, rp.ReproductionDiverged)
    imported, replay = payload.steps
    assert (imported.outcome, replay.outcome, replay.outputs) == ("imported", "failed", [])
    assert payload.first_diverged == replay.step and payload.reproduction is None
    assert payload.why == replay.causes[0] and payload.why.startswith("the replay failed: ")
