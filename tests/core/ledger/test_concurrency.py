"""Several processes on one store at once, on SQLite and PostgreSQL.

Every writer and reader here is a separate process started with the "spawn" context, and
each opens its own Store (engines never cross a process boundary), so the only thing
serialising them is the database write lock in core.db. What is proved:

- optimistic concurrency on one stream: with 8 processes racing, each append either wins
  the next version or gets ConcurrencyError and writes nothing; versions and positions
  stay gap-free and the hash chain intact;
- unrelated streams appended in parallel interleave as whole batches, with global
  positions exactly 1..total and every stream's versions exactly 1..k;
- a reader that follows positions (read_all(from_position=last + 1)) while writers
  append sees every position exactly once and in order: no event commits later with a
  lower position than one already visible.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import pytest

from strata.core.config import Settings
from strata.core.errors import ConcurrencyError
from strata.core.ledger.event_types import SelectionRated
from strata.core.ledger.events import NewEvent
from strata.core.ledger.log import ANY_VERSION
from strata.core.store import Store

CTX = mp.get_context("spawn")
DIGEST = "sha256:" + "cd" * 32
WORKERS = 8
START_TIMEOUT = 60.0  # spawning 8 interpreters on 2 busy cores takes a few seconds
RESULT_TIMEOUT = 120.0

Where = tuple[str, str | None]  # (home, database_url): enough for a child to open the store


def _where(settings: Settings) -> Where:
    return str(settings.home), settings.database_url


def _open(where: Where) -> Store:
    home, url = where
    return Store.open(Settings(home=home, database_url=url))


def _event(writer: int, n: int) -> NewEvent:
    return NewEvent.of(SelectionRated(digest=DIGEST, rating=1 + n % 5, note=f"w{writer}:{n}"))


@pytest.fixture(scope="module")
def processes() -> Iterator[tuple[Any, ProcessPoolExecutor]]:
    """Eight spawned worker processes (and a manager for barriers), shared by this module.

    Starting eight interpreters costs seconds on two cores, so the workers are started
    once; every task still opens (and closes) its own Store inside its worker.
    """
    with CTX.Manager() as manager, ProcessPoolExecutor(WORKERS, mp_context=CTX) as pool:
        yield manager, pool


def _results(futures: list[Future[Any]]) -> list[Any]:
    """Every task's result; an exception in any child is re-raised here, traceback and all."""
    return [future.result(timeout=RESULT_TIMEOUT) for future in futures]


# --- 1. many writers, one stream, expected versions --------------------------------------


def _contending_writer(where: Where, start: Any, worker: int, wins: int) -> dict[str, Any]:
    """Append until `wins` appends won; every attempt's outcome is reported, not assumed."""
    store = _open(where)
    try:
        ledger = store.ledger
        start.wait(START_TIMEOUT)
        won: list[tuple[int, int, str]] = []  # (version, position, event_id)
        lost: list[str] = []  # the event ids of refused appends
        unexpected: list[str] = []
        while len(won) < wins and not unexpected:
            version = ledger.stream_version("contended")
            event = _event(worker, len(won))
            try:
                (recorded,) = ledger.append("contended", [event], expected_version=version)
            except ConcurrencyError as refusal:
                # Someone else took version + 1 first: the refusal names what happened.
                if (refusal.stream, refusal.expected) != ("contended", version) or (
                        refusal.actual <= version):
                    unexpected.append(f"a refusal that misstates the race: {refusal}")
                lost.append(event.event_id)
            except Exception as error:  # reported to the test, which names it
                unexpected.append(repr(error))
            else:
                if recorded.version != version + 1:
                    unexpected.append(f"won version {recorded.version}, expected {version + 1}")
                won.append((recorded.version, recorded.position, recorded.event_id))
        return {"won": won, "lost": lost, "unexpected": unexpected, "pid": os.getpid()}
    finally:
        store.close()


def test_racing_writers_on_one_stream_each_win_or_get_a_concurrency_error(
    settings: Settings, store: Store, processes: tuple[Any, ProcessPoolExecutor]
) -> None:
    manager, pool = processes
    writers, wins = WORKERS, 15
    start = manager.Barrier(writers)
    results = _results([
        pool.submit(_contending_writer, _where(settings), start, n, wins)
        for n in range(writers)
    ])
    total = writers * wins
    assert len({r["pid"] for r in results} | {os.getpid()}) == writers + 1
    # Every attempt either won or was refused with a ConcurrencyError stating the race.
    assert [r["unexpected"] for r in results] == [[]] * writers
    assert [len(r["won"]) for r in results] == [wins] * writers

    events = list(store.ledger.read_all())
    assert [e.position for e in events] == list(range(1, total + 1))
    assert [e.version for e in events] == list(range(1, total + 1))
    assert {e.stream for e in events} == {"contended"}
    assert list(store.ledger.verify_chain()) == []

    # Exactly the winners are in the log, each where its writer was told; a refused
    # append wrote nothing.
    by_id = {e.event_id: e for e in events}
    claimed = [w for result in results for w in result["won"]]
    assert sorted(event_id for _, _, event_id in claimed) == sorted(by_id)
    for version, position, event_id in claimed:
        assert (by_id[event_id].version, by_id[event_id].position) == (version, position)
    refused = {event_id for result in results for event_id in result["lost"]}
    assert not refused & set(by_id)
    # Each writer's own events are in the order it appended them.
    for n in range(writers):
        notes = [e.data["note"] for e in events if e.data["note"].startswith(f"w{n}:")]
        assert notes == [f"w{n}:{i}" for i in range(wins)]


# --- 2. many writers, own streams, ANY_VERSION, batches ----------------------------------

BATCH_SIZES = (1, 3) * 6 + (1,)  # 13 appends, 25 events


def _batch_writer(where: Where, start: Any, worker: int) -> list[list[tuple[int, int]]]:
    store = _open(where)
    try:
        start.wait(START_TIMEOUT)
        batches = []
        n = 0
        for size in BATCH_SIZES:
            recorded = store.ledger.append(
                f"stream-{worker}", [_event(worker, n + i) for i in range(size)],
                expected_version=ANY_VERSION,
            )
            n += size
            batches.append([(e.position, e.version) for e in recorded])
        return batches
    finally:
        store.close()


def test_parallel_writers_on_separate_streams_interleave_whole_batches(
    settings: Settings, store: Store, processes: tuple[Any, ProcessPoolExecutor]
) -> None:
    manager, pool = processes
    writers = WORKERS
    per_stream = sum(BATCH_SIZES)
    start = manager.Barrier(writers)
    results = _results([
        pool.submit(_batch_writer, _where(settings), start, n) for n in range(writers)
    ])
    total = writers * per_stream

    events = list(store.ledger.read_all())
    assert [e.position for e in events] == list(range(1, total + 1))
    assert list(store.ledger.verify_chain()) == []

    versions: dict[str, list[int]] = defaultdict(list)
    for event in events:
        versions[event.stream].append(event.version)
    assert versions == {f"stream-{n}": list(range(1, per_stream + 1)) for n in range(writers)}

    by_position = {e.position: e for e in events}
    for n, batches in enumerate(results):
        stream = f"stream-{n}"
        assert [len(b) for b in batches] == list(BATCH_SIZES)
        for batch in batches:
            positions = [p for p, _ in batch]
            # A batch is one atomic append: its events sit next to each other in the log,
            # nobody else's event in between, and in its stream its versions are consecutive.
            assert positions == list(range(positions[0], positions[0] + len(batch)))
            assert [v for _, v in batch] == list(range(batch[0][1], batch[0][1] + len(batch)))
            assert all(by_position[p].stream == stream for p in positions)
            assert len({by_position[p].recorded_at for p in positions}) == 1


# --- 3. a reader follows positions while writers append ----------------------------------


def _follower(where: Where, start: Any, writers_done: Any) -> dict[str, Any]:
    store = _open(where)
    try:
        start.wait(START_TIMEOUT)
        seen: list[int] = []
        last = 0
        polls_with_news = 0
        while True:
            finished = writers_done.is_set()  # decided before the read: then it is the last
            fresh = [e.position for e in store.ledger.read_all(from_position=last + 1)]
            if fresh:
                polls_with_news += 1
                seen.extend(fresh)
                last = fresh[-1]
            if finished:
                return {"seen": seen, "polls_with_news": polls_with_news}
            time.sleep(0.002)
    finally:
        store.close()


def _appender(where: Where, start: Any, worker: int, appends: int) -> int:
    store = _open(where)
    try:
        start.wait(START_TIMEOUT)
        written = 0
        for n in range(appends):
            size = 1 + n % 3  # batches of 1, 2 and 3 events
            store.ledger.append(f"feed-{worker}", [_event(worker, written + i)
                                                   for i in range(size)])
            written += size
        return written
    finally:
        store.close()


def test_a_reader_following_positions_never_skips_an_event(
    settings: Settings, store: Store, processes: tuple[Any, ProcessPoolExecutor]
) -> None:
    manager, pool = processes
    writers, appends = 4, 30
    start = manager.Barrier(writers + 1)
    writers_done = manager.Event()
    follower = pool.submit(_follower, _where(settings), start, writers_done)
    written = _results([
        pool.submit(_appender, _where(settings), start, n, appends) for n in range(writers)
    ])
    writers_done.set()
    (followed,) = _results([follower])
    total = sum(written)
    assert total == writers * sum(1 + n % 3 for n in range(appends))

    # The follower saw every position exactly once, in order, although it read while the
    # writers were still committing (polls_with_news is usually well above 1).
    assert followed["seen"] == list(range(1, total + 1))
    assert followed["polls_with_news"] >= 1
    assert store.ledger.head_position() == total
    assert list(store.ledger.verify_chain()) == []
