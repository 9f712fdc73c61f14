"""Time travel as a query: the projections as they stood at an earlier position of the
log, read from the store's own tables instead of replaying the log.

Every projection table is one of two kinds:

- append-only: a row is inserted once (or ignored: the first event wins) and never
  changed, and it carries the position of the event that made it. As of position N the
  table is its rows made at or before N.
- mutable: later events change a row (a job's status, a branch's head, a decision), and
  the row carries the position of its latest change. Whenever an UPDATE moves that
  position forward, a trigger keeps the version it replaces in `<table>_history`, with the
  position that replaced it (`valid_to`). As of N the table is its rows last changed at or
  before N, and for the rows changed since, the kept version that was current at N
  (changed at or before N, replaced after it): at most one per key, found by key, so a
  lookup costs the same whatever the log's length.

`as_of_connection` opens a connection on which temporary views shadow the projection
tables under their own names (temporary objects come first in name resolution on SQLite
and PostgreSQL alike), so every read — show, lineage, provenance, find — runs unchanged
against the state at N. The views are created inside the read transaction and rolled back
with it: the pooled connection goes back without them.

The history tables are projections too (disposable: a rebuild empties and refills them),
built by migration 0008 with the triggers; `history_ddl` is the one source of both.
A projection table of neither kind (a layer plug-in's own) makes `covers` false, and the
caller replays the log instead: slower, never wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    delete,
    text,
)

from strata.core.projections.base import table
from strata.core.storage.schema import (
    AssetRow,
    BranchMoveRow,
    BranchRow,
    DerivationRow,
    FinalRow,
    JobRow,
    ModelRow,
    ReviewRow,
    SelectionRow,
    SelectionScoreRow,
)


def _find_tables() -> dict[str, str]:
    from strata.core.find.schema import FindAssetRow, FindParamRow, FindTextRow

    return {table(FindAssetRow).name: "position", table(FindParamRow).name: "position",
            table(FindTextRow).name: "position"}


# Append-only tables and the column holding the position of the event that made a row.
APPEND_ONLY: dict[str, str] = {
    table(AssetRow).name: "created_position",
    table(DerivationRow).name: "event_position",
    table(BranchMoveRow).name: "position",
    table(SelectionScoreRow).name: "position",
    **_find_tables(),
}


@dataclass(frozen=True)
class Mutable:
    """A table whose rows later events change; `positions`: the columns that record the
    position of a change (selections have two, one per projection that writes them)."""

    model: type
    positions: tuple[str, ...]

    @property
    def name(self) -> str:
        return table(self.model).name

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(c.name for c in table(self.model).primary_key.columns)


MUTABLE: tuple[Mutable, ...] = (
    Mutable(JobRow, ("updated_position",)),
    Mutable(BranchRow, ("updated_position",)),
    Mutable(SelectionRow, ("updated_position", "scored_position")),
    Mutable(ReviewRow, ("position",)),
    Mutable(FinalRow, ("position",)),
    Mutable(ModelRow, ("position",)),
)
_MUTABLE_NAMES = {m.name for m in MUTABLE}
CHECKPOINTS = "projection_checkpoints"
EVENTS = "events"

history_metadata = MetaData()


def _history_table(mutable: Mutable) -> Table:
    source = table(mutable.model)
    return Table(
        f"{source.name}_history", history_metadata,
        *[Column(c.name, c.type, nullable=c.nullable or False) for c in source.columns],
        Column("valid_to", BigInteger, nullable=False),
        PrimaryKeyConstraint(*mutable.keys, "valid_to"),
    )


HISTORY: dict[str, Table] = {m.name: _history_table(m) for m in MUTABLE}


def covers(table_names: Iterable[str]) -> bool:
    """Whether every one of these projection tables can be read as of a position."""
    return all(name in APPEND_ONLY or name in _MUTABLE_NAMES for name in table_names)


def clear_history(conn: Connection) -> None:
    """Empty the history tables (a rebuild refills them with the projections)."""
    for history in HISTORY.values():
        conn.execute(delete(history))


# --- schema: history tables and their triggers ---------------------------------------------


def _latest(dialect: str, columns: Iterable[str], row: str = "") -> str:
    """The position of a row's latest change: its position column, or the greater one."""
    named = [f"{row}{c}" for c in columns]
    if len(named) == 1:
        return named[0]
    return f"{'max' if dialect == 'sqlite' else 'GREATEST'}({', '.join(named)})"


def history_ddl(dialect: str) -> list[str]:
    """The statements that make every mutable table keep the versions it replaces:
    triggers (SQLite) or trigger functions (PostgreSQL); the tables themselves are
    `HISTORY`'s."""
    statements = []
    for mutable in MUTABLE:
        history = HISTORY[mutable.name]
        columns = [c.name for c in table(mutable.model).columns]
        old_values = ", ".join(f"OLD.{c}" for c in columns)
        changed = (f"{_latest(dialect, mutable.positions, 'OLD.')} < "
                   f"{_latest(dialect, mutable.positions, 'NEW.')}")
        insert = (f"INSERT INTO {history.name} ({', '.join(columns)}, valid_to) "
                  f"VALUES ({old_values}, {_latest(dialect, mutable.positions, 'NEW.')})")
        trigger = f"{mutable.name}_keep_history"
        if dialect == "sqlite":
            statements.append(
                f"CREATE TRIGGER {trigger} AFTER UPDATE ON {mutable.name} "
                f"WHEN {changed} BEGIN {insert.replace('INSERT', 'INSERT OR IGNORE', 1)}; END")
        else:
            statements += [
                f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN {insert} ON CONFLICT DO NOTHING; RETURN NULL; END $$",
                f"CREATE TRIGGER {trigger} AFTER UPDATE ON {mutable.name} FOR EACH ROW "
                f"WHEN ({changed}) EXECUTE FUNCTION {trigger}()",
            ]
    return statements


def drop_history_ddl(dialect: str) -> list[str]:
    statements = []
    for mutable in MUTABLE:
        trigger = f"{mutable.name}_keep_history"
        if dialect == "sqlite":
            statements.append(f"DROP TRIGGER IF EXISTS {trigger}")
        else:
            statements += [f"DROP TRIGGER IF EXISTS {trigger} ON {mutable.name}",
                           f"DROP FUNCTION IF EXISTS {trigger}()"]
    return statements


# --- reading as of a position --------------------------------------------------------------


def _shadows(conn: Connection, position: int) -> list[str]:
    """CREATE TEMP VIEW statements: each projection table (and the log) under its own
    name, as it stood at `position`."""
    sqlite = conn.dialect.name == "sqlite"
    schema = "main" if sqlite else conn.scalar(text("SELECT current_schema()"))
    n = int(position)  # an int, written into the DDL (views take no parameters)

    def view(name: str, body: str) -> str:
        return f'CREATE TEMP VIEW {name} AS {body}'

    def source(name: str) -> str:
        return f'{schema}.{name}' if sqlite else f'"{schema}".{name}'

    statements = []
    for name, column in APPEND_ONLY.items():
        # SQLite's full-text index on find_texts is matched by rowid: the view keeps it.
        rowid = "rowid AS rowid, " if sqlite else ""
        statements.append(view(name, f"SELECT {rowid}* FROM {source(name)} "
                                     f"WHERE {column} <= {n}"))
    for mutable in MUTABLE:
        statements.append(view(mutable.name, _mutable_as_of(
            mutable, conn.dialect.name, source(mutable.name),
            source(HISTORY[mutable.name].name), n)))
    least = "min" if sqlite else "LEAST"
    statements.append(view(CHECKPOINTS, f"SELECT name, {least}(position, {n}) AS position "
                                         f"FROM {source(CHECKPOINTS)}"))
    statements.append(view(EVENTS, f"SELECT * FROM {source(EVENTS)} WHERE position <= {n}"))
    return statements


def _mutable_as_of(mutable: Mutable, dialect: str, current: str, history: str,
                   n: int) -> str:
    """A mutable table as of position `n`: a row last changed at or before `n` as it is,
    a row changed since as its kept version that was current at `n`, a row made after
    `n` not at all.

    One table in the FROM clause, the kept version read by key in correlated subqueries
    (run only for rows changed since `n`): the planners then merge the view into the
    reads that join it (`show` joins an asset with its decisions), so a lookup by key
    stays a lookup by key; a UNION ALL view would be built whole for every such join.
    """
    changed = _latest(dialect, mutable.positions, "c.")
    match = " AND ".join(f"h.{k} = c.{k}" for k in mutable.keys)
    valid = f"{match} AND {_latest(dialect, mutable.positions, 'h.')} <= {n} " \
            f"AND h.valid_to > {n}"
    columns = ", ".join(
        f"c.{column}" if column in mutable.keys else
        f"CASE WHEN {changed} <= {n} THEN c.{column} "
        f"ELSE (SELECT h.{column} FROM {history} h WHERE {valid}) END AS {column}"
        for column in (c.name for c in table(mutable.model).columns))
    return (f"SELECT {columns} FROM {current} c WHERE {changed} <= {n} "
            f"OR EXISTS (SELECT 1 FROM {history} h WHERE {valid})")


@contextmanager
def as_of_connection(engine: Engine, position: int) -> Iterator[Connection]:
    """A read-only connection onto the projections as they stood at `position`; the
    projections must have caught up with it (or stopped before an undecodable event)."""
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            statements = _shadows(conn, position)
            if conn.dialect.name == "sqlite":
                for statement in statements:
                    conn.exec_driver_sql(statement)
            else:  # one round trip: psycopg runs several statements given without parameters
                conn.exec_driver_sql("; ".join(statements))
            yield conn
        finally:
            # Never commit: the rollback takes the temporary views away with it.
            transaction.rollback()
