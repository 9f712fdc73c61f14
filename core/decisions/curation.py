"""Human decisions about assets: pick, reject, rate, review, mark final.

These are events without a job; they go on the asset's own stream.
"""

from __future__ import annotations

from strata.core.errors import InvalidInput
from strata.core.ledger.event_types import (
    FinalMarked,
    ReviewRecorded,
    SelectionPicked,
    SelectionRated,
    SelectionRejected,
)
from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.service import Strata, asset_stream

VERDICTS = ("approve", "reject", "changes")


def _decide(strata: Strata, ref: str, make: type[Payload], **fields: object) -> RecordedEvent:
    digest = strata.resolve_asset(ref)
    return strata.record(asset_stream(digest), [make(digest=digest, **fields)])[0]


def pick(strata: Strata, ref: str, note: str | None = None) -> RecordedEvent:
    return _decide(strata, ref, SelectionPicked, note=note)


def reject(strata: Strata, ref: str, note: str | None = None) -> RecordedEvent:
    return _decide(strata, ref, SelectionRejected, note=note)


def rate(strata: Strata, ref: str, rating: int, note: str | None = None) -> RecordedEvent:
    if not 1 <= rating <= 5:
        raise InvalidInput(f"a rating is 1 to 5, not {rating}")
    return _decide(strata, ref, SelectionRated, rating=rating, note=note)


def review(strata: Strata, ref: str, verdict: str, note: str | None = None) -> RecordedEvent:
    if verdict not in VERDICTS:
        raise InvalidInput(f"a review verdict is one of {', '.join(VERDICTS)}, not {verdict!r}")
    return _decide(strata, ref, ReviewRecorded, verdict=verdict, note=note)


def mark_final(strata: Strata, ref: str, note: str | None = None) -> RecordedEvent:
    return _decide(strata, ref, FinalMarked, note=note)
