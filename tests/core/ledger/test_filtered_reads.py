"""Reads narrowed by stream and by position, and the projection runner's raw read
(`events_after`), which decodes the meta that a batch shares once."""

from __future__ import annotations

from strata.core.ledger.event_types import BranchCreated, SelectionRated
from strata.core.ledger.events import NewEvent
from strata.core.ledger.log import events_after
from strata.core.store import Store

DIGEST = "sha256:" + "de" * 32


def rated(n: int, meta: dict[str, str] | None = None) -> NewEvent:
    return NewEvent.of(SelectionRated(digest=DIGEST, rating=1 + n % 5), meta)


def fill(store: Store) -> None:
    """Positions 1-6: odd ones on stream "odd", even ones on "even"; 7 a branch event."""
    for n in range(1, 7):
        store.ledger.append("odd" if n % 2 else "even", [rated(n)])
    store.ledger.append("odd", [NewEvent.of(BranchCreated(name="main"))])


def test_read_all_by_stream_and_up_to_a_position(store: Store) -> None:
    fill(store)
    ledger = store.ledger
    assert [e.position for e in ledger.read_all(streams=["even"])] == [2, 4, 6]
    assert [e.position for e in ledger.read_all(to_position=3)] == [1, 2, 3]
    assert [e.position for e in ledger.read_all(streams=["odd"], to_position=5)] == [1, 3, 5]


def test_read_last_by_type_stream_and_position(store: Store) -> None:
    fill(store)
    ledger = store.ledger
    assert [e.position for e in ledger.read_last(2, streams=["even"])] == [4, 6]
    assert [e.position for e in ledger.read_last(2, to_position=4)] == [3, 4]
    assert [e.position for e in ledger.read_last(5, types=["selection.rated"])] == [2, 3, 4, 5, 6]


def test_events_after_stops_at_to_position_and_decodes_every_meta(store: Store) -> None:
    alice, bob = {"actor": "alice"}, {"actor": "bob"}
    store.ledger.append("a", [rated(1, alice), rated(2, alice)])
    store.ledger.append("a", [rated(3, bob)])
    store.ledger.append("a", [rated(4, alice)])
    expected = list(store.ledger.read_all())
    with store.engine.connect() as conn:
        assert events_after(conn, 0, None, 10) == expected
        assert [e.meta for e in events_after(conn, 0, None, 10)] == [alice, alice, bob, alice]
        assert [e.position for e in events_after(conn, 1, 3, 10)] == [2, 3]


def test_events_after_reads_past_position_124_without_an_upper_bound(store: Store) -> None:
    store.ledger.append("a", [rated(n) for n in range(130)])
    with store.engine.connect() as conn:
        assert [e.position for e in events_after(conn, 120, None, 20)] == list(range(121, 131))
