"""Waiting for new events: a waiter wakes for an append made elsewhere, a notification is
sent only for committed events, and a missed one is found by the fallback.

Every test runs on SQLite (polling) and PostgreSQL (LISTEN/NOTIFY) unless it is about
notifications themselves. Bounds are generous on purpose: they tell "woke" from "never
woke", never how fast (bench/scale.py measures that).
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from sqlalchemy import create_engine, text

from strata.core.errors import ConcurrencyError
from strata.core.ledger.event_types import SelectionRated
from strata.core.ledger.events import NewEvent
from strata.core.ledger.log import Ledger
from strata.core.ledger.notify import EventWaiter
from strata.core.store import Store

DIGEST = "sha256:" + "a" * 64
GENEROUS = 30.0  # seconds: a waiter that has not woken by then never will


def rate(store: Store, rating: int = 3, expected_version: int = -1) -> int:
    (event,) = store.ledger.append("asset:" + DIGEST, [
        NewEvent.of(SelectionRated(digest=DIGEST, rating=rating))],
        expected_version=expected_version)
    return event.position


def append_from_another_connection(store: Store, delay: float) -> threading.Thread:
    """Append after `delay` from a separate engine, as another process would."""
    other = create_engine(store.engine.url)

    def later() -> None:
        time.sleep(delay)
        try:
            Ledger(other).append("asset:" + DIGEST, [
                NewEvent.of(SelectionRated(digest=DIGEST, rating=5))])
        finally:
            other.dispose()

    thread = threading.Thread(target=later, daemon=True)
    thread.start()
    return thread


def test_a_waiter_wakes_for_an_append_from_another_connection(store: Store) -> None:
    head = rate(store)
    # A fallback longer than the bound: on PostgreSQL only the notification can wake it.
    postgres = store.engine.dialect.name == "postgresql"
    waiter = EventWaiter(store.engine, poll_seconds=GENEROUS * 2 if postgres else 0.05)
    if waiter.listener is not None:
        assert waiter.listener.connected.wait(GENEROUS)
    appending = append_from_another_connection(store, delay=0.3)
    began = time.monotonic()
    woke_at = waiter.wait(head, timeout=GENEROUS)
    took = time.monotonic() - began
    appending.join()
    assert woke_at == head + 1
    assert took < GENEROUS / 2, f"woke only after {took:.1f}s"


def test_a_waiter_returns_at_once_when_the_head_is_already_past(store: Store) -> None:
    head = rate(store)
    rate(store)
    assert EventWaiter(store.engine, poll_seconds=GENEROUS * 2).wait(head, GENEROUS) == head + 1


def test_a_waiter_gives_up_after_its_timeout_with_the_head_unchanged(store: Store) -> None:
    head = rate(store)
    assert EventWaiter(store.engine).wait(head, timeout=0.3) == head


def test_a_stop_event_ends_the_wait(store: Store) -> None:
    head = rate(store)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    assert EventWaiter(store.engine, poll_seconds=GENEROUS * 2).wait(
        head, timeout=GENEROUS * 2, stop=stop) == head
    assert time.monotonic() - began < GENEROUS


def _listen(store: Store) -> psycopg.Connection:
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("LISTEN strata_events")
    return conn


def test_an_append_notifies_its_position_only_once_committed(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("notifications are PostgreSQL's")
    with _listen(store) as listener:
        # Refused inside its transaction (a version conflict): rolled back, so no word.
        with pytest.raises(ConcurrencyError):
            rate(store, expected_version=7)
        assert list(listener.notifies(timeout=0.5)) == []
        position = rate(store)
        heard = list(listener.notifies(timeout=GENEROUS, stop_after=1))
    assert [(n.channel, n.payload) for n in heard] == [("strata_events", str(position))]


def test_a_missed_notification_is_delivered_by_the_fallback(store: Store) -> None:
    """A waiter on a channel nobody notifies is one that missed every notification."""
    head = rate(store)
    waiter = EventWaiter(store.engine, poll_seconds=0.5, channel="strata_nobody")
    appending = append_from_another_connection(store, delay=0.3)
    assert waiter.wait(head, timeout=GENEROUS) == head + 1
    appending.join()


def test_a_dropped_listening_connection_delays_but_never_loses(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("notifications are PostgreSQL's")
    head = rate(store)
    # The URL names this test's schema: this listener is the test's own.
    waiter = EventWaiter(store.engine, poll_seconds=1.0)
    listener = waiter.listener
    assert listener is not None and listener.connected.wait(GENEROUS)
    dropped = listener.backend_pid
    with store.engine.connect() as conn:  # as a network split or a server restart would
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped})
    appending = append_from_another_connection(store, delay=0.1)
    assert waiter.wait(head, timeout=GENEROUS) == head + 1
    appending.join()
    # And the listener came back on a new connection.
    deadline = time.monotonic() + GENEROUS
    while listener.backend_pid == dropped and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.backend_pid != dropped and listener.connected.wait(GENEROUS)
