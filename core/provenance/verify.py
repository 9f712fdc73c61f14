"""`strata verify`: prove that nobody rewrote the history and that every blob is intact;
and, with signed checkpoints (core/provenance/checkpoints.py), that nothing was removed
from the log's end or replaced since they were made."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from strata.core.errors import LogShortened, VerificationFailed
from strata.core.ledger.event_types import AssetDerived, AssetImported, JobCompleted, ProducedAsset
from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.ledger.log import ChainBreak, Ledger
from strata.core.projections.runner import log_shortened
from strata.core.provenance import checkpoints, keys
from strata.core.provenance.checkpoints import Verdict
from strata.core.service import Strata
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
    # Set when the projections have seen a position past the log's end: events deleted.
    shortened: LogShortened | None = None
    # One verdict per checkpoint given: does the log still extend it?
    checkpoints: list[Verdict] = field(default_factory=list)
    # Printed, but not failures: the log no longer extends the newest checkpoint seen.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.chain_breaks or self.missing_blobs or self.corrupt_blobs
                    or self.shortened or any(not v.ok for v in self.checkpoints))

    @property
    def first_bad_position(self) -> int | None:
        positions = [b.position for b in self.chain_breaks]
        positions += [v.position for v in self.checkpoints if not v.ok and v.position]
        return min(positions, default=None)

    def problems(self) -> list[str]:
        """Every problem found, one line each, in the words `strata verify` prints."""
        lines = [f"chain broken at position {b.position}: {b.reason}" for b in self.chain_breaks]
        lines += [f"missing blob {digest} (referenced at position {position})"
                  for digest, position in self.missing_blobs.items()]
        lines += [f"corrupt blob {digest}: its bytes no longer hash to it"
                  for digest in self.corrupt_blobs]
        if self.shortened is not None:
            lines.append(str(self.shortened))
        lines += [verdict.line() for verdict in self.checkpoints if not verdict.ok]
        return lines

    def raise_if_failed(self) -> None:
        if self.ok:
            return
        first = self.first_bad_position
        where = f"; first bad position {first}" if first else ""
        raise VerificationFailed(
            f"verify FAILED: {len(self.problems())} problem(s) in {self.events} events{where}")


def verify_store(
    strata: Strata, rehash: bool = True, checkpoint_files: Sequence[Path] = (),
    key_file: Path | None = None,
) -> VerifyReport:
    """Recompute the hash chain from the first event; check (and re-hash) every blob;
    notice a log shorter than what its projections have already seen; hold the log to
    each signed checkpoint file (signed by the store's key, or the one in `key_file`).

    The newest checkpoint that holds is kept in the store folder, and a log that no
    longer extends it is warned about on every later run.
    """
    home = strata.store.settings.resolved_home
    verdicts: list[Verdict] = []
    if checkpoint_files:
        verifier = (keys.load_verifier(key_file) if key_file is not None
                    else keys.store_verifier(home))
        verdicts = checkpoints.hold_to_files(strata.ledger, checkpoint_files, verifier)
    warning = checkpoints.seen_warning(strata.ledger, home)
    report = verify(strata.ledger, strata.blobs, rehash)
    report.checkpoints = verdicts
    report.warnings = [warning] if warning else []
    for verdict in verdicts:
        if verdict.ok and verdict.checkpoint is not None:
            checkpoints.remember(home, verdict.checkpoint, verdict.signed)
    state = strata.store.projections.state()
    if state.seen > state.head:
        report.shortened = log_shortened(state.head, state.seen)
    return report


def verify(ledger: Ledger, blobs: BlobStore, rehash: bool = True) -> VerifyReport:
    """The hash chain and the blobs alone (what a store without projections can check)."""
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
