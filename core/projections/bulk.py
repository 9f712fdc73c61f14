"""Rebuilding without the secondary indexes: drop them, fill the tables, create them again.

Keeping a B-tree index up to date row by row costs more than the rows themselves when a
rebuild writes hundreds of thousands of rows in key order unrelated to the index; building
the index once at the end sorts instead. Only SQLite: there the rebuild's one transaction
keeps readers on the old snapshot (WAL), schema included, whereas PostgreSQL's DROP INDEX
would make every reader of the table wait until the rebuild commits.

Indexes that back a primary key or a unique constraint stay (the projections' inserts rely
on them to ignore repeats), and each dropped index is created again from the very
statement the database recorded for it, so the schema comes back exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from strata.core.storage.db import is_sqlite


@contextmanager
def secondary_indexes_dropped(conn: Connection, tables: Iterable[str]) -> Iterator[None]:
    """Inside the transaction of `conn`: drop the non-unique indexes of `tables` (on
    SQLite; elsewhere nothing), and create them again when the block ends without error.
    An error rolls the transaction back, the drops with it."""
    if not is_sqlite(conn):
        yield
        return
    names = sorted(set(tables))
    cursor = conn.connection.cursor()
    cursor.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({', '.join('?' * len(names))}) ORDER BY name", names)
    indexes = [(name, sql) for name, sql in cursor.fetchall()
               if not sql.upper().startswith("CREATE UNIQUE")]
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    yield
    for _, sql in indexes:
        cursor.execute(sql)
