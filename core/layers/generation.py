"""Generation: a prompt → a batch of candidate images, one per seed.

`generation.requested` carries every parameter, the seeds chosen at request time and the
model's registered identity; the executor runs the diffusers text-to-image pipeline and
records `generation.completed` with the digest of the weights it actually loaded (which
must be the registered one: replaced weights fail the job with ModelDrift), the
scheduler's full configuration, library versions, device, dtype, timings and, when the
text encoder's window cut a prompt, the text it read. On the CPU the same request gives
the same bytes, which is what reproducing an output relies on.

A request is checked where it is made: device, dtype and a finite cfg are validated on the
payload, and `prompt_window_warnings` says, before anything runs, that a prompt is longer
than the model reads.

With `video` set, each seed gives a clip instead of a picture: diffusers' AnimateDiff
pipeline lays a registered motion adapter over the registered image model (derived from
its cached pipeline with `from_pipe`, so the image weights load once), and the frames are
encoded to an H.264 MP4 with the fixed encoder settings of `strata.core.av`. The completion
records both models' digests (each checked against its registration before and after
loading), the encoder settings and PyAV/FFmpeg's versions beside diffusers'.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, ValidationError, field_validator, model_validator

from strata.core import layers
from strata.core.errors import InvalidInput
from strata.core.ledger.event_types import JobRequest, ProducedAsset
from strata.core.ledger.events import Payload, explain, registry
from strata.core.models.diffusion import (
    DEFAULT_CFG,
    DeviceName,
    DiffusionCompleted,
    DtypeName,
    ModelRef,
    SchedulerName,
    Timings,
    encode_png,
    prompt_seen,
    prompt_window_warnings,
    run_versions,
    scheduler_used,
)
from strata.core.runtime.executor import Executor, JobContext

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from PIL import Image

    from strata.core.models.pipelines import PipelineCache
    from strata.core.service import Strata

MAX_SEED = 2**63 - 1
BATCH = 8  # images denoised together; bounds memory for large n
MAX_FRAMES = 128
MAX_FPS = 60
DEFAULT_MOTION_ADAPTER = "tiny-motion"


class VideoSettings(Payload):
    """A clip per seed instead of a picture: its length and the motion adapter that makes
    the image model's frames move together."""

    frames: int = Field(ge=1, le=MAX_FRAMES)
    fps: int = Field(ge=1, le=MAX_FPS)
    motion_adapter: ModelRef


@registry.register("generation.requested")
class GenerationRequested(JobRequest):
    prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str | None = Field(default=None, max_length=4000)
    seeds: list[int] = Field(min_length=1, max_length=256)
    steps: int = Field(default=20, ge=1, le=500)
    # NaN compares false with every bound, so without allow_inf_nan it would be refused as
    # "less than or equal to 50"; this way the message says what is wrong.
    cfg: float = Field(default=DEFAULT_CFG, ge=0, le=50, allow_inf_nan=False)
    width: int = Field(default=64, ge=8, le=8192)
    height: int = Field(default=64, ge=8, le=8192)
    scheduler: SchedulerName = "ddim"
    model: ModelRef
    device: DeviceName = None
    dtype: DtypeName = None
    video: VideoSettings | None = None  # None: pictures

    # frames and fps change a clip's VideoSettings (they are not fields of the request).
    iteration_settings: ClassVar[tuple[str, ...]] = ("n", "seed", "frames", "fps")

    def summary(self) -> str:
        seeds = f"seed {self.seeds[0]}" if len(self.seeds) == 1 else (
            f"seeds {self.seeds[0]}…{self.seeds[-1]}")
        clips = (f", videos of {self.video.frames} frames at {self.video.fps} fps"
                 if self.video else "")
        return f"{len(self.seeds)} x {self.prompt[:40]!r}, {seeds}, {self.steps} steps{clips}"

    def parameters(self, output: ProducedAsset | None = None) -> dict[str, Any]:
        # One output's recipe names its own seed (in its params), not the batch's seeds.
        return {k: v for k, v in super().parameters(output).items() if k != "seeds"}

    def prompt_window_warnings(self) -> list[str]:
        """Warnings to show the requester for prompts the model will not read to the end."""
        return prompt_window_warnings(self.model.path, {
            "prompt": self.prompt, "negative prompt": self.negative_prompt})

    def reissued(self, data: dict[str, Any], settings: dict[str, Any],
                 output: ProducedAsset | None, fresh_seeds: bool) -> dict[str, Any]:
        """Seeds of an iteration: `seed=N` starts there; otherwise the output's own seed
        (or fresh ones); `n=K` asks for K seeds (default: one, or the batch's count when
        the seeds are fresh). `frames=F` and `fps=R` change a clip's length and rate."""
        clip = {name: _integer(name, settings[name]) for name in ("frames", "fps")
                if name in settings}
        if clip:
            if self.video is None:
                raise InvalidInput(f"{' and '.join(clip)} apply to clips; this request "
                                   "made pictures")
            try:
                video = VideoSettings.model_validate({**self.video.model_dump(), **clip})
            except ValidationError as error:
                raise InvalidInput(f"invalid clip: {explain(error)}") from error
            _check_adapter_fits(self.model, video)
            data = {**data, "video": video.model_dump(mode="json")}
        if "seed" in settings:
            base = _integer("seed", settings["seed"])
        elif fresh_seeds:
            base = secrets.randbelow(2**32)
        else:
            base = output.seed if output is not None and output.seed is not None else (
                self.seeds[0])
        keep_one = "seed" not in settings and not fresh_seeds
        count = _integer("n", settings.get("n", 1 if keep_one else len(self.seeds)))
        if not 1 <= count <= 256:
            raise InvalidInput(f"n must be between 1 and 256, not {count}")
        return {**data, "seeds": [base + i for i in range(count)]}

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_eight(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"{value} is not a multiple of 8")
        return value




    @field_validator("seeds")
    @classmethod
    def _seeds_in_range(cls, seeds: list[int]) -> list[int]:
        if any(not 0 <= s <= MAX_SEED for s in seeds):
            raise ValueError(f"seeds must be between 0 and {MAX_SEED}")
        return seeds

    @model_validator(mode="after")
    def _distinct_seeds(self) -> GenerationRequested:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("the seeds of one request must differ")
        return self


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number, not {value!r}")
    return value


@registry.register("generation.completed")
class GenerationCompleted(DiffusionCompleted):
    # Videos only: the adapter whose weights ran, and the MP4 encoder's settings.
    motion_adapter: ModelRef | None = None
    encoder: dict[str, Any] | None = None


def recipe_of(request: GenerationRequested, seed: int, digest: str) -> dict[str, Any]:
    """The generation parameters embedded in each PNG (deterministic: no times, no ids)."""
    return {
        "prompt": request.prompt, "negative_prompt": request.negative_prompt, "seed": seed,
        "steps": request.steps, "cfg": request.cfg, "width": request.width,
        "height": request.height, "scheduler": request.scheduler,
        "model": request.model.name, "model_digest": digest,
    }


class GenerationExecutor(Executor):
    layer: ClassVar[str] = "generation"
    version: ClassVar[str] = "1"

    def __init__(self, pipelines: PipelineCache, device: str | None = None,
                 max_pixels: int = 4096 * 4096) -> None:
        self.pipelines = pipelines
        self.device = device
        self.max_pixels = max_pixels
        # The last AnimateDiff pipeline, keyed by both digests, device and dtype: one is
        # kept, since each holds its own copy of the image model's UNet.
        self._video_pipeline: tuple[tuple[str, str, str, str], DiffusionPipeline] | None = None

    def run(self, ctx: JobContext) -> GenerationCompleted:
        from strata.core.models.pipelines import choose_device, choose_dtype, set_scheduler
        from strata.core.models.registry import digest_cache

        request = ctx.request_as(GenerationRequested)
        if request.width * request.height > self.max_pixels:
            raise InvalidInput(
                f"{request.width}x{request.height} is out of range for this worker: "
                f"at most {self.max_pixels:,} pixels per image"
            )
        begin = time.perf_counter()
        device = choose_device(request.device or self.device)
        dtype = choose_dtype(device, request.dtype)
        # get() refuses weights other than the registered ones, so the digest recorded below
        # is that of the weights that ran.
        pipeline = self.pipelines.get(
            Path(request.model.path), device, dtype, digest=request.model.digest,
            name=request.model.name, digest_cache=digest_cache(ctx.strata))
        if request.video is not None:
            pipeline = self._animated(pipeline, request.model.digest,
                                      request.video.motion_adapter, device, dtype,
                                      digest_cache(ctx.strata))
        set_scheduler(pipeline, request.scheduler)
        loaded = time.perf_counter()

        if request.video is None:
            outputs = self._pictures(ctx, request, pipeline)
        else:
            outputs = self._videos(ctx, request, request.video, pipeline)
        generated = time.perf_counter()

        stored_infos = ctx.strata.blobs.ingest_all(outputs)  # flushed to disk together
        produced = [ProducedAsset(asset=info, seed=seed, params={"seed": seed})
                    for seed, info in zip(request.seeds, stored_infos, strict=True)]
        stored = time.perf_counter()
        extra: dict[str, Any] = {}
        versions = run_versions()
        if request.video is not None:
            from strata.core import av

            extra = {"motion_adapter": request.video.motion_adapter,
                     "encoder": {**av.video_settings(), "fps": request.video.fps}}
            versions = {**av.versions(), **versions}
        return GenerationCompleted(
            job_id=ctx.job_id,
            operation="text-to-image" if request.video is None else "text-to-video",
            outputs=produced,
            model=request.model,
            scheduler=scheduler_used(pipeline, request.scheduler),
            device=device,
            dtype=dtype,
            versions=versions,
            timings=Timings(load_s=round(loaded - begin, 4),
                            generate_s=round(generated - loaded, 4),
                            store_s=round(stored - generated, 4),
                            total_s=round(stored - begin, 4)),
            prompt_seen=prompt_seen(pipeline, request.prompt),
            negative_prompt_seen=prompt_seen(pipeline, request.negative_prompt),
            **extra,
        )

    def _pictures(self, ctx: JobContext, request: GenerationRequested,
                  pipeline: DiffusionPipeline) -> list[bytes]:
        """One PNG per seed, denoised BATCH at a time, each carrying its recipe."""
        import torch

        total_steps = request.steps * -(-len(request.seeds) // BATCH)
        images: list[Image.Image] = []
        for start in range(0, len(request.seeds), BATCH):
            seeds = request.seeds[start:start + BATCH]
            # CPU generators make the starting noise identical on every device.
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            result = pipeline(  # type: ignore[operator]  # its subclasses are callable
                prompt=[request.prompt] * len(seeds),
                negative_prompt=[request.negative_prompt] * len(seeds)
                if request.negative_prompt else None,
                num_inference_steps=request.steps,
                guidance_scale=request.cfg,
                width=request.width,
                height=request.height,
                generator=generators,
                callback_on_step_end=_step_counter(ctx, start // BATCH * request.steps,
                                                   total_steps),
            )
            images.extend(result.images)
        return [encode_png(image, recipe_of(request, seed, request.model.digest))
                for seed, image in zip(request.seeds, images, strict=True)]

    def _videos(self, ctx: JobContext, request: GenerationRequested, video: VideoSettings,
                pipeline: DiffusionPipeline) -> list[bytes]:
        """One MP4 per seed (a clip of video.frames frames at video.fps)."""
        import torch

        from strata.core import av

        clips = []
        for index, seed in enumerate(request.seeds):
            result = pipeline(  # type: ignore[operator]  # its subclasses are callable
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                num_frames=video.frames,
                num_inference_steps=request.steps,
                guidance_scale=request.cfg,
                width=request.width,
                height=request.height,
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="pil",
                callback_on_step_end=_step_counter(ctx, index * request.steps,
                                                   len(request.seeds) * request.steps),
            )
            clips.append(av.encode_mp4(result.frames[0], video.fps,
                                       (request.width, request.height)))
        return clips

    def _animated(self, base: DiffusionPipeline, base_digest: str, adapter: ModelRef,
                  device: str, dtype: str, cache_file: Path) -> DiffusionPipeline:
        """The AnimateDiff pipeline of `base` (whose weights are `base_digest`) with the
        registered motion `adapter`."""
        import torch
        from diffusers import AnimateDiffPipeline, MotionAdapter

        from strata.core.models.pipelines import ModelLoadFailed, quiet_library_progress
        from strata.core.models.registry import load_registered, quiet_diffusers_warnings

        key = (base_digest, adapter.digest, device, dtype)
        if self._video_pipeline is not None and self._video_pipeline[0] == key:
            return self._video_pipeline[1]
        path = Path(adapter.path)

        def load(folder: Path) -> MotionAdapter:
            try:
                with quiet_library_progress(), quiet_diffusers_warnings():
                    return MotionAdapter.from_pretrained(  # type: ignore[no-any-return]
                        folder, local_files_only=True, dtype=getattr(torch, dtype))
            except Exception as error:
                raise ModelLoadFailed(folder, error) from error

        motion = load_registered(adapter.name, path, adapter.digest, cache_file, load)
        try:
            # The motion UNet is built from the image UNet's weights; the rest is shared.
            with quiet_diffusers_warnings():
                pipeline = AnimateDiffPipeline.from_pipe(base, motion_adapter=motion).to(
                    device, getattr(torch, dtype))
        except Exception as error:
            raise ModelLoadFailed(path, error, " (does the motion adapter fit this image "
                                  "model's UNet?)") from error
        pipeline.set_progress_bar_config(disable=True)
        self._video_pipeline = (key, pipeline)
        return pipeline


def _step_counter(ctx: JobContext, done: int, total: int) -> Any:
    """A diffusers step-end callback that reports progress from `done` steps on."""

    def on_step(_pipe: Any, _step: int, _timestep: Any, kwargs: dict) -> dict:
        nonlocal done
        done += 1
        ctx.progress(done, total)
        return kwargs

    return on_step


def build_request(
    strata: Strata,
    prompt: str,
    *,
    model: str | None = None,
    n: int = 1,
    seed: int | None = None,
    negative_prompt: str | None = None,
    steps: int = 20,
    cfg: float | None = None,
    width: int = 64,
    height: int = 64,
    scheduler: str = "ddim",
    branch: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    video: bool = False,
    frames: int = 16,
    fps: int = 8,
    motion_adapter: str = DEFAULT_MOTION_ADAPTER,
) -> GenerationRequested:
    """A validated request; seeds are fixed now (seed, seed+1, …) so the record is complete.
    Without `model`, the store's `default_model` (STRATA_DEFAULT_MODEL; shapes) draws.

    Everything is checked before anything is appended: a bad argument raises InvalidInput.
    A prompt longer than the model reads is not an error; the request's
    `prompt_window_warnings()` says so, for the caller to show. With `video`, each seed
    makes a clip of `frames` frames at `fps`, through the registered `motion_adapter`,
    which must fit the model's UNet and make clips that long. Without `cfg`, the guidance
    is the one the model recommends (`registry.recommended_cfg`), else DEFAULT_CFG.
    """
    from strata.core.models import registry as models
    from strata.core.runtime import jobs

    if not 1 <= n <= 256:
        raise InvalidInput(f"--n must be between 1 and 256, not {n}")
    with strata.view() as conn:
        registered = models.lookup(conn, model or strata.store.settings.default_model)
        adapter = models.lookup(conn, motion_adapter) if video else None
    if cfg is None:
        recommended = models.recommended_cfg(registered.name, registered.path, "generation")
        cfg = DEFAULT_CFG if recommended is None else recommended
    base = secrets.randbelow(2**32) if seed is None else seed
    try:
        request = GenerationRequested(
            job_id=jobs.new_job_id(), branch=branch, prompt=prompt,
            negative_prompt=negative_prompt, seeds=[base + i for i in range(n)], steps=steps,
            cfg=cfg, width=width, height=height, scheduler=scheduler,
            model=ModelRef(name=registered.name, path=registered.path,
                           digest=registered.digest),
            device=device, dtype=dtype,
            video=None if adapter is None else VideoSettings(
                frames=frames, fps=fps, motion_adapter=ModelRef(
                    name=adapter.name, path=adapter.path, digest=adapter.digest)),
        )
    except ValidationError as error:
        raise InvalidInput(f"invalid generation request: {explain(error)}") from error
    check(strata, request)
    return request


def check(strata: Strata, request: JobRequest) -> None:
    """The layer's store checks (`Layer.check`): a video's motion adapter must fit."""
    assert isinstance(request, GenerationRequested)
    if request.video is not None:
        _check_adapter_fits(request.model, request.video)


def _check_adapter_fits(model: ModelRef, video: VideoSettings) -> None:
    """Refuse, from the config files alone, an adapter that is not one, that is made for
    another UNet than the model's, or that cannot make clips of video.frames frames."""
    adapter = video.motion_adapter
    config = _json_file(Path(adapter.path) / "config.json")
    if config is None or config.get("_class_name") != "MotionAdapter":
        raise InvalidInput(
            f"model {adapter.name!r} is not a motion adapter (its folder has no MotionAdapter "
            "config.json); register an AnimateDiff motion adapter folder, or write a tiny "
            "one with `strata model tiny --kind video`")
    longest = config.get("motion_max_seq_length", 32)
    if video.frames > longest:
        raise InvalidInput(f"--frames {video.frames}: the motion adapter {adapter.name!r} "
                           f"makes clips of at most {longest} frames")
    unet = _json_file(Path(model.path) / "unet" / "config.json")
    # A single-file image model has no config to compare; the worker's load then decides.
    if unet is not None and unet.get("block_out_channels") != config.get("block_out_channels"):
        raise InvalidInput(
            f"the motion adapter {adapter.name!r} is made for UNet blocks of "
            f"{config.get('block_out_channels')} channels but model {model.name!r} has "
            f"{unet.get('block_out_channels')}: use an adapter made for this image model")


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


LAYER = layers.register(layers.Layer(
    name="generation",
    description="a prompt → a batch of candidate images, one per seed (diffusers text-to-image)",
    requested=GenerationRequested,
    completed=GenerationCompleted,
    executor=lambda resources: GenerationExecutor(resources.pipelines, device=resources.device),
    check=check,
))
