"""Database engines for the embedded default (SQLite) and scale-out (PostgreSQL).

Writers must be serialised so that global positions are gap-free and committed in
order. On SQLite a write transaction starts with BEGIN IMMEDIATE (it takes the database's
single write lock up front instead of failing on upgrade); on PostgreSQL it takes a
transaction-scoped advisory lock. Readers are never blocked by either.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.pool import StaticPool

# Arbitrary constants naming Strata's advisory locks on PostgreSQL.
APPEND_LOCK = 0x5757_0001
PROJECTION_LOCK = 0x5757_0002

_WRITE = "strata_write"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, **kwargs)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    # A file database in WAL mode: readers see a consistent snapshot while one writer
    # appends; synchronous=FULL makes every committed append durable across power loss.
    engine = create_engine(
        url, connect_args={"timeout": 60, "check_same_thread": False}, **kwargs
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's "begin" event below decide how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        writing = conn.get_execution_options().get(_WRITE, False)
        # Straight to the driver: this runs on every transaction, appends included.
        conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if writing else "BEGIN")  # type: ignore[union-attr]

    return engine


def memory_engine() -> Engine:
    """A private in-memory SQLite database (used to replay the log up to a position)."""
    # One shared connection: every new connection to "sqlite://" would be a new database.
    return create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )


def is_sqlite(conn_or_engine: Connection | Engine) -> bool:
    return conn_or_engine.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine, lock: int = APPEND_LOCK) -> Iterator[Connection]:
    """A transaction that holds Strata's write lock `lock` until it commits or rolls back."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            take_lock(conn, lock)
            yield conn


class KeptWriter:
    """Write transactions for a hot writer (the ledger's appends): on SQLite, all on one
    connection kept for them, instead of one checked out of the pool per transaction —
    the checkout, the check-in's reset and SQLAlchemy's events around them cost more CPU
    than an append's statements. Other databases take a pooled connection as
    `write_transaction` does: the pool pings it first, so a restarted server costs no
    failed append."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._kept = is_sqlite(engine)
        self._lock = threading.Lock()  # a Connection serves one thread at a time
        self._conn: Connection | None = None
        self._pid = 0
        if self._kept:
            event.listen(engine, "engine_disposed", self._drop)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Like `write_transaction(engine)`: Strata's write lock held until it ends."""
        if not self._kept:
            with write_transaction(self.engine) as pooled:
                yield pooled
            return
        with self._lock:
            conn = self._conn
            if conn is None or self._pid != os.getpid():
                # A forked child must not share its parent's connection: it opens its own.
                conn = self._conn = self.engine.connect().execution_options(**{_WRITE: True})
                self._pid = os.getpid()
            with conn.begin():  # BEGIN IMMEDIATE: the "begin" listener of _sqlite_engine
                yield conn

    def _drop(self, _engine: Engine) -> None:
        """The engine was disposed of (Store.close): close the kept connection with it."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.invalidate()  # closes the driver's connection now
                self._conn.close()
            self._conn = None


@lru_cache(maxsize=64)
def _in_paramstyle(sql: str, paramstyle: str) -> str:
    return sql if paramstyle == "qmark" else sql.replace("?", "%s")


def driver_sql(conn: Connection, sql: str) -> str:
    """`sql` written with `?` placeholders, in the placeholders of `conn`'s driver (sqlite3
    takes `?`, psycopg `%s`): for the hot paths that bypass SQLAlchemy's compiler."""
    return _in_paramstyle(sql, conn.dialect.paramstyle)


def take_lock(conn: Connection, lock: int) -> None:
    """Hold Strata's lock `lock` until the transaction ends (SQLite: the write lock is
    already held by BEGIN IMMEDIATE; one lock serves every purpose)."""
    if not is_sqlite(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock})


def db_now(conn: Connection) -> float:
    """Seconds since the epoch by the database's clock: the one clock every worker shares,
    so leases and retry times do not depend on how well the workers' clocks agree."""
    if is_sqlite(conn):
        return time.time()  # an embedded store: every worker runs on this machine
    return float(conn.execute(text("SELECT extract(epoch from clock_timestamp())")).scalar_one())
