"""Generation: a prompt → a batch of candidate images, one per seed.

`generation.requested` carries every parameter, the seeds chosen at request time and the
model's registered identity; the executor runs the diffusers text-to-image pipeline and
records `generation.completed` with the digest of the weights it actually loaded, the
scheduler's full configuration, library versions, device, dtype and timings. On the CPU
the same request gives the same bytes, which is what reproducing an output relies on.
"""

from __future__ import annotations

import io
import json
import platform
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, ValidationError, field_validator, model_validator

from strata.core.config import strata_version
from strata.core.errors import InvalidInput
from strata.core.ledger.event_types import DIGEST_PATTERN, JobCompleted, JobRequest, ProducedAsset
from strata.core.ledger.events import Payload, explain, registry
from strata.core.models.pipelines import SCHEDULERS
from strata.core.runtime.executor import Executor, JobContext

if TYPE_CHECKING:
    from PIL import Image

    from strata.core.models.pipelines import PipelineCache
    from strata.core.service import Strata

MAX_SEED = 2**63 - 1
BATCH = 8  # images denoised together; bounds memory for large n


class ModelRef(Payload):
    name: str
    path: str
    digest: str = Field(pattern=DIGEST_PATTERN)


@registry.register("generation.requested")
class GenerationRequested(JobRequest):
    prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str | None = Field(default=None, max_length=4000)
    seeds: list[int] = Field(min_length=1, max_length=256)
    steps: int = Field(default=20, ge=1, le=500)
    cfg: float = Field(default=7.5, ge=0, le=50)
    width: int = Field(default=64, ge=8, le=8192)
    height: int = Field(default=64, ge=8, le=8192)
    scheduler: str = "ddim"
    model: ModelRef
    device: str | None = None
    dtype: str | None = None
    parent: str | None = Field(default=None, pattern=DIGEST_PATTERN)  # the asset iterated on

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_eight(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"{value} is not a multiple of 8")
        return value

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if value not in SCHEDULERS:
            names = ", ".join(SCHEDULERS)
            raise ValueError(f"unknown scheduler {value!r}; use one of {names}")
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


class SchedulerUsed(Payload):
    name: str
    class_name: str
    config: dict[str, Any]


class Timings(Payload):
    load_s: float
    generate_s: float
    store_s: float
    total_s: float


@registry.register("generation.completed")
class GenerationCompleted(JobCompleted):
    model: ModelRef  # the digest of the weights actually loaded
    scheduler: SchedulerUsed
    device: str
    dtype: str
    versions: dict[str, str]
    timings: Timings


def recipe_text(request: GenerationRequested, seed: int, digest: str) -> str:
    """The generation parameters embedded in each PNG, so the file explains itself.

    Deterministic (no times, no job ids), so the same request gives the same bytes.
    """
    recipe = {
        "prompt": request.prompt, "negative_prompt": request.negative_prompt, "seed": seed,
        "steps": request.steps, "cfg": request.cfg, "width": request.width,
        "height": request.height, "scheduler": request.scheduler,
        "model": request.model.name, "model_digest": digest,
    }
    return json.dumps(recipe, sort_keys=True)


def encode_png(image: Image.Image, recipe: str) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("strata", recipe)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


class GenerationExecutor(Executor):
    layer: ClassVar[str] = "generation"
    version: ClassVar[str] = "1"

    def __init__(self, pipelines: PipelineCache, device: str | None = None,
                 max_pixels: int = 4096 * 4096) -> None:
        self.pipelines = pipelines
        self.device = device
        self.max_pixels = max_pixels

    def run(self, ctx: JobContext) -> GenerationCompleted:
        import torch

        from strata.core.models.pipelines import (
            choose_device,
            choose_dtype,
            library_versions,
            set_scheduler,
        )
        from strata.core.models.registry import model_digest

        request = ctx.request
        assert isinstance(request, GenerationRequested)
        if request.width * request.height > self.max_pixels:
            raise InvalidInput(
                f"{request.width}x{request.height} is out of range for this worker: "
                f"at most {self.max_pixels:,} pixels per image"
            )
        begin = time.perf_counter()
        device = choose_device(request.device or self.device)
        dtype = choose_dtype(device, request.dtype)
        pipeline = self.pipelines.get(Path(request.model.path), device, dtype)
        digest = model_digest(ctx.strata, Path(request.model.path))
        set_scheduler(pipeline, request.scheduler)
        loaded = time.perf_counter()

        total_steps = request.steps * -(-len(request.seeds) // BATCH)
        done = 0

        def on_step(_pipe: Any, _step: int, _timestep: Any, kwargs: dict) -> dict:
            nonlocal done
            done += 1
            ctx.progress(done, total_steps)
            return kwargs

        images: list[Image.Image] = []
        for start in range(0, len(request.seeds), BATCH):
            seeds = request.seeds[start:start + BATCH]
            # CPU generators make the starting noise identical on every device.
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            result = pipeline(
                prompt=[request.prompt] * len(seeds),
                negative_prompt=[request.negative_prompt] * len(seeds)
                if request.negative_prompt else None,
                num_inference_steps=request.steps,
                guidance_scale=request.cfg,
                width=request.width,
                height=request.height,
                generator=generators,
                callback_on_step_end=on_step,
            )
            images.extend(result.images)
        generated = time.perf_counter()

        outputs = []
        inputs = [{"digest": request.parent, "role": "parent"}] if request.parent else []
        for seed, image in zip(request.seeds, images, strict=True):
            info = ctx.strata.blobs.ingest_bytes(encode_png(image, recipe_text(request, seed,
                                                                               digest)))
            outputs.append(ProducedAsset(asset=info, inputs=inputs, seed=seed,
                                         params={"seed": seed}))
        stored = time.perf_counter()
        scheduler = pipeline.scheduler
        versions = {**library_versions(), "python": platform.python_version(),
                    "strata": strata_version()}
        return GenerationCompleted(
            job_id=ctx.job_id,
            operation="text-to-image",
            outputs=outputs,
            model=ModelRef(name=request.model.name, path=request.model.path, digest=digest),
            scheduler=SchedulerUsed(name=request.scheduler,
                                    class_name=SCHEDULERS[request.scheduler],
                                    config=json.loads(json.dumps(dict(scheduler.config),
                                                                 default=str))),
            device=device,
            dtype=dtype,
            versions=versions,
            timings=Timings(load_s=round(loaded - begin, 4),
                            generate_s=round(generated - loaded, 4),
                            store_s=round(stored - generated, 4),
                            total_s=round(stored - begin, 4)),
        )


def build_request(
    strata: Strata,
    prompt: str,
    *,
    model: str,
    n: int = 1,
    seed: int | None = None,
    negative_prompt: str | None = None,
    steps: int = 20,
    cfg: float = 7.5,
    width: int = 64,
    height: int = 64,
    scheduler: str = "ddim",
    branch: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> GenerationRequested:
    """A validated request; seeds are fixed now (seed, seed+1, …) so the record is complete.

    Everything is checked before anything is appended: a bad argument raises InvalidInput.
    """
    from strata.core.models import registry as models
    from strata.core.runtime import jobs

    if not 1 <= n <= 256:
        raise InvalidInput(f"--n must be between 1 and 256, not {n}")
    with strata.view() as conn:
        registered = models.lookup(conn, model)
    base = secrets.randbelow(2**32) if seed is None else seed
    try:
        return GenerationRequested(
            job_id=jobs.new_job_id(), branch=branch, prompt=prompt,
            negative_prompt=negative_prompt, seeds=[base + i for i in range(n)], steps=steps,
            cfg=cfg, width=width, height=height, scheduler=scheduler,
            model=ModelRef(name=registered.name, path=registered.path,
                           digest=registered.digest),
            device=device, dtype=dtype,
        )
    except ValidationError as error:
        raise InvalidInput(f"invalid generation request: {explain(error)}") from error
