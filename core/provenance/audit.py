"""`strata audit`: every event that ever touched an asset or its ancestry, in log order.

An event touches the ancestry when its data names one of its assets anywhere — an
import, a derivation, a job's request or result, a decision, a branch move, and any event
type added later (a reproduction, an export) with no edit here. The other events of a
job that touched it (its attempts, failures, cancellation) come with it, since they name
only the job. This reads the whole log once: an audit is an investigation, not a hot path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.projections.lineage import walk
from strata.core.service import Strata

JOB_STREAM_PREFIX = "job:"


@dataclass(frozen=True)
class AuditEntry:
    position: int
    event_id: str
    type: str
    stream: str
    time: str
    actor: str | None
    host: str | None
    worker: str | None
    executor: str | None
    summary: str
    assets: list[str]  # the assets of the ancestry the event names


@dataclass(frozen=True)
class Audit:
    asset: str
    as_of: int | None
    log_position: int
    ancestry: list[str]
    events: list[AuditEntry]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def mentioned(value: Any, digests: set[str], found: set[str]) -> None:
    """Add to `found` every digest of `digests` that `value` names, as a key or a value,
    at any depth (a selection's scores are keyed by digest)."""
    if isinstance(value, str):
        if value in digests:
            found.add(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in digests:
                found.add(key)
            mentioned(item, digests, found)
    elif isinstance(value, list):
        for item in value:
            mentioned(item, digests, found)


def audit(strata: Strata, asset_ref: str, as_of: int | None = None) -> Audit:
    """Every event that touched the asset or an ancestor, with who and when."""
    with strata.view(as_of) as conn:
        digest = strata.resolve_asset(asset_ref, conn)
        digests = {digest} | {e.input_digest for e in walk(conn, digest, "up")}
    log_position = as_of if as_of is not None else strata.ledger.head_position()
    touching: dict[int, tuple[RecordedEvent, set[str]]] = {}
    for event in strata.ledger.read_all(to_position=log_position):
        found: set[str] = set()
        mentioned(event.data, digests, found)
        if found:
            touching[event.position] = (event, found)
    job_streams = sorted({e.stream for e, _ in touching.values()
                          if e.stream.startswith(JOB_STREAM_PREFIX)})
    if job_streams:
        for event in strata.ledger.read_all(streams=job_streams, to_position=log_position):
            touching.setdefault(event.position, (event, set()))
    return Audit(asset=digest, as_of=as_of, log_position=log_position,
                 ancestry=sorted(digests),
                 events=[_entry(event, found) for event, found in _in_order(touching)])


def _in_order(touching: dict[int, tuple[RecordedEvent, set[str]]]
              ) -> Iterable[tuple[RecordedEvent, set[str]]]:
    return (touching[position] for position in sorted(touching))


def _entry(event: RecordedEvent, found: set[str]) -> AuditEntry:
    payload = event.payload
    return AuditEntry(
        position=event.position, event_id=event.event_id, type=event.type,
        stream=event.stream, time=event.recorded_at, actor=event.meta.get("actor"),
        host=event.meta.get("host"), worker=event.meta.get("worker"),
        executor=event.meta.get("executor"),
        summary=payload.summary() if isinstance(payload, Payload)
        else "(unknown to this version)",
        assets=sorted(found),
    )
