"""Overhead of the runtime on the finishing layers, each beside the same work done directly.

    python bench/layers.py [--quick] [--runs N] [--dir PATH] [--keep]

Three cases, each run both ways in the same process:

1. enhancement: auto-contrast → white balance → saturation → gamma → sharpen → denoise on a
   2048x2048 PNG. Directly: the PNG opened with Pillow, the functions of
   core/imaging/enhance.py called in that order, the result saved as a PNG file.
2. compositing: four 1024x1024 images (normal, multiply, screen, overlay; scaled, moved,
   with opacity) on a white 1024x1024 canvas. Directly: the images opened with Pillow,
   scaled with Lanczos and blended with core/imaging/blend.py's Canvas, saved as a PNG.
3. motion + sound: a 4 s, 24 fps, 512x512 Ken Burns MP4 (H.264), then a synthesized 4 s
   pad laid under it as AAC. Directly: the same frames encoded with PyAV (core/av's x264
   settings), the WAV decoded with PyAV and muxed under the video, the MP4 file written.
   The bed is made once beforehand, on both sides: a WAV file, and the same bytes as an
   asset (a `sound synth` job).

The runtime side is the whole of each job, from building the request to the output's
digest: `<layer>.requested` appended, a Worker in this process claims it (job.started and
a lease, with its heartbeat thread), runs the layer's executor, ingests the output as a
blob (hash, fsync, rename; decoded and perceptually hashed, or probed with PyAV), appends
`<layer>.completed`, and the projections catch up inside each append. The store is a
SQLite file in a temporary folder. The direct side writes its output file without fsync,
as a script would.

Every run changes one setting (saturation, the top layer's opacity, the zoom), so that
each output is new to the blob store. Both sides run once untimed to warm up; then the
runs alternate which side goes first, with a garbage collection before each; the figures
are medians. After the timed runs, each direct output is checked to hold the same pixels
(the same bytes for the MP4) as the runtime's. Target: overhead <= 10% of the direct work.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from strata.core import av
from strata.core.config import Settings
from strata.core.imaging import enhance
from strata.core.imaging.blend import Canvas
from strata.core.layers import compositing, enhancement, motion, sound
from strata.core.ledger.event_types import AssetImported, JobCompleted, JobRequest
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from strata.core.store import Store

TARGET = 0.10
ENHANCE_SIDE = 2048
COMPOSITE_SIDE = 1024
CLIP_SIDE, CLIP_SECONDS, CLIP_FPS = 512, 4.0, 24
BED_SEED, BED_BPM = 7, 96.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- inputs -----------------------------------------------------------------------------


def write_picture(path: Path, side: int, seed: int) -> None:
    """A photo-like test picture: smooth colour gradients, a few soft discs, mild noise."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, side)[None, :]
    y = np.linspace(0.0, 1.0, side)[:, None]
    phase = rng.uniform(0, 2 * np.pi, 3)
    channels = [0.5 + 0.35 * np.sin(2 * np.pi * (x * (1 + c) + y * (2 - c)) + phase[c])
                for c in range(3)]
    pixels = np.stack(channels, axis=-1) * 200 + 20
    for _ in range(6):
        cx, cy, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.25)
        disc = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius ** 2))
        pixels += disc[..., None] * rng.uniform(-60, 60, 3)
    pixels += rng.normal(0, 4, pixels.shape)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path)


# --- the runtime side -------------------------------------------------------------------


@dataclass
class Runtime:
    strata: Strata
    worker: Worker

    def run(self, request: JobRequest) -> str:
        """Request the job, run it in this process, and return its output's digest."""
        jobs.request(self.strata, request)
        if not self.worker.work_once(request.job_id):
            raise RuntimeError(f"job {request.job_id} was not claimable")
        result = self.strata.ledger.read_stream(jobs.stream(request.job_id))[-1].payload
        if not isinstance(result, JobCompleted):
            raise RuntimeError(f"job {request.job_id} ended with {result!r}")
        return result.outputs[0].asset.digest

    def add(self, paths: list[Path]) -> list[str]:
        """Import image files (setup, not timed); their digests."""
        payloads = [event.payload for event in self.strata.add_files(paths)]
        return [p.asset.digest for p in payloads if isinstance(p, AssetImported)]

    def image(self, digest: str) -> Image.Image:
        with self.strata.blobs.open_seekable(digest) as handle, Image.open(handle) as image:
            return image.convert("RGBA")

    def data(self, digest: str) -> bytes:
        with self.strata.blobs.open(digest) as handle:
            return handle.read()


# --- the cases --------------------------------------------------------------------------


@dataclass
class Case:
    """One piece of work done both ways; run r of either side does the same work."""

    measure: str
    direct: Callable[[int], Path]  # writes the output file, returns its path
    runtime: Callable[[int], str]  # returns the output asset's digest
    same: Callable[[Path, str], bool]  # do the two outputs hold the same result?
    prepare: Callable[[int], None] = lambda _run: None  # before run r, outside the clock
    wall: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "runtime": []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "runtime": []})


def same_pixels(rt: Runtime) -> Callable[[Path, str], bool]:
    def check(path: Path, digest: str) -> bool:
        with Image.open(path) as direct:
            return direct.convert("RGBA").tobytes() == rt.image(digest).tobytes()
    return check


def enhancement_case(rt: Runtime, root: Path) -> Case:
    source = root / "enhance-source.png"
    write_picture(source, ENHANCE_SIDE, seed=1)
    (digest,) = rt.add([source])

    def operations(run: int) -> list[dict[str, Any]]:
        return [{"op": "auto-contrast"}, {"op": "white-balance"},
                {"op": "saturation", "factor": round(1.2 + run / 1000, 3)},
                {"op": "gamma", "gamma": 1.1}, {"op": "sharpen", "radius": 2.0, "amount": 80},
                {"op": "denoise", "strength": 0.3}]

    def direct(run: int) -> Path:
        with Image.open(source) as opened:
            image = opened.convert("RGB")
        for op in operations(run):
            if op["op"] == "auto-contrast":
                image = enhance.auto_contrast(image)
            elif op["op"] == "white-balance":
                image = enhance.white_balance(image)
            elif op["op"] == "saturation":
                image = enhance.saturation(image, op["factor"])
            elif op["op"] == "gamma":
                image = enhance.gamma(image, op["gamma"])
            elif op["op"] == "sharpen":
                image = enhance.sharpen(image, op["radius"], op["amount"], 0)
            else:
                image = enhance.denoise(image, op["strength"])
        out = root / f"direct-enhanced-{run}.png"
        image.save(out, format="PNG")
        return out

    def runtime(run: int) -> str:
        return rt.run(enhancement.build_request(rt.strata, digest, operations(run)))

    return Case(f"1. enhancement chain (6 operations), {ENHANCE_SIDE}x{ENHANCE_SIDE} PNG",
                direct, runtime, same_pixels(rt))


def compositing_case(rt: Runtime, root: Path) -> Case:
    paths = [root / f"composite-source-{n}.png" for n in range(4)]
    for n, path in enumerate(paths):
        write_picture(path, COMPOSITE_SIDE, seed=10 + n)
    digests = rt.add(paths)

    def layers(run: int) -> list[dict[str, Any]]:
        """Bottom first: where each image goes and how it blends."""
        return [{"x": 0, "y": 0, "scale": 1.0, "opacity": 1.0, "blend": "normal"},
                {"x": 128, "y": 128, "scale": 0.75, "opacity": 0.8, "blend": "multiply"},
                {"x": -256, "y": 512, "scale": 1.0, "opacity": 0.7, "blend": "screen"},
                {"x": 512, "y": 0, "scale": 0.5, "opacity": round(0.9 - run / 1000, 3),
                 "blend": "overlay"}]

    def direct(run: int) -> Path:
        canvas = Canvas.filled(COMPOSITE_SIDE, COMPOSITE_SIDE, (255, 255, 255, 255))
        for path, spec in zip(paths, layers(run), strict=True):
            with Image.open(path) as opened:
                image = opened.convert("RGBA")
            size = compositing.scaled_size(image.width, image.height, spec["scale"])
            if size != image.size:
                image = image.resize(size, Image.Resampling.LANCZOS)
            placed = Canvas.of(image)
            placed.alpha *= spec["opacity"]
            canvas.place(placed, spec["x"], spec["y"], spec["blend"])
        out = root / f"direct-composite-{run}.png"
        canvas.to_image().save(out, format="PNG")
        return out

    def runtime(run: int) -> str:
        specs = [{"asset": digest, **spec} for digest, spec in zip(digests, layers(run),
                                                                   strict=True)]
        return rt.run(compositing.build_request(
            rt.strata, specs, canvas=f"{COMPOSITE_SIDE}x{COMPOSITE_SIDE}", background="white"))

    return Case(f"2. composite of 4 images (normal, multiply, screen, overlay), "
                f"{COMPOSITE_SIDE}x{COMPOSITE_SIDE} PNG", direct, runtime, same_pixels(rt))


def clip_case(rt: Runtime, root: Path) -> Case:
    still = root / "clip-source.png"
    write_picture(still, CLIP_SIDE, seed=20)
    (digest,) = rt.add([still])
    # The bed, made once on each side: a WAV file, and the same bytes as an asset.
    bed = root / "bed.wav"
    bed.write_bytes(av.wav_bytes(sound.synthesize("pad", CLIP_SECONDS, BED_BPM, BED_SEED)))
    bed_digest = rt.run(sound.build_synth(rt.strata, "pad", CLIP_SECONDS, bpm=BED_BPM,
                                          seed=BED_SEED))
    if rt.data(bed_digest) != bed.read_bytes():
        raise RuntimeError("the synthesized bed differs between the two sides")

    def request(run: int) -> motion.MotionRequested:
        return motion.build_request(rt.strata, [digest], duration=CLIP_SECONDS, fps=CLIP_FPS,
                                    zoom=round(1.2 + run / 1000, 3), pan=(0.1, 0.0))

    # The settings of run r's frames, in the form kenburns_frames reads: a script holds
    # them as plain values, so they are made before the clock starts.
    frame_requests: dict[int, motion.MotionRequested] = {}

    def prepare(run: int) -> None:
        frame_requests[run] = request(run)

    def direct(run: int) -> Path:
        with Image.open(still) as opened:
            image = opened.convert("RGB")
        frames = motion.kenburns_frames(image, frame_requests[run])
        video = av.encode_mp4(frames, CLIP_FPS, image.size)
        length = round(frame_requests[run].frame_count() / CLIP_FPS * av.SAMPLE_RATE)
        with bed.open("rb") as handle:
            samples = av.decode_audio(handle)[:, :length]
        mix = np.zeros((av.CHANNELS, length), dtype=np.float32)
        mix[:, :samples.shape[1]] = samples
        out = root / f"direct-clip-{run}.mp4"
        out.write_bytes(av.replace_audio(io.BytesIO(video), np.clip(mix, -1.0, 1.0)))
        return out

    def runtime(run: int) -> str:
        clip = rt.run(request(run))
        return rt.run(sound.build_add(rt.strata, clip, [bed_digest]))

    def same(path: Path, digest: str) -> bool:
        return path.read_bytes() == rt.data(digest)

    return Case(f"3. Ken Burns MP4 + sound (2 jobs: motion, sound add), {CLIP_SIDE}x"
                f"{CLIP_SIDE}, {CLIP_SECONDS:g} s at {CLIP_FPS} fps, AAC pad",
                direct, runtime, same, prepare=prepare)


# --- timing -----------------------------------------------------------------------------


def measure(case: Case, runs: int) -> None:
    """Warm both sides up, then `runs` timed runs of each, alternating who goes first."""
    outputs: dict[int, tuple[Path, str]] = {}
    log(f"{case.measure}: warm-up")
    case.prepare(-1)
    case.direct(-1)
    case.runtime(-1)
    for run in range(runs):
        sides = ["direct", "runtime"] if run % 2 == 0 else ["runtime", "direct"]
        done: dict[str, Any] = {}
        case.prepare(run)
        for side in sides:
            gc.collect()
            cpu, wall = time.process_time(), time.perf_counter()
            done[side] = case.direct(run) if side == "direct" else case.runtime(run)
            case.wall[side].append(time.perf_counter() - wall)
            case.cpu[side].append(time.process_time() - cpu)
        outputs[run] = (done["direct"], done["runtime"])
        log(f"   run {run + 1}/{runs}: direct {case.wall['direct'][-1]:.2f} s, "
            f"runtime {case.wall['runtime'][-1]:.2f} s")
    for run, (path, digest) in outputs.items():
        if not case.same(path, digest):
            raise RuntimeError(f"{case.measure}: run {run} gave another result directly "
                               "than through the runtime")


# --- results ----------------------------------------------------------------------------


def overhead(values: dict[str, list[float]]) -> float:
    return statistics.median(values["runtime"]) / statistics.median(values["direct"]) - 1


def table_markdown(cases: list[Case]) -> str:
    lines = ["| measure | direct (median) | through the runtime (median) | overhead | "
             "overhead in CPU time | target | result |",
             "|---|---:|---:|---:|---:|---|:---:|"]
    for case in cases:
        wall = overhead(case.wall)
        lines.append(
            f"| {case.measure} | {statistics.median(case.wall['direct']) * 1000:,.0f} ms | "
            f"{statistics.median(case.wall['runtime']) * 1000:,.0f} ms | {wall * 100:+.1f}% | "
            f"{overhead(case.cpu) * 100:+.1f}% | ≤ +{TARGET:.0%} | "
            f"{'PASS' if wall <= TARGET else 'MISS'} |")
    return "\n".join(lines)


def environment() -> str:
    import PIL

    cpus = os.cpu_count()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    versions = av.versions()
    return (f"python {platform.python_version()} · Pillow {PIL.__version__} · numpy "
            f"{np.__version__} · PyAV {versions['pyav']} (libavcodec "
            f"{versions.get('libavcodec', '?')}) · {cpus} CPUs ({affinity} usable) · "
            f"{platform.machine()} {platform.system()} {platform.release()}")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (3 per side)")
    parser.add_argument("--runs", type=int, default=None,
                        help="timed runs per side and case (default 9; --quick 3)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to make the temporary folder (the store and the files)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 9)
    if runs < 1:
        parser.error("--runs must be at least 1")

    root = Path(tempfile.mkdtemp(prefix="strata-bench-layers-", dir=args.dir))
    started, load_before = time.perf_counter(), load_average()
    try:
        strata = Strata(Store.open(Settings(home=root / "store"), create=True))
        executors = [enhancement.EnhancementExecutor(), compositing.CompositingExecutor(),
                     motion.MotionExecutor(), sound.SoundExecutor()]
        rt = Runtime(strata, Worker(strata, {e.layer: e for e in executors}))
        log("making the inputs")
        cases = [enhancement_case(rt, root), compositing_case(rt, root), clip_case(rt, root)]
        for case in cases:
            measure(case, runs)
        strata.store.close()
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    assert "torch" not in sys.modules, "the benchmark must not import torch"

    elapsed = time.perf_counter() - started
    print(f"Strata layers benchmark ({runs} runs per side, {elapsed:.0f} s; load average "
          f"{load_before} before, {load_average()} after)\n")
    print(f"Environment: {environment()}\n")
    print(table_markdown(cases))
    print("\nOverhead = median through the runtime / median direct - 1 (wall clock; the CPU "
          "column is this process's CPU time). Every direct output was checked to hold the "
          "same pixels (the MP4: the same bytes) as the runtime's.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
