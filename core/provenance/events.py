"""The payloads `strata reproduce` records: `reproduction.verified` and
`reproduction.diverged` (the rules behind them are in core.provenance.reproduce).

Kept apart from the replay so that every process that opens a store can register and
decode these events (the layer registry imports this module) without importing the replay,
the runtime and the provenance code behind it: this module imports nothing but the
ledger's payload base.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from strata.core.ledger.event_types import DIGEST_PATTERN, short
from strata.core.ledger.events import Payload, registry

Verdict = Literal["identical", "visually the same", "different"]
Outcome = Literal["identical", "visually the same", "different", "failed", "imported",
                  "external"]


class Drift(Payload):
    """A model whose recorded weights are gone: what was recorded, what the replay ran."""

    name: str
    path: str
    recorded: str = Field(pattern=DIGEST_PATTERN)
    ran: str = Field(pattern=DIGEST_PATTERN)


class OutputCheck(Payload):
    original: str = Field(pattern=DIGEST_PATTERN)
    reproduction: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    media_type: str
    verdict: Verdict
    figures: dict[str, Any] = Field(default_factory=dict)


class StepCheck(Payload):
    step: str  # the event that made the original outputs
    position: int
    kind: Literal["job", "import", "external"]
    layer: str
    operation: str
    original_job: str | None = None
    job_id: str | None = None  # the replay's job
    outcome: Outcome
    outputs: list[OutputCheck] = Field(default_factory=list)
    drift: list[Drift] = Field(default_factory=list)
    causes: list[str] = Field(default_factory=list)
    note: str | None = None

    @property
    def diverged(self) -> bool:
        return self.outcome in ("different", "failed") or bool(self.drift)


class Reproduction(Payload):
    """Base of both outcomes of `strata reproduce`: every step of the ancestry and what its
    replay gave."""

    reproduction_id: str
    asset: str = Field(pattern=DIGEST_PATTERN)
    # What the replay made of the asset (the asset itself when identical); None when the
    # asset was not replayed (imported, made outside Strata, or its step failed).
    reproduction: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    allow_model_drift: bool = False
    steps: list[StepCheck]
    decisions: int = 0  # selections, picks, reviews, branch moves: taken as recorded

    def counts(self) -> str:
        tally: dict[str, int] = {}
        for step in self.steps:
            tally[step.outcome] = tally.get(step.outcome, 0) + 1
        return ", ".join(f"{count} {outcome}" for outcome, count in tally.items())


@registry.register("reproduction.verified")
class ReproductionVerified(Reproduction):
    def summary(self) -> str:
        return f"{short(self.asset)} reproduced: {self.counts()}"


@registry.register("reproduction.diverged")
class ReproductionDiverged(Reproduction):
    first_diverged: str  # the step (event id) where the replay first parted from the record
    why: str

    def summary(self) -> str:
        first = next(s for s in self.steps if s.step == self.first_diverged)
        return (f"{short(self.asset)} diverged at {first.layer} {first.operation} "
                f"(position {first.position}): {self.why[:80]}")
