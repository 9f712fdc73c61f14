"""What an append checks and records beyond the happy path: stream names at their limits,
an empty part in a multi-stream append, the `within` hook, where a batch's size is kept for
idempotent retries, the time format, and the retry helper's exact number of attempts.

Each test here kills mutants that survived the ledger's own tests (docs/mutation-testing.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, text

from strata.core.errors import ConcurrencyError, InvalidInput
from strata.core.ledger.event_types import SelectionRated
from strata.core.ledger.events import NewEvent, RecordedEvent
from strata.core.ledger.log import StreamAppend, retry_on_conflict, utc_iso
from strata.core.store import Store

DIGEST = "sha256:" + "cd" * 32


def rated(n: int) -> NewEvent:
    return NewEvent.of(SelectionRated(digest=DIGEST, rating=1 + n % 5))


def count_events(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM events"))


def test_stream_names_are_refused_when_empty_or_longer_than_200(store: Store) -> None:
    longest = "s" * 200
    assert store.ledger.append(longest, [rated(1)])[0].stream == longest
    for bad in ("", "s" * 201):
        with pytest.raises(InvalidInput, match=f"invalid stream name {bad!r}"):
            store.ledger.append(bad, [rated(2)])
    assert count_events(store) == 1


def test_an_empty_part_of_a_multi_stream_append_refuses_the_whole_append(store: Store) -> None:
    with pytest.raises(InvalidInput, match="a batch of events is empty"):
        store.ledger.append_together([StreamAppend("a", [rated(1)]), StreamAppend("b", [])])
    assert count_events(store) == 0


def test_within_runs_in_the_append_transaction(store: Store) -> None:
    seen: list[list[RecordedEvent]] = []

    def within(conn: Connection, recorded: list[RecordedEvent]) -> None:
        # The new event is visible inside the append's own transaction.
        seen.append(recorded)
        assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 1

    recorded = store.ledger.append("a", [rated(1)], within=within)
    assert seen == [recorded]

    def refuse(_conn: Connection, _recorded: list[RecordedEvent]) -> None:
        raise InvalidInput("the hook refuses")

    with pytest.raises(InvalidInput, match="the hook refuses"):
        store.ledger.append("a", [rated(2)], within=refuse)
    assert count_events(store) == 1  # the hook's failure undid the append


def test_a_retry_that_adds_events_to_a_recorded_batch_is_refused(store: Store) -> None:
    """The key's batch size, stored on its first event only, bounds what a retry is compared
    with: without it the retry would be compared with as many events as it offers, and a
    later event that happens to match would be taken for part of the batch."""
    first, second, later = rated(1), rated(2), rated(3)
    store.ledger.append("a", [first, second], idempotency_key="cmd")
    store.ledger.append("a", [later])
    with store.engine.connect() as conn:
        sizes = conn.execute(text("SELECT batch_size FROM events ORDER BY position")).scalars()
        assert list(sizes) == [2, None, None]
    retry = [NewEvent(type=e.type, data=e.data) for e in (first, second, later)]
    with pytest.raises(InvalidInput, match="'cmd' was already used at position 1"):
        store.ledger.append("a", retry, idempotency_key="cmd")
    assert count_events(store) == 3


def test_get_of_an_unknown_event_is_none_and_head_position_counts(store: Store) -> None:
    assert store.ledger.get("0" * 32) is None
    assert store.ledger.head_position() == 0
    store.ledger.append("a", [rated(1), rated(2)])
    assert store.ledger.head_position() == 2


def test_times_are_written_in_utc_with_microseconds_and_a_z() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert utc_iso(moment) == "2026-01-02T03:04:05.000006Z"


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process whose local time is 14 hours ahead of UTC."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_recorded_at_is_utc_whatever_the_local_time_zone(store: Store) -> None:
    before = datetime.now(UTC)
    (event,) = store.ledger.append("a", [rated(1)])
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event.recorded_at)
    recorded = datetime.strptime(event.recorded_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before <= recorded <= after


def conflicts(failures: int) -> tuple[list[int], Callable[[], str]]:
    """An attempt that loses the race `failures` times, then succeeds; and its call log."""
    calls: list[int] = []

    def attempt() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= failures:
            raise ConcurrencyError("s", 1, 2)
        return "appended"

    return calls, attempt


def test_retry_on_conflict_makes_exactly_the_tries_it_is_given() -> None:
    calls, attempt = conflicts(4)
    assert retry_on_conflict(attempt) == "appended"  # the fifth and last try wins
    assert calls == [1, 2, 3, 4, 5]

    calls, attempt = conflicts(5)
    with pytest.raises(ConcurrencyError):
        retry_on_conflict(attempt)
    assert calls == [1, 2, 3, 4, 5]  # five tries by default, not one more

    calls, attempt = conflicts(1)
    assert retry_on_conflict(attempt, tries=2) == "appended"
    calls, attempt = conflicts(2)
    with pytest.raises(ConcurrencyError):
        retry_on_conflict(attempt, tries=2)
    assert calls == [1, 2]


def test_an_event_whose_meta_is_not_an_object_is_refused(store: Store) -> None:
    # It used to be stored as '' (not JSON), after which the log could not be read.
    for meta in (None, [], "actor"):
        event = NewEvent(type="selection.rated", data=rated(1).data, meta=meta)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="meta must be a JSON object"):
            store.ledger.append("a", [event])
    assert list(store.ledger.read_all()) == []
