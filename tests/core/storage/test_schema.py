"""The tables in code (core.storage.schema's metadata) are exactly what the migrations
build, on SQLite and PostgreSQL: alembic's autogenerate comparison of a freshly migrated
store with the metadata finds nothing to change. Only the objects the migrations add
beside the tables in code are left out of the comparison: the time-travel history tables
(core.projections.asof, their own metadata), SQLite's FTS5 table for the prompts and
PostgreSQL's tsvector column and GIN index (core.find.schema's DDL)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String

# Their tables join the shared metadata when they are imported.
import strata.core.auth.tokens
import strata.core.find.schema  # noqa: F401
from strata.core.projections.asof import HISTORY
from strata.core.service import Strata
from strata.core.storage.schema import metadata

MIGRATION_ONLY_TABLES = {*(history.name for history in HISTORY.values()), "find_texts_fts"}
MIGRATION_ONLY = {("column", "tsv"), ("index", "ix_find_texts_tsv")}


def _in_code(obj: Any, name: str | None, type_: str, reflected: bool,
             compare_to: Any) -> bool:
    if type_ == "table" and reflected and compare_to is None:
        # SQLite's FTS5 table comes with shadow tables named after it.
        return not (name in MIGRATION_ONLY_TABLES or str(name).startswith("find_texts_fts_"))
    if type_ == "table" and name in MIGRATION_ONLY_TABLES:
        return False
    return (type_, name) not in MIGRATION_ONLY


def _differences(strata: Strata, target: Any = metadata) -> list[Any]:
    with strata.store.engine.connect() as conn:
        # Server defaults are not compared: migration 0003 gave `scored_position` one to
        # fill the rows that existed then; the code writes the value on every insert.
        context = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": _in_code})
        return list(compare_metadata(context, target))


def test_the_migrated_store_is_the_tables_in_code(strata: Strata) -> None:
    assert metadata.tables.keys() >= {"events", "assets", "find_assets", "api_tokens"}
    assert _differences(strata) == []


def test_the_comparison_sees_a_difference(strata: Strata) -> None:
    """The check above can fail: a column the migrations did not make, and a column of
    another type, are found."""
    changed = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    extra = Column("extra", String(10))
    changed.tables["assets"].append_column(extra)
    changed.tables["job_leases"].c.attempt.type = String(10)
    found = _differences(strata, changed)
    assert ("add_column", None, "assets", extra) in found
    modified = [change[0][:4] for change in found if isinstance(change, list)]
    assert modified == [("modify_type", None, "job_leases", "attempt")]
