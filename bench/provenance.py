"""Benchmarks of `strata provenance` and `strata verify --checkpoint`, each beside a
baseline from the same run.

    python bench/provenance.py [--quick] [--assets N] [--events N] [--reps N] [--dir PATH]
                               [--keep]

Run it as a script from the checkout: it shares its table, percentiles, digests and raw
lineage query with bench/ledger.py, imported from beside it. Everything is created in a
temporary folder (on the file system of `--dir`) and removed afterwards. Progress goes to
stderr; the results go to stdout as a markdown table, ready to paste into a README.

The store is written the way bench/ledger.py writes its log, straight through
`Ledger.append_together` with ready `NewEvent`s in batches (each event on the stream the
application uses: `job:<id>`, `asset:<hex>`, `branch:<name>`), then its projections catch
up once. Every job has its `<layer>.requested`, `job.started` (now and then a failed
attempt and a retry first) and `<layer>.completed`, with the payloads each layer's
executor records: models with their digests, schedulers, library versions, devices, seeds.

1. `strata provenance ASSET --format json` (`report.render`) of a final MP4 with exactly
   1,000 ancestors made by every layer — generation batches and their iterations,
   automatic selections, inpainting with imported masks, enhancement, crops, retouches
   made outside Strata, composites over imported backgrounds, a motion sequence, sound
   (synthesized pads, spoken lines, generated and imported audio) laid under it — with
   ratings, picks, reviews, branch moves and rollbacks on the way; spread over a log of
   100,000 assets (`--assets`) whose other assets come from the same kinds of work.
2. the same as PROV-JSON (`--format prov-json`).
   Both beside the raw recursive lineage query (bench/ledger.py's) in `sqlite3`, run
   interleaved with them, rep by rep.
3. `verify --checkpoint` (`checkpoints.hold_to_files`: the signed note opened, the event at
   its position read, the chain walked from there) on a log of 100,000 events
   (`--events`), for a checkpoint of the head and one of the middle of the log; beside
   the chain walk from the middle alone and beside re-hashing the whole chain
   (`Ledger.verify_chain`, what plain `strata verify` does).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import (
    LINEAGE_SQL,
    Row,
    fake_digest,
    log,
    open_store,
    percentile,
    print_report,
    verdict,
)

from strata.core.layers.compositing import (
    CompositeLayer,
    CompositingCompleted,
    CompositingRequested,
)
from strata.core.layers.editing import EditingCompleted, EditingRequested
from strata.core.layers.enhancement import (
    AutoContrast,
    EnhancementCompleted,
    EnhancementRequested,
    Saturation,
    Sharpen,
    Upscale,
    WhiteBalance,
)
from strata.core.layers.generation import GenerationCompleted, GenerationRequested
from strata.core.layers.motion import MotionCompleted, MotionRequested
from strata.core.layers.selection import Scored, SelectionCompleted, SelectionRequested
from strata.core.layers.sound import AudioTrack, SoundCompleted, SoundRequested, TrackPlaced
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetImported,
    AssetInfo,
    BranchAdvanced,
    BranchCreated,
    BranchRolledBack,
    Decision,
    ImportSource,
    InputRef,
    JobCompleted,
    JobFailed,
    JobRequest,
    JobStarted,
    ProducedAsset,
    ReviewRecorded,
    SelectionPicked,
    SelectionRated,
)
from strata.core.ledger.events import NewEvent, Payload, registry
from strata.core.ledger.log import ANY_VERSION, ChainWalker, Ledger, StreamAppend
from strata.core.models.diffusion import ModelRef, SchedulerUsed, Timings
from strata.core.projections.lineage import MAX_DEPTH
from strata.core.provenance import checkpoints, keys
from strata.core.provenance.report import render
from strata.core.runtime.jobs import stream as job_stream
from strata.core.service import Strata, asset_stream
from strata.core.store import Store

ANCESTORS = 1000
LOG_BATCH = 1000  # events per append while writing the log (setup, not measured)
STRAND = 7  # ancestors per strand: 2 generated, a mask, inpaint, enhance, crop, retouch
STRAND_YIELDS = 5  # the steps `strand` yields between
PER_COMPOSITE = 4  # strands per composite
PEOPLE = ("ana", "bo", "chen", "dee")
WORKERS = ("gpu-1", "gpu-2", "cpu-1")
VERSIONS = {"python": "3.12.3", "strata": "0.1.0", "torch": "2.4.1", "diffusers": "0.30.3",
            "transformers": "4.44.2", "Pillow": "10.4.0", "numpy": "2.1.1"}
AV_VERSIONS = {"python": "3.12.3", "strata": "0.1.0", "av": "13.0.0", "numpy": "2.1.1",
               "Pillow": "10.4.0"}
ENCODER = {"codec": "libx264", "crf": 18, "preset": "medium", "pix_fmt": "yuv420p",
           "audio_codec": "aac", "audio_bitrate": "192k"}
SCHEDULER = SchedulerUsed(name="ddim", class_name="DDIMScheduler", config={
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "clip_sample": False, "set_alpha_to_one": False,
    "steps_offset": 1, "prediction_type": "epsilon", "timestep_spacing": "leading",
    "rescale_betas_zero_snr": False, "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.30.3"})
PROMPTS = ("a lighthouse on a cliff at dusk, volumetric light", "portrait of an old sailor, "
           "film grain", "a neon street in the rain, reflections", "misty pine forest, dawn",
           "product shot of a ceramic cup on linen", "isometric city block, soft shadows")


def model(name: str) -> ModelRef:
    return ModelRef(name=name, path=f"/srv/models/{name}", digest=fake_digest(f"model:{name}"))


SD15, INPAINT, AUDIO_LDM = model("sd15"), model("sd15-inpainting"), model("audioldm-s")


# --- the store: realistic events of every layer ------------------------------------------


@dataclass
class Writer:
    """Appends events in batches of about LOG_BATCH, one part per stream, keeping the order
    in which they were made (a stream met again after another one starts a new batch)."""

    ledger: Ledger
    rng: random.Random
    parts: dict[str, list[NewEvent]] = field(default_factory=dict)
    pending: int = 0
    written: int = 0
    assets: int = 0
    labels: int = 0
    recent: list[str] = field(default_factory=list)  # what other work starts from

    def add(self, stream: str, events: list[NewEvent]) -> None:
        if stream in self.parts and next(reversed(self.parts)) != stream:
            self.flush()
        self.parts.setdefault(stream, []).extend(events)
        self.pending += len(events)
        if self.pending >= LOG_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.ledger.append_together([StreamAppend(s, e, ANY_VERSION)
                                         for s, e in self.parts.items()])
        self.written += self.pending
        self.parts, self.pending = {}, 0

    @property
    def position(self) -> int:
        return self.written + self.pending

    # --- assets ---------------------------------------------------------------------

    def info(self, media_type: str = "image/png", side: int = 1024,
             seconds: float | None = None) -> AssetInfo:
        self.labels += 1
        self.assets += 1
        rng = self.rng
        digest = fake_digest(f"asset-{self.labels}")
        if media_type.startswith("audio/"):
            return AssetInfo(digest=digest, media_type=media_type, duration=seconds,
                             size=int((seconds or 1) * 176_400), sample_rate=44_100,
                             channels=2, audio_codec="pcm_s16le")
        if media_type.startswith("video/"):
            return AssetInfo(digest=digest, media_type=media_type, size=rng.randrange(2, 40)
                             * 1_000_000, width=side, height=side, duration=seconds, fps=24.0,
                             frames=int((seconds or 1) * 24), video_codec="h264",
                             audio_codec="aac")
        return AssetInfo(digest=digest, media_type=media_type,
                         size=rng.randrange(200_000, 4_000_000), width=side, height=side,
                         phash=f"{rng.getrandbits(64):016x}", dhash=f"{rng.getrandbits(64):016x}")

    def meta(self, actor: str | None = None) -> dict[str, Any]:
        return {"actor": actor or self.rng.choice(PEOPLE), "host": "studio-3",
                "strata": "0.1.0"}

    def imported(self, media_type: str = "image/png", seconds: float | None = None,
                 name: str = "scan") -> str:
        info = self.info(media_type, seconds=seconds)
        extension = media_type.split("/")[1]
        payload = AssetImported(asset=info, source=ImportSource(
            name=f"{name}-{self.labels}.{extension}",
            path=f"/home/ana/inbox/{name}-{self.labels}.{extension}"))
        self.add(asset_stream(info.digest), [NewEvent.of(payload, self.meta())])
        return info.digest

    def retouched(self, source: str) -> str:
        """A derivation made outside Strata (a retouch in an image editor)."""
        info = self.info()
        payload = AssetDerived(
            output=ProducedAsset(asset=info, inputs=[InputRef(digest=source, role="source")],
                                 params={"tool": "krita 5.2", "brush": "soft round",
                                         "strokes": self.rng.randrange(3, 90)}),
            operation="retouch",
            source=ImportSource(name=f"retouch-{self.labels}.png",
                                path=f"/home/bo/work/retouch-{self.labels}.png"))
        self.add(asset_stream(info.digest), [NewEvent.of(payload, self.meta("bo"))])
        return info.digest

    def decide(self, payload: Decision, actor: str | None = None) -> None:
        self.add(asset_stream(payload.digest), [NewEvent.of(payload, self.meta(actor))])

    def branch(self, name: str, payload: Payload) -> None:
        self.add(f"branch:{name}", [NewEvent.of(payload, self.meta())])

    # --- jobs -----------------------------------------------------------------------

    def job(self, request: JobRequest, completed: JobCompleted) -> list[str]:
        """A job's whole stream: requested, started (a failed attempt first now and then),
        completed; the digests it made."""
        rng = self.rng
        layer = registry.name_of(type(completed))[0].split(".", 1)[0]
        job_id = request.job_id
        requested = NewEvent.of(request, {**self.meta(), "correlation_id": job_id,
                                          "causation_id": None})
        worker = f"{rng.choice(WORKERS)}:{rng.randrange(1000, 60_000)}"
        run_meta = {"actor": "strata-worker", "host": worker.split(":")[0], "strata": "0.1.0",
                    "worker": worker, "correlation_id": job_id,
                    "causation_id": requested.event_id}
        events = [requested]
        attempt = 1
        if rng.random() < 0.04:
            events += [NewEvent.of(JobStarted(job_id=job_id, attempt=1, worker=worker,
                                              lease_seconds=60.0), run_meta),
                       NewEvent.of(JobFailed(job_id=job_id, attempt=1,
                                             error_class="OutOfMemoryError",
                                             message="CUDA out of memory. Tried to allocate "
                                                     "512.00 MiB", retryable=True,
                                             retry_at="2026-11-25T12:00:30.000000Z"),
                                   run_meta)]
            attempt = 2
        events += [NewEvent.of(JobStarted(job_id=job_id, attempt=attempt, worker=worker,
                                          lease_seconds=60.0), run_meta),
                   NewEvent.of(completed.with_parent(request.parent),
                               {**run_meta, "executor": f"{layer}/1"})]
        self.add(job_stream(job_id), events)
        return [o.asset.digest for o in completed.outputs]

    def diffusion_facts(self, chosen: ModelRef = SD15) -> dict[str, Any]:
        rng = self.rng
        load, run = round(rng.uniform(0.5, 4), 3), round(rng.uniform(2, 30), 3)
        return {"model": chosen, "scheduler": SCHEDULER, "device": "cuda:0",
                "dtype": "float16", "versions": VERSIONS,
                "timings": Timings(load_s=load, generate_s=run, store_s=0.12,
                                   total_s=round(load + run + 0.12, 3))}

    def generate(self, n: int = 4, parent: str | None = None,
                 iterates: str | None = None) -> tuple[str, list[str]]:
        rng = self.rng
        job_id = uuid.uuid4().hex
        seeds = [rng.randrange(2**32) for _ in range(n)]
        cfg = 9.0 if iterates else 7.5
        request = GenerationRequested(
            job_id=job_id, prompt=rng.choice(PROMPTS),
            negative_prompt="blurry, low quality, watermark", seeds=seeds, steps=30, cfg=cfg,
            width=1024, height=1024, scheduler="ddim", model=SD15, device="cuda",
            dtype="float16", parent=parent, iterates=iterates,
            changes={"cfg": {"from": 7.5, "to": 9.0}} if iterates else None)
        outputs = [ProducedAsset(asset=self.info(), seed=seed) for seed in seeds]
        completed = GenerationCompleted(job_id=job_id, operation="txt2img", outputs=outputs,
                                        **self.diffusion_facts())
        return job_id, self.job(request, completed)

    def select(self, candidates: list[str], source_job: str) -> str:
        rng = self.rng
        job_id = uuid.uuid4().hex
        request = SelectionRequested(job_id=job_id, candidates=candidates, dedupe_distance=6,
                                     top=1, source_job=source_job)
        scores = {d: round(rng.uniform(0.2, 0.95), 4) for d in candidates}
        best = max(scores, key=lambda d: scores[d])
        scored = {d: Scored(sharpness=round(rng.uniform(50, 900), 2),
                            exposure=round(rng.uniform(0.3, 0.7), 4),
                            contrast=round(rng.uniform(0.1, 0.4), 4), score=s, cluster=d,
                            rank=1 if d == best else None) for d, s in scores.items()}
        self.job(request, SelectionCompleted(
            job_id=job_id, operation="auto-select", outputs=[], scored=scored,
            clusters=[[d] for d in candidates], chosen=[best], dedupe_distance=6, top=1))
        return best

    def inpaint(self, source: str, mask: str) -> str:
        job_id = uuid.uuid4().hex
        seed = self.rng.randrange(2**32)
        request = EditingRequested(job_id=job_id, operation="inpaint", source=source,
                                   mask=mask, prompt="replace the sky with storm clouds",
                                   seed=seed, model=INPAINT, device="cuda", dtype="float16")
        output = ProducedAsset(asset=self.info(), seed=seed, inputs=[
            InputRef(digest=source, role="source"), InputRef(digest=mask, role="mask")])
        return self.job(request, EditingCompleted(
            job_id=job_id, operation="inpaint", outputs=[output],
            **self.diffusion_facts(INPAINT)))[0]

    def crop(self, source: str) -> str:
        job_id = uuid.uuid4().hex
        left = self.rng.randrange(0, 200)
        request = EditingRequested(job_id=job_id, operation="crop", source=source,
                                   box=(left, 0, left + 768, 768))
        output = ProducedAsset(asset=self.info(side=768),
                               inputs=[InputRef(digest=source, role="source")])
        return self.job(request, EditingCompleted(job_id=job_id, operation="crop",
                                                  outputs=[output], versions=VERSIONS))[0]

    def enhance(self, source: str, upscale: bool = False) -> str:
        job_id = uuid.uuid4().hex
        operations = ([Upscale(factor=2)] if upscale else
                      [AutoContrast(), WhiteBalance(), Saturation(factor=1.15),
                       Sharpen(radius=2.0, amount=120, threshold=3)])
        request = EnhancementRequested(job_id=job_id, source=source, operations=operations)
        output = ProducedAsset(asset=self.info(side=2048 if upscale else 1024),
                               inputs=[InputRef(digest=source, role="source")])
        return self.job(request, EnhancementCompleted(
            job_id=job_id, operation="enhance", outputs=[output], versions=VERSIONS))[0]

    def composite(self, layers: list[str], background: str) -> str:
        rng = self.rng
        job_id = uuid.uuid4().hex
        specs = [CompositeLayer(asset=d, x=rng.randrange(-200, 800), y=rng.randrange(-200, 800),
                                scale=round(rng.uniform(0.3, 1.0), 3),
                                opacity=round(rng.uniform(0.6, 1.0), 3),
                                blend=rng.choice(["normal", "multiply", "screen", "overlay"]))
                 for d in layers]
        request = CompositingRequested(job_id=job_id, layers=specs, width=1920, height=1080,
                                       background="white", background_asset=background)
        output = ProducedAsset(asset=self.info(side=1920), inputs=[
            InputRef(digest=background, role="source"),
            *(InputRef(digest=d, role="layer") for d in layers)])
        return self.job(request, CompositingCompleted(
            job_id=job_id, operation="composite", outputs=[output], versions=AV_VERSIONS))[0]

    def motion(self, sources: list[str]) -> str:
        job_id = uuid.uuid4().hex
        kenburns = len(sources) == 1
        seconds = 4.0 if kenburns else 2.0 * len(sources)
        request = MotionRequested(
            job_id=job_id, operation="kenburns" if kenburns else "sequence", sources=sources,
            width=1920, height=1080, fps=24, duration=seconds if kenburns else None,
            zoom=1.2 if kenburns else 1.0, pan=(0.1, -0.05) if kenburns else (0.0, 0.0),
            hold=2.0, crossfade=0.0 if kenburns else 0.5)
        output = ProducedAsset(asset=self.info("video/mp4", 1920, seconds),
                               inputs=[InputRef(digest=d, role="source") for d in sources])
        return self.job(request, MotionCompleted(
            job_id=job_id, operation=request.operation, outputs=[output],
            frames=int(seconds * 24), fps=24, duration=seconds, encoder=ENCODER,
            versions=AV_VERSIONS))[0]

    def sound(self, kind: str) -> str:
        """An audio track: synthesized, spoken, generated by a model, or imported."""
        rng = self.rng
        if kind == "import":
            return self.imported("audio/wav", 12.0, "field-recording")
        job_id = uuid.uuid4().hex
        seed = rng.randrange(2**31)
        facts: dict[str, Any] = {"versions": AV_VERSIONS}
        if kind == "synth":
            request = SoundRequested(job_id=job_id, operation="synth", preset="pad",
                                     duration=8.0, bpm=96.0, seed=seed)
        elif kind == "voice":
            request = SoundRequested(job_id=job_id, operation="voice", voice="en-us",
                                     text="Every frame of this film can be traced.", speed=160)
            facts["espeak_ng"] = "eSpeak NG text-to-speech: 1.51  Data at: /usr/share"
        else:
            request = SoundRequested(job_id=job_id, operation="generate", seed=seed,
                                     prompt="gentle waves on a pebble beach", duration=8.0,
                                     steps=50, cfg=2.5, scheduler="ddim", model=AUDIO_LDM,
                                     device="cuda", dtype="float16")
            facts.update(model=AUDIO_LDM, scheduler=SCHEDULER, device="cuda:0",
                         dtype="float16", versions=VERSIONS)
        output = ProducedAsset(asset=self.info("audio/wav", seconds=8.0),
                               seed=seed if kind != "voice" else None)
        return self.job(request, SoundCompleted(job_id=job_id, operation=kind,
                                                outputs=[output], **facts))[0]

    def add_sound(self, video: str, seconds: float, tracks: list[str]) -> str:
        job_id = uuid.uuid4().hex
        specs = [AudioTrack(audio=d, offset=round(i * seconds / len(tracks), 2), fade_in=0.5,
                            fade_out=1.0, gain_db=-6.0 if i else 0.0)
                 for i, d in enumerate(tracks)]
        request = SoundRequested(job_id=job_id, operation="add", video=video, tracks=specs)
        output = ProducedAsset(asset=self.info("video/mp4", 1920, seconds), inputs=[
            InputRef(digest=video, role="source"),
            *(InputRef(digest=d, role="audio") for d in tracks)])
        placed = [TrackPlaced(audio=t.audio, start=t.offset, end=min(seconds, t.offset + 8.0),
                              cut=max(0.0, t.offset + 8.0 - seconds)) for t in specs]
        return self.job(request, SoundCompleted(
            job_id=job_id, operation="add", outputs=[output], versions=AV_VERSIONS,
            encoder=ENCODER, video_duration=seconds, placed=placed, padded=0.0))[0]


Steps = Generator[None, None, str]


def strand(w: Writer, number: int) -> Steps:
    """One picture of the final film, STRAND ancestors of it; yields between steps so that
    the target's steps spread over the log. Returns the picture."""
    first_job, first = w.generate()
    yield
    job_id, batch = w.generate(parent=first[0], iterates=first_job)  # an iteration
    yield
    chosen = w.select(batch, job_id)
    w.decide(SelectionRated(digest=chosen, rating=w.rng.randint(3, 5)))
    mask = w.imported(name="mask")
    yield
    painted = w.inpaint(chosen, mask)
    enhanced = w.enhance(painted)
    yield
    name = f"look-{number}"
    w.branch(name, BranchCreated(name=name, head=enhanced))
    cropped = w.crop(enhanced)
    w.branch(name, BranchAdvanced(name=name, head=cropped, previous_head=enhanced))
    if number % 3 == 0:  # tried a retouch, rolled it back, then kept another
        w.branch(name, BranchRolledBack(name=name, head=enhanced, previous_head=cropped,
                                        reason="crop cut the horizon"))
        w.branch(name, BranchAdvanced(name=name, head=cropped, previous_head=enhanced))
    yield
    tip = w.retouched(cropped)
    w.decide(SelectionPicked(digest=tip, note="hero shot"))
    w.decide(ReviewRecorded(digest=tip, verdict="approve", note="colours match the grade"),
             "dee")
    return tip


def plan() -> tuple[int, int, int]:
    """The target's composites, audio tracks, and the steps `target` yields between."""
    composites = (ANCESTORS - 1 - 2) // (STRAND * PER_COMPOSITE + 3)
    tracks = ANCESTORS - composites * (STRAND * PER_COMPOSITE + 3) - 1
    return composites, tracks, composites * (PER_COMPOSITE * STRAND_YIELDS + 1) + 1 + tracks


def target(w: Writer) -> Steps:
    """The final MP4, made with exactly ANCESTORS ancestors: strands composited in fours
    over imported backgrounds, each composite upscaled, all of them in one motion
    sequence, audio tracks laid under it."""
    composites, tracks, _ = plan()
    finished: list[str] = []
    for c in range(composites):
        tips = []
        for s in range(PER_COMPOSITE):
            tips.append((yield from strand(w, c * PER_COMPOSITE + s)))
        background = w.imported(name="plate")
        finished.append(w.enhance(w.composite(tips, background), upscale=True))
        yield
    clip = w.motion(finished)
    yield
    audio = []
    for i in range(tracks):
        audio.append(w.sound(("synth", "voice", "generate", "import")[i % 4]))
        yield
    final = w.add_sound(clip, 2.0 * len(finished), audio)
    w.decide(ReviewRecorded(digest=final, verdict="approve", note="ship it"), "dee")
    return final


def filler(w: Writer) -> None:
    """One piece of everyday work on other projects: the same kinds of steps as the
    target's, on recent assets."""
    rng = w.rng
    roll = rng.random()
    recent = w.recent[-400:]
    if roll < 0.30 or len(recent) < 8:
        job_id, made = w.generate()
        w.recent.append(w.select(made, job_id))
    elif roll < 0.50:
        w.recent.append(w.imported())
    elif roll < 0.62:
        w.recent.append(w.inpaint(rng.choice(recent), w.imported(name="mask")))
    elif roll < 0.74:
        w.recent.append(w.enhance(rng.choice(recent)))
    elif roll < 0.82:
        w.recent.append(w.crop(rng.choice(recent)))
    elif roll < 0.88:
        w.recent.append(w.retouched(rng.choice(recent)))
    elif roll < 0.93:
        w.recent.append(w.composite(rng.sample(recent, 3), rng.choice(recent)))
    elif roll < 0.96:
        w.motion([rng.choice(recent)])
    else:
        w.sound(rng.choice(("synth", "voice")))
    roll = rng.random()
    if roll < 0.05:
        w.decide(SelectionRated(digest=w.recent[-1], rating=rng.randint(1, 5)))
    elif roll < 0.07:
        w.decide(SelectionPicked(digest=w.recent[-1]))
    elif roll < 0.08:
        name = f"work-{rng.randrange(200)}"
        w.branch(name, BranchAdvanced(name=name, head=w.recent[-1]))


@dataclass
class Shape:
    events: int
    assets: int
    final: str


def write_store(store: Store, assets: int) -> Shape:
    """A log of `assets` assets with the target's ANCESTORS + 1 spread evenly over it."""
    w = Writer(store.ledger, random.Random(16))
    steps, total = target(w), plan()[2]
    final, done = None, 0
    while w.assets < assets or final is None:
        # The target's k-th step comes once k/total of the assets are written.
        if final is None and w.assets * total >= assets * done:
            try:
                next(steps)
            except StopIteration as end:
                final = end.value
            done += 1
        else:
            filler(w)
    w.flush()
    return Shape(w.written, w.assets, final)


# --- 1 and 2. provenance ----------------------------------------------------------------


def bench_provenance(root: Path, assets: int, reps: int) -> list[Row]:
    log(f"1-2. provenance of {ANCESTORS:,} ancestors among {assets:,} assets: writing the "
        "store (setup)")
    start = time.perf_counter()
    store = open_store(root, "provenance")
    shape = write_store(store, assets)
    log(f"   wrote {shape.events:,} events ({shape.assets:,} assets) in "
        f"{time.perf_counter() - start:.0f} s; projections catching up")
    start = time.perf_counter()
    store.projections.catch_up()
    log(f"   caught up in {time.perf_counter() - start:.0f} s")
    strata = Strata(store)
    final = shape.final

    found = json.loads(render(strata, final, "json"))
    ancestors = len(found["assets"]) - 1
    layers = sorted({s["layer"] for s in found["steps"]})
    assert ancestors == ANCESTORS, ancestors
    raw = sqlite3.connect(store.engine.url.database)
    raw_edges = raw.execute(LINEAGE_SQL, (final, MAX_DEPTH)).fetchall()
    assert len({r[0] for r in raw_edges}) == ANCESTORS, len(raw_edges)
    log(f"   {ancestors} ancestors, {len(found['steps'])} steps over {', '.join(layers)}; "
        f"{len(found['decisions'])} decisions; {len(raw_edges)} edges")

    rows: list[Row] = []
    for fmt, count, limit in (("json", reps, 200.0), ("prov-json", max(10, reps // 2), 1000.0)):
        for _ in range(2):  # warm up both sides
            render(strata, final, fmt)
            raw.execute(LINEAGE_SQL, (final, MAX_DEPTH)).fetchall()
        strata_ms, raw_ms = interleaved(
            lambda fmt=fmt: render(strata, final, fmt),  # type: ignore[misc]
            lambda: raw.execute(LINEAGE_SQL, (final, MAX_DEPTH)).fetchall(), count)
        size = len(render(strata, final, fmt)) / 1024
        p50, p99 = percentile(strata_ms, 50), percentile(strata_ms, 99)
        r50, r99 = percentile(raw_ms, 50), percentile(raw_ms, 99)
        log(f"   {fmt}: p50 {p50:.0f} ms p99 {p99:.0f} ms ({size:,.0f} KiB); raw lineage "
            f"p50 {r50:.1f} ms p99 {r99:.1f} ms")
        number = "1" if fmt == "json" else "2"
        what = (f"{ANCESTORS:,} ancestors over {len(layers)} kinds of step, "
                f"{shape.assets:,} assets, {count} reps, {size:,.0f} KiB")
        rows += [
            Row(f"{number}a. provenance --format {fmt} p50 ({what})", f"{p50:.0f} ms",
                f"raw recursive lineage SQL: {r50:.1f} ms", f"{p50 / r50:.0f}x the time",
                "—", "info"),
            Row(f"{number}b. provenance --format {fmt} p99", f"{p99:.0f} ms",
                f"raw recursive lineage SQL: {r99:.1f} ms", f"{p99 / r99:.0f}x the time",
                f"≤ {limit:,.0f} ms", verdict(p99 <= limit)),
        ]
    raw.close()
    store.close()
    return rows


def interleaved(strata_side: Callable[[], object], raw_side: Callable[[], object],
                reps: int) -> tuple[list[float], list[float]]:
    """Milliseconds of each side, rep by rep, alternating which goes first."""
    times: dict[str, list[float]] = {"strata": [], "raw": []}
    sides = [("strata", strata_side), ("raw", raw_side)]
    for rep in range(reps):
        for name, side in sides if rep % 2 == 0 else reversed(sides):
            start = time.perf_counter()
            side()
            times[name].append((time.perf_counter() - start) * 1000)
    return times["strata"], times["raw"]


# --- 3. checkpoints ---------------------------------------------------------------------


def bench_checkpoints(root: Path, events: int, reps: int) -> list[Row]:
    log(f"3. verify --checkpoint on a log of {events:,} events (setup)")
    store = open_store(root, "checkpoint")
    home = store.settings.resolved_home
    verifier = keys.init_keys(home, "strata.example/bench")
    signer = keys.load_signer(home)
    w = Writer(store.ledger, random.Random(3))
    files: dict[str, Path] = {}
    for name, size in (("middle", events // 2), ("head", events)):
        while w.position < size:
            filler(w)
        w.flush()
        checkpoint, message = checkpoints.make_checkpoint(store.ledger, signer)
        files[name] = root / f"{name}.checkpoint"
        files[name].write_text(message, encoding="utf-8")
        log(f"   checkpoint of the {name} at position {checkpoint.size:,}")
    ledger = store.ledger
    head = ledger.head_position()
    middle = checkpoints.Checkpoint.parse(
        keys.split_note(files["middle"].read_text(encoding="utf-8"), "middle")[0], "middle")

    def hold(name: str) -> None:
        (found,) = checkpoints.hold_to_files(ledger, [files[name]], verifier)
        assert found.ok, found.detail

    def walk_from_middle() -> None:
        walker = ChainWalker()
        walker.prev_hash, walker.expected_position = middle.hash, middle.size + 1
        for event in ledger.read_all(from_position=middle.size + 1):
            assert not walker.step(event)

    def rehash_all() -> None:
        assert not list(ledger.verify_chain())

    contenders = {"head": lambda: hold("head"), "middle": lambda: hold("middle"),
                  "walk": walk_from_middle, "full": rehash_all}
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            gc.collect()
            start = time.perf_counter()
            contenders[name]()
            times[name].append((time.perf_counter() - start) * 1000)
    store.close()
    p = {name: (percentile(t, 50), percentile(t, 99)) for name, t in times.items()}
    over50 = p["middle"][0] - p["walk"][0]
    over99 = p["middle"][1] - p["walk"][1]
    walked = head - middle.size
    log(f"   head {p['head'][0]:.1f}/{p['head'][1]:.1f} ms, middle {p['middle'][0]:.0f}/"
        f"{p['middle'][1]:.0f} ms, walk {p['walk'][0]:.0f}/{p['walk'][1]:.0f} ms, full "
        f"re-hash {p['full'][0]:.0f}/{p['full'][1]:.0f} ms (p50/p99)")
    what = f"{head:,} events, {reps} reps"
    return [
        Row(f"3a. verify --checkpoint, checkpoint of the head ({what}), p50 / p99",
            f"{p['head'][0]:.1f} / {p['head'][1]:.1f} ms",
            f"re-hashing the whole chain: {p['full'][0]:,.0f} / {p['full'][1]:,.0f} ms",
            f"{p['head'][1] / p['full'][1]:.3f}x the time", "≤ 50 ms",
            verdict(p["head"][1] <= 50.0)),
        Row(f"3b. verify --checkpoint, checkpoint at position {middle.size:,} "
            f"(walks {walked:,} events), p50 / p99",
            f"{p['middle'][0]:,.0f} / {p['middle'][1]:,.0f} ms",
            f"the chain walk from it alone: {p['walk'][0]:,.0f} / {p['walk'][1]:,.0f} ms; "
            f"whole chain: {p['full'][0]:,.0f} / {p['full'][1]:,.0f} ms",
            f"{over50:+.1f} / {over99:+.1f} ms over the walk", "≤ 50 ms + the walk",
            verdict(over99 <= 50.0)),
    ]


# --- main -------------------------------------------------------------------------------


def environment() -> str:
    import sqlalchemy
    from prov import __version__ as prov_version

    return (f"python {platform.python_version()} · SQLite {sqlite3.sqlite_version} · "
            f"SQLAlchemy {sqlalchemy.__version__} · prov {prov_version} · "
            f"{platform.machine()} {platform.system()} {platform.release()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smaller store and log, fewer reps (about a minute)")
    parser.add_argument("--assets", type=int, default=None,
                        help="assets in the provenance store (default 100,000; --quick 20,000)")
    parser.add_argument("--events", type=int, default=None,
                        help="events in the checkpoint log (default 100,000; --quick 20,000)")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed reps of JSON provenance (PROV-JSON: half; default 100, "
                             "--quick 30)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to make the temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    quick = args.quick
    assets = args.assets or (20_000 if quick else 100_000)
    if assets < 2 * ANCESTORS:
        parser.error(f"--assets must be at least {2 * ANCESTORS}")
    events = args.events or (20_000 if quick else 100_000)
    reps = args.reps or (30 if quick else 100)

    root = Path(tempfile.mkdtemp(prefix="strata-bench-", dir=args.dir))
    started = time.perf_counter()
    rows: list[Row] = []
    try:
        env = environment()
        log(env)
        rows += bench_provenance(root, assets, reps)
        rows += bench_checkpoints(root, events, max(10, reps // 2))
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    assert "torch" not in sys.modules, "the benchmark must not import torch"

    print_report("provenance", quick, time.perf_counter() - started, env, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
