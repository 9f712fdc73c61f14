"""Waiting for the log to grow: LISTEN/NOTIFY on PostgreSQL, polling on SQLite.

Every append on PostgreSQL sends `NOTIFY strata_events` in its own transaction (see
core.ledger.log), so a notification arrives only for committed events. A notification is
a hint, never the truth: a waiter that wakes reads the head of the log and decides from
that. One listening connection per database serves every waiter of the process (workers,
the HTTP event stream), from a daemon thread that reconnects when its connection drops.
Whatever a dropped connection missed is found by the slow polling fallback: a missed
notification delays a waiter, it never loses an event.

SQLite has no notifications; a waiter there reads the head every `poll_seconds`, which
is as cheap as reading one index entry.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import ClassVar

from sqlalchemy import Engine, func, select

from strata.core.ledger.log import events_table
from strata.core.storage.db import is_sqlite

log = logging.getLogger("strata.notify")

CHANNEL = "strata_events"
FALLBACK_SECONDS = 2.0  # PostgreSQL: how often a waiter looks without being told
SQLITE_POLL_SECONDS = 0.1
# A waiter given a stop event looks at it this often while it waits.
STOP_CHECK_SECONDS = 0.2
_RECONNECT_SECONDS = (0.2, 5.0)  # first and longest pause between reconnection attempts


class _Listener:
    """One LISTEN connection and the thread that reads it; `generation` counts what it
    heard (and every reconnection, which may have missed something)."""

    def __init__(self, conninfo: str, channel: str) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.generation = 0
        self.changed = threading.Condition()
        self.connected = threading.Event()
        self.backend_pid: int | None = None  # of the listening connection (for tests)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"strata-listen-{channel}")
        self._thread.start()

    def bump(self) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def wait_change(self, generation: int, timeout: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.generation != generation,
                                  timeout)

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        pause = _RECONNECT_SECONDS[0]
        failing = False  # said once per outage, not at every attempt to reconnect
        while True:  # for the life of the process (a daemon thread)
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.backend_pid = conn.info.backend_pid
                    self.connected.set()
                    if failing:
                        log.warning("listening for new events on %s again", self.channel)
                    pause, failing = _RECONNECT_SECONDS[0], False
                    self.bump()  # whatever was appended while not listening: look now
                    while True:
                        for _ in conn.notifies(timeout=1.0):
                            self.bump()
            except psycopg.Error as error:
                if not failing:
                    log.warning("listening for new events on %s failed (%s); waiters poll "
                                "until it reconnects", self.channel, error)
                failing = True
            self.connected.clear()
            time.sleep(pause)
            pause = min(pause * 2, _RECONNECT_SECONDS[1])


class EventWaiter:
    """Waits until the log's head passes a position. Cheap to create: on PostgreSQL every
    waiter of a process shares one listening connection per database (and channel);
    usable from any thread."""

    _listeners: ClassVar[dict[tuple[int, str, str], _Listener]] = {}
    _listeners_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, engine: Engine, *, listen: bool = True,
                 poll_seconds: float | None = None, channel: str = CHANNEL) -> None:
        """`listen=False` on PostgreSQL polls only (the benchmark's baseline);
        `poll_seconds` is the fallback interval (PostgreSQL, default 2 s) or the polling
        interval (SQLite, or without listening; default 0.1 s)."""
        self.engine = engine
        self.listens = listen and not is_sqlite(engine)
        default = FALLBACK_SECONDS if self.listens else SQLITE_POLL_SECONDS
        self.poll_seconds = default if poll_seconds is None else poll_seconds
        self.channel = channel

    @property
    def listener(self) -> _Listener | None:
        """The process's listener for this database, started on first use."""
        if not self.listens:
            return None
        url = self.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        key = (os.getpid(), url, self.channel)  # a forked child needs a thread of its own
        with self._listeners_lock:
            listener = self._listeners.get(key)
            if listener is None:
                listener = self._listeners[key] = _Listener(url, self.channel)
        return listener

    def head(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.coalesce(func.max(events_table.c.position), 0))))

    def wait(self, after_position: int, timeout: float,
             stop: threading.Event | None = None) -> int:
        """The head of the log as soon as it is past `after_position`; the head as it is
        after `timeout` seconds (or once `stop` is set) if it never got there."""
        deadline = time.monotonic() + timeout
        listener = self.listener
        while True:
            # The generation is read before the head, so that a notification landing
            # between the two is not slept through.
            generation = listener.generation if listener is not None else 0
            head = self.head()
            remaining = deadline - time.monotonic()
            if head > after_position or remaining <= 0 or (stop is not None and stop.is_set()):
                return head
            next_look = min(remaining, self.poll_seconds)
            if listener is None:
                pause(next_look, stop)
                continue
            look_at = time.monotonic() + next_look
            while listener.generation == generation and time.monotonic() < look_at:
                if stop is not None and stop.is_set():
                    break
                slice_ = look_at - time.monotonic()
                if stop is not None:
                    slice_ = min(slice_, STOP_CHECK_SECONDS)
                listener.wait_change(generation, max(slice_, 0.0))


def pause(seconds: float, stop: threading.Event | None = None) -> None:
    """Sleep up to `seconds`, ending soon after `stop` is set, without waiting on `stop`
    itself: a signal handler that sets it could otherwise land while this thread holds the
    event's internal lock, and wait for it for ever."""
    deadline = time.monotonic() + seconds
    while not (stop is not None and stop.is_set()) and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, STOP_CHECK_SECONDS))
