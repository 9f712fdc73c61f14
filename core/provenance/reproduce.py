"""`strata reproduce`: replay an asset's ancestry and say, step by step, whether it holds.

The ancestry (core.provenance.ancestry) is replayed in log order, which is a topological
order of its DAG: a request can only name assets recorded before it, and a step's outputs
are recorded after its request. Each step is treated by its kind:

- **imported roots** have no recipe: they are taken as given and said so (`imported`);
- **steps made outside Strata** (`asset.derived`: an external edit, a mask drawn from a
  box) cannot be replayed: their recorded output is taken as given and said so
  (`external`); the steps after them read that recorded output;
- **jobs** are replayed through the same executors, in this process (a running `strata
  worker` may take a job first; the replay waits for it). Each replay is a new job whose
  request is the recorded request with a new job id, no branch (a replay never moves a
  branch head), and every asset digest it names replaced by what the replay made of that
  asset. When the steps before were identical, that is the original digest, so the replay
  reads exactly the recorded inputs; after a divergence, the replay goes on with its own
  outputs, so the final reproduction is what the whole recipe gives today (and the steps
  after the divergence name it as a cause). A request that left the device to the worker
  is pinned to the device the step recorded, when this machine has it: PyTorch promises
  identical bits only on the same device.

**Selection steps are decisions, not outputs to reproduce.** An automatic selection makes
no asset (it records scores and a choice), so it is never a step of the ancestry; like the
picks, ratings, reviews and branch moves on the way, it is taken as recorded: the replay
follows the asset that was actually chosen. The event counts these decisions.

**Models.** Every registered model a step's request names (found by type anywhere in the
request, so a new layer needs nothing here) is checked before anything runs. The
recorded weights are used where they still are: at the recorded path, or under the
model's current registration. When neither holds them the model has drifted, and the
reproduction is refused with a clear message, nothing appended — unless
`allow_model_drift`: the step then runs on the weights now at the model's registered path
(the executor checks they hash to what is recorded for the replay, before and after
loading), and its verdict names the drift.

**Verdicts** per output of a replayed job (a step's verdict is its worst output's):

- `identical`: the same sha256;
- `visually the same`: images: perceptual-hash (imagehash.phash, 64 bits) Hamming distance
  at most MAX_PHASH_DISTANCE (4) **and** PSNR over the 8-bit RGBA pixels at least
  MIN_PSNR_DB (40 dB); video: the same number of frames of the same size, each frame's
  PSNR over its decoded 8-bit RGB pixels at least 40 dB (the figure reported is the worst
  frame's); audio, and a video's sound: the same number of decoded samples (resampled to
  48 kHz stereo floats by PyAV) and PSNR at least 40 dB against full scale (1.0), i.e. an
  RMS error of at most 1 % of full scale. Decoded content that is equal although the bytes
  differ reports PSNR_EQUAL_DB (100 dB);
- `different`: anything else, with the same figures. Other media types are identical or
  different.

A step that could not run (its job failed) is `failed`, with the error.

**The record.** The run is one event on the stream `reproduction:<id>` (its payloads are in
core.provenance.events):
`reproduction.verified` when every replayed step is identical or visually the same and no
model drifted, else `reproduction.diverged`, naming the first step that diverged and why:
model drift, a library version change, a device change, other recorded facts, inputs that
an earlier step reproduced differently — or no recorded cause at all. Reproduced outputs
are ordinary assets made by the replay jobs. One whose bytes differ from the original is
linked to it in the same commit by an `asset.derived` (operation `reproduction`) whose
input is the original with the role `reference`, so `strata lineage ORIGINAL --down` shows
its reproductions and the reproduction's lineage leads back to the original; an identical
output *is* the original asset and needs no link.
"""

from __future__ import annotations

import io
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from strata.core.errors import IntegrityError, JobError, ModelError
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetInfo,
    ImportSource,
    InputRef,
    JobCompleted,
    JobRequest,
    ProducedAsset,
    short,
)
from strata.core.ledger.events import Payload, RecordedEvent, explain
from strata.core.ledger.log import ANY_VERSION
from strata.core.models.diffusion import ModelRef
from strata.core.provenance.ancestry import Step, provenance
from strata.core.provenance.events import (
    Drift,
    OutputCheck,
    Reproduction,
    ReproductionDiverged,
    ReproductionVerified,
    StepCheck,
)
from strata.core.runtime import jobs
from strata.core.service import Strata, asset_stream

if TYPE_CHECKING:
    import numpy as np

    from strata.core.runtime.executor import Progress
    from strata.core.runtime.worker import Worker

MAX_PHASH_DISTANCE = 4
MIN_PSNR_DB = 40.0
PSNR_EQUAL_DB = 100.0
LINK_OPERATION = "reproduction"

_RANK = {"identical": 0, "visually the same": 1, "different": 2}


def stream(reproduction_id: str) -> str:
    return f"reproduction:{reproduction_id}"


class ReproductionRefused(ModelError):
    """A step's recorded model weights are gone and drift was not allowed: nothing ran."""


class NotReproduced(IntegrityError):
    """`--verify`: the reproduction diverged (it is recorded all the same)."""


# --- planning: everything is checked before anything runs ---------------------------------


@dataclass
class _Plan:
    step: Step
    request: JobRequest | None = None
    completed: JobCompleted | None = None
    causation: str | None = None
    # (where the ModelRef sits in the request, the ModelRef the replay runs)
    models: list[tuple[tuple[str | int, ...], ModelRef]] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)


def _plan(strata: Strata, step: Step) -> _Plan:
    plan = _Plan(step)
    if step.kind != "job" or step.job_id is None:
        return plan
    events = strata.ledger.read_stream(jobs.stream(step.job_id))
    request = events[0].payload if events else None
    completed = next((e.payload for e in events if e.event_id == step.id), None)
    if not isinstance(request, JobRequest) or not isinstance(completed, JobCompleted):
        raise JobError(f"job {step.job_id} ({step.layer}) cannot be replayed: its request or "
                       "result is unknown to this version of Strata (a layer not loaded here?)")
    plan.request, plan.completed, plan.causation = request, completed, step.id
    for where, recorded in _model_refs(request):
        running, drift = _weights_to_run(strata, recorded)
        plan.models.append((where, running))
        if drift is not None:
            plan.drift.append(drift)
    return plan


def _model_refs(value: Any, where: tuple[str | int, ...] = ()
                ) -> Iterator[tuple[tuple[str | int, ...], ModelRef]]:
    """Every registered model a payload names, with where it sits, at any depth."""
    if isinstance(value, ModelRef):
        yield where, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _model_refs(getattr(value, name), (*where, name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _model_refs(item, (*where, index))


def _weights_to_run(strata: Strata, recorded: ModelRef) -> tuple[ModelRef, Drift | None]:
    """The model the replay of a step runs: the recorded weights wherever they still are;
    otherwise, with the drift, those now at the model's registered path."""
    from strata.core.models import registry as models
    from strata.core.models.digest import weights_digest

    cache = models.digest_cache(strata)

    def digest_at(path: str) -> str | None:
        try:
            return weights_digest(Path(path), cache)
        except ModelError:  # no files there (any more), or none that hold weights
            return None

    with strata.view() as conn:
        try:
            registered: ModelRef | None = ModelRef.model_validate(
                models.lookup(conn, recorded.name).model_dump(include={"name", "path",
                                                                       "digest"}))
        except ModelError:
            registered = None
    places = [recorded.path] + ([registered.path] if registered else [])
    found = {path: digest_at(path) for path in dict.fromkeys(places)}
    for path, digest in found.items():
        if digest == recorded.digest:
            return recorded.model_copy(update={"path": path}), None
    path = registered.path if registered else recorded.path
    now = found[path]
    if now is None:
        raise ReproductionRefused(
            f"model {recorded.name!r}: the recorded weights {short(recorded.digest)} are "
            f"not at {recorded.path}, and there are no weights at {path} to run instead; "
            "restore the files (or register them) and try again")
    drift = Drift(name=recorded.name, path=path, recorded=recorded.digest, ran=now)
    return ModelRef(name=recorded.name, path=path, digest=now), drift


def _refusal(drifts: Sequence[Drift]) -> ReproductionRefused:
    models = "; ".join(f"model {d.name!r} has drifted: the steps were made with weights "
                       f"{short(d.recorded)}, but the files at {d.path} now hash to "
                       f"{short(d.ran)}" for d in dict.fromkeys(drifts))
    return ReproductionRefused(
        f"refused: {models}; restore the recorded weights to reproduce exactly, or pass "
        "--allow-model-drift to run on the weights there now (the verdicts will name the "
        "drift); nothing was run or recorded")


def _replay_request(plan: _Plan, replaced: dict[str, str]) -> JobRequest:
    """The recorded request as a new job: new id, no branch, the replay's inputs, the
    weights to run, and the recorded device when the request left it open."""
    assert plan.request is not None and plan.completed is not None
    data = _substituted(plan.request.model_dump(mode="json"), replaced)
    for where, model in plan.models:
        holder = data
        for key in where[:-1]:
            holder = holder[key]
        holder[where[-1]] = model.model_dump(mode="json")
    device = plan.completed.facts().get("device")
    if ("device" in type(plan.request).model_fields and data.get("device") is None
            and isinstance(device, str) and _available(device)):
        data["device"] = device
    data.update(job_id=jobs.new_job_id(), branch=None)
    try:
        return type(plan.request).model_validate(data)
    except ValidationError as error:
        raise JobError(f"the recorded request of job {plan.request.job_id} no longer "
                       f"validates: {explain(error)}") from error


def _substituted(value: Any, replaced: dict[str, str]) -> Any:
    """`value` with every string that is a replaced digest swapped for its replacement."""
    if isinstance(value, str):
        return replaced.get(value, value)
    if isinstance(value, dict):
        return {key: _substituted(item, replaced) for key, item in value.items()}
    if isinstance(value, list):
        return [_substituted(item, replaced) for item in value]
    return value


def _available(device: str) -> bool:
    if device == "cpu":
        return True
    from strata.core.models.pipelines import choose_device

    try:
        choose_device(device)
    except ModelError:
        return False
    return True


# --- running ---------------------------------------------------------------------------------


def reproduce(strata: Strata, asset_ref: str, *, allow_model_drift: bool = False,
              say: Callable[[str], None] | None = None,
              on_progress: Progress | None = None) -> RecordedEvent:
    """Replay the ancestry of an asset and record `reproduction.verified` or
    `reproduction.diverged`; refused (nothing appended) when a model drifted and
    `allow_model_drift` is not given, or when there is nothing to replay."""
    from strata.core.layers import build_executors
    from strata.core.runtime.worker import Worker

    found = provenance(strata, asset_ref)
    plans = [_plan(strata, step) for step in found.steps]
    drifts = [d for p in plans for d in p.drift]
    if drifts and not allow_model_drift:
        raise _refusal(drifts)
    layers = sorted({p.step.layer for p in plans if p.request is not None})
    if not layers:
        raise JobError(f"nothing to replay: no step in the ancestry of {short(found.asset)} "
                       "was made by a Strata job (imported assets and steps made outside "
                       "Strata are taken as given)")
    worker = Worker(strata, build_executors(layers), on_progress=on_progress)
    replaced: dict[str, str] = {}  # original digest → what the replay made of it
    infos: dict[str, AssetInfo] = {}  # every asset a replay made, to link the different ones
    checks: list[StepCheck] = []
    for plan in plans:
        check = _replay(strata, worker, plan, replaced, infos, checks)
        checks.append(check)
        if say is not None:
            say(_line(check))
    return _record(strata, found.asset, replaced, infos, checks, len(found.decisions),
                   allow_model_drift)


def _replay(strata: Strata, worker: Worker, plan: _Plan, replaced: dict[str, str],
            infos: dict[str, AssetInfo], done: Sequence[StepCheck]) -> StepCheck:
    step = plan.step
    common: dict[str, Any] = dict(step=step.id, position=step.position, layer=step.layer,
                                  operation=step.operation)
    if step.kind == "import":
        return StepCheck(**common, kind="import", outcome="imported",
                         note="imported: no recipe, taken as given")
    if step.kind == "external":
        return StepCheck(**common, kind="external", outcome="external",
                         note="made outside Strata: cannot be replayed, taken as recorded")
    assert plan.request is not None and plan.completed is not None
    request = _replay_request(plan, replaced)
    diverged_inputs = sorted({d for d in replaced if replaced[d] != d}
                             & set(_strings(plan.request.model_dump(mode="json"))))
    common.update(kind="job", original_job=plan.request.job_id, job_id=request.job_id,
                  drift=plan.drift)
    jobs.request(strata, request, causation_id=plan.causation)
    row = worker.wait_for(request.job_id)
    if row["status"] != "completed":
        error = f": {row['error_class']}: {row['error_message']}" if row["error_class"] else ""
        return StepCheck(**common, outcome="failed", causes=[f"the replay {row['status']}{error}"])
    result = next(e.payload for e in strata.ledger.read_stream(jobs.stream(request.job_id))
                  if isinstance(e.payload, JobCompleted))
    outputs = []
    for original, made in zip_longest(plan.completed.outputs, result.outputs):
        if original is None:  # the replay made more than the record: nothing to compare
            continue
        outputs.append(_compare(strata, original.asset, made.asset if made else None))
        if made is not None:
            replaced[original.asset.digest] = made.asset.digest
            infos[made.asset.digest] = made.asset
    outcome = max((o.verdict for o in outputs), key=_RANK.__getitem__, default="identical")
    check = StepCheck(**common, outcome=outcome, outputs=outputs)
    if outcome == "identical" and not plan.drift:
        return check
    causes = _causes(plan, plan.completed.facts(), result.facts(), diverged_inputs, done)
    return check.model_copy(update={"causes": causes})


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _causes(plan: _Plan, recorded: dict[str, Any], replayed: dict[str, Any],
            diverged_inputs: list[str], done: Sequence[StepCheck]) -> list[str]:
    """Why a replayed step's outputs differ, from what the two completions record."""
    causes = [f"model drift: {d.name} ran {short(d.ran)} instead of the recorded "
              f"{short(d.recorded)}" for d in plan.drift]
    was, now = recorded.get("versions") or {}, replayed.get("versions") or {}
    changed = [f"{name} {was.get(name, 'absent')} → {now.get(name, 'absent')}"
               for name in sorted(set(was) | set(now)) if was.get(name) != now.get(name)]
    if changed:
        causes.append(f"library version change: {', '.join(changed)}")
    for key in ("device", "dtype"):
        if recorded.get(key) != replayed.get(key):
            causes.append(f"{key} change: {recorded.get(key)} → {replayed.get(key)}")
    other = [key for key in sorted(set(recorded) | set(replayed))
             if key not in ("versions", "device", "dtype", "timings")
             and not _is_model(recorded.get(key)) and not _is_model(replayed.get(key))
             and recorded.get(key) != replayed.get(key)]
    if other:
        causes.append(f"other recorded facts differ: {', '.join(other)}")
    if diverged_inputs:
        where = sorted({c.position for c in done for o in c.outputs
                        if o.original in diverged_inputs})
        causes.append("inputs reproduced differently by the step(s) at position "
                      f"{', '.join(map(str, where))}")
    return causes or ["no recorded cause: the same model weights, library versions and "
                      "device gave other bytes"]


def _is_model(value: Any) -> bool:
    return isinstance(value, dict) and {"name", "path", "digest"} <= set(value)


def _line(check: StepCheck) -> str:
    what = f"{check.layer} {check.operation} (position {check.position})"
    why = f": {'; '.join(check.causes)}" if check.causes else ""
    return f"{what}: {check.outcome}{why}"


# --- recording -------------------------------------------------------------------------------


def _record(strata: Strata, asset: str, replaced: dict[str, str],
            infos: dict[str, AssetInfo], checks: list[StepCheck], decisions: int,
            allow_model_drift: bool) -> RecordedEvent:
    """One commit: the outcome on `reproduction:<id>`, and a `reference` link from each
    original to its reproduction where the bytes differ."""
    from strata.core.projections.lineage import walk

    reproduction_id = uuid.uuid4().hex
    common = dict(reproduction_id=reproduction_id, asset=asset,
                  reproduction=replaced.get(asset), allow_model_drift=allow_model_drift,
                  steps=checks, decisions=decisions)
    first = next((c for c in checks if c.diverged), None)
    payload: Reproduction = (
        ReproductionVerified(**common) if first is None else
        ReproductionDiverged(**common, first_diverged=first.step,
                             why="; ".join(first.causes) or first.outcome))
    source = ImportSource(name=f"strata reproduce {reproduction_id}")
    links: dict[str, list[Payload]] = {}
    with strata.view() as conn:
        for original, made in replaced.items():
            # An asset made before that happens to be an ancestor of the original would
            # close a cycle; the reproduction event still names the pair.
            if made == original or made in {e.input_digest
                                            for e in walk(conn, original, "up")}:
                continue
            links.setdefault(asset_stream(made), []).append(AssetDerived(
                output=ProducedAsset(asset=infos[made], inputs=[
                    InputRef(digest=original, role="reference")]),
                operation=LINK_OPERATION, source=source))
    parts: list[tuple[str, Sequence[Payload], int]] = [
        (stream(reproduction_id), [payload], 0),
        *((name, payloads, ANY_VERSION) for name, payloads in links.items())]
    return strata.record_together(parts)[0]


# --- comparing -------------------------------------------------------------------------------


def _compare(strata: Strata, original: AssetInfo, made: AssetInfo | None) -> OutputCheck:
    common = dict(original=original.digest, media_type=original.media_type)
    if made is None:
        return OutputCheck(**common, verdict="different",
                           figures={"missing": "the replay made fewer outputs"})
    common["reproduction"] = made.digest
    if made.digest == original.digest:
        return OutputCheck(**common, verdict="identical")
    a, b = strata.blobs.read_bytes(original.digest), strata.blobs.read_bytes(made.digest)
    kind = original.media_type.split("/", 1)[0]
    if kind != made.media_type.split("/", 1)[0]:
        same, figures = False, {"media_types": [original.media_type, made.media_type]}
    elif kind == "image":
        same, figures = _image_figures(a, b)
    elif kind == "video":
        same, figures = _video_figures(a, b)
    elif kind == "audio":
        same, figures = _audio_figures(a, b)
    else:
        same, figures = False, {}
    return OutputCheck(**common, verdict="visually the same" if same else "different",
                       figures=figures)


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    """Peak signal-to-noise ratio in dB; PSNR_EQUAL_DB for equal arrays."""
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0:
        return PSNR_EQUAL_DB
    return round(min(PSNR_EQUAL_DB, 10 * math.log10(peak * peak / mse)), 3)


def _image_figures(a: bytes, b: bytes) -> tuple[bool, dict[str, Any]]:
    import imagehash
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(a)) as first, Image.open(io.BytesIO(b)) as second:
        if first.size != second.size:
            return False, {"sizes": [list(first.size), list(second.size)]}
        distance = int(imagehash.phash(first.convert("RGB"))
                       - imagehash.phash(second.convert("RGB")))
        value = psnr(np.asarray(first.convert("RGBA")), np.asarray(second.convert("RGBA")),
                     255.0)
    same = distance <= MAX_PHASH_DISTANCE and value >= MIN_PSNR_DB
    return same, {"phash_distance": distance, "psnr_db": value}


def _video_figures(a: bytes, b: bytes) -> tuple[bool, dict[str, Any]]:
    """Frame by frame (decoded in step, never all held), then the sound if there is one."""
    figures: dict[str, Any] = {}
    values: list[float] = []
    frames = [0, 0]
    same = True
    for first, second in zip_longest(_frames(a), _frames(b)):
        frames = [frames[0] + (first is not None), frames[1] + (second is not None)]
        if first is None or second is None or first.shape != second.shape:
            same = False
            continue
        values.append(psnr(first, second, 255.0))
    figures["frames"] = frames if frames[0] != frames[1] else frames[0]
    if values:
        figures.update(min_frame_psnr_db=min(values),
                       mean_frame_psnr_db=round(sum(values) / len(values), 3))
        same = same and min(values) >= MIN_PSNR_DB
    sound_a, sound_b = _sound(a), _sound(b)
    if sound_a is not None or sound_b is not None:
        heard, sound = _samples_figures(sound_a, sound_b)
        figures.update(sound)
        same = same and heard
    return same and bool(values), figures


def _audio_figures(a: bytes, b: bytes) -> tuple[bool, dict[str, Any]]:
    return _samples_figures(_sound(a), _sound(b))


def _samples_figures(a: np.ndarray | None, b: np.ndarray | None
                     ) -> tuple[bool, dict[str, Any]]:
    if a is None or b is None or a.shape != b.shape:
        shapes = [None if s is None else s.shape[1] for s in (a, b)]
        return False, {"audio_samples": shapes}
    value = psnr(a, b, 1.0)
    return value >= MIN_PSNR_DB, {"audio_samples": a.shape[1], "audio_psnr_db": value}


def _frames(data: bytes) -> Iterator[np.ndarray]:
    import av

    with av.open(io.BytesIO(data), "r") as container:
        if not container.streams.video:
            return
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def _sound(data: bytes) -> np.ndarray | None:
    """Every decoded sample (48 kHz stereo floats), or None without a sound track."""
    import av

    from strata.core.av import decode_audio

    with av.open(io.BytesIO(data), "r") as container:
        if not container.streams.audio:
            return None
    return decode_audio(io.BytesIO(data))
