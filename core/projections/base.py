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
from typing import Any

from sqlalchemy import Connection, Executable, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.storage.db import driver_sql


def table(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined, no-any-return]


@lru_cache(maxsize=256)
def _upsert_statement(
    dialect: str, model: type, keys: tuple[str, ...], update_columns: tuple[str, ...] | None,
    newer: str | None,
) -> Executable:
    # Built once and executed with parameters: building a statement per row costs far
    # more than running it.
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    statement = insert(table(model))
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
    """Rows that only ever get inserted-or-ignored, queued and written together.

    Safe for rows keyed by what made them (assets, derivations, branch moves): running
    them in order at the end of the batch gives the same rows as running them one by
    one, since the first insert of a key wins either way.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[type, tuple[str, ...]], list[dict[str, Any]]] = {}

    def insert_or_ignore(self, model: type, row: dict[str, Any], keys: tuple[str, ...]) -> None:
        self.pending.setdefault((model, keys), []).append(row)

    def flush(self, conn: Connection) -> None:
        cursor = conn.connection.cursor()
        for (model, keys), rows in self.pending.items():
            # Straight to the driver: SQLAlchemy's per-row parameter processing would
            # cost more than the inserts (rebuild speed rests on this).
            sql, columns = _insert_or_ignore_sql(model, keys)
            cursor.executemany(driver_sql(conn, sql),
                               [tuple(row.get(c) for c in columns) for row in rows])
        self.pending.clear()


@lru_cache(maxsize=32)
def _insert_or_ignore_sql(model: type, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    columns = tuple(c.name for c in table(model).columns)
    sql = (f"INSERT INTO {table(model).name} ({', '.join(columns)}) "
           f"VALUES ({', '.join(['?'] * len(columns))}) "
           f"ON CONFLICT ({', '.join(keys)}) DO NOTHING")
    return sql, columns


class Projection(ABC):
    """Tables built from the events of the payload classes in `handles` (and subclasses)."""

    name: str
    models: tuple[type, ...]
    handles: tuple[type[Payload], ...]

    @abstractmethod
    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None: ...
