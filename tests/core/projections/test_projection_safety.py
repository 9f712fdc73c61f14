"""What keeps the projections honest when the store is not in the shape they expect.

A missing checkpoint row, an event from a newer Strata, a log whose newest events were
deleted, a rewritten event under a rebuild, a reused idempotency key: each is either
recovered from exactly (never a skipped or repeated event) or refused with a message
that says what happened, and nothing is recorded on top of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text

from strata.core.decisions import branches
from strata.core.errors import ChainBroken, InvalidInput, LogShortened, StoreFromNewerVersion
from strata.core.ledger.event_types import BranchCreated, SelectionPicked, SelectionRated
from strata.core.ledger.events import NewEvent
from strata.core.ledger.log import events_table
from strata.core.projections import views
from strata.core.projections.base import table
from strata.core.projections.runner import BATCH
from strata.core.projections.views import AssetRow, checkpoints
from strata.core.provenance.verify import verify_store
from strata.core.service import Strata, asset_stream
from strata.core.storage.schema import ProjectionCheckpoint
from strata.core.store import Store
from tests.api.cli.test_cli import Cli, write_png
from tests.core.projections.test_projections import (
    append_quietly,
    assert_same_tables,
    caught_up,
    dump_store,
    head,
    import_png,
)


def _drop_append_only_guard(store: Store) -> None:
    """What an operator with database access (or a bad restore) can do behind Strata."""
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER events_refuse_update"))
            conn.execute(text("DROP TRIGGER events_refuse_delete"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_refuse_change"))


def test_a_lost_checkpoint_row_far_behind_is_recovered_without_repeating_an_event(
    strata: Strata,
) -> None:
    # The case a user hit: thousands of events, a branch move, one checkpoint row gone.
    store = strata.store
    a = import_png(strata, 1)
    append_quietly(store, asset_stream(a),
                   [SelectionRated(digest=a, rating=1 + n % 5) for n in range(BATCH + 100)])
    strata.record("branch:main", [BranchCreated(name="main", head=a)], expected_version=0)
    b = import_png(strata, 2)
    branches.advance(strata, "main", b)
    with store.engine.begin() as conn:
        conn.execute(delete(table(ProjectionCheckpoint))
                     .where(table(ProjectionCheckpoint).c.name == "branches"))

    c = import_png(strata, 3)  # every append used to fail here until a rebuild
    with store.engine.connect() as conn:
        assert checkpoints(conn) == caught_up(store)
        assert [r.digest for r in conn.execute(select(table(AssetRow)))] == [a, b, c]
        main = views.branch(conn, "main")
        assert main is not None and main["head"] == b
        assert [m["head"] for m in views.branch_moves(conn, "main")] == [a, b]
    incremental = dump_store(store)
    strata.rebuild()
    assert_same_tables(dump_store(store), incremental, "catch-up from a lost checkpoint")


def test_applying_an_event_twice_changes_nothing(strata: Strata) -> None:
    store = strata.store
    a = import_png(strata, 1)
    strata.record(asset_stream(a), [SelectionPicked(digest=a), SelectionRated(digest=a,
                                                                              rating=4)])
    strata.record("branch:main", [BranchCreated(name="main", head=a)], expected_version=0)
    before = dump_store(store)
    # Wind every checkpoint back to 0 without touching the tables: everything is re-applied.
    with store.engine.begin() as conn:
        conn.execute(delete(table(ProjectionCheckpoint)))
    assert store.projections.catch_up() == head(store)
    assert_same_tables(dump_store(store), before, "after re-applying the whole log")


def test_an_event_from_a_newer_strata_stops_the_projections_and_refuses_writes(
    strata: Strata,
) -> None:
    store = strata.store
    a = import_png(strata, 1)
    newer = NewEvent(type="hologram.requested", data={"depth": 3}, validated=True)
    store.ledger.append("job:future", [newer])
    stream = asset_stream(a)
    append_quietly(store, stream, [SelectionPicked(digest=a)])

    assert store.projections.catch_up() == 0  # stops quietly just before it
    state = store.projections.state()
    assert state.stopped_before is not None and state.stopped_before.position == 2
    assert state.problem is not None and "'hologram.requested'" in state.problem
    with strata.view() as conn:  # reads still answer, up to that position
        assert [r.digest for r in conn.execute(select(table(AssetRow)))] == [a]
    last = head(store)
    with pytest.raises(StoreFromNewerVersion, match="upgrade Strata"):
        strata.record(stream, [SelectionRated(digest=a, rating=3)])
    with pytest.raises(StoreFromNewerVersion):
        strata.rebuild()
    assert head(store) == last  # the refused append left nothing behind
    with store.engine.connect() as conn:
        assert set(checkpoints(conn).values()) == {1}


def test_the_command_line_still_reads_a_store_with_a_newer_event(
    strata: Strata, tmp_path: Path
) -> None:
    import_png(strata, 1)
    strata.store.ledger.append("job:future", [NewEvent(
        type="hologram.requested", data={"depth": 3}, validated=True)])
    cli = Cli(strata.store.settings, tmp_path)
    logged = cli("log").stdout.splitlines()  # porcelain: type is the second column
    assert [line.split("\t")[1] for line in logged] == ["asset.imported", "hologram.requested"]
    assert json.loads(cli("log", "--json").stdout.splitlines()[-1])["data"] == {"depth": 3}
    status = json.loads(cli("status", "--json").stdout)
    assert "'hologram.requested'" in json.dumps(status) and "upgrade Strata" in json.dumps(status)
    refused = cli("add", str(write_png(tmp_path, "b.png", 2)), ok=False)
    assert refused.returncode == 6 and "upgrade Strata" in refused.stderr


def test_an_event_with_a_newer_schema_is_treated_the_same(strata: Strata) -> None:
    store = strata.store
    a = import_png(strata, 1)
    store.ledger.append(asset_stream(a), [NewEvent(
        type="selection.picked", schema=99, data={"digest": a}, validated=True)])
    state = store.projections.state()
    assert state.stopped_before is not None and "schema 99" in str(state.problem)
    with pytest.raises(StoreFromNewerVersion):
        import_png(strata, 2)


def test_a_deleted_tail_is_noticed_before_anything_is_recorded_on_it(strata: Strata) -> None:
    store = strata.store
    for seed in range(5):
        import_png(strata, seed)
    _drop_append_only_guard(store)
    with store.engine.begin() as conn:
        conn.execute(delete(events_table).where(events_table.c.position > 3))

    report = verify_store(strata, rehash=False)
    assert not report.ok
    assert any("deleted" in problem for problem in report.problems())
    assert "deleted" in str(store.projections.state().problem)
    with pytest.raises(LogShortened, match=r"ends at position 3.*seen position 5"):
        import_png(strata, 99)
    with store.engine.connect() as conn:  # the refused import left no event behind
        assert conn.scalar(select(func.max(events_table.c.position))) == 3


def test_a_rebuild_over_a_rewritten_event_is_refused_and_keeps_the_old_state(
    strata: Strata,
) -> None:
    store = strata.store
    import_png(strata, 1)
    import_png(strata, 2)
    before = dump_store(store)
    _drop_append_only_guard(store)
    with store.engine.begin() as conn:
        conn.execute(events_table.update().where(events_table.c.position == 1)
                     .values(data='{"asset": "rewritten"}'))
    with pytest.raises(ChainBroken, match="position 1"):
        strata.rebuild()
    assert_same_tables(dump_store(store), before, "after a refused rebuild")


def test_an_idempotency_key_reused_for_other_events_is_refused(strata: Strata) -> None:
    store = strata.store
    a = import_png(strata, 1)
    first = store.ledger.append(asset_stream(a), [NewEvent.of(SelectionPicked(digest=a))],
                                idempotency_key="pick-1")
    again = store.ledger.append(asset_stream(a), [NewEvent.of(SelectionPicked(digest=a))],
                                idempotency_key="pick-1")
    assert [e.event_id for e in again] == [e.event_id for e in first]
    last = head(store)
    with pytest.raises(InvalidInput, match="'pick-1' was already used at position 2"):
        store.ledger.append(asset_stream(a), [NewEvent.of(SelectionRated(digest=a, rating=1))],
                            idempotency_key="pick-1")
    with pytest.raises(InvalidInput, match="different batch"):
        store.ledger.append(asset_stream(a), [NewEvent.of(SelectionPicked(digest=a)),
                                              NewEvent.of(SelectionPicked(digest=a))],
                            idempotency_key="pick-1")
    assert head(store) == last
