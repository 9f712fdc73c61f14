"""What every projection is made of: the Projection contract and idempotent row writes.

A projection is a function of the events it is shown, in position order, and applying
an event twice must be harmless: rows are keyed by the event (or the asset) that made
them and inserted-or-ignored, and rows that later events change are only changed by an
event newer than the one that last changed them (`upsert(..., newer="position")`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, Executable, Table

from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.storage.db import driver_sql

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql.dml import Insert as PgInsert
    from sqlalchemy.dialects.sqlite.dml import Insert as SqliteInsert


def table(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined, no-any-return]


@lru_cache(maxsize=256)
def _upsert_statement(
    dialect: str, model: type, keys: tuple[str, ...], update_columns: tuple[str, ...] | None,
    newer: str | None,
) -> Executable:
    # Built once and executed with parameters: building a statement per row costs far
    # more than running it. The dialects' inserts are imported here, not at start: the
    # PostgreSQL dialect alone costs a read command tens of milliseconds.
    statement: SqliteInsert | PgInsert
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        statement = sqlite_insert(table(model))
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        statement = pg_insert(table(model))
    if update_columns is None:
        return statement.on_conflict_do_nothing(index_elements=list(keys))
    guard = None if newer is None else table(model).c[newer] < statement.excluded[newer]
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={c: statement.excluded[c] for c in update_columns},
        where=guard,
    )


def upsert(
    conn: Connection, model: type, values: dict[str, Any] | list[dict[str, Any]],
    keys: Iterable[str], update_columns: Iterable[str] | None = None,
    newer: str | None = None,
) -> None:
    """INSERT, or on a key conflict update `update_columns` (None: keep the existing row).

    With `newer` (a position column), an existing row is only updated by values whose
    position is greater: re-applying an older event changes nothing. A list of rows runs
    as one executemany, in order.
    """
    statement = _upsert_statement(conn.dialect.name, model, tuple(keys),
                                  None if update_columns is None else tuple(update_columns),
                                  newer)
    conn.execute(statement, values)


class Batch:
    """The writes of a batch of events, queued and run together straight through the
    driver: SQLAlchemy's statement building and per-row parameter processing cost far
    more than the writes themselves (a rebuild's speed rests on this).

    Writes to one table run in the order they were queued, consecutive writes of the
    same statement as one executemany; tables are independent of each other, so a
    batch gives exactly the rows that running every write at once would have given.
    A projection that reads a table during `apply` calls `flush` first (or finds what it
    needs in `memo`, a scratch space that lives as long as the batch).
    """

    def __init__(self) -> None:
        # table name → runs of (statement, parameter rows), in the order queued
        self.pending: dict[str, list[tuple[str, list[tuple[Any, ...]]]]] = {}
        self.memo: dict[Any, Any] = {}

    def insert_or_ignore(self, model: type, row: dict[str, Any], keys: tuple[str, ...]) -> None:
        """Insert `row` unless a row with the same `keys` exists (the first insert wins)."""
        self.upsert(model, row, keys)

    def insert_or_ignore_values(self, model: type, columns: tuple[str, ...],
                                values: tuple[Any, ...], keys: tuple[str, ...]) -> None:
        """`insert_or_ignore` of a row given as the `values` of `columns` (in the table's
        order, none left out that has a default): no dict per row, for the projections
        that write many rows per event."""
        name, sql = _values_sql(model, columns, keys)
        self._queue(name, sql, values)

    def insert_or_ignore_many(self, model: type, columns: tuple[str, ...],
                              rows: list[tuple[Any, ...]], keys: tuple[str, ...]) -> None:
        """`insert_or_ignore_values` of several rows at once."""
        name, sql = _values_sql(model, columns, keys)
        runs = self.pending.setdefault(name, [])
        if runs and runs[-1][0] == sql:
            runs[-1][1].extend(rows)
        else:
            runs.append((sql, list(rows)))

    def upsert(
        self, model: type, row: dict[str, Any], keys: Iterable[str],
        update_columns: Iterable[str] | None = None, newer: str | None = None,
    ) -> None:
        """Queue `upsert` (below) of one row."""
        name, sql, columns = _upsert_sql(
            model, tuple(row), tuple(keys),
            None if update_columns is None else tuple(update_columns), newer)
        self._queue(name, sql, tuple([row.get(c, d) for c, d in columns]))

    def update(self, model: type, values: dict[str, Any], key: str, key_value: Any,
               newer: str, position: int) -> None:
        """Queue an UPDATE of `values` in the row whose `key` is `key_value`, if its
        `newer` column is below `position` (re-applying an older event changes nothing)."""
        sql = _update_sql(model, tuple(values), key, newer)
        self._queue(table(model).name, sql, (*values.values(), key_value, position))

    def _queue(self, name: str, sql: str, params: tuple[Any, ...]) -> None:
        runs = self.pending.get(name)
        if runs is None:
            runs = self.pending[name] = []
        if runs and runs[-1][0] == sql:
            runs[-1][1].append(params)
        else:
            runs.append((sql, [params]))

    def flush(self, conn: Connection) -> None:
        if not self.pending:
            return
        cursor = conn.connection.cursor()
        for runs in self.pending.values():
            for sql, rows in runs:
                cursor.executemany(driver_sql(conn, sql), rows)
        self.pending.clear()


def _default(column: Column[Any]) -> Any:
    default = column.default
    return default.arg if default is not None and default.is_scalar else None  # type: ignore[attr-defined]


@lru_cache(maxsize=256)
def _upsert_sql(
    model: type, given: tuple[str, ...], keys: tuple[str, ...],
    update_columns: tuple[str, ...] | None, newer: str | None,
) -> tuple[str, str, tuple[tuple[str, Any], ...]]:
    """The table's name, the statement `upsert` runs for rows with the columns `given`,
    and its columns with the value each takes when a row lacks it: as in SQLAlchemy's
    insert, a column left out gets its scalar default, and one without such a default is
    left to the database."""
    name = table(model).name
    columns = tuple((c.name, _default(c)) for c in table(model).columns
                    if c.name in given or _default(c) is not None)
    sql = (f"INSERT INTO {name} ({', '.join(c for c, _ in columns)}) "
           f"VALUES ({', '.join(['?'] * len(columns))}) ON CONFLICT ({', '.join(keys)}) ")
    if update_columns is None:
        return name, sql + "DO NOTHING", columns
    sql += f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in update_columns)}"
    if newer is not None:
        sql += f" WHERE {name}.{newer} < excluded.{newer}"
    return name, sql, columns


@lru_cache(maxsize=64)
def _values_sql(model: type, columns: tuple[str, ...], keys: tuple[str, ...]) -> tuple[str, str]:
    name, sql, expected = _upsert_sql(model, columns, keys, None, None)
    if tuple(c for c, _ in expected) != columns:
        raise ValueError(f"{name}: rows of values must give the columns "
                         f"{[c for c, _ in expected]}, not {list(columns)}")
    return name, sql


@lru_cache(maxsize=64)
def _update_sql(model: type, columns: tuple[str, ...], key: str, newer: str) -> str:
    name = table(model).name
    return (f"UPDATE {name} SET {', '.join(f'{c} = ?' for c in columns)} "
            f"WHERE {key} = ? AND {newer} < ?")


class Projection(ABC):
    """Tables built from the events of the payload classes in `handles` (and subclasses)."""

    name: str
    models: tuple[type, ...]
    handles: tuple[type[Payload], ...]

    @abstractmethod
    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None: ...
