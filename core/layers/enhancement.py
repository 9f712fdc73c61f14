"""Enhancement: an ordered chain of finishing operations on one image.

`enhancement.requested` names the source and one ordered list of operations — upscale
(Lanczos or a registered diffusers upscaler), auto-contrast, white balance, saturation,
gamma, sharpen, denoise — applied in that order (the command line keeps the order the
options were typed in). What each operation does is documented in
core/imaging/enhance.py. `enhancement.completed` records one PNG whose input is the source
(role `source`), the operations in its params, and the versions of Pillow and numpy (and
of torch and diffusers, with the model's identity, device and dtype, when an upscaler
model ran).

Colour operations work on RGB; an alpha channel is kept aside and only scaled (with
Lanczos, whatever the method) when the picture is upscaled. Greyscale and 16-bit pictures
come out as 8-bit RGB.

`--method model` runs a registered Stable Diffusion x4 upscaler folder (diffusers'
StableDiffusionUpscalePipeline, such as stabilityai/stable-diffusion-x4-upscaler),
registered with `strata model add NAME PATH`; the request records the model's digest, and
the worker refuses weights that are not the registered ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationError, model_validator

from strata.core import layers
from strata.core.errors import InvalidInput, ModelError
from strata.core.imaging import check_pixels, image_asset, imaging_versions, open_image
from strata.core.ledger.event_types import (
    DIGEST_PATTERN,
    InputRef,
    JobCompleted,
    JobRequest,
    ProducedAsset,
    short,
)
from strata.core.ledger.events import Payload, explain, registry
from strata.core.models.diffusion import ModelRef
from strata.core.runtime.executor import Executor, JobContext

if TYPE_CHECKING:
    from diffusers import StableDiffusionUpscalePipeline
    from PIL import Image

    from strata.core.service import Strata

MAX_OPERATIONS = 32
# model_index.json class names of the upscalers `--method model` can run, and their factor.
UPSCALER_PIPELINES = {"StableDiffusionUpscalePipeline": 4}
REGISTER_HINT = (
    "register a diffusers upscaler folder (for example a local copy of "
    "stabilityai/stable-diffusion-x4-upscaler) with `strata model add NAME PATH`, "
    "or use --method lanczos")


class UpscalerRun(Payload):
    """The registered upscaler and its own settings: denoising steps, the noise added to
    the low-resolution picture (the x4 upscaler's noise_level), the CPU generator's seed."""

    model: ModelRef
    steps: int = Field(default=20, ge=1, le=500)
    noise_level: int = Field(default=20, ge=0, le=350)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


class Upscale(Payload):
    op: Literal["upscale"] = "upscale"
    factor: Literal[2, 4]
    method: Literal["lanczos", "model"] = "lanczos"
    upscaler: UpscalerRun | None = None  # for method "model" only

    @model_validator(mode="after")
    def _upscaler_for_model(self) -> Upscale:
        if (self.method == "model") != (self.upscaler is not None):
            raise ValueError("method 'model' needs an upscaler, and only it takes one")
        return self


class AutoContrast(Payload):
    op: Literal["auto-contrast"] = "auto-contrast"


class WhiteBalance(Payload):
    op: Literal["white-balance"] = "white-balance"


class Saturation(Payload):
    op: Literal["saturation"] = "saturation"
    factor: float = Field(ge=0, le=10, allow_inf_nan=False)


class Gamma(Payload):
    op: Literal["gamma"] = "gamma"
    gamma: float = Field(ge=0.1, le=10, allow_inf_nan=False)


class Sharpen(Payload):
    op: Literal["sharpen"] = "sharpen"
    radius: float = Field(gt=0, le=100, allow_inf_nan=False)
    amount: int = Field(ge=1, le=1000)  # percent
    threshold: int = Field(default=0, ge=0, le=255)


class Denoise(Payload):
    op: Literal["denoise"] = "denoise"
    strength: float = Field(gt=0, le=1, allow_inf_nan=False)


Operation = Annotated[
    Upscale | AutoContrast | WhiteBalance | Saturation | Gamma | Sharpen | Denoise,
    Field(discriminator="op"),
]


@registry.register("enhancement.requested")
class EnhancementRequested(JobRequest):
    source: str = Field(pattern=DIGEST_PATTERN)
    operations: list[Operation] = Field(min_length=1, max_length=MAX_OPERATIONS)

    def summary(self) -> str:
        return f"{short(self.source)}: {' → '.join(op.op for op in self.operations)}"


@registry.register("enhancement.completed")
class EnhancementCompleted(JobCompleted):
    versions: dict[str, str]
    # Set when an upscaler model ran: the device and dtype it ran with.
    device: str | None = None
    dtype: str | None = None


class EnhancementExecutor(Executor):
    layer: ClassVar[str] = "enhancement"
    version: ClassVar[str] = "1"

    def __init__(self, device: str | None = None) -> None:
        self.device = device
        # Upscaler pipelines by (weights digest, device, dtype): loaded once per worker.
        self._upscalers: dict[tuple[str, str, str], StableDiffusionUpscalePipeline] = {}

    def run(self, ctx: JobContext) -> EnhancementCompleted:
        from PIL import Image

        from strata.core.imaging import enhance
        from strata.core.models.diffusion import encode_png, run_versions

        request = ctx.request_as(EnhancementRequested)
        source = open_image(ctx.strata.blobs, request.source)
        alpha = source.getchannel("A") if "A" in source.getbands() else None
        image = source.convert("RGB")
        ran_on: tuple[str, str] | None = None
        for done, op in enumerate(request.operations, start=1):
            if isinstance(op, Upscale):
                check_pixels(image.width * op.factor, image.height * op.factor,
                             ctx.strata.blobs.max_image_pixels, "upscaled picture")
                if op.method == "model":
                    image, ran_on = self._upscale_with_model(ctx, image, op)
                else:
                    image = enhance.upscale(image, op.factor)
                if alpha is not None:
                    alpha = alpha.resize(image.size, Image.Resampling.LANCZOS)
            elif isinstance(op, AutoContrast):
                image = enhance.auto_contrast(image)
            elif isinstance(op, WhiteBalance):
                image = enhance.white_balance(image)
            elif isinstance(op, Saturation):
                image = enhance.saturation(image, op.factor)
            elif isinstance(op, Gamma):
                image = enhance.gamma(image, op.gamma)
            elif isinstance(op, Sharpen):
                image = enhance.sharpen(image, op.radius, op.amount, op.threshold)
            else:
                image = enhance.denoise(image, op.strength)
            ctx.progress(done, len(request.operations))
        if alpha is not None:
            image.putalpha(alpha)
        params = request.parameters()
        info = ctx.strata.blobs.ingest_bytes(encode_png(image, {"layer": "enhancement",
                                                                **params}))
        versions = imaging_versions()
        if ran_on is not None:
            versions = {**run_versions(), **versions}
        return EnhancementCompleted(
            job_id=ctx.job_id, operation="enhance", versions=versions,
            device=ran_on[0] if ran_on else None, dtype=ran_on[1] if ran_on else None,
            outputs=[ProducedAsset(asset=info, params=params,
                                   inputs=[InputRef(digest=request.source, role="source")])],
        )

    def _upscale_with_model(self, ctx: JobContext, image: Image.Image, op: Upscale
                            ) -> tuple[Image.Image, tuple[str, str]]:
        """Run the registered upscaler on `image`; the weights must be the registered ones."""
        import torch

        from strata.core.models.digest import weights_digest
        from strata.core.models.pipelines import ModelDrift, choose_device, choose_dtype
        from strata.core.models.registry import digest_cache

        run = op.upscaler
        assert run is not None  # the request's validator ties the upscaler to the method
        path = Path(run.model.path)
        found = weights_digest(path, digest_cache(ctx.strata))
        if found != run.model.digest:
            raise ModelDrift(run.model.name, path, run.model.digest, found)
        device = choose_device(self.device)
        dtype = choose_dtype(device)
        key = (found, device, dtype)
        if key not in self._upscalers:
            self._upscalers[key] = _load_upscaler(path, device, dtype)
        # diffusers wraps __call__ in torch.no_grad, which hides it from mypy.
        result = self._upscalers[key](  # type: ignore[operator]
            prompt="", image=image, num_inference_steps=run.steps, noise_level=run.noise_level,
            generator=torch.Generator("cpu").manual_seed(run.seed))
        upscaled: Image.Image = result.images[0].convert("RGB")
        return upscaled, (device, dtype)


def _load_upscaler(path: Path, device: str, dtype: str) -> StableDiffusionUpscalePipeline:
    import torch
    from diffusers import StableDiffusionUpscalePipeline

    from strata.core.models.pipelines import ModelLoadFailed, quiet_library_progress

    try:
        with quiet_library_progress():
            pipeline = StableDiffusionUpscalePipeline.from_pretrained(
                path, local_files_only=True, dtype=getattr(torch, dtype))
    except Exception as error:  # loaders raise many types for a bad folder
        raise ModelLoadFailed(path, error) from error
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


# --- requests -----------------------------------------------------------------------------


def build_request(
    strata: Strata,
    source: str,
    operations: list[dict[str, Any]],
    *,
    upscaler: str | None = None,
    branch: str | None = None,
) -> EnhancementRequested:
    """A validated request: `operations` in order, each a dict with its `op` and settings
    (as the request records them). An upscale with method "model" is given the registered
    upscaler (`upscaler` names it; by default the only one registered), beside any of its
    settings the operation holds (`"upscaler": {"steps": 10}`). The source must be
    an image and every upscaled size within the store's max_image_pixels. Nothing is
    appended."""
    from strata.core.runtime import jobs

    digest = strata.resolve_asset(source)
    resolved = []
    for op in operations:
        if op.get("op") == "upscale" and op.get("method") == "model":
            model = find_upscaler(strata, upscaler)
            op = {**op, "upscaler": {**(op.get("upscaler") or {}), "model": model}}
        resolved.append(op)
    if upscaler is not None and not any(op.get("method") == "model" for op in resolved):
        raise InvalidInput("--model names an upscaler, for --upscale N --method model only")
    try:
        request = EnhancementRequested(job_id=jobs.new_job_id(), branch=branch,
                                       source=digest, operations=resolved)
    except ValidationError as error:
        raise InvalidInput(f"invalid enhancement: {explain(error)}") from error
    check(strata, request)
    return request


def check(strata: Strata, request: JobRequest) -> None:
    """The layer's store checks (`Layer.check`): the source is an image, a model upscale
    runs an upscaler of its factor, and every upscaled size is within the store's
    max_image_pixels."""
    assert isinstance(request, EnhancementRequested)
    _digest, width, height = image_asset(strata, request.source, "the source")
    for op in request.operations:
        if not isinstance(op, Upscale):
            continue
        if op.upscaler is not None:
            model = op.upscaler.model
            factor = UPSCALER_PIPELINES[_upscaler_kind(model.name, Path(model.path))]
            if op.factor != factor:
                raise InvalidInput(f"the upscaler {model.name!r} scales by {factor}, not by "
                                   f"{op.factor}; use --upscale {factor}, or "
                                   "--method lanczos")
        width, height = width * op.factor, height * op.factor
        check_pixels(width, height, strata.blobs.max_image_pixels, "upscaled picture")


def find_upscaler(strata: Strata, name: str | None) -> ModelRef:
    """The registered upscaler named `name`, or the only one registered; a ModelError that
    says how to register one when there is none."""
    from strata.core.models import registry as models

    with strata.view() as conn:
        if name is not None:
            row = models.lookup(conn, name)
            _upscaler_kind(name, Path(row.path))
            found = [row]
        else:
            found = [row for row in models.all_models(conn)
                     if _pipeline_class(Path(row.path)) in UPSCALER_PIPELINES]
    if not found:
        raise ModelError(f"--method model needs an upscaler model, and none is registered: "
                         f"{REGISTER_HINT}")
    if len(found) > 1:
        names = ", ".join(row.name for row in found)
        raise ModelError(f"several upscalers are registered ({names}); choose one with --model")
    return ModelRef(name=found[0].name, path=found[0].path, digest=found[0].digest)


def _upscaler_kind(name: str, path: Path) -> str:
    """The upscaler pipeline class of model `name`'s folder; a ModelError when it is not
    an upscaler."""
    kind = _pipeline_class(path)
    if kind not in UPSCALER_PIPELINES:
        raise ModelError(f"model {name!r} is a {kind or 'model of unknown kind'}, not "
                         f"an upscaler ({', '.join(UPSCALER_PIPELINES)}); {REGISTER_HINT}")
    return kind


def _pipeline_class(path: Path) -> str | None:
    """The diffusers pipeline class a model folder declares, if it is a folder that does."""
    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = index.get("_class_name") if isinstance(index, dict) else None
    return kind if isinstance(kind, str) else None


LAYER = layers.register(layers.Layer(
    name="enhancement",
    description="upscale, colour and sharpen one image, in the order asked",
    requested=EnhancementRequested,
    completed=EnhancementCompleted,
    executor=lambda resources: EnhancementExecutor(resources.device),
    check=check,
))
