"""`strata provenance`: the whole ancestry of an asset as a DAG of steps and decisions.

A *step* is one event that made assets of the ancestry: a layer's completion (a job), an
import, or a derivation made outside Strata (`asset.derived`). For a job it carries what
the layer itself says about its work — the request's `parameters()`, the completion's
`facts()` (model and digest, device, library versions…), each output's own parameters
(its seed) and inputs with roles — plus the circumstances the log records around it:
who asked and when, every attempt, the executor and its version. Nothing here names a
layer's fields, so a layer registered tomorrow is described with no edit.

The *decisions* are the human (and automatic curation) choices that involved an asset of
the ancestry: picks, rejections, ratings, reviews, finals (every `Decision` payload), the
automatic selections that scored it (with the candidates that lost and their scores), and
branch moves and rollbacks whose head was one of them.

Everything is read with a handful of queries (the lineage CTE, the asset rows, the
selections that scored an ancestor and the branch moves to or from one, found in their
projection tables; then the events of the ancestry's asset and job streams, of those
selection jobs and of those branches), never one query per ancestor nor a scan of every
selection or branch event in the log, and as the log stood at `as_of` when it is given.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Column, Connection, Row, or_, select

from strata.core.decisions.branches import stream as branch_stream
from strata.core.errors import EventNotFound, UnknownEventType
from strata.core.layers.selection import SelectionCompleted
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetImported,
    BranchAdvanced,
    BranchCreated,
    BranchRolledBack,
    Decision,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobRequest,
    JobStarted,
    ProducedAsset,
)
from strata.core.ledger.events import Payload, RecordedEvent, UnknownPayload, registry
from strata.core.projections.base import table
from strata.core.projections.lineage import roots, walk
from strata.core.runtime.jobs import stream as job_stream
from strata.core.service import Strata, asset_stream
from strata.core.storage.schema import AssetRow, BranchMoveRow, SelectionScoreRow

FORMAT = "strata-provenance"
FORMAT_VERSION = 1
# Streams per query: well under every driver's limit on bound parameters.
_CHUNK = 500
BRANCH_TYPES = ("branch.created", "branch.advanced", "branch.rolled_back")


@dataclass(frozen=True)
class Input:
    digest: str
    role: str


@dataclass(frozen=True)
class Output:
    digest: str
    seed: int | None
    # This output's own parameters beyond the step's (its seed, for a batch of seeds).
    parameters: dict[str, Any]
    inputs: list[Input]


@dataclass(frozen=True)
class Attempt:
    attempt: int
    worker: str | None
    started_at: str
    outcome: str  # completed, failed, retried, cancelled, unfinished
    ended_at: str | None = None
    error_class: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Step:
    id: str  # the event that made the outputs
    position: int
    kind: str  # job, import, external
    made_outside_strata: bool
    layer: str
    operation: str
    time: str
    actor: str | None
    host: str | None
    parameters: dict[str, Any]
    facts: dict[str, Any]
    model: dict[str, Any] | None
    device: str | None
    versions: dict[str, str] | None
    outputs: list[Output]
    batch: list[str]  # every asset the step made, in or out of the ancestry
    job_id: str | None = None
    executor: dict[str, str] | None = None
    requested_at: str | None = None
    requested_by: str | None = None
    started_at: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    iterates: str | None = None
    changes: dict[str, Any] | None = None


@dataclass(frozen=True)
class DecisionRecord:
    type: str  # the event type: selection.picked, review.recorded, branch.rolled_back…
    event_id: str
    position: int
    time: str
    actor: str | None
    assets: list[str]  # the assets of the ancestry it involved
    summary: str
    note: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class AssetNode:
    digest: str
    media_type: str
    size: int
    width: int | None
    height: int | None
    duration: float | None
    layer: str
    step: str  # the id of the step that made it
    label: str | None


@dataclass(frozen=True)
class EdgeRef:
    input: str
    output: str
    role: str
    step: str


@dataclass(frozen=True)
class Provenance:
    asset: str
    as_of: int | None
    log_position: int
    roots: list[str]
    assets: list[AssetNode]
    edges: list[EdgeRef]
    steps: list[Step]
    decisions: list[DecisionRecord]

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape (docs/provenance.schema.json), for serializing at
        once: its dicts of parameters, facts and details are this object's own."""
        return {"format": FORMAT, "version": FORMAT_VERSION, **_plain(self)}

    def dumps(self) -> bytes:
        """`to_json()` as JSON, keys sorted, without spaces, written by orjson straight
        from the dataclasses (`to_json` first builds a dict for every one of them: a
        thousand ancestors make tens of thousands)."""
        return orjson.dumps({"format": FORMAT, "version": FORMAT_VERSION, **_fields(self)},
                            default=_fields,
                            option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS)

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)


def _plain(value: Any) -> Any:
    """Dataclasses, alone or in lists, as dicts of their fields; anything else as it is.
    (`dataclasses.asdict` deep-copies every dict too: most of the time of a large ancestry.)"""
    if isinstance(value, list):
        return ([_plain(v) for v in value] if value and _field_names(type(value[0])) is not None
                else value)
    names = _field_names(type(value))
    return value if names is None else {n: _plain(getattr(value, n)) for n in names}


def _fields(value: Any) -> dict[str, Any]:
    """A dataclass's fields, one level deep, for orjson (which sorts their keys, unlike
    in the dataclasses it writes itself); refuses anything else as orjson would."""
    if _field_names(type(value)) is None:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    # The instance's own dict holds exactly its fields: these dataclasses have no slots
    # and set nothing else.
    return vars(value)


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(kind: type) -> tuple[str, ...] | None:
    """The fields of a dataclass, None for any other type (looked up once per type)."""
    if kind not in _FIELD_NAMES:
        _FIELD_NAMES[kind] = (tuple(f.name for f in dataclasses.fields(kind))
                              if dataclasses.is_dataclass(kind) else None)
    return _FIELD_NAMES[kind]


class _Payloads:
    """Each event's payload, decoded once: `RecordedEvent.payload` validates the data again
    on every access, and a step or decision looks at its events several times."""

    def __init__(self) -> None:
        self.decoded: dict[str, Payload | UnknownPayload] = {}

    def __call__(self, event: RecordedEvent) -> Payload | UnknownPayload:
        found = self.decoded.get(event.event_id)
        if found is None:
            found = self.decoded[event.event_id] = event.payload
        return found


@contextmanager
def collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while an ancestry is read and written out.

    A large ancestry allocates hundreds of thousands of dicts and lists (decoded events,
    steps, the document), and the collections their allocation triggers walk every object
    of the process again and again: a third of the time, for objects that are not in
    cycles. Whatever is left is collected as usual once the collector runs again."""
    if not gc.isenabled():  # paused further out (or by the application): leave it so
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def provenance(strata: Strata, asset_ref: str, as_of: int | None = None) -> Provenance:
    """The ancestry of an asset, with every step that made it and every decision on the
    way, as the log stands (or stood at position `as_of`)."""
    with collection_paused():
        return _provenance(strata, asset_ref, as_of)


def _provenance(strata: Strata, asset_ref: str, as_of: int | None) -> Provenance:
    with strata.view(as_of) as conn:
        digest = strata.resolve_asset(asset_ref, conn)
        edges = walk(conn, digest, "up")
        found_roots = roots(conn, digest)
        digests = {digest} | {e.input_digest for e in edges}
        rows = _asset_rows(conn, digests)
        scores, branch_moves = table(SelectionScoreRow), table(BranchMoveRow)
        scoring = _positions_of(conn, [scores.c.digest], scores.c.stream, digests)
        moves = _positions_of(conn, [branch_moves.c.head, branch_moves.c.previous_head],
                              branch_moves.c.branch, digests)
    log_position = as_of if as_of is not None else strata.ledger.head_position()
    job_ids = sorted({r.job_id for r in rows.values() if r.job_id})
    events = _read_streams(strata, [asset_stream(d) for d in sorted(digests)]
                           + [job_stream(j) for j in job_ids], log_position)
    by_id = {e.event_id: e for e in events}
    payload_of = _Payloads()
    by_stream: dict[str, list[RecordedEvent]] = {}
    for event in events:
        by_stream.setdefault(event.stream, []).append(event)

    steps: dict[str, Step] = {}
    for row in sorted(rows.values(), key=lambda r: r.created_position):
        event_id = row.created_event_id
        if event_id in steps:
            continue
        created = by_id.get(event_id) or strata.ledger.get(event_id)
        if created is None:  # the projections name it; the log cannot have lost it
            raise EventNotFound(f"the event that recorded {row.digest} is not in the log")
        steps[event_id] = _step(created, payload_of, digests,
                                by_stream.get(job_stream(row.job_id), [])
                                if row.job_id else [])

    decisions = [*_asset_decisions(events, payload_of, digests),
                 *_selections(strata, payload_of, digests, scoring, log_position),
                 *_branch_moves(strata, payload_of, digests, moves, log_position)]
    decisions.sort(key=lambda d: d.position)
    nodes = [AssetNode(digest=r.digest, media_type=r.media_type, size=r.size,
                       width=r.width, height=r.height, duration=r.duration,
                       layer=r.layer, step=r.created_event_id, label=r.label)
             for r in sorted(rows.values(), key=lambda r: (r.created_position, r.digest))]
    return Provenance(
        asset=digest, as_of=as_of, log_position=log_position, roots=found_roots,
        assets=nodes,
        edges=[EdgeRef(input=e.input_digest, output=e.output_digest, role=e.role,
                       step=e.event_id) for e in edges],
        steps=sorted(steps.values(), key=lambda s: s.position),
        decisions=decisions,
    )


# The columns of an asset's row that provenance reads.
_ASSET_COLUMNS = ("digest", "media_type", "size", "width", "height", "duration", "layer",
                  "label", "job_id", "created_position", "created_event_id")


def _asset_rows(conn: Connection, digests: set[str]) -> dict[str, Row[Any]]:
    assets = table(AssetRow)
    columns = [assets.c[name] for name in _ASSET_COLUMNS]
    ordered = sorted(digests)
    rows: dict[str, Row[Any]] = {}
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start:start + _CHUNK]
        for row in conn.execute(select(*columns).where(assets.c.digest.in_(chunk))).all():
            rows[row.digest] = row
    return rows


def _positions_of(conn: Connection, named: Sequence[Column[Any]], owner: Column[Any],
                  digests: set[str]) -> dict[int, str]:
    """The log positions of the rows whose `named` columns hold one of `digests`, each with
    its `owner` column: a selection score's job stream, a branch move's branch."""
    position = owner.table.c.position
    ordered = sorted(digests)
    found: dict[int, str] = {}
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start:start + _CHUNK]
        query = select(position, owner).where(or_(*(c.in_(chunk) for c in named)))
        found.update((row[0], row[1]) for row in conn.execute(query).all())
    return found


def _read_streams(strata: Strata, streams: Sequence[str], to_position: int,
                  types: Sequence[str] | None = None, from_position: int = 1
                  ) -> list[RecordedEvent]:
    """The events of `streams` (of `types`, when given) from `from_position` to
    `to_position`, in log order: one query for each _CHUNK streams."""
    events: list[RecordedEvent] = []
    for start in range(0, len(streams), _CHUNK):
        events += strata.ledger.read_streams(streams[start:start + _CHUNK], from_position,
                                             to_position, types)
    events.sort(key=lambda e: e.position)
    return events


def _step(created: RecordedEvent, payload_of: _Payloads, digests: set[str],
          job: list[RecordedEvent]) -> Step:
    """One step of the ancestry from the event that made its outputs (and its job)."""
    payload = payload_of(created)
    common = dict(id=created.event_id, position=created.position, time=created.recorded_at,
                  actor=created.meta.get("actor"), host=created.meta.get("host"))
    if isinstance(payload, AssetImported):
        return Step(**common, kind="import", made_outside_strata=True, layer="import",
                    operation="import", parameters={},
                    facts={"source": payload.source.name, "embedded": payload.embedded},
                    model=None, device=None, versions=None,
                    outputs=[Output(digest=payload.asset.digest, seed=None, parameters={},
                                    inputs=[])],
                    batch=[payload.asset.digest])
    if isinstance(payload, AssetDerived):
        output = payload.output
        return Step(**common, kind="external", made_outside_strata=True, layer="external",
                    operation=payload.operation, parameters=dict(output.params),
                    facts={"source": payload.source.name}, model=None, device=None,
                    versions=None, outputs=[_output(output, {})],
                    batch=[output.asset.digest])
    if not isinstance(payload, JobCompleted):
        raise EventNotFound(f"event {created.event_id} ({created.type}) made an asset, but "
                            "this version of Strata cannot read it (a layer not loaded here?)")
    request_event = job[0] if job else None
    request = payload_of(request_event) if request_event is not None else None
    parameters = request.parameters() if isinstance(request, JobRequest) else {}
    facts = payload.facts()
    model = facts.get("model")
    executor = created.meta.get("executor")
    name, _, version = executor.rpartition("/") if isinstance(executor, str) else ("", "", "")
    attempts = _attempts(job, payload_of)
    started = next((a.started_at for a in reversed(attempts) if a.outcome == "completed"),
                   None)
    outputs = [o for o in payload.outputs if o.asset.digest in digests]
    return Step(
        **common, kind="job", made_outside_strata=False,
        layer=created.type.split(".", 1)[0], operation=payload.operation,
        parameters=parameters, facts=facts,
        model=model if isinstance(model, dict) else None,
        device=facts.get("device") if isinstance(facts.get("device"), str) else None,
        versions=facts.get("versions") if isinstance(facts.get("versions"), dict) else None,
        outputs=[_output(o, parameters, request if isinstance(request, JobRequest) else None)
                 for o in outputs],
        batch=[o.asset.digest for o in payload.outputs],
        job_id=payload.job_id,
        executor={"name": name, "version": version} if name else None,
        requested_at=request_event.recorded_at if request_event else None,
        requested_by=request_event.meta.get("actor") if request_event else None,
        started_at=started, attempts=attempts,
        iterates=request.iterates if isinstance(request, JobRequest) else None,
        changes=request.changes if isinstance(request, JobRequest) else None,
    )


def _output(output: ProducedAsset, step_parameters: dict[str, Any],
            request: JobRequest | None = None) -> Output:
    own = {**(request.parameters(output) if request is not None else {}), **output.params}
    return Output(
        digest=output.asset.digest, seed=output.seed,
        parameters={k: v for k, v in own.items()
                    if k not in step_parameters or step_parameters[k] != v},
        inputs=[Input(digest=i.digest, role=i.role) for i in output.inputs],
    )


def _attempts(job: Iterable[RecordedEvent], payload_of: _Payloads) -> list[Attempt]:
    """Every attempt of a job and how it ended, from its stream."""
    attempts: list[dict[str, Any]] = []
    for event in job:
        payload = payload_of(event)
        if isinstance(payload, JobStarted):
            if attempts and attempts[-1]["outcome"] == "unfinished":
                attempts[-1]["outcome"] = "abandoned"  # taken over after its lease ran out
            attempts.append({"attempt": payload.attempt, "worker": payload.worker,
                             "started_at": event.recorded_at, "outcome": "unfinished"})
        elif attempts and isinstance(payload, JobCompleted | JobFailed | JobCancelled):
            last = attempts[-1]
            last["ended_at"] = event.recorded_at
            if isinstance(payload, JobCompleted):
                last["outcome"] = "completed"
            elif isinstance(payload, JobFailed):
                last.update(outcome="retried" if payload.retry_at else "failed",
                            error_class=payload.error_class, message=payload.message)
            else:
                last["outcome"] = "cancelled"
    return [Attempt(**a) for a in attempts]


def _decision(event: RecordedEvent, payload: Payload, assets: list[str], note: str | None,
              details: dict[str, Any]) -> DecisionRecord:
    return DecisionRecord(type=event.type, event_id=event.event_id, position=event.position,
                          time=event.recorded_at, actor=event.meta.get("actor"),
                          assets=assets, note=note, details=details, summary=payload.summary())


def _asset_decisions(events: Iterable[RecordedEvent], payload_of: _Payloads,
                     digests: set[str]) -> list[DecisionRecord]:
    """Picks, rejections, ratings, reviews, finals: every `Decision` on the ancestry."""
    types = _types_of(Decision)
    found = []
    for event in events:
        if event.type not in types:  # most events of an asset's stream: no need to decode
            continue
        payload = payload_of(event)
        if isinstance(payload, Decision) and payload.digest in digests:
            details = payload.model_dump(mode="json", exclude={"digest", "note"})
            found.append(_decision(event, payload, [payload.digest], payload.note, details))
    return found


def _types_of(base: type[Payload]) -> set[str]:
    """The registered event types whose payloads are `base`s (`Decision`s, `JobRequest`s),
    a layer's own too."""
    types, models = set(), [base]
    while models:
        model = models.pop()
        models += model.__subclasses__()
        with suppress(UnknownEventType):  # an abstract base, not an event of its own
            types.add(registry.name_of(model)[0])
    return types


def _selections(strata: Strata, payload_of: _Payloads, digests: set[str],
                scoring: dict[int, str], to_position: int) -> list[DecisionRecord]:
    """Automatic selections that scored an asset of the ancestry (`scoring`: their
    positions and job streams), with every candidate (those that lost too), its score and
    whether it was kept."""
    found = []
    jobs = _read_streams(strata, sorted(set(scoring.values())), to_position)
    # The request (who asked) known by its type: a job's other events need no decoding.
    request_types = _types_of(JobRequest)
    requests = {e.stream: e for e in jobs if e.type in request_types}
    for event in jobs:
        if event.position not in scoring:
            continue
        payload = payload_of(event)
        if not isinstance(payload, SelectionCompleted):
            continue
        chosen = set(payload.chosen)
        candidates = [{"digest": d, **scored.model_dump(mode="json"), "kept": d in chosen,
                       "in_ancestry": d in digests}
                      for d, scored in sorted(payload.scored.items(),
                                              key=lambda item: -item[1].score)]
        request = requests.get(event.stream)
        record = _decision(event, payload, sorted(digests.intersection(payload.scored)), None, {
            "job_id": payload.job_id, "chosen": payload.chosen,
            "dedupe_distance": payload.dedupe_distance, "top": payload.top,
            "candidates": candidates,
            "requested_by": request.meta.get("actor") if request else None,
        })
        # The person who asked for the selection made the decision, not the worker.
        found.append(dataclasses.replace(record, actor=record.details["requested_by"]
                                         or record.actor))
    return found


def _branch_moves(strata: Strata, payload_of: _Payloads, digests: set[str],
                  moves: dict[int, str], to_position: int) -> list[DecisionRecord]:
    """Branch creations, advances and rollbacks whose head (or previous head) is in the
    ancestry (`moves`: their positions and branches); a rollback away from an asset is
    how it stopped being the head."""
    positions = [p for p in moves if p <= to_position]
    if not positions:
        return []
    events = [e for e in _read_streams(strata, sorted({branch_stream(b) for b in moves.values()}),
                                       max(positions), BRANCH_TYPES, min(positions))
              if e.position in moves]
    # A branch event is on its branch's stream unless someone appended it elsewhere: such
    # an event is read at its own position.
    for missing in sorted(set(positions) - {e.position for e in events}):
        events += strata.ledger.read_all(from_position=missing, to_position=missing)
    found = []
    for event in sorted(events, key=lambda e: e.position):
        payload = payload_of(event)
        if not isinstance(payload, BranchCreated | BranchAdvanced | BranchRolledBack):
            continue
        previous = None if isinstance(payload, BranchCreated) else payload.previous_head
        involved = [d for d in (payload.head, previous) if d in digests]
        if not involved:
            continue
        details = payload.model_dump(mode="json", exclude={"reason"})
        note = payload.reason if isinstance(payload, BranchRolledBack) else None
        found.append(_decision(event, payload, sorted(set(involved)), note, details))
    return found
