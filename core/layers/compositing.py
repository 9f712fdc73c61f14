"""Compositing: layers of images placed, scaled and blended onto one canvas.

`compositing.requested` lists the layers bottom to top (z-order), each with its position,
scale, opacity, blend mode and optional mask, over a background that is a colour or an
image asset; the canvas size is fixed at request time (default: the background asset's
size, else the bottom layer's scaled size). The executor composites with the W3C separable
blend modes and source-over (formulas in core/imaging/blend.py) and records one PNG whose
inputs are the background asset (role `source`: the picture the layers go onto), each
layer in z-order (role `layer`) and each mask (role `mask`); every layer's settings are in
the output's params, in order.

A layer is scaled with Pillow's Lanczos filter (premultiplied alpha), its mask with it. A
mask must be an image of the layer's own size; its grey level (0 to 255) multiplies the
layer's alpha along with the opacity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, ValidationError, field_validator

from strata.core import layers
from strata.core.errors import InvalidInput
from strata.core.imaging import BlendMode, check_pixels, image_asset, imaging_versions, open_image
from strata.core.ledger.event_types import (
    DIGEST_PATTERN,
    InputRef,
    JobCompleted,
    JobRequest,
    ProducedAsset,
    short,
)
from strata.core.ledger.events import Payload, explain, registry
from strata.core.runtime.executor import Executor, JobContext

if TYPE_CHECKING:
    from strata.core.service import Strata

MAX_LAYERS = 64
MAX_SIDE = 65_536  # per canvas side; the store's max_image_pixels bounds the area
MAX_SCALE = 64.0
CANVAS = re.compile(r"^(\d+)x(\d+)$")
HEX_REFERENCE = re.compile(r"^(sha256:)?[0-9a-fA-F]{4,64}$")
LAYER_FIELDS = ("x", "y", "scale", "opacity", "blend")


def parse_color(text: str) -> tuple[int, int, int, int]:
    """A colour as Pillow reads it ("white", "#ff000080", "rgb(0,0,255)"), or
    "transparent"; RGBA."""
    from PIL import ImageColor

    if text.strip().lower() == "transparent":
        return (0, 0, 0, 0)
    try:
        rgb = ImageColor.getrgb(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a colour (a name such as white, #rrggbb, "
                         "#rrggbbaa or transparent)") from None
    return (*rgb, 255) if len(rgb) == 3 else rgb  # type: ignore[return-value]


class CompositeLayer(Payload):
    """One layer: the asset, where its top-left corner goes, and how it blends."""

    asset: str = Field(pattern=DIGEST_PATTERN)
    x: int = Field(default=0, ge=-MAX_SIDE, le=MAX_SIDE)
    y: int = Field(default=0, ge=-MAX_SIDE, le=MAX_SIDE)
    scale: float = Field(default=1.0, gt=0, le=MAX_SCALE, allow_inf_nan=False)
    opacity: float = Field(default=1.0, ge=0, le=1, allow_inf_nan=False)
    blend: BlendMode = "normal"
    mask: str | None = Field(default=None, pattern=DIGEST_PATTERN)


@registry.register("compositing.requested")
class CompositingRequested(JobRequest):
    layers: list[CompositeLayer] = Field(min_length=1, max_length=MAX_LAYERS)  # bottom first
    width: int = Field(ge=1, le=MAX_SIDE)
    height: int = Field(ge=1, le=MAX_SIDE)
    background: str = "transparent"  # a colour under everything (and under the asset)
    background_asset: str | None = Field(default=None, pattern=DIGEST_PATTERN)

    def summary(self) -> str:
        under = (f"on {short(self.background_asset)}" if self.background_asset
                 else f"on {self.background}")
        modes = ", ".join(dict.fromkeys(layer.blend for layer in self.layers))
        return f"{len(self.layers)} layer(s) ({modes}) {under}, {self.width}x{self.height}"

    @field_validator("background")
    @classmethod
    def _a_colour(cls, value: str) -> str:
        parse_color(value)
        return value


@registry.register("compositing.completed")
class CompositingCompleted(JobCompleted):
    versions: dict[str, str]  # Pillow, numpy, Python, Strata


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


class CompositingExecutor(Executor):
    layer: ClassVar[str] = "compositing"
    version: ClassVar[str] = "1"

    def run(self, ctx: JobContext) -> CompositingCompleted:
        import numpy as np
        from PIL import Image

        from strata.core.imaging.blend import Canvas
        from strata.core.models.diffusion import encode_png

        request = ctx.request_as(CompositingRequested)
        check_pixels(request.width, request.height, ctx.strata.blobs.max_image_pixels, "canvas")
        canvas = Canvas.filled(request.width, request.height, parse_color(request.background))
        inputs: list[InputRef] = []
        if request.background_asset is not None:
            backdrop = open_image(ctx.strata.blobs, request.background_asset)
            if backdrop.size != (request.width, request.height):
                raise InvalidInput(f"the background asset is {backdrop.width}x"
                                   f"{backdrop.height}, the canvas {request.width}x"
                                   f"{request.height}")
            canvas.place(Canvas.of(backdrop), 0, 0, "normal")
            inputs.append(InputRef(digest=request.background_asset, role="source"))
        for done, spec in enumerate(request.layers, start=1):
            image = open_image(ctx.strata.blobs, spec.asset).convert("RGBA")
            size = scaled_size(image.width, image.height, spec.scale)
            check_pixels(*size, ctx.strata.blobs.max_image_pixels, f"layer {done} scaled")
            placed = Canvas.of(image if size == image.size
                               else image.resize(size, Image.Resampling.LANCZOS))
            placed.alpha *= spec.opacity
            inputs.append(InputRef(digest=spec.asset, role="layer"))
            if spec.mask is not None:
                mask = open_image(ctx.strata.blobs, spec.mask).convert("L")
                if mask.size != (image.width, image.height):
                    raise InvalidInput(f"layer {done}: its mask is {mask.width}x{mask.height}, "
                                       f"the layer {image.width}x{image.height}")
                if mask.size != size:
                    mask = mask.resize(size, Image.Resampling.LANCZOS)
                placed.alpha *= np.asarray(mask, dtype=np.float64) / 255
                inputs.append(InputRef(digest=spec.mask, role="mask"))
            canvas.place(placed, spec.x, spec.y, spec.blend)
            ctx.progress(done, len(request.layers))
        params = request.parameters()
        info = ctx.strata.blobs.ingest_bytes(encode_png(canvas.to_image(), {
            "layer": "compositing", **params}))
        return CompositingCompleted(
            job_id=ctx.job_id, operation="composite", versions=imaging_versions(),
            outputs=[ProducedAsset(asset=info, inputs=inputs, params=params)],
        )


# --- requests -----------------------------------------------------------------------------


def parse_layer(text: str) -> dict[str, Any]:
    """`ASSET[:x,y,scale,opacity,blend]`, each setting optional from the right (an empty
    one keeps its default), or named: `ASSET:y=10,blend=screen,mask=MASK`. ASSET may be a
    whole digest, `sha256:` included."""
    scheme = "sha256:" if text.lower().startswith("sha256:") else ""
    reference, _, rest = text[len(scheme):].partition(":")
    layer: dict[str, Any] = {"asset": scheme + reference.strip()}
    if not rest:
        return layer
    items = rest.split(",")
    names = ", ".join((*LAYER_FIELDS, "mask"))
    for position, item in enumerate(items):
        key, equals, value = item.partition("=")
        if not equals:
            if position >= len(LAYER_FIELDS) or any("=" in i for i in items[:position]):
                raise InvalidInput(f"--layer {text!r}: expected ASSET[:x,y,scale,opacity,blend]"
                                   " (settings by position, then name=value)")
            key, value = LAYER_FIELDS[position], item
        key, value = key.strip(), value.strip()
        if key not in (*LAYER_FIELDS, "mask"):
            raise InvalidInput(f"--layer {text!r}: unknown setting {key!r}; settings: {names}")
        if key in layer:
            raise InvalidInput(f"--layer {text!r}: {key} is given twice")
        if value:
            layer[key] = value
    return layer


def load_spec(path: Path) -> dict[str, Any]:
    """A JSON spec: {"layers": [{"asset": …, "x": …, …}], "canvas": "WxH",
    "background": "COLOR or ASSET"} — the same as the options of `strata composite`."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InvalidInput(f"cannot read the spec {path}: {error}") from error
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list):
        raise InvalidInput(f"{path}: a spec is a JSON object with a list of \"layers\"")
    unknown = set(spec) - {"layers", "canvas", "background"}
    if unknown:
        raise InvalidInput(f"{path}: unknown keys {', '.join(sorted(unknown))}; keys: "
                           "layers, canvas, background")
    return spec


def build_request(
    strata: Strata,
    layer_specs: Sequence[dict[str, Any] | str],
    *,
    canvas: str | None = None,
    background: str | None = None,
    branch: str | None = None,
) -> CompositingRequested:
    """A validated request. `layer_specs` are `--layer` strings or dicts of the spec's
    form (asset and mask as hash prefixes), bottom first; `background` a colour or an
    image asset's hash prefix.

    Every input must be an image asset; a mask must have its layer's size; the canvas and
    each scaled layer must stay within the store's max_image_pixels. Nothing is appended.
    """
    from strata.core.runtime import jobs

    if not layer_specs:
        raise InvalidInput("a composite needs at least one --layer")
    sizes: dict[str, tuple[int, int]] = {}

    def image(reference: Any, what: str) -> str:
        if not isinstance(reference, str):
            raise InvalidInput(f"{what}: expected an asset hash prefix, not {reference!r}")
        digest, width, height = image_asset(strata, reference, what)
        sizes[digest] = (width, height)
        return digest

    placed: list[CompositeLayer] = []
    for number, spec in enumerate(layer_specs, start=1):
        fields = parse_layer(spec) if isinstance(spec, str) else dict(spec)
        fields["asset"] = image(fields.get("asset"), f"layer {number}")
        if fields.get("mask") is not None:
            fields["mask"] = image(fields["mask"], f"the mask of layer {number}")
        try:
            placed.append(CompositeLayer.model_validate(fields))
        except ValidationError as error:
            raise InvalidInput(f"layer {number}: {explain(error)}") from error
    background_color, background_asset = "transparent", None
    if background is not None and HEX_REFERENCE.match(background.strip()):
        background_asset = image(background.strip(), "the background")
    elif background is not None:
        background_color = background

    if canvas is not None:
        match = CANVAS.match(canvas.strip())
        if match is None or not all(int(n) for n in match.groups()):
            raise InvalidInput(f"canvas {canvas!r}: expected WIDTHxHEIGHT, e.g. 1024x768")
        width, height = int(match.group(1)), int(match.group(2))
    elif background_asset is not None:
        width, height = sizes[background_asset]
    else:
        width, height = scaled_size(*sizes[placed[0].asset], placed[0].scale)
    try:
        request = CompositingRequested(
            job_id=jobs.new_job_id(), branch=branch, layers=placed, width=width,
            height=height, background=background_color, background_asset=background_asset)
    except ValidationError as error:
        raise InvalidInput(f"invalid composite: {explain(error)}") from error
    _check(strata, request, sizes)
    return request


def check(strata: Strata, request: JobRequest) -> None:
    """The layer's store checks (`Layer.check`): every input is an image asset, a mask has
    its layer's size, the canvas is the background asset's size, and the canvas and each
    scaled layer stay within the store's max_image_pixels."""
    assert isinstance(request, CompositingRequested)
    sizes: dict[str, tuple[int, int]] = {}
    for number, layer in enumerate(request.layers, start=1):
        for digest, what in ((layer.asset, f"layer {number}"),
                             (layer.mask, f"the mask of layer {number}")):
            if digest is not None and digest not in sizes:
                sizes[digest] = image_asset(strata, digest, what)[1:]
    if request.background_asset is not None and request.background_asset not in sizes:
        sizes[request.background_asset] = image_asset(strata, request.background_asset,
                                                       "the background")[1:]
    _check(strata, request, sizes)


def _check(strata: Strata, request: CompositingRequested,
           sizes: dict[str, tuple[int, int]]) -> None:
    """`check`, given the size of every input image (each known to be an image)."""
    width, height = request.width, request.height
    if request.background_asset is not None and sizes[request.background_asset] != (
            width, height):
        bw, bh = sizes[request.background_asset]
        raise InvalidInput(f"canvas {width}x{height} differs from the background asset's "
                           f"{bw}x{bh}; leave the canvas out, or place the image as a "
                           "layer")
    limit = strata.blobs.max_image_pixels
    check_pixels(width, height, limit, "canvas")
    for number, layer in enumerate(request.layers, start=1):
        check_pixels(*scaled_size(*sizes[layer.asset], layer.scale), limit,
                     f"layer {number} scaled")
        if layer.mask is not None and sizes[layer.mask] != sizes[layer.asset]:
            (mw, mh), (lw, lh) = sizes[layer.mask], sizes[layer.asset]
            raise InvalidInput(f"layer {number}: its mask is {mw}x{mh}, the layer {lw}x{lh}; "
                               "a mask must have its layer's size")


def build_request_from_spec(strata: Strata, path: Path,
                            branch: str | None = None) -> CompositingRequested:
    """A request from a JSON spec file (see `load_spec`)."""
    spec = load_spec(path)
    return build_request(strata, spec["layers"], canvas=spec.get("canvas"),
                         background=spec.get("background"), branch=branch)


LAYER = layers.register(layers.Layer(
    name="compositing",
    description="place, scale and blend image layers onto one canvas (W3C blend modes)",
    requested=CompositingRequested,
    completed=CompositingCompleted,
    executor=lambda _resources: CompositingExecutor(),
    check=check,
))
