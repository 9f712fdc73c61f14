"""Motion: still images → a clip (an H.264 MP4 through PyAV, or an animated GIF or WebP
through Pillow).

Two operations:
- `kenburns`: one image, zoomed from 1 to `zoom` and panned by `pan` over `duration` s.
  The view is a window of the image, 1/zoom of its size at time t, whose centre moves from
  the image's centre by pan·(width, height)·t (t from 0 to 1), kept inside the image.
- `sequence`: several images of one size, each held `hold` s, with a `crossfade` s
  dissolve between neighbours: n·round(hold·fps) + (n-1)·round(crossfade·fps) frames.

The output keeps the source's size (an MP4 needs even sides: yuv420p). The completion
records the frame count, the encoder's settings (x264's thread count fixed: its bytes
depend on it) and the library versions; the same request gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
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
from strata.core.ledger.events import explain, registry
from strata.core.runtime.executor import Executor, JobContext

if TYPE_CHECKING:
    from PIL import Image

    from strata.core.service import Strata

MAX_SECONDS = 600.0
MAX_FPS = 60
MAX_FRAMES = 36_000
MAX_SOURCES = 1000
FORMATS = ("mp4", "gif", "webp")
Format = Literal["mp4", "gif", "webp"]
Digest = Annotated[str, Field(pattern=DIGEST_PATTERN)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]


@registry.register("motion.requested")
class MotionRequested(JobRequest):
    operation: Literal["kenburns", "sequence"]
    sources: list[Digest] = Field(min_length=1, max_length=MAX_SOURCES)
    width: int = Field(ge=1, le=16_384)  # the sources' size, the clip's size
    height: int = Field(ge=1, le=16_384)
    fps: int = Field(default=24, ge=1, le=MAX_FPS)
    format: Format = "mp4"
    duration: Seconds | None = None  # kenburns
    zoom: float = Field(default=1.0, ge=1.0, le=10.0, allow_inf_nan=False)
    pan: tuple[float, float] = (0.0, 0.0)
    hold: Seconds = 1.0  # sequence
    crossfade: Seconds = 0.0

    def summary(self) -> str:
        if self.operation == "kenburns":
            return (f"kenburns {short(self.sources[0])} zoom {self.zoom} pan {self.pan}, "
                    f"{self.duration} s at {self.fps} fps → {self.format}")
        return (f"sequence of {len(self.sources)}, hold {self.hold} s, crossfade "
                f"{self.crossfade} s at {self.fps} fps → {self.format}")

    def frame_count(self) -> int:
        if self.operation == "kenburns":
            return max(1, round((self.duration or 0) * self.fps))
        hold, fade = round(self.hold * self.fps), round(self.crossfade * self.fps)
        return len(self.sources) * hold + (len(self.sources) - 1) * fade

    @model_validator(mode="after")
    def _consistent(self) -> MotionRequested:
        if any(not -1 <= p <= 1 for p in self.pan):
            raise ValueError(f"pan {self.pan}: each part is a fraction of the image, -1 to 1")
        if self.operation == "kenburns":
            if len(self.sources) != 1:
                raise ValueError("kenburns moves over exactly one image")
            if not self.duration:
                raise ValueError("kenburns needs a duration above 0 s")
        else:
            if self.hold * self.fps < 1:
                raise ValueError(f"hold {self.hold} s is less than one frame at {self.fps} fps")
            if self.crossfade > self.hold:
                raise ValueError(f"crossfade {self.crossfade} s is longer than hold {self.hold} s")
        if self.format == "mp4" and (self.width % 2 or self.height % 2):
            raise ValueError(f"an MP4 (yuv420p) needs even sides; the images are "
                             f"{self.width}x{self.height}: crop or resize them first")
        if self.frame_count() > MAX_FRAMES:
            raise ValueError(f"{self.frame_count():,} frames is more than {MAX_FRAMES:,}")
        return self


@registry.register("motion.completed")
class MotionCompleted(JobCompleted):
    frames: int
    fps: int
    duration: float  # frames / fps
    encoder: dict[str, Any]
    versions: dict[str, str]


class MotionExecutor(Executor):
    layer: ClassVar[str] = "motion"
    version: ClassVar[str] = "1"

    def run(self, ctx: JobContext) -> MotionCompleted:
        from PIL import Image

        from strata.core import av

        request = ctx.request_as(MotionRequested)
        images = []
        for digest in request.sources:
            with ctx.strata.blobs.open_seekable(digest) as handle, Image.open(handle) as image:
                images.append(image.convert("RGB"))
        size = (request.width, request.height)
        if any(image.size != size for image in images):
            raise JobError(f"the sources are not all {request.width}x{request.height}")
        total = request.frame_count()
        frames = (kenburns_frames(images[0], request) if request.operation == "kenburns"
                  else sequence_frames(images, request))

        def reported() -> Iterator[Image.Image]:
            for done, frame in enumerate(frames, start=1):
                yield frame
                ctx.progress(done, total)

        if request.format == "mp4":
            data = av.encode_mp4(reported(), request.fps, size)
            encoder = av.video_settings()
        else:
            data, encoder = encode_animation(list(reported()), request.fps, request.format)
        info = ctx.strata.blobs.ingest_bytes(data)
        return MotionCompleted(
            job_id=ctx.job_id, operation=request.operation, frames=total, fps=request.fps,
            duration=round(total / request.fps, 6), encoder=encoder, versions=av.versions(),
            outputs=[ProducedAsset(
                asset=info, inputs=[InputRef(digest=d, role="source") for d in request.sources],
                params={"frames": total})],
        )


def kenburns_frames(image: Image.Image, request: MotionRequested) -> Iterator[Image.Image]:
    from PIL import Image

    width, height = image.size
    count = request.frame_count()
    for index in range(count):
        t = index / (count - 1) if count > 1 else 0.0
        scale = 1 + (request.zoom - 1) * t
        view_w, view_h = width / scale, height / scale
        centre_x = width / 2 + request.pan[0] * width * t
        centre_y = height / 2 + request.pan[1] * height * t
        left = min(max(centre_x - view_w / 2, 0.0), width - view_w)
        top = min(max(centre_y - view_h / 2, 0.0), height - view_h)
        yield image.resize((width, height), Image.Resampling.BICUBIC,
                           box=(left, top, left + view_w, top + view_h))


def sequence_frames(images: list[Image.Image], request: MotionRequested
                    ) -> Iterator[Image.Image]:
    from PIL import Image

    hold, fade = round(request.hold * request.fps), round(request.crossfade * request.fps)
    for index, image in enumerate(images):
        yield from (image for _ in range(hold))
        if index + 1 < len(images):
            for step in range(1, fade + 1):
                yield Image.blend(image, images[index + 1], step / (fade + 1))


def encode_animation(frames: list[Image.Image], fps: int, fmt: str) -> tuple[bytes, dict]:
    """An animated GIF or WebP through Pillow, looping forever."""
    # GIF counts time in hundredths of a second, so its frame time is rounded to them.
    frame_ms = round(100 / fps) * 10 if fmt == "gif" else round(1000 / fps)
    settings: dict[str, Any] = {"format": fmt, "frame_ms": frame_ms, "loop": 0}
    if fmt == "webp":
        settings.update(lossless=True, quality=80, method=4)
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt.upper(), save_all=True, append_images=frames[1:],
                   duration=frame_ms, loop=0,
                   **{k: v for k, v in settings.items() if k not in ("format", "frame_ms",
                                                                      "loop")})
    return buffer.getvalue(), settings


def build_request(
    strata: Strata,
    refs: list[str],
    *,
    operation: Literal["kenburns", "sequence"] = "kenburns",
    duration: float | None = None,
    fps: int = 24,
    zoom: float = 1.0,
    pan: tuple[float, float] = (0.0, 0.0),
    hold: float = 1.0,
    crossfade: float = 0.0,
    fmt: str = "mp4",
    branch: str | None = None,
) -> MotionRequested:
    """A validated motion request over image assets of one size; nothing is appended when
    anything is wrong."""
    from strata.core.runtime import jobs

    if fmt not in FORMATS:
        raise InvalidInput(f"--format is one of {', '.join(FORMATS)}, not {fmt!r}")
    sources = [strata.resolve_asset(ref) for ref in refs]
    width, height = sources_size(strata, sources)
    try:
        return MotionRequested(
            job_id=jobs.new_job_id(), branch=branch, operation=operation, sources=sources,
            width=width, height=height, fps=fps, format=fmt,  # type: ignore[arg-type]
            duration=duration, zoom=zoom, pan=pan, hold=hold, crossfade=crossfade)
    except ValidationError as error:
        raise InvalidInput(f"invalid motion request: {explain(error)}") from error


def check(strata: Strata, request: JobRequest) -> None:
    """The layer's store checks (`Layer.check`): the sources are image assets of one
    size, the size the request gives the clip. (`build_request` takes that size from
    `sources_size`, so its requests pass by construction.)"""
    assert isinstance(request, MotionRequested)
    width, height = sources_size(strata, request.sources)
    if (width, height) != (request.width, request.height):
        raise InvalidInput(f"the sources are {width}x{height}, not the "
                           f"{request.width}x{request.height} the request gives")


def sources_size(strata: Strata, sources: list[str]) -> tuple[int, int]:
    """The one size of the image assets `sources`; refused for any other asset or for
    images of several sizes."""
    from strata.core.projections import views

    sizes = set()
    with strata.view() as conn:
        for digest in sources:
            row = views.asset_row(conn, digest)
            if row is None:
                raise AssetNotFound(f"no asset {digest}")
            if not row["media_type"].startswith("image/") or not row["width"]:
                raise InvalidInput(f"{short(digest)} is {row['media_type']}, not an image: "
                                   "motion moves over still images")
            sizes.add((row["width"], row["height"]))
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
        raise InvalidInput(f"the images of a sequence must have one size, not {listed}; "
                           "resize them first")
    ((width, height),) = sizes
    return width, height


LAYER = layers.register(layers.Layer(
    name="motion",
    description="still images → a clip: Ken Burns or a sequence with crossfades "
                "(H.264 MP4, GIF or WebP)",
    requested=MotionRequested,
    completed=MotionCompleted,
    executor=lambda _resources: MotionExecutor(),
    check=check,
))
