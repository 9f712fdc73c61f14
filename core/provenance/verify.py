"""`strata verify`: prove that nobody rewrote the history and that every blob is intact."""

from __future__ import annotations

from dataclasses import dataclass, field

from strata.core.ledger.event_types import AssetDerived, AssetImported, JobCompleted, ProducedAsset
from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.ledger.log import ChainBreak, Ledger
from strata.core.storage.blobs import BlobStore


def referenced_digests(payload: Payload) -> list[str]:
    """Every asset an event's payload points at (outputs and their inputs)."""
    if isinstance(payload, AssetImported):
        return [payload.asset.digest]
    outputs: list[ProducedAsset] = []
    if isinstance(payload, AssetDerived):
        outputs = [payload.output]
    elif isinstance(payload, JobCompleted):
        outputs = list(payload.outputs)
    found = []
    for output in outputs:
        found.append(output.asset.digest)
        found.extend(i.digest for i in output.inputs)
    return found


@dataclass
class VerifyReport:
    events: int = 0
    blobs_checked: int = 0
    chain_breaks: list[ChainBreak] = field(default_factory=list)
    missing_blobs: dict[str, int] = field(default_factory=dict)  # digest → first position
    corrupt_blobs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.chain_breaks or self.missing_blobs or self.corrupt_blobs)

    @property
    def first_bad_position(self) -> int | None:
        return min((b.position for b in self.chain_breaks), default=None)


def verify(ledger: Ledger, blobs: BlobStore, rehash: bool = True) -> VerifyReport:
    """Recompute the hash chain from the first event; check (and re-hash) every blob."""
    report = VerifyReport()
    referenced: dict[str, int] = {}

    def observe(event: RecordedEvent) -> None:
        report.events += 1
        payload = event.payload
        if isinstance(payload, Payload):
            for digest in referenced_digests(payload):
                referenced.setdefault(digest, event.position)

    report.chain_breaks = list(ledger.verify_chain(observe))
    report.missing_blobs = {d: p for d, p in referenced.items() if not blobs.exists(d)}
    if rehash:
        for digest in blobs.iter_digests():
            report.blobs_checked += 1
            if not blobs.verify(digest):
                report.corrupt_blobs.append(digest)
    return report
