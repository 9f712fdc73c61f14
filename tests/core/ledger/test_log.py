"""The event log contract, run against every backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from strata.core.errors import ConcurrencyError, DuplicateEvent, InvalidInput, UnknownEventType
from strata.core.ledger.canonical import canonical_json, sha256_hex
from strata.core.ledger.event_types import AssetImported, AssetInfo, BranchCreated, SelectionRated
from strata.core.ledger.events import GENESIS_HASH, NewEvent, RecordedEvent, UnknownPayload
from strata.core.ledger.log import ANY_VERSION, Ledger
from strata.core.store import Store

DIGEST = "sha256:" + "ab" * 32


def rated(n: int) -> NewEvent:
    return NewEvent.of(SelectionRated(digest=DIGEST, rating=1 + n % 5))


def count_events(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM events"))


def test_versions_start_at_one_and_positions_are_global(store: Store) -> None:
    ledger = store.ledger
    first = ledger.append("a", [rated(1), rated(2)], expected_version=0)
    second = ledger.append("b", [rated(3)], expected_version=0)
    third = ledger.append("a", [rated(4)], expected_version=2)
    assert [e.version for e in first] == [1, 2]
    assert [e.position for e in first + second + third] == [1, 2, 3, 4]
    assert [e.stream for e in first + second + third] == ["a", "a", "b", "a"]
    assert ledger.stream_version("a") == 3
    assert ledger.stream_version("nothing") == 0


def test_wrong_expected_version_is_refused_and_writes_nothing(store: Store) -> None:
    ledger = store.ledger
    ledger.append("a", [rated(1)], expected_version=0)
    with pytest.raises(ConcurrencyError, match="expected to not exist yet but is at version 1"):
        ledger.append("a", [rated(2), rated(3)], expected_version=0)
    with pytest.raises(ConcurrencyError) as caught:
        ledger.append("a", [rated(2)], expected_version=5)
    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("a", 5, 1)
    assert count_events(store) == 1
    ledger.append("a", [rated(2)], expected_version=ANY_VERSION)
    assert ledger.stream_version("a") == 2


def test_a_batch_is_all_or_nothing(store: Store) -> None:
    ledger = store.ledger
    good = rated(1)
    ledger.append("a", [good])
    # The second event of this batch reuses an id already in the log: nothing is written.
    clash = NewEvent(type=good.type, data=good.data, event_id=good.event_id)
    with pytest.raises(DuplicateEvent, match=good.event_id):
        ledger.append("b", [rated(2), clash])
    assert count_events(store) == 1
    assert ledger.stream_version("b") == 0


def test_event_id_appended_twice_is_refused(store: Store) -> None:
    event = rated(1)
    store.ledger.append("a", [event])
    with pytest.raises(DuplicateEvent, match="already in the log"):
        store.ledger.append("a", [event])
    with pytest.raises(DuplicateEvent, match="repeats"):
        store.ledger.append("c", [event, event])


def test_idempotency_key_records_a_retried_command_once(store: Store) -> None:
    ledger = store.ledger
    first = ledger.append("a", [rated(1), rated(2)], idempotency_key="cmd-1")
    retried = ledger.append("a", [rated(1), rated(2)], expected_version=0,
                            idempotency_key="cmd-1")
    assert [e.event_id for e in retried] == [e.event_id for e in first]
    assert count_events(store) == 2
    with pytest.raises(InvalidInput, match="'cmd-1' was already used at position 1"):
        ledger.append("other", [rated(3)], idempotency_key="cmd-1")


def test_unknown_types_and_invalid_payloads_are_refused_before_writing(store: Store) -> None:
    with pytest.raises(UnknownEventType, match=r"unknown event type 'made\.up'"):
        store.ledger.append("a", [NewEvent(type="made.up", data={})])
    with pytest.raises(InvalidInput, match=r"invalid selection.rated event data"):
        store.ledger.append("a", [NewEvent(type="selection.rated",
                                           data={"digest": DIGEST, "rating": 9})])
    with pytest.raises(InvalidInput, match="canonical JSON"):
        nan = AssetInfo(digest=DIGEST, media_type="video/mp4", size=1, duration=float("nan"))
        store.ledger.append("a", [NewEvent.of(AssetImported(asset=nan))])
    with pytest.raises(InvalidInput, match="empty"):
        store.ledger.append("a", [])
    assert count_events(store) == 0


def test_hash_chain_and_canonical_envelope(store: Store) -> None:
    events = store.ledger.append("a", [rated(1), rated(2)])
    assert events[0].prev_hash == GENESIS_HASH
    assert events[1].prev_hash == events[0].hash
    for event in events:
        assert event.hash == sha256_hex(event.prev_hash + canonical_json(event.envelope()))
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT data FROM events WHERE position = 1")).scalar_one()
    assert stored == canonical_json(events[0].data)
    assert stored == json.dumps(json.loads(stored), sort_keys=True, separators=(",", ":"))
    assert list(store.ledger.verify_chain()) == []


def test_canonical_json_is_utf8_sorted_and_compact() -> None:
    assert canonical_json({"b": 1, "a": "ü"}) == '{"a":"ü","b":1}'


@pytest.mark.parametrize("statement", [
    "UPDATE events SET data = '{}' WHERE position = 1",
    "DELETE FROM events WHERE position = 1",
    "DELETE FROM events",
])
def test_database_refuses_update_and_delete(store: Store, statement: str) -> None:
    store.ledger.append("a", [rated(1)])
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert store.ledger.read_stream("a")[0].data["rating"] == 2


def test_postgres_refuses_truncate(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE exists only on PostgreSQL")
    store.ledger.append("a", [rated(1)])
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("TRUNCATE events"))


def test_reads_by_stream_position_type_and_lazily(store: Store) -> None:
    ledger = store.ledger
    for n in range(1, 8):
        ledger.append("odd" if n % 2 else "even", [rated(n)])
    ledger.append("br", [NewEvent.of(BranchCreated(name="main"))])
    assert [e.version for e in ledger.read_stream("odd", from_version=2)] == [2, 3, 4]
    assert [e.position for e in ledger.read_all(from_position=3, limit=2)] == [3, 4]
    assert [e.type for e in ledger.read_all(types=["branch.created"])] == ["branch.created"]
    assert [e.position for e in ledger.read_last(2)] == [7, 8]
    lazy = ledger.read_all()
    assert next(lazy).position == 1  # a generator: nothing more is fetched until asked


def test_lazy_read_pages_through_a_long_log(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import strata.core.ledger.log as ledger_module

    monkeypatch.setattr(ledger_module, "READ_PAGE", 3)
    store.ledger.append("a", [rated(n) for n in range(10)])
    assert [e.version for e in store.ledger.read_all()] == list(range(1, 11))
    assert [e.version for e in store.ledger.read_all(limit=7)] == list(range(1, 8))


def test_typed_payloads_and_unknown_types_read_back_raw(store: Store) -> None:
    info = AssetInfo(digest=DIGEST, media_type="image/png", size=3)
    store.ledger.append("a", [NewEvent.of(AssetImported(asset=info))])
    # An event from a newer Strata, written behind this version's back.
    with store.engine.begin() as conn:
        last = conn.execute(text("SELECT hash FROM events WHERE position = 1")).scalar_one()
        conn.execute(text(
            "INSERT INTO events (position, event_id, stream, version, type, schema_version, "
            "data, meta, recorded_at, prev_hash, hash) VALUES (2, 'future', 'f', 1, "
            "'hologram.rendered', 1, :data, '{}', '2030-01-01T00:00:00.000000Z', "
            ":prev, 'h')"), {"prev": last, "data": '{"x":1}'})
    known, future = list(store.ledger.read_all())
    assert isinstance(known.payload, AssetImported)
    assert known.payload.asset.digest == DIGEST
    assert future.payload == UnknownPayload("hologram.rendered", 1, {"x": 1})


def test_schema_one_asset_import_is_upcast(store: Store) -> None:
    legacy = {"digest": DIGEST, "media_type": "image/png", "size": 3, "width": 1,
              "height": 1, "phash": None, "dhash": None, "filename": "cat.png"}
    with store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO events (position, event_id, stream, version, type, schema_version, "
            "data, meta, recorded_at, prev_hash, hash) VALUES (1, 'old', 'a', 1, "
            "'asset.imported', 1, :data, '{}', '2020-01-01T00:00:00.000000Z', :g, 'h')"),
            {"data": canonical_json(legacy), "g": GENESIS_HASH})
    (event,) = store.ledger.read_all()
    assert event.schema == 1
    payload = event.payload
    assert isinstance(payload, AssetImported)
    assert payload.asset.width == 1 and payload.source.name == "cat.png"
    store.projections.catch_up()  # projections see the upcast shape too
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT label FROM assets")).scalar_one() == "cat.png"


def test_second_ledger_instance_sees_the_same_log(store: Store) -> None:
    store.ledger.append("a", [rated(1)])
    other = Ledger(store.engine)
    other.append("a", [rated(2)], expected_version=1)
    assert store.ledger.stream_version("a") == 2


def test_appends_to_several_streams_commit_together_or_not_at_all(store: Store) -> None:
    from strata.core.ledger.log import StreamAppend

    ledger = store.ledger
    ledger.append("job", [rated(1)], expected_version=0)
    ledger.append("branch", [rated(2)], expected_version=0)
    recorded = ledger.append_together([
        StreamAppend("job", [rated(3)], 1), StreamAppend("branch", [rated(4), rated(5)], 1),
    ], idempotency_key="result-1")
    assert [(e.stream, e.version, e.position) for e in recorded] == [
        ("job", 2, 3), ("branch", 2, 4), ("branch", 3, 5)]
    assert list(ledger.verify_chain()) == []
    # A retry with the same key returns what was recorded, across both streams.
    again = ledger.append_together([
        StreamAppend("job", [rated(3)], 1), StreamAppend("branch", [rated(4), rated(5)], 1),
    ], idempotency_key="result-1")
    assert [e.event_id for e in again] == [e.event_id for e in recorded]
    # The second stream moved on: nothing of the batch is written, and the error says where.
    with pytest.raises(ConcurrencyError) as caught:
        ledger.append_together([StreamAppend("job", [rated(6)], 2),
                                StreamAppend("branch", [rated(7)], 2)])
    assert caught.value.stream == "branch"
    assert count_events(store) == 5 and ledger.stream_version("job") == 2
    with pytest.raises(InvalidInput, match="names a stream twice"):
        ledger.append_together([StreamAppend("job", [rated(8)]), StreamAppend("job", [rated(9)])])


def test_appends_share_one_kept_connection_that_closes_with_the_store(store: Store) -> None:
    # SQLite appends run on a connection the ledger keeps (no pool checkout per append),
    # and a `within` callback's own statements join the append's transaction.
    def within(conn: Connection, recorded: list[RecordedEvent]) -> None:
        assert conn.scalar(text("SELECT count(*) FROM events")) == recorded[-1].position

    store.ledger.append("a", [rated(1)], within=within)
    store.ledger.append("a", [rated(2)], expected_version=1, within=within)
    kept = store.ledger._writer._conn
    assert (kept is not None) == (store.engine.dialect.name == "sqlite")
    store.close()
    assert store.ledger._writer._conn is None
    assert kept is None or kept.closed
