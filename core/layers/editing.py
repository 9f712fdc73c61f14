"""Editing: change one image — a masked region, its borders, its whole look, its framing.

`editing.requested` names the operation, the source image and every parameter:

- diffusion edits, through diffusers' inpainting and image-to-image pipelines derived with
  `from_pipe` from the registered model (the PipelineCache kinds "inpaint" and "img2img":
  no second load): `inpaint` (a mask asset), `erase` (inpainting a masked region, the
  prompt optional), `outpaint` (the canvas grows by `left/right/top/bottom` pixels, its
  new border is the mask) and `img2img` (`strength` of change over the whole image);
- Pillow edits: `crop` (box x, y, w, h), `rotate` (degrees counter-clockwise), `flip`
  (horizontal or vertical) and `resize`.

A mask is an asset of its own with the role `mask` (`build_request` turns a mask file or
a `box` into one). It must be an image of the source's size, unless `fit_mask` resizes it
(recorded); pixels of 128 or more are the region to repaint. Inpainting never touches the
rest: the generated picture is pasted back onto the source through the mask (optionally
feathered inwards by `feather` pixels), as AUTOMATIC1111 does, so the VAE's round trip
changes no pixel outside the mask.

`editing.completed` records the model's weight digest, scheduler, device, dtype and
timings when a model ran (the `DiffusionCompleted` shape), and the library versions always.
Outputs are PNGs carrying their recipe; on the CPU the same request gives the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from strata.core import layers
from strata.core.errors import AssetNotFound, InvalidInput
from strata.core.layers.generation import MAX_SEED
from strata.core.ledger.event_types import (
    DIGEST_PATTERN,
    AssetDerived,
    ImportSource,
    InputRef,
    JobRequest,
    ProducedAsset,
    short,
)
from strata.core.ledger.events import explain, registry
from strata.core.models.diffusion import (
    DEFAULT_CFG,
    DeviceName,
    DiffusionCompleted,
    DtypeName,
    ModelRef,
    OptionalSchedulerName,
    SchedulerUsed,
    Timings,
    encode_png,
    prompt_seen,
    prompt_window_warnings,
    run_versions,
    scheduler_used,
)
from strata.core.runtime.executor import Executor, JobContext

if TYPE_CHECKING:
    from PIL import Image

    from strata.core.ledger.events import RecordedEvent
    from strata.core.models.pipelines import PipelineCache
    from strata.core.service import Strata

Operation = Literal["inpaint", "erase", "outpaint", "img2img", "crop", "rotate", "flip",
                    "resize"]
MASKED: frozenset[str] = frozenset({"inpaint", "erase"})
DIFFUSION: frozenset[str] = frozenset({"inpaint", "erase", "outpaint", "img2img"})
RESAMPLING: tuple[str, ...] = ("lanczos", "bicubic", "bilinear", "nearest")
MASK_THRESHOLD = 128  # mask pixels at or above this are repainted
MAX_SIDE = 8192

_DIFFUSION_FIELDS = frozenset({"prompt", "negative_prompt", "strength", "steps", "cfg", "seed",
                               "scheduler", "model", "device", "dtype"})
# The fields each operation reads; any other operation-specific field must stay unset, so a
# recipe never shows a parameter that did nothing.
FIELDS: dict[str, frozenset[str]] = {
    "inpaint": _DIFFUSION_FIELDS | {"mask", "fit_mask", "feather"},
    "erase": _DIFFUSION_FIELDS | {"mask", "fit_mask", "feather"},
    "outpaint": _DIFFUSION_FIELDS | {"left", "right", "top", "bottom", "feather"},
    "img2img": _DIFFUSION_FIELDS,
    "crop": frozenset({"box"}),
    "rotate": frozenset({"angle", "expand"}),
    "flip": frozenset({"direction"}),
    "resize": frozenset({"width", "height", "resample"}),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "inpaint": ("mask", "prompt", "seed", "model"),
    "erase": ("mask", "seed", "model"),
    "outpaint": ("prompt", "seed", "model"),
    "img2img": ("prompt", "seed", "model"),
    "crop": ("box",),
    "rotate": ("angle",),
    "flip": ("direction",),
    "resize": ("width", "height"),
}
_DIFFUSION_DEFAULTS: dict[str, Any] = {"steps": 20, "cfg": DEFAULT_CFG, "scheduler": "ddim"}
DEFAULTS: dict[str, dict[str, Any]] = {
    # Inpainting repaints the masked region from noise; img2img keeps a quarter of the
    # picture (AUTOMATIC1111's default denoising strength).
    "inpaint": {**_DIFFUSION_DEFAULTS, "strength": 1.0, "fit_mask": False, "feather": 0},
    "erase": {**_DIFFUSION_DEFAULTS, "strength": 1.0, "fit_mask": False, "feather": 0,
              "prompt": ""},
    "outpaint": {**_DIFFUSION_DEFAULTS, "strength": 1.0, "feather": 0, "left": 0, "right": 0,
                 "top": 0, "bottom": 0},
    "img2img": {**_DIFFUSION_DEFAULTS, "strength": 0.75},
    "rotate": {"expand": True},
    "resize": {"resample": "lanczos"},
}
_SPECIFIC = frozenset(set().union(*FIELDS.values()))




@registry.register("editing.requested")
class EditingRequested(JobRequest):
    operation: Operation
    source: str = Field(pattern=DIGEST_PATTERN)
    # inpaint, erase
    mask: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    fit_mask: bool | None = None  # resize a mask of another size to the source's
    feather: int | None = Field(default=None, ge=0, le=256)  # pixels, inside the mask
    # diffusion edits
    prompt: str | None = Field(default=None, max_length=4000)
    negative_prompt: str | None = Field(default=None, max_length=4000)
    # NaN compares false with every bound; without allow_inf_nan the message would mislead.
    strength: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    steps: int | None = Field(default=None, ge=1, le=500)
    cfg: float | None = Field(default=None, ge=0, le=50, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    scheduler: OptionalSchedulerName = None
    model: ModelRef | None = None
    device: DeviceName = None
    dtype: DtypeName = None
    # outpaint: pixels added on each side
    left: int | None = Field(default=None, ge=0, le=MAX_SIDE)
    right: int | None = Field(default=None, ge=0, le=MAX_SIDE)
    top: int | None = Field(default=None, ge=0, le=MAX_SIDE)
    bottom: int | None = Field(default=None, ge=0, le=MAX_SIDE)
    # crop: x, y, width, height
    box: tuple[int, int, int, int] | None = None
    # rotate: degrees counter-clockwise; expand grows the canvas to hold the whole picture
    angle: float | None = Field(default=None, ge=-360, le=360, allow_inf_nan=False)
    expand: bool | None = None
    # flip
    direction: Literal["horizontal", "vertical"] | None = None
    # resize
    width: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    height: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    resample: str | None = None

    def summary(self) -> str:
        what = f"{self.operation} {short(self.source)}"
        if self.mask:
            what += f" through mask {short(self.mask)}"
        if self.prompt:
            what += f" {self.prompt[:40]!r}"
        if self.seed is not None:
            what += f", seed {self.seed}"
        return what

    def parameters(self, output: ProducedAsset | None = None) -> dict[str, Any]:
        # Fields another operation reads are unset here: a recipe lists what was used.
        return {k: v for k, v in super().parameters(output).items() if v is not None}

    def prompt_window_warnings(self) -> list[str]:
        if self.model is None:
            return []
        return prompt_window_warnings(self.model.path, {
            "prompt": self.prompt, "negative prompt": self.negative_prompt})

    def reissued(self, data: dict[str, Any], settings: dict[str, Any],
                 output: ProducedAsset | None, fresh_seeds: bool) -> dict[str, Any]:
        """`iterate --seed new` draws a fresh seed for a diffusion edit; otherwise the
        recorded seed is kept, so an iteration changes only what was asked."""
        if fresh_seeds and data.get("seed") is not None:
            return {**data, "seed": secrets.randbelow(2**32)}
        return data

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_the_operation(cls, data: Any) -> Any:
        """Fill the defaults of the operation's own fields, and only those."""
        if not isinstance(data, dict):
            return data
        defaults = DEFAULTS.get(str(data.get("operation")), {})
        return {**data, **{k: v for k, v in defaults.items() if data.get(k) is None}}

    @model_validator(mode="after")
    def _fields_of_the_operation(self) -> EditingRequested:
        used = FIELDS[self.operation]
        stray = sorted(k for k in _SPECIFIC - used if getattr(self, k) is not None)
        if stray:
            raise ValueError(f"{self.operation} takes no {', '.join(stray)}")
        missing = [k for k in REQUIRED[self.operation] if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{self.operation} needs {', '.join(missing)}")
        if self.operation in ("inpaint", "outpaint", "img2img") and not (self.prompt or "").strip():
            raise ValueError(f"{self.operation} needs a prompt")
        if self.operation == "outpaint" and not any((self.left, self.right, self.top,
                                                      self.bottom)):
            raise ValueError("outpaint needs some pixels to add: left, right, top or bottom")
        if self.steps is not None and self.strength is not None and (
                int(self.steps * self.strength) < 1):
            # diffusers runs int(steps * strength) steps; none would be an error there.
            raise ValueError(f"strength {self.strength} of {self.steps} steps runs no step; "
                             "raise the strength or the steps")
        return self

    @field_validator("box")
    @classmethod
    def _box_has_an_area(cls, box: tuple[int, int, int, int] | None
                         ) -> tuple[int, int, int, int] | None:
        if box is not None:
            x, y, width, height = box
            if x < 0 or y < 0:
                raise ValueError(f"the box starts at {x},{y}, outside the image")
            if width < 1 or height < 1:
                raise ValueError(f"the box is {width}x{height}: it holds no pixel")
        return box


    @field_validator("resample")
    @classmethod
    def _known_resampling(cls, value: str | None) -> str | None:
        if value is not None and value not in RESAMPLING:
            raise ValueError(f"unknown resampling {value!r}; use one of {', '.join(RESAMPLING)}")
        return value



    def check_size(self, width: int, height: int) -> None:
        """Refuse what the source's size makes impossible (a crop box outside it, a canvas
        too large); asked when the request is built and again by the executor."""
        if self.box is not None:
            x, y, w, h = self.box
            if x + w > width or y + h > height:
                raise InvalidInput(f"the box {x},{y},{w},{h} reaches outside the "
                                   f"{width}x{height} image")
        if self.operation == "outpaint":
            grown = (width + (self.left or 0) + (self.right or 0),
                     height + (self.top or 0) + (self.bottom or 0))
            if max(grown) > MAX_SIDE:
                raise InvalidInput(f"outpainting would make a {grown[0]}x{grown[1]} image; "
                                   f"at most {MAX_SIDE} pixels a side")


@registry.register("editing.completed")
class EditingCompleted(DiffusionCompleted):
    """What made an edit. A Pillow edit runs no model: the diffusion facts are then None
    (the base declares them required because generation always has them)."""

    model: ModelRef | None = None  # type: ignore[assignment]
    scheduler: SchedulerUsed | None = None  # type: ignore[assignment]
    device: str | None = None  # type: ignore[assignment]
    dtype: str | None = None  # type: ignore[assignment]
    timings: Timings | None = None  # type: ignore[assignment]

    def summary(self) -> str:
        if self.model is None:
            return super(DiffusionCompleted, self).summary()
        return super().summary()


@registry.register("editing.external")
class EditedOutside(AssetDerived):
    """A change saved by a tool outside Strata to a checked-out asset (a workspace file):
    an editing step with no job, operation `external`, the checked-out asset its `source`.

    It is an `asset.derived` to every reader (lineage, provenance, show, diff, audit treat
    it as made outside Strata, `reproduce` takes it as given and `iterate` finds no request
    to re-issue); its own type says it was an edit. The software the saved file names
    (EXIF Software, XMP CreatorTool, PNG Software) is kept in the output's `params`.
    """

    def summary(self) -> str:
        source = ", ".join(short(i.digest) for i in self.output.inputs)
        software = self.output.params.get("software")
        tool = f" in {software}" if software else ""
        return f"{short(self.output.asset.digest)} ← source {source} (edited outside Strata{tool})"


_CREATOR_TOOL = re.compile(
    rb"CreatorTool(?:=\"([^\"]*)\"|>([^<]*)</(?:[A-Za-z]+:)?CreatorTool>)")


def software_named(path: Path, media_type: str) -> str | None:
    """The editing software an image file names: EXIF Software, XMP CreatorTool, or a PNG
    Software text chunk (in that order); None when it names none or is not an image."""
    from PIL import Image, UnidentifiedImageError

    if not media_type.startswith("image/"):
        return None
    try:
        with Image.open(path) as image:
            exif = image.getexif().get(0x0131)  # Software
            xmp = image.info.get("xmp")
            text = image.info.get("Software")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    if isinstance(xmp, str):
        xmp = xmp.encode()
    found = _CREATOR_TOOL.search(xmp) if isinstance(xmp, bytes) else None
    tool = (found.group(1) or found.group(2)).decode("utf-8", "replace") if found else None
    for value in (exif, tool, text):
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value.strip("\x00 "):
            return value.strip("\x00 ")[:200]
    return None


def record_external_edit(strata: Strata, path: Path, source: str,
                         branch: str | None = None) -> RecordedEvent | None:
    """Record the file at `path` as an outside edit of the asset `source`, and, when
    `branch` is given, advance that branch's head to it in the same commit.

    None when the file holds the source's bytes (nothing changed). Bytes that are an
    ancestor of the source (a save that went back to an earlier version) are refused like
    any cycle; a refused file leaves no blob and no event.
    """
    from strata.core.decisions import branches
    from strata.core.ledger.log import ANY_VERSION, retry_on_conflict
    from strata.core.service import asset_stream

    parent = InputRef(digest=strata.resolve_asset(source), role="source")
    with strata.blobs.staging_paths([path]) as (staged,):
        info = staged.info
        if info.digest == parent.digest:
            return None
        strata._refuse_cycles([info.digest], [parent])
        software = software_named(staged.temporary, info.media_type)
        strata.blobs.publish(staged)
    payload = EditedOutside(
        output=ProducedAsset(asset=info, inputs=[parent],
                             params={"software": software} if software else {}),
        source=ImportSource(name=path.name, path=str(path.resolve())))

    def attempt() -> RecordedEvent:
        parts: list[tuple[str, list[Any], int]] = [
            (asset_stream(info.digest), [payload], ANY_VERSION)]
        if branch is not None:  # the head moves from wherever it is now
            name, moves, version = branches.advance_part(strata, branch, info.digest)
            parts.append((name, list(moves), version))
        return strata.record_together(parts)[0]

    return retry_on_conflict(attempt)


def parse_box(text: str) -> tuple[int, int, int, int]:
    """`x,y,w,h` (whole pixels) as a box."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 4 or not all(part.lstrip("-").isdigit() for part in parts):
        raise InvalidInput(f"box {text!r}: expected x,y,w,h in whole pixels, e.g. 8,8,32,16")
    x, y, width, height = (int(part) for part in parts)
    return x, y, width, height


def _recipe(request: EditingRequested) -> dict[str, Any]:
    """The parameters embedded in each PNG (deterministic: no times, ids or paths)."""
    recipe = {k: v for k, v in request.parameters().items()
              if k not in ("model", "device", "dtype")}
    if request.model is not None:
        recipe.update(model=request.model.name, model_digest=request.model.digest)
    return recipe


def _load(strata: Strata, digest: str) -> Image.Image:
    from PIL import Image

    with strata.blobs.open_seekable(digest) as handle, Image.open(handle) as image:
        image.load()
        return image.copy()  # closing the file would drop the pixels of `image`


def _pillow_versions() -> dict[str, str]:
    import PIL

    return {"pillow": PIL.__version__, **{k: v for k, v in run_versions().items()
                                          if k in ("python", "strata")}}


def pillow_edit(request: EditingRequested, image: Image.Image) -> Image.Image:
    """crop, rotate, flip or resize; the image keeps its mode where Pillow allows."""
    from PIL import Image

    if image.mode not in ("1", "L", "LA", "RGB", "RGBA"):
        # Palette and exotic modes cannot be resampled; keep any transparency they have.
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    resampling = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
                  "bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
    if request.operation == "crop":
        assert request.box is not None
        x, y, width, height = request.box
        return image.crop((x, y, x + width, y + height))
    if request.operation == "rotate":
        assert request.angle is not None
        return image.rotate(request.angle, resample=Image.Resampling.BICUBIC,
                            expand=bool(request.expand))
    if request.operation == "flip":
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT
                               if request.direction == "horizontal"
                               else Image.Transpose.FLIP_TOP_BOTTOM)
    assert request.operation == "resize" and request.width and request.height
    return image.resize((request.width, request.height),
                        resample=resampling[request.resample or "lanczos"])


def binary_mask(mask: Image.Image) -> Image.Image:
    """The region to repaint: 255 where the mask's luminance is at least MASK_THRESHOLD."""
    return mask.convert("L").point(lambda value: 255 if value >= MASK_THRESHOLD else 0)


def feathered(mask: Image.Image, feather: int) -> Image.Image:
    """The paste-back alpha: the binary mask, its edge faded over `feather` pixels inwards.

    Blurring alone would spread the mask outwards too and change source pixels next to it;
    the minimum with the mask keeps every pixel outside it at 0.
    """
    from PIL import ImageChops, ImageFilter

    if feather == 0:
        return mask
    return ImageChops.darker(mask, mask.filter(ImageFilter.BoxBlur(feather)))


def paste_back(source: Image.Image, generated: Image.Image, alpha: Image.Image) -> Image.Image:
    """source + (generated - source) * alpha, per pixel: where alpha is 0 the source's own
    bytes, where it is 255 the generated ones, exactly (float64 holds the integers)."""
    import numpy as np
    from PIL import Image

    base = np.asarray(source, dtype=np.float64)
    weight = np.asarray(alpha, dtype=np.float64)[..., None] / 255.0
    blended = base + (np.asarray(generated, dtype=np.float64) - base) * weight
    return Image.fromarray(np.rint(blended).clip(0, 255).astype(np.uint8), mode="RGB")


def extend_canvas(image: Image.Image, request: EditingRequested
                  ) -> tuple[Image.Image, Image.Image]:
    """The outpainting canvas (the border filled by repeating the edge pixels, a context the
    model continues when strength < 1) and its mask (the new border)."""
    import numpy as np
    from PIL import Image

    left, right = request.left or 0, request.right or 0
    top, bottom = request.top or 0, request.bottom or 0
    pixels = np.asarray(image)
    canvas = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge")
    mask = np.full(canvas.shape[:2], 255, dtype=np.uint8)
    mask[top:top + image.height, left:left + image.width] = 0
    return Image.fromarray(canvas, mode="RGB"), Image.fromarray(mask, mode="L")


def _multiple_of_eight(size: tuple[int, int]) -> tuple[int, int]:
    return (max(8, -(-size[0] // 8) * 8), max(8, -(-size[1] // 8) * 8))


class EditingExecutor(Executor):
    layer: ClassVar[str] = "editing"
    version: ClassVar[str] = "1"

    def __init__(self, pipelines: PipelineCache, device: str | None = None,
                 max_pixels: int = 4096 * 4096) -> None:
        self.pipelines = pipelines
        self.device = device
        self.max_pixels = max_pixels

    def run(self, ctx: JobContext) -> EditingCompleted:
        request = ctx.request_as(EditingRequested)
        source = _load(ctx.strata, request.source)
        request.check_size(*source.size)
        if request.operation in DIFFUSION:
            return self._diffuse(ctx, request, source)
        edited = pillow_edit(request, source)
        ctx.progress(1, 1)
        info = ctx.strata.blobs.ingest_bytes(encode_png(edited, _recipe(request)))
        return EditingCompleted(
            job_id=ctx.job_id, operation=request.operation, versions=_pillow_versions(),
            outputs=[ProducedAsset(asset=info,
                                   inputs=[InputRef(digest=request.source, role="source")])])

    def _mask(self, ctx: JobContext, request: EditingRequested, size: tuple[int, int]
              ) -> tuple[Image.Image, dict[str, Any]]:
        from PIL import Image

        assert request.mask is not None
        mask = _load(ctx.strata, request.mask)
        facts: dict[str, Any] = {"mask_threshold": MASK_THRESHOLD}
        if mask.size != size:
            if not request.fit_mask:
                raise InvalidInput(_mismatch(mask.size, size))
            facts.update(mask_size=list(mask.size), mask_fit="nearest")
            mask = mask.convert("L").resize(size, resample=Image.Resampling.NEAREST)
        binary = binary_mask(mask)
        if binary.getbbox() is None:
            raise InvalidInput(f"the mask {short(request.mask)} selects no pixel (none is "
                               f"{MASK_THRESHOLD} or brighter)")
        return binary, facts

    def _diffuse(self, ctx: JobContext, request: EditingRequested, source: Image.Image
                 ) -> EditingCompleted:
        import numpy as np
        import PIL
        import torch
        from PIL import Image

        from strata.core.models.pipelines import choose_device, choose_dtype, set_scheduler
        from strata.core.models.registry import digest_cache

        model, seed = request.model, request.seed
        assert model is not None and seed is not None and request.steps and request.strength
        begin = time.perf_counter()
        image = source.convert("RGB")
        inputs = [InputRef(digest=request.source, role="source")]
        facts: dict[str, Any] = {}
        mask: Image.Image | None = None
        if request.operation in MASKED:
            mask, facts = self._mask(ctx, request, image.size)
            assert request.mask is not None
            inputs.append(InputRef(digest=request.mask, role="mask"))
        elif request.operation == "outpaint":
            image, mask = extend_canvas(image, request)
        if image.width * image.height > self.max_pixels:
            raise InvalidInput(f"{image.width}x{image.height} is out of range for this worker: "
                               f"at most {self.max_pixels:,} pixels per image")
        device = choose_device(request.device or self.device)
        dtype = choose_dtype(device, request.dtype)
        # get() refuses weights other than the registered ones: the digest recorded is
        # that of the weights that ran.
        pipeline = self.pipelines.get(
            Path(model.path), device, dtype, "img2img" if request.operation == "img2img"
            else "inpaint", digest=model.digest, name=model.name,
            digest_cache=digest_cache(ctx.strata))
        set_scheduler(pipeline, request.scheduler or "ddim")
        loaded = time.perf_counter()

        # The pipelines work on multiples of 8; the picture goes back to its own size.
        work = _multiple_of_eight(image.size)
        facts["working_size"] = list(work)
        total = min(int(request.steps * request.strength), request.steps)
        done = 0

        def on_step(_pipe: Any, _step: int, _timestep: Any, kwargs: dict) -> dict:
            nonlocal done
            done += 1
            ctx.progress(done, total)
            return kwargs

        options: dict[str, Any] = {
            "prompt": request.prompt or "", "negative_prompt": request.negative_prompt,
            "image": image.resize(work, Image.Resampling.LANCZOS) if work != image.size
            else image,
            "strength": request.strength, "num_inference_steps": request.steps,
            "guidance_scale": request.cfg,
            # A CPU generator makes the starting noise the same on every device.
            "generator": torch.Generator("cpu").manual_seed(seed),
            "callback_on_step_end": on_step,
        }
        if mask is not None:
            options.update(mask_image=mask.resize(work, Image.Resampling.NEAREST),
                           width=work[0], height=work[1])
        generated = pipeline(**options).images[0]
        if generated.size != image.size:
            generated = generated.resize(image.size, Image.Resampling.LANCZOS)
        edited = generated if mask is None else paste_back(
            image, generated, feathered(mask, request.feather or 0))
        made = time.perf_counter()

        info = ctx.strata.blobs.ingest_bytes(encode_png(edited, _recipe(request)))
        stored = time.perf_counter()
        return EditingCompleted(
            job_id=ctx.job_id, operation=request.operation,
            outputs=[ProducedAsset(asset=info, inputs=inputs, seed=seed, params=facts)],
            model=model, scheduler=scheduler_used(pipeline, request.scheduler or "ddim"),
            device=device, dtype=dtype,
            versions={**run_versions(), "pillow": PIL.__version__, "numpy": np.__version__},
            timings=Timings(load_s=round(loaded - begin, 4), generate_s=round(made - loaded, 4),
                            store_s=round(stored - made, 4), total_s=round(stored - begin, 4)),
            prompt_seen=prompt_seen(pipeline, request.prompt),
            negative_prompt_seen=prompt_seen(pipeline, request.negative_prompt),
        )


def _mismatch(mask: tuple[int, int], source: tuple[int, int]) -> str:
    return (f"the mask is {mask[0]}x{mask[1]} but the source is {source[0]}x{source[1]}; "
            "use a mask of the source's size, or --fit-mask to resize it (recorded)")


def build_request(
    strata: Strata,
    operation: str,
    source: str,
    *,
    mask: str | None = None,
    box: tuple[int, int, int, int] | None = None,
    model: str | None = None,
    seed: int | None = None,
    branch: str | None = None,
    **options: Any,
) -> EditingRequested:
    """A validated edit of `source` (an asset reference).

    `mask` is a mask file or asset reference; for inpaint and erase, `box` (x, y, w, h)
    makes the mask instead, and for crop it is the region kept. `model` is a registered
    model name (default: the store's `default_model`) for the diffusion edits; their seed is
    fixed now (random when not given) so the record is complete, and without a cfg they
    take the one the model recommends, if any. `options` are the request's other fields.

    Everything is checked before anything is appended; then a mask file or box becomes a
    mask asset (an `asset.imported`, or an `asset.derived` from the source for a box), and
    the request, returned for the caller to submit, names it.
    """
    from strata.core.models import registry as models
    from strata.core.runtime import jobs

    if operation not in FIELDS:
        raise InvalidInput(f"unknown edit {operation!r}; edits: {', '.join(FIELDS)}")
    digest = strata.resolve_asset(source)
    size = _source_size(strata, digest)
    with strata.view() as conn:
        registered = (models.lookup(conn, model or strata.store.settings.default_model)
                      if operation in DIFFUSION else None)
    if operation in DIFFUSION and seed is None:
        seed = secrets.randbelow(2**32)
    if registered is not None and options.get("cfg") is None:
        # None when it recommends none: then the edit's own default.
        options["cfg"] = models.recommended_cfg(registered.name, registered.path, operation)
    mask_digest, mask_data, mask_file = None, None, None
    mask_box = None  # the box a mask is made from
    if operation in MASKED:
        if (mask is None) == (box is None):
            raise InvalidInput(f"{operation} needs a mask: --mask FILE|ASSET or --box x,y,w,h "
                               "(one of them)")
        if box is not None:
            mask_box, box = box, None
            mask_data = _box_mask(mask_box, size)
            mask_digest = "sha256:" + hashlib.sha256(mask_data).hexdigest()
        else:
            assert mask is not None
            mask_digest, mask_data, mask_file = _mask_reference(strata, mask)
    elif mask is not None:
        raise InvalidInput(f"{operation} takes no mask")
    try:
        request = EditingRequested(
            job_id=jobs.new_job_id(), branch=branch, operation=operation,  # type: ignore[arg-type]
            source=digest, mask=mask_digest, box=box, seed=seed,
            model=None if registered is None else ModelRef(
                name=registered.name, path=registered.path, digest=registered.digest),
            **options)
    except ValidationError as error:
        raise InvalidInput(f"invalid {operation} request: {explain(error)}") from error
    _check(strata, request, mask_data, mask or "")
    if mask_data is not None:
        stored = _store_mask(strata, mask_data, mask_file, digest, mask_box)
        if stored != mask_digest:  # the file changed since it was checked
            raise InvalidInput(f"the mask file {mask} changed while the request was made; "
                               "try again")
    return request


def check(strata: Strata, request: JobRequest) -> None:
    """The layer's store checks (`Layer.check`): the source is an image the edit fits, and
    a mask is an image asset of its size (or fit to it) that selects some pixel."""
    assert isinstance(request, EditingRequested)
    _check(strata, request, None, short(request.mask) if request.mask else "")


def _check(strata: Strata, request: EditingRequested, mask_data: bytes | None,
           mask_name: str) -> None:
    """`check`, with the bytes of a mask not stored yet (a file's, a box's) given as
    `mask_data`; otherwise a mask is read from the store."""
    size = _source_size(strata, request.source)
    if request.mask is not None:
        if mask_data is None:
            mask_data = _stored_mask(strata, request.mask)
        _check_mask(mask_data, mask_name, size, bool(request.fit_mask))
    request.check_size(*size)


def _source_size(strata: Strata, digest: str) -> tuple[int, int]:
    """The width and height of the image asset `digest`; refused for any other asset."""
    from strata.core.projections import views

    with strata.view() as conn:
        row = views.asset_row(conn, digest)
    if row is None:
        raise AssetNotFound(f"no asset {digest}")
    if not str(row["media_type"]).startswith("image/") or not row["width"]:
        raise InvalidInput(f"the source {short(digest)} is {row['media_type']}, not an "
                           "image; only images can be edited")
    return int(row["width"]), int(row["height"])


def _box_mask(box: tuple[int, int, int, int], size: tuple[int, int]) -> bytes:
    """A mask PNG of the source's size, white inside the box; refused outside the image."""
    from PIL import Image

    x, y, width, height = box
    if width < 1 or height < 1:
        raise InvalidInput(f"the box {x},{y},{width},{height} holds no pixel")
    if x < 0 or y < 0 or x + width > size[0] or y + height > size[1]:
        raise InvalidInput(f"the box {x},{y},{width},{height} reaches outside the "
                           f"{size[0]}x{size[1]} image")
    mask = Image.new("L", size, 0)
    mask.paste(255, (x, y, x + width, y + height))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")  # no metadata: the same box gives the same asset
    return buffer.getvalue()


def _mask_reference(strata: Strata, mask: str) -> tuple[str, bytes | None, Path | None]:
    """A mask's digest, and its bytes and file when it is a file to be stored (None, None
    for an asset: `check` reads it)."""
    path = Path(mask).expanduser()
    if path.is_file():
        data = path.read_bytes()
        return "sha256:" + hashlib.sha256(data).hexdigest(), data, path
    return strata.resolve_asset(mask), None, None


def _stored_mask(strata: Strata, digest: str) -> bytes:
    """The bytes of the mask asset `digest`, which must be an image."""
    from strata.core.projections import views

    with strata.view() as conn:
        row = views.asset_row(conn, digest)
    if row is None:
        raise AssetNotFound(f"no mask asset {digest}")
    if not str(row["media_type"]).startswith("image/"):
        raise InvalidInput(f"the mask {short(digest)} is {row['media_type']}, not an image")
    return strata.blobs.read_bytes(digest)


def _check_mask(data: bytes, name: str, size: tuple[int, int], fit: bool) -> None:
    """The mask must be an image of the source's size (or fit to it) selecting some pixel."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size != size and not fit:
                raise InvalidInput(_mismatch(image.size, size))
            image.load()
            selects = binary_mask(image).getbbox() is not None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        raise InvalidInput(f"the mask {name} is not an image Strata can read: {error}") from error
    if not selects:
        raise InvalidInput(f"the mask {name} selects no pixel (none is {MASK_THRESHOLD} or "
                           "brighter)")


def _store_mask(strata: Strata, data: bytes, file: Path | None, source: str,
                box: tuple[int, int, int, int] | None) -> str:
    """Store a mask as an asset, and return its digest: a file as imported, a box's mask as
    derived from the source (whose size it takes)."""
    from strata.core.projections import views

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with strata.view() as conn:
        if views.asset_row(conn, digest) is not None:
            return digest  # already an asset: a second record of it would say nothing new
    if file is not None:
        (event,) = strata.add_files([file])
    else:
        assert box is not None
        text = ",".join(map(str, box))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"mask-box-{text.replace(',', '-')}.png"
            path.write_bytes(data)
            (event,) = strata.add_files([path], parents=[(source, "source")],
                                        operation=f"mask from box {text}")
    payload = event.payload
    info = payload.output.asset if isinstance(payload, AssetDerived) else payload.asset
    return info.digest


LAYER = layers.register(layers.Layer(
    name="editing",
    description="inpaint, erase, outpaint, img2img (diffusers), crop, rotate, flip, resize "
                "(Pillow) one image",
    requested=EditingRequested,
    completed=EditingCompleted,
    executor=lambda resources: EditingExecutor(resources.pipelines, device=resources.device),
    check=check,
))
