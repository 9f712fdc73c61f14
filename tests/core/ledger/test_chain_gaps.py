"""The chain walker names a missing position, not only a bad link; and data that JSON
cannot hold is refused as invalid input, never stored."""

from __future__ import annotations

import pytest

from strata.core.errors import InvalidInput
from strata.core.ledger.canonical import canonical_json
from strata.core.ledger.events import GENESIS_HASH, RecordedEvent
from strata.core.ledger.log import ChainBreak, ChainWalker, chain_hash


def chained(count: int) -> list[RecordedEvent]:
    """`count` events at positions 1.. whose hashes chain from the genesis."""
    events = []
    prev = GENESIS_HASH
    for position in range(1, count + 1):
        event = RecordedEvent(
            position=position, event_id=f"{position:032x}", stream="s", version=position,
            type="selection.rated", schema=1, data={"rating": position}, meta={},
            recorded_at="2026-01-01T00:00:00.000000Z", prev_hash=prev, hash="")
        event = event._replace(hash=chain_hash(prev, event))
        events.append(event)
        prev = event.hash
    return events


def test_a_missing_position_is_named_with_the_link_it_breaks() -> None:
    first, _second, third = chained(3)
    walker = ChainWalker()
    assert walker.step(first) == []
    assert walker.step(third) == [
        ChainBreak(2, "position 2 is missing"),
        ChainBreak(3, "prev_hash does not match the previous event"),
    ]


def test_an_intact_chain_has_no_breaks() -> None:
    walker = ChainWalker()
    assert [walker.step(event) for event in chained(3)] == [[], [], []]


def test_data_that_is_not_json_is_refused_as_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="event data is not JSON-serialisable"):
        canonical_json({"when": object()})
    with pytest.raises(InvalidInput, match="cannot be stored as canonical JSON"):
        canonical_json({"x": float("inf")})
