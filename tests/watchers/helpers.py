"""Running a watcher in a thread with a way to stop it, and waiting for what it records."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from strata.core.ledger.events import RecordedEvent
from strata.core.service import Strata
from strata.watchers.files import Notice

# How long a test waits for something that should take well under a second: a bound on
# a wait, not a speed check (a loaded CI machine only makes it wait longer).
PATIENCE_S = 60.0


class Runs(Protocol):
    started: threading.Event

    def run(self, stop: threading.Event) -> None: ...


@contextmanager
def running(watcher: Runs) -> Iterator[None]:
    """The watcher runs in a thread inside the block and is stopped (and joined) after it;
    an exception in the watcher fails the test."""
    stop = threading.Event()
    failed: list[BaseException] = []

    def target() -> None:
        try:
            watcher.run(stop)
        except BaseException as error:  # handed to the test thread below
            failed.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        wait_until(lambda: bool(failed) or watcher.started.is_set(), "the watcher to start")
        yield
    finally:
        stop.set()
        thread.join(PATIENCE_S)
    assert not thread.is_alive(), "the watcher did not stop"
    if failed:
        raise failed[0]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def events_of(strata: Strata, *types: str) -> list[RecordedEvent]:
    return list(strata.ledger.read_all(types=list(types)))


class Notes(list[Notice]):
    def kinds(self, kind: str) -> list[Notice]:
        return [n for n in self if n.kind == kind]
