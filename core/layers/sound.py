"""Sound: synthesized beds, spoken lines, and audio laid under a video.

Four operations of one `sound.requested`:
- `synth`: a deterministic bed made with numpy (presets pad, pulse, noise; a seed for the
  noise and the pad's phases), written as a 16-bit stereo WAV at 48 kHz.
- `voice`: `text` spoken by the espeak-ng program (voice, speed in words per minute); its
  WAV is the output, and `espeak-ng --version` is recorded. espeak-ng is looked up when the
  request is made and again where it runs; without it the error says how to install it.
- `add`: audio tracks mixed under a video. Each track is trimmed (`trim`: start and end in
  the track's own seconds), given `gain_db`, faded in and out over its trimmed length,
  and placed at `offset` seconds of the video. The mix lasts exactly as long as the video:
  a track that runs past the end is cut there, and silence pads the rest; both are
  recorded per track. The video stream is copied as it is; the mix becomes its AAC track.
- `generate`: sound from a prompt through a registered diffusers text-to-audio pipeline
  (AudioLDM, AudioLDM 2, MusicLDM: the ones called with `audio_length_in_s`), seeded by a
  CPU generator so that the same request gives the same bytes on the CPU; written as a
  16-bit mono WAV at the vocoder's rate. The completion records the model's digest (checked
  against its registration before and after loading), the scheduler, device, dtype and
  versions. `strata model tiny --kind audio` writes a tiny AudioLDM whose sound is noise.

Inputs: the video is `source`, each track `audio`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationError, model_validator

from strata.core import layers
from strata.core.errors import AssetNotFound, InvalidInput, JobError
from strata.core.ledger.event_types import (
    DIGEST_PATTERN,
    InputRef,
    JobCompleted,
    JobRequest,
    ProducedAsset,
    short,
)
from strata.core.ledger.events import Payload, explain, registry
from strata.core.models.diffusion import (
    DeviceName,
    DtypeName,
    ModelRef,
    OptionalSchedulerName,
    SchedulerUsed,
)
from strata.core.runtime.executor import Executor, JobContext

if TYPE_CHECKING:
    import numpy as np
    from diffusers import DiffusionPipeline

    from strata.core.service import Strata

MAX_SECONDS = 600.0
PRESETS = ("pad", "pulse", "noise")
NOISE_SMOOTHING = 9  # samples of the noise preset's smoothing window
ESPEAK = "espeak-ng"
INSTALL_ESPEAK = ("espeak-ng is not installed (or not on PATH); install it: "
                  "`apt-get install espeak-ng` (Debian, Ubuntu), `brew install espeak-ng` "
                  "(macOS), or see https://github.com/espeak-ng/espeak-ng")
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
# Text-to-audio models are trained on clips of about ten seconds, and their cost grows with
# the length; a minute bounds a request's work.
MAX_GENERATED_SECONDS = 60.0
# Below a few vocoder hops there is no latent frame to denoise.
MIN_GENERATED_SECONDS = 0.1
DEFAULT_AUDIO_MODEL = "tiny-audio"
# Pipelines called as pipeline(prompt, audio_length_in_s=…, num_inference_steps=…, …).
AUDIO_PIPELINES = ("AudioLDMPipeline", "AudioLDM2Pipeline", "MusicLDMPipeline")


class AudioTrack(Payload):
    """One audio input of `sound add` and how it is laid under the video."""

    audio: str = Field(pattern=DIGEST_PATTERN)
    offset: Seconds = 0.0
    trim: tuple[Seconds, Seconds] | None = None
    fade_in: Seconds = 0.0
    fade_out: Seconds = 0.0
    gain_db: float = Field(default=0.0, ge=-60, le=24, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered_trim(self) -> AudioTrack:
        if self.trim is not None and not self.trim[0] < self.trim[1]:
            raise ValueError(f"trim {self.trim[0]},{self.trim[1]}: the start must come "
                             "before the end")
        return self


@registry.register("sound.requested")
class SoundRequested(JobRequest):
    operation: Literal["synth", "voice", "add", "generate"]
    # synth (and generate: duration, seed)
    preset: Literal["pad", "pulse", "noise"] | None = None
    duration: float | None = Field(default=None, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    bpm: float | None = Field(default=None, gt=0, le=600, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    # voice
    text: str | None = Field(default=None, min_length=1, max_length=5000)
    voice: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,40}$")
    speed: int | None = Field(default=None, ge=80, le=500)  # words per minute
    # add
    video: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    tracks: list[AudioTrack] = Field(default_factory=list, max_length=32)
    # generate
    prompt: str | None = Field(default=None, min_length=1, max_length=4000)
    negative_prompt: str | None = Field(default=None, max_length=4000)
    steps: int | None = Field(default=None, ge=1, le=500)
    cfg: float | None = Field(default=None, ge=0, le=50, allow_inf_nan=False)
    scheduler: OptionalSchedulerName = None
    model: ModelRef | None = None
    device: DeviceName = None
    dtype: DtypeName = None

    def summary(self) -> str:
        if self.operation == "synth":
            return f"synth {self.preset} {self.duration} s, {self.bpm} bpm, seed {self.seed}"
        if self.operation == "voice":
            return f"voice {self.voice} at {self.speed} wpm: {(self.text or '')[:40]!r}"
        if self.operation == "generate":
            return (f"generate {self.duration} s of {(self.prompt or '')[:40]!r}, seed "
                    f"{self.seed}, {self.steps} steps on {self.model and self.model.name}")
        return f"add {len(self.tracks)} track(s) to {short(self.video)}"

    @model_validator(mode="after")
    def _fields_of_the_operation(self) -> SoundRequested:
        needed = {"synth": ("preset", "duration", "bpm", "seed"),
                  "voice": ("text", "voice", "speed"), "add": ("video",),
                  "generate": ("prompt", "duration", "seed", "steps", "cfg", "scheduler",
                               "model")}[self.operation]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{self.operation} needs {', '.join(missing)}")
        if self.operation == "add" and not self.tracks:
            raise ValueError("add needs at least one audio track")
        if (self.operation == "generate" and self.duration is not None
                and not MIN_GENERATED_SECONDS <= self.duration <= MAX_GENERATED_SECONDS):
            raise ValueError(f"generate makes {MIN_GENERATED_SECONDS:g} to "
                             f"{MAX_GENERATED_SECONDS:g} s of sound, not {self.duration:g}")
        return self





class TrackPlaced(Payload):
    """Where one track ended up in the mix, in seconds of the video."""

    audio: str
    start: float
    end: float
    cut: float  # seconds of the (trimmed) track past the video's end, dropped


@registry.register("sound.completed")
class SoundCompleted(JobCompleted):
    versions: dict[str, str]
    encoder: dict[str, Any] = Field(default_factory=dict)
    espeak_ng: str | None = None  # `espeak-ng --version`
    video_duration: float | None = None
    placed: list[TrackPlaced] = Field(default_factory=list)
    padded: float | None = None  # seconds of silence after the last track ends
    # generate: the weights that ran and how
    model: ModelRef | None = None
    scheduler: SchedulerUsed | None = None
    device: str | None = None
    dtype: str | None = None
    prompt_seen: str | None = None  # set when the text encoder's window cut the prompt


class SoundExecutor(Executor):
    layer: ClassVar[str] = "sound"
    version: ClassVar[str] = "1"

    def __init__(self, device: str | None = None) -> None:
        self.device = device
        # The last text-to-audio pipeline, keyed by its digest, device and dtype.
        self._pipeline: tuple[tuple[str, str, str], DiffusionPipeline] | None = None

    def run(self, ctx: JobContext) -> SoundCompleted:
        from strata.core import av

        request = ctx.request_as(SoundRequested)
        if request.operation == "synth":
            assert request.preset and request.duration and request.bpm
            samples = synthesize(request.preset, request.duration, request.bpm,
                                 request.seed or 0)
            info = ctx.strata.blobs.ingest_bytes(av.wav_bytes(samples))
            ctx.progress(1, 1)
            return SoundCompleted(
                job_id=ctx.job_id, operation="synth", versions=av.versions(),
                encoder={"container": "wav", "sample_format": "s16",
                         "sample_rate": av.SAMPLE_RATE, "channels": av.CHANNELS},
                outputs=[ProducedAsset(asset=info, seed=request.seed)])
        if request.operation == "voice":
            data, version = speak(request.text or "", request.voice or "", request.speed or 0)
            info = ctx.strata.blobs.ingest_bytes(data)
            ctx.progress(1, 1)
            return SoundCompleted(job_id=ctx.job_id, operation="voice", versions=av.versions(),
                                  espeak_ng=version, outputs=[ProducedAsset(asset=info)])
        if request.operation == "generate":
            return self._generate(ctx, request)
        return self._add(ctx, request)

    def _generate(self, ctx: JobContext, request: SoundRequested) -> SoundCompleted:
        import torch

        from strata.core import av
        from strata.core.models.diffusion import prompt_seen, run_versions, scheduler_used
        from strata.core.models.pipelines import choose_device, choose_dtype, set_scheduler
        from strata.core.models.registry import digest_cache

        assert request.model and request.duration and request.steps and request.scheduler
        device = choose_device(request.device or self.device)
        dtype = choose_dtype(device, request.dtype)
        pipeline = self._audio_pipeline(request.model, device, dtype, digest_cache(ctx.strata))
        set_scheduler(pipeline, request.scheduler)
        result = pipeline(  # type: ignore[operator]  # its subclasses are callable
            prompt=request.prompt, negative_prompt=request.negative_prompt,
            audio_length_in_s=request.duration, num_inference_steps=request.steps,
            guidance_scale=request.cfg,
            # A CPU generator makes the starting noise the same on every device.
            generator=torch.Generator("cpu").manual_seed(request.seed or 0),
            callback=lambda step, _timestep, _latents: ctx.progress(step + 1, request.steps),
            callback_steps=1)
        rate = int(pipeline.vocoder.config.sampling_rate)  # type: ignore[attr-defined]
        info = ctx.strata.blobs.ingest_bytes(av.wav_bytes(result.audios[:1], rate))
        return SoundCompleted(
            job_id=ctx.job_id, operation="generate", versions={**av.versions(), **run_versions()},
            encoder={"container": "wav", "sample_format": "s16", "sample_rate": rate,
                     "channels": 1},
            model=request.model, scheduler=scheduler_used(pipeline, request.scheduler),
            device=device, dtype=dtype, prompt_seen=prompt_seen(pipeline, request.prompt),
            outputs=[ProducedAsset(asset=info, seed=request.seed)])

    def _audio_pipeline(self, model: ModelRef, device: str, dtype: str,
                        cache_file: Path) -> DiffusionPipeline:
        """The registered text-to-audio pipeline, loaded once per digest, device, dtype."""
        import torch
        from diffusers import DiffusionPipeline

        from strata.core.models.pipelines import ModelLoadFailed, quiet_library_progress
        from strata.core.models.registry import load_registered, quiet_diffusers_warnings

        key = (model.digest, device, dtype)
        if self._pipeline is not None and self._pipeline[0] == key:
            return self._pipeline[1]

        def load(folder: Path) -> DiffusionPipeline:
            try:
                with quiet_library_progress(), quiet_diffusers_warnings():
                    return DiffusionPipeline.from_pretrained(
                        folder, local_files_only=True, dtype=getattr(torch, dtype))
            except Exception as error:
                raise ModelLoadFailed(folder, error) from error

        pipeline = load_registered(model.name, Path(model.path), model.digest, cache_file,
                                   load).to(device)
        pipeline.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
        self._pipeline = (key, pipeline)
        return pipeline

    def _add(self, ctx: JobContext, request: SoundRequested) -> SoundCompleted:
        import numpy as np

        from strata.core import av
        from strata.core.projections import views
        from strata.core.storage.media import probe_av

        assert request.video is not None
        with ctx.strata.view() as conn:
            row = views.asset_row(conn, request.video) or {}
        # The video was probed (decoded in full) when it was stored; its facts are those of
        # these very bytes. Assets recorded before probing existed are probed now.
        frames, fps = row.get("frames"), row.get("fps")
        if not frames or not fps:
            with ctx.strata.blobs.open_seekable(request.video) as handle:
                probed = probe_av(handle, row.get("media_type") or "video")
            frames, fps = probed.frames, probed.fps
        if not frames or not fps:
            raise JobError(f"{short(request.video)} has no video stream")
        video_seconds = frames / fps
        length = round(video_seconds * av.SAMPLE_RATE)
        mix = np.zeros((av.CHANNELS, length), dtype=np.float64)
        placed = []
        for done, track in enumerate(request.tracks, start=1):
            with ctx.strata.blobs.open_seekable(track.audio) as handle:
                samples = shape_track(av.decode_audio(handle), track, av.SAMPLE_RATE)
            start = round(track.offset * av.SAMPLE_RATE)
            kept = max(0, min(samples.shape[1], length - start))
            mix[:, start:start + kept] += samples[:, :kept]
            placed.append(TrackPlaced(
                audio=track.audio, start=round(min(start, length) / av.SAMPLE_RATE, 6),
                end=round((start + kept if kept else min(start, length)) / av.SAMPLE_RATE, 6),
                cut=round((samples.shape[1] - kept) / av.SAMPLE_RATE, 6)))
            ctx.progress(done, len(request.tracks) + 1)
        last_end = max(p.end for p in placed)
        with ctx.strata.blobs.open_seekable(request.video) as handle:
            data = av.replace_audio(handle, np.clip(mix, -1.0, 1.0).astype(np.float32))
        info = ctx.strata.blobs.ingest_bytes(data)
        ctx.progress(len(request.tracks) + 1, len(request.tracks) + 1)
        inputs = [InputRef(digest=request.video, role="source"),
                  *(InputRef(digest=t.audio, role="audio") for t in request.tracks)]
        return SoundCompleted(
            job_id=ctx.job_id, operation="add", versions=av.versions(),
            encoder={"video": "copied", **av.audio_settings()},
            video_duration=round(video_seconds, 6), placed=placed,
            padded=round(max(0.0, video_seconds - last_end), 6),
            outputs=[ProducedAsset(asset=info, inputs=inputs)])


def shape_track(samples: np.ndarray, track: AudioTrack, rate: int) -> np.ndarray:
    """A track trimmed, given its gain and faded in and out (linear ramps)."""
    import numpy as np

    if track.trim is not None:
        samples = samples[:, round(track.trim[0] * rate):round(track.trim[1] * rate)]
    shaped = samples.astype(np.float64) * 10 ** (track.gain_db / 20)
    count = shaped.shape[1]
    fade_in = min(count, round(track.fade_in * rate))
    fade_out = min(count, round(track.fade_out * rate))
    if fade_in:
        shaped[:, :fade_in] *= np.arange(fade_in) / fade_in
    if fade_out:
        shaped[:, count - fade_out:] *= np.arange(fade_out, 0, -1) / fade_out
    return shaped


def synthesize(preset: str, duration: float, bpm: float, seed: int) -> np.ndarray:
    """A stereo bed of `duration` s at av.SAMPLE_RATE, in [-1, 1]; the same arguments give
    the same samples.

    pad: an A-minor chord of slightly detuned sines (random phases from the seed) under a
    slow swell, one swell per four beats; pulse: a 440 Hz blip on every beat, decaying in
    a tenth of a second; noise: seeded white noise smoothed by a short Hann window (a low-pass).
    Every preset fades in and out over 50 ms so that it starts and ends without a click.
    """
    import numpy as np

    from strata.core.av import CHANNELS, SAMPLE_RATE

    rng = np.random.default_rng(seed)
    count = max(1, round(duration * SAMPLE_RATE))
    t = np.arange(count) / SAMPLE_RATE
    beat = 60.0 / bpm
    if preset == "pad":
        mono = np.zeros(count)
        for frequency in (220.0, 261.63, 329.63):
            for detune in (-0.5, 0.5):
                mono += np.sin(2 * np.pi * (frequency + detune) * t + rng.uniform(0, 2 * np.pi))
        mono *= (0.6 + 0.4 * np.sin(2 * np.pi * t / (4 * beat))) / 6 * 0.5
    elif preset == "pulse":
        since_beat = np.mod(t, beat)
        mono = 0.5 * np.sin(2 * np.pi * 440.0 * t) * np.exp(-since_beat / 0.1)
    elif preset == "noise":
        kernel = np.hanning(NOISE_SMOOTHING + 2)[1:-1]
        mono = np.convolve(rng.uniform(-1.0, 1.0, count), kernel / kernel.sum(), mode="same")
        mono *= 0.5 / max(1e-9, float(np.abs(mono).max()))
    else:
        raise InvalidInput(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    edge = min(count // 2, round(0.05 * SAMPLE_RATE))
    if edge:
        ramp = np.arange(edge) / edge
        mono[:edge] *= ramp
        mono[count - edge:] *= ramp[::-1]
    return np.tile(mono, (CHANNELS, 1))


def espeak_path() -> str:
    found = shutil.which(ESPEAK)
    if found is None:
        raise JobError(INSTALL_ESPEAK)
    return found


def speak(text: str, voice: str, speed: int) -> tuple[bytes, str]:
    """espeak-ng's WAV of `text`, and its `--version` line."""
    import subprocess
    import tempfile

    program = espeak_path()
    version = subprocess.run([program, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="strata-voice-") as folder:
        out = Path(folder) / "voice.wav"
        # The text goes through standard input, so that text starting with "-" is not read
        # as an option; -w writes a complete WAV (a pipe's WAV would declare no length).
        done = subprocess.run([program, "-v", voice, "-s", str(speed), "-w", str(out),
                               "--stdin"], input=text.encode(), capture_output=True)
        if done.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            message = done.stderr.decode(errors="replace").strip() or "no sound was written"
            raise JobError(f"espeak-ng could not speak with voice {voice!r}: {message}")
        return out.read_bytes(), version


def build_synth(strata: Strata, preset: str, duration: float, *, bpm: float = 120.0,
                seed: int | None = None, branch: str | None = None) -> SoundRequested:
    """A validated synth request; the seed is chosen now when none is given (recorded)."""
    import secrets

    if preset not in PRESETS:
        raise InvalidInput(f"--preset is one of {', '.join(PRESETS)}, not {preset!r}")
    return _request(operation="synth", preset=preset, duration=duration, bpm=bpm,
                    seed=secrets.randbelow(2**32) if seed is None else seed, branch=branch)


def build_voice(strata: Strata, text: str, *, voice: str = "en", speed: int = 175,
                branch: str | None = None) -> SoundRequested:
    """A validated voice request; refused (nothing appended) without espeak-ng here."""
    request = _request(operation="voice", text=text, voice=voice, speed=speed, branch=branch)
    check(strata, request)
    return request


def build_add(
    strata: Strata,
    video: str,
    audio: list[str],
    *,
    offset: Sequence[float] = (),
    trim: Sequence[tuple[float, float]] = (),
    fade_in: Sequence[float] = (),
    fade_out: Sequence[float] = (),
    gain_db: Sequence[float] = (),
    branch: str | None = None,
) -> SoundRequested:
    """A validated `add` request. Each timing list holds nothing (the default), one value
    (for every track) or one value per track, in the order of `audio`. An audio file (a
    path) is checked first and imported as an asset only once everything is valid."""
    if not audio:
        raise InvalidInput("sound add needs at least one --audio")
    per_track: dict[str, list[Any]] = {}
    for name, values in (("offset", offset), ("trim", trim), ("fade_in", fade_in),
                         ("fade_out", fade_out), ("gain_db", gain_db)):
        if len(values) not in (0, 1, len(audio)):
            raise InvalidInput(f"give --{name.replace('_', '-')} once (for every track) or "
                               f"once per --audio ({len(audio)}), not {len(values)} times")
        per_track[name] = list(values) * len(audio) if len(values) == 1 else list(values)
    source = strata.resolve_asset(video)
    files: list[Path] = []
    digests, imported = [], set()  # imported: the digests of files not stored yet
    for ref in audio:
        path = Path(ref)
        if path.is_file():
            digests.append(_audio_file_digest(strata, path))
            imported.add(digests[-1])
            files.append(path)
        else:
            digests.append(strata.resolve_asset(ref))
    tracks = []
    for index, digest in enumerate(digests):
        chosen = {name: values[index] for name, values in per_track.items() if values}
        try:
            tracks.append(AudioTrack(audio=digest, **chosen))
        except ValidationError as error:
            raise InvalidInput(f"invalid audio track {index + 1}: {explain(error)}") from error
    request = _request(operation="add", video=source, tracks=tracks, branch=branch)
    _check(strata, request, frozenset(imported))
    if files:
        strata.add_files(files)
    return request


def check(strata: Strata, request: JobRequest) -> None:
    """The layer's store checks (`Layer.check`): `add` lays audio assets under a video
    asset, `voice` needs espeak-ng here, `generate` a text-to-audio model."""
    assert isinstance(request, SoundRequested)
    _check(strata, request, frozenset())


def _check(strata: Strata, request: SoundRequested, imported: frozenset[str]) -> None:
    """`check`, but the tracks in `imported` are files checked as sound and imported
    once the request passes."""
    if request.operation == "voice":
        espeak_path()
    elif request.operation == "add":
        assert request.video is not None  # the request model requires it
        _media_of(strata, request.video, "video/",
                  "not a video: sound add lays audio under a video")
        for track in request.tracks:
            if track.audio not in imported:
                _media_of(strata, track.audio, "audio/", "not audio")
    elif request.operation == "generate":
        assert request.model is not None  # the request model requires it
        _check_audio_model(request.model)


def _media_of(strata: Strata, digest: str, prefix: str, otherwise: str) -> None:
    """Refuse the asset `digest` unless its media type starts with `prefix`."""
    from strata.core.projections import views

    with strata.view() as conn:
        row = views.asset_row(conn, digest)
    if row is None:
        raise AssetNotFound(f"no asset {digest}")
    if not row["media_type"].startswith(prefix):
        raise InvalidInput(f"{short(digest)} is {row['media_type']}, {otherwise}")


def _audio_file_digest(strata: Strata, path: Path) -> str:
    """The digest of an audio file about to be imported, once it is known to be sound
    audio (refused like any import otherwise: nothing is stored or appended)."""
    import hashlib

    from strata.core.storage.media import SNIFF_BYTES, inspect

    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
        handle.seek(0)
        digest = f"sha256:{hashlib.file_digest(handle, 'sha256').hexdigest()}"
    try:
        info = inspect(path, head, strata.blobs.max_image_pixels)
    except InvalidInput as error:
        raise InvalidInput(f"{path}: {error}") from error
    if not info.media_type.startswith("audio/"):
        raise InvalidInput(f"{path} is {info.media_type}, not audio")
    return digest


def build_generate(
    strata: Strata,
    prompt: str,
    duration: float,
    *,
    model: str = DEFAULT_AUDIO_MODEL,
    seed: int | None = None,
    negative_prompt: str | None = None,
    steps: int = 10,
    cfg: float = 2.5,
    scheduler: str = "ddim",
    device: str | None = None,
    dtype: str | None = None,
    branch: str | None = None,
) -> SoundRequested:
    """A validated `generate` request on the registered text-to-audio `model`; the seed is
    chosen now when none is given (recorded). Steps and cfg default to AudioLDM's."""
    import secrets

    from strata.core.models import registry as models

    with strata.view() as conn:
        registered = models.lookup(conn, model)
    request = _request(
        operation="generate", prompt=prompt, negative_prompt=negative_prompt,
        duration=duration, seed=secrets.randbelow(2**32) if seed is None else seed,
        steps=steps, cfg=cfg, scheduler=scheduler,
        model=ModelRef(name=registered.name, path=registered.path, digest=registered.digest),
        device=device, dtype=dtype, branch=branch)
    check(strata, request)
    return request


def _check_audio_model(model: ModelRef) -> None:
    """Refuse a model whose folder is not a text-to-audio diffusers pipeline."""
    import json

    try:
        index = json.loads((Path(model.path) / "model_index.json").read_text("utf-8"))
        kind = index.get("_class_name") if isinstance(index, dict) else None
    except (OSError, ValueError):
        kind = None
    if kind not in AUDIO_PIPELINES:
        raise InvalidInput(
            f"model {model.name!r} is not a text-to-audio pipeline "
            f"({kind or 'no diffusers folder'}); sound generate runs "
            f"{', '.join(AUDIO_PIPELINES)} folders; write a tiny one with "
            "`strata model tiny --kind audio`")


def _request(**fields: Any) -> SoundRequested:
    from strata.core.runtime import jobs

    try:
        return SoundRequested(job_id=jobs.new_job_id(), **fields)
    except ValidationError as error:
        raise InvalidInput(f"invalid sound request: {explain(error)}") from error


LAYER = layers.register(layers.Layer(
    name="sound",
    description="sound: synthesized beds (numpy), speech (espeak-ng), sound from a prompt "
                "(diffusers text-to-audio), audio mixed under a video (AAC)",
    requested=SoundRequested,
    completed=SoundCompleted,
    executor=lambda resources: SoundExecutor(device=resources.device),
    check=check,
))
