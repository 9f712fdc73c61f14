"""Projections: what each one makes of the events, checkpoints, rebuild, time travel.

The key property (rule 3) is checked by a Hypothesis state machine that drives random
sequences of operations through `Strata` on a fresh store per example, on SQLite and
PostgreSQL, and then compares every projection table after incremental catch-up with the
same table after `rebuild()`, and the state `view(as_of=N)` shows with the state the
store had when the log ended at N. Jobs are driven with the generation and selection
layers' own event types (no executor runs: the events are recorded as a worker would).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Connection, create_engine, delete, select, text, update
from sqlalchemy.engine import make_url

from strata.core.config import Settings
from strata.core.decisions import branches
from strata.core.errors import ConcurrencyError, InvalidInput
from strata.core.find.schema import FIND_TABLES
from strata.core.layers.generation import GenerationCompleted, GenerationRequested
from strata.core.layers.selection import Scored, SelectionCompleted, SelectionRequested
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetImported,
    AssetInfo,
    BranchAdvanced,
    BranchCreated,
    BranchRolledBack,
    FinalMarked,
    ImportSource,
    InputRef,
    JobCancelled,
    JobFailed,
    JobStarted,
    ProducedAsset,
    ReviewRecorded,
    SelectionPicked,
    SelectionRated,
    SelectionRejected,
)
from strata.core.ledger.events import NewEvent, Payload
from strata.core.models.diffusion import ModelRef, SchedulerUsed, Timings
from strata.core.projections.base import table
from strata.core.projections.runner import BATCH
from strata.core.projections.views import (
    asset_details,
    branch,
    branch_moves,
    checkpoints,
    counts,
    job,
)
from strata.core.runtime import jobs
from strata.core.service import Strata, asset_stream
from strata.core.storage.schema import (
    PROJECTION_TABLES,
    AssetRow,
    BranchRow,
    DerivationRow,
    FinalRow,
    JobRow,
    ProjectionCheckpoint,
    ReviewRow,
    SelectionRow,
)
from strata.core.store import Store
from tests.helpers import png_bytes

Dump = dict[str, list[tuple[Any, ...]]]


def dump(conn: Connection) -> Dump:
    """Every row of every projection table, as sorted tuples."""
    return {
        table(model).name: sorted((tuple(row) for row in conn.execute(select(table(model)))),
                                  key=repr)
        for model in (*PROJECTION_TABLES, *FIND_TABLES)
    }


def dump_store(store: Store) -> Dump:
    with store.engine.connect() as conn:
        return dump(conn)


def rows(conn: Connection, model: type) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(table(model)))]


def assert_same_tables(actual: Dump, expected: Dump, what: str) -> None:
    assert list(actual) == list(expected)
    for name in expected:
        assert actual[name] == expected[name], f"{what}: table {name} differs"


def import_png(strata: Strata, seed: int, name: str | None = None) -> str:
    info = strata.blobs.ingest_bytes(png_bytes(seed, (8, 8)))
    strata.record(asset_stream(info.digest),
                  [AssetImported(asset=info, source=ImportSource(name=name or f"img-{seed}"))])
    return info.digest


def derive_png(strata: Strata, seed: int, parents: list[tuple[str, str]],
               operation: str = "inpaint") -> str:
    info = strata.blobs.ingest_bytes(png_bytes(seed, (8, 8)))
    inputs = [InputRef(digest=d, role=r) for d, r in parents]  # type: ignore[arg-type]
    strata.record(asset_stream(info.digest), [AssetDerived(
        output=ProducedAsset(asset=info, inputs=inputs), operation=operation)])
    return info.digest


def head(store: Store) -> int:
    return store.ledger.head_position()


def caught_up(store: Store) -> dict[str, int]:
    """The checkpoints every projection has once it has seen the whole log."""
    position = head(store)
    return {p.name: position for p in store.projections.projections} if position else {}


MODEL = ModelRef(name="tiny", path="/models/tiny", digest="sha256:" + "7" * 64)


def generation_requested(job_id: str, parent: str | None = None,
                         branch: str | None = None) -> GenerationRequested:
    return GenerationRequested(job_id=job_id, prompt="a lighthouse at dusk", seeds=[1, 2],
                               model=MODEL, parent=parent, branch=branch)


def generation_completed(job_id: str, outputs: list[ProducedAsset]) -> GenerationCompleted:
    return GenerationCompleted(
        job_id=job_id, operation="text-to-image", outputs=outputs, model=MODEL,
        scheduler=SchedulerUsed(name="ddim", class_name="DDIMScheduler", config={}),
        device="cpu", dtype="float32", versions={"strata": "test"},
        timings=Timings(load_s=0.0, generate_s=0.5, store_s=0.0, total_s=0.5))


def scored(score: float, cluster: str, rank: int | None) -> Scored:
    return Scored(sharpness=1.0, exposure=0.5, contrast=0.25, score=score, cluster=cluster,
                  rank=rank)


def selection_completed(job_id: str, scores: dict[str, Scored]) -> SelectionCompleted:
    chosen = [d for d, facts in scores.items() if facts.rank is not None]
    return SelectionCompleted(
        job_id=job_id, operation="rank", outputs=[], scored=scores,
        clusters=[[d] for d in scores], chosen=chosen, dedupe_distance=6, top=None)


# --- fresh stores for each Hypothesis example ----------------------------------------------


@contextmanager
def fresh_store(backend: str, base: Path, postgres_url: str | None) -> Iterator[Store]:
    """A new, empty store: its own folder, and on PostgreSQL its own schema."""
    home = Path(tempfile.mkdtemp(dir=base)) / "store"
    if backend == "sqlite":
        store = Store.open(Settings(home=home), create=True)
        try:
            yield store
        finally:
            store.close()
        return
    assert postgres_url is not None
    schema = f"h_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    store = Store.open(Settings(home=home, database_url=url.render_as_string(
        hide_password=False)), create=True)
    try:
        yield store
    finally:
        store.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store_factory(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                  ) -> Callable[[], AbstractContextManager[Store]]:
    url = request.getfixturevalue("postgres_database") if backend == "postgres" else None
    return lambda: fresh_store(backend, tmp_path, url)


# --- each projection's effect ---------------------------------------------------------------


def test_an_import_projects_an_asset(strata: Strata) -> None:
    digest = import_png(strata, 1, name="cat.png")
    event = strata.ledger.read_stream(asset_stream(digest))[0]
    with strata.view() as conn:
        (asset,) = rows(conn, AssetRow)
        assert rows(conn, DerivationRow) == []
    info = event.data["asset"]
    assert asset == {
        **{k: info.get(k) for k in AssetInfo.model_fields},
        "label": "cat.png", "layer": "import", "job_id": None,
        "created_position": event.position, "created_event_id": event.event_id,
    }
    assert (asset["media_type"], asset["width"], asset["height"]) == ("image/png", 8, 8)


def test_the_first_event_that_mentions_an_asset_made_it(strata: Strata) -> None:
    digest = import_png(strata, 1, name="first.png")
    import_png(strata, 1, name="second.png")  # the same bytes, imported again
    with strata.view() as conn:
        (asset,) = rows(conn, AssetRow)
    assert asset["label"] == "first.png"
    assert asset["created_position"] == 1
    assert len(list(strata.blobs.iter_digests())) == 1
    assert strata.ledger.stream_version(asset_stream(digest)) == 2


def test_a_derivation_projects_its_output_and_one_edge_per_input_role(strata: Strata) -> None:
    a = import_png(strata, 1)
    b = import_png(strata, 2)
    c = derive_png(strata, 3, [(a, "source"), (b, "mask"), (a, "reference"), (a, "source")],
                   operation="inpaint")
    event = strata.ledger.read_stream(asset_stream(c))[0]
    with strata.view() as conn:
        assets = {r["digest"]: r for r in rows(conn, AssetRow)}
        edges = rows(conn, DerivationRow)
    assert (assets[c]["layer"], assets[c]["label"], assets[c]["job_id"]) == (
        "external", None, None)
    assert sorted((e["input_digest"], e["role"]) for e in edges) == sorted(
        [(a, "source"), (b, "mask"), (a, "reference")])  # the repeated input counts once
    for edge in edges:
        assert edge["output_digest"] == c
        assert (edge["layer"], edge["operation"]) == ("external", "inpaint")
        assert (edge["event_position"], edge["event_id"]) == (event.position, event.event_id)


def test_branches_record_every_head_they_ever_had(strata: Strata) -> None:
    a, b, c = (import_png(strata, n) for n in (1, 2, 3))
    stream = "branch:main"
    strata.record(stream, [BranchCreated(name="main", head=a)], expected_version=0)
    strata.record(stream, [BranchAdvanced(name="main", head=b, previous_head=a)],
                  expected_version=1)
    strata.record(stream, [BranchAdvanced(name="main", head=c, previous_head=b)],
                  expected_version=2)
    strata.record(stream, [BranchRolledBack(name="main", head=a, previous_head=c,
                                            reason="too dark")], expected_version=3)
    with pytest.raises(ConcurrencyError):
        strata.record(stream, [BranchAdvanced(name="main", head=b, previous_head=c)],
                      expected_version=3)
    strata.record("branch:empty", [BranchCreated(name="empty")], expected_version=0)
    with strata.view() as conn:
        main = branch(conn, "main")
        moves = branch_moves(conn, "main")
        empty = branch(conn, "empty")
        details = asset_details(conn, a)
    assert main == {"name": "main", "head": a, "version": 4, "created_position": 4,
                    "updated_position": 7}
    assert [(m["action"], m["head"], m["previous_head"], m["reason"]) for m in moves] == [
        ("created", a, None, None), ("advanced", b, a, None), ("advanced", c, b, None),
        ("rolled_back", a, c, "too dark")]
    assert [m["position"] for m in moves] == [4, 5, 6, 7]
    assert all(m["recorded_at"] for m in moves)
    assert empty is not None
    assert (empty["head"], empty["version"]) == (None, 1)
    assert details.branches == ["main"]


def test_curation_keeps_the_latest_decision_rating_review_and_final(strata: Strata) -> None:
    a, b = import_png(strata, 1), import_png(strata, 2)
    strata.record(asset_stream(a), [SelectionPicked(digest=a, note="nice")])
    strata.record(asset_stream(a), [SelectionRated(digest=a, rating=4)])
    strata.record(asset_stream(b), [SelectionRejected(digest=b, note="blurry"),
                                    ReviewRecorded(digest=b, verdict="changes", note="crop"),
                                    ReviewRecorded(digest=b, verdict="approve")])
    strata.record(asset_stream(b), [SelectionPicked(digest=b), FinalMarked(digest=b,
                                                                           note="v1")])
    last = head(strata.store)
    with strata.view() as conn:
        selections = {r["digest"]: r for r in rows(conn, SelectionRow)}
        reviews = rows(conn, ReviewRow)
        finals = rows(conn, FinalRow)
        assert counts(conn)["selections"] == 2
    assert {k: selections[a][k] for k in ("decision", "rating", "note")} == {
        "decision": "picked", "rating": 4, "note": None}  # the rating's (empty) note wins
    assert {k: selections[b][k] for k in ("decision", "rating", "note")} == {
        "decision": "picked", "rating": None, "note": None}
    assert selections[b]["updated_position"] == last - 1
    assert reviews == [{"digest": b, "verdict": "approve", "note": None, "position": 7}]
    assert finals == [{"digest": b, "note": "v1", "position": last}]


def test_job_events_without_a_request_leave_the_jobs_table_empty(strata: Strata) -> None:
    strata.record("job:x", [
        JobStarted(job_id="x", attempt=1, worker="w", lease_seconds=30),
        JobFailed(job_id="x", attempt=1, error_class="Boom", message="no"),
        JobCancelled(job_id="x"),
    ])
    with strata.view() as conn:
        assert counts(conn)["jobs"] == 0
        assert checkpoints(conn) == caught_up(strata.store)
        assert head(strata.store) == 3


def test_a_job_goes_through_its_lifecycle(strata: Strata) -> None:
    a = import_png(strata, 1)
    branches.create(strata, "main")
    requested = jobs.request(strata, generation_requested("g1", parent=a, branch="main"))
    stream = jobs.stream("g1")

    def state() -> dict[str, Any]:
        with strata.view() as conn:
            row = job(conn, "g1")
        assert row is not None
        return row

    first = state()
    assert {k: first[k] for k in ("layer", "status", "stream_version", "attempts", "branch",
                                  "worker", "outputs")} == {
        "layer": "generation", "status": "requested", "stream_version": 1, "attempts": 0,
        "branch": "main", "worker": None, "outputs": []}
    assert first["request"] == requested.data
    assert first["requested_position"] == first["updated_position"] == requested.position

    strata.record(stream, [JobStarted(job_id="g1", attempt=1, worker="w1",
                                      lease_seconds=30)], expected_version=1)
    assert (state()["status"], state()["attempts"], state()["worker"]) == ("running", 1, "w1")
    strata.record(stream, [JobFailed(job_id="g1", attempt=1, error_class="OutOfMemory",
                                     message="CUDA out of memory", retryable=True,
                                     retry_at="2026-01-01T00:00:05Z")], expected_version=2)
    retrying = state()
    assert (retrying["status"], retrying["retry_at"], retrying["error_class"],
            retrying["error_message"], retrying["worker"]) == (
        "retrying", "2026-01-01T00:00:05Z", "OutOfMemory", "CUDA out of memory", None)
    strata.record(stream, [JobStarted(job_id="g1", attempt=2, worker="w2",
                                      lease_seconds=30)], expected_version=3)
    assert (state()["status"], state()["attempts"], state()["retry_at"]) == ("running", 2, None)
    out = strata.blobs.ingest_bytes(png_bytes(50, (8, 8)))
    done = strata.record(stream, [generation_completed("g1", [
        ProducedAsset(asset=out, inputs=[InputRef(digest=a, role="source")], seed=1)])],
        expected_version=4)[0]
    finished = state()
    assert (finished["status"], finished["worker"], finished["outputs"],
            finished["stream_version"], finished["updated_position"]) == (
        "completed", None, [out.digest], 5, done.position)

    jobs.request(strata, generation_requested("g2"))
    strata.record(jobs.stream("g2"), [JobStarted(job_id="g2", attempt=1, worker="w1",
                                                 lease_seconds=30)], expected_version=1)
    strata.record(jobs.stream("g2"), [JobFailed(job_id="g2", attempt=1, error_class="Boom",
                                                message="no")], expected_version=2)
    jobs.request(strata, generation_requested("g3"))
    jobs.cancel(strata, "g3", reason="changed my mind")
    with strata.view() as conn:
        statuses = {r["job_id"]: r["status"] for r in rows(conn, JobRow)}
    assert statuses == {"g1": "completed", "g2": "failed", "g3": "cancelled"}


def test_job_outputs_are_assets_with_the_job_s_lineage(strata: Strata) -> None:
    a = import_png(strata, 1)
    jobs.request(strata, generation_requested("g1", parent=a))
    outs = [strata.blobs.ingest_bytes(png_bytes(seed, (8, 8))) for seed in (60, 61)]
    done = strata.record(jobs.stream("g1"), [generation_completed("g1", [
        ProducedAsset(asset=info, inputs=[InputRef(digest=a, role="source")], seed=n)
        for n, info in enumerate(outs)])])[0]
    with strata.view() as conn:
        assets = {r["digest"]: r for r in rows(conn, AssetRow)}
        edges = rows(conn, DerivationRow)
    for info in outs:
        row = assets[info.digest]
        assert (row["layer"], row["job_id"], row["label"], row["created_position"]) == (
            "generation", "g1", None, done.position)
    assert sorted((e["input_digest"], e["output_digest"], e["layer"], e["operation"])
                  for e in edges) == sorted(
        (a, info.digest, "generation", "text-to-image") for info in outs)


def test_automatic_selection_scores_without_touching_human_decisions(strata: Strata) -> None:
    a, b = import_png(strata, 1), import_png(strata, 2)
    strata.record(asset_stream(a), [SelectionRejected(digest=a, note="mine")])
    jobs.request(strata, SelectionRequested(job_id="s1", candidates=[a, b]))
    strata.record(jobs.stream("s1"), [selection_completed("s1", {
        a: scored(0.25, a, None), b: scored(0.75, b, 1)})])
    with strata.view() as conn:
        selections = {r["digest"]: r for r in rows(conn, SelectionRow)}
        assert job(conn, "s1")["status"] == "completed"  # type: ignore[index]
    assert {k: selections[a][k] for k in ("decision", "note", "quality", "cluster", "rank")} == {
        "decision": "rejected", "note": "mine", "quality": 0.25, "cluster": a, "rank": None}
    assert {k: selections[b][k] for k in ("decision", "note", "quality", "cluster", "rank")} == {
        "decision": None, "note": None, "quality": 0.75, "cluster": b, "rank": 1}


# --- checkpoints, catch-up, rebuild -----------------------------------------------------------


def append_quietly(store: Store, stream: str, payloads: list[Payload]) -> None:
    """Append without catching the projections up (as another process would)."""
    store.ledger.append(stream, [NewEvent.of(p) for p in payloads])


def test_checkpoints_follow_the_head(strata: Strata) -> None:
    store = strata.store
    with strata.view() as conn:
        assert checkpoints(conn) == {}
    a = import_png(strata, 1)
    with store.engine.connect() as conn:
        assert checkpoints(conn) == {p.name: 1 for p in store.projections.projections}
    append_quietly(store, asset_stream(a), [SelectionPicked(digest=a),
                                            SelectionRated(digest=a, rating=2)])
    with store.engine.connect() as conn:
        assert set(checkpoints(conn).values()) == {1}  # behind: nobody caught up yet
        assert rows(conn, SelectionRow) == []
    assert store.projections.catch_up() == 2
    assert store.projections.catch_up() == 0
    with store.engine.connect() as conn:
        assert checkpoints(conn) == caught_up(store)
        assert head(store) == 3
        assert rows(conn, SelectionRow)[0]["rating"] == 2


def test_catch_up_to_a_position_and_across_batches(strata: Strata) -> None:
    store = strata.store
    a = import_png(strata, 1)
    total = BATCH + 123
    append_quietly(store, asset_stream(a),
                   [SelectionRated(digest=a, rating=1 + n % 5) for n in range(total)])
    assert store.projections.catch_up(to_position=10) == 9
    with store.engine.connect() as conn:
        assert set(checkpoints(conn).values()) == {10}
        assert rows(conn, SelectionRow)[0]["rating"] == 1 + 8 % 5
    assert store.projections.catch_up() == total - 9
    with store.engine.connect() as conn:
        assert checkpoints(conn) == caught_up(store)
        assert head(store) == total + 1
        assert rows(conn, SelectionRow)[0]["rating"] == 1 + (total - 1) % 5
    incremental = dump_store(store)
    assert strata.rebuild() == total + 1
    assert_same_tables(dump_store(store), incremental, "after rebuild")


def test_reads_of_an_empty_store_run_no_catch_up_but_see_the_first_event(
    strata: Strata, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = strata.store.projections
    catch_ups: list[object] = []
    real_catch_up = runner.catch_up

    def counted(*args: Any, **kwargs: Any) -> int:
        catch_ups.append(args)
        return real_catch_up(*args, **kwargs)

    monkeypatch.setattr(runner, "catch_up", counted)
    for _ in range(3):  # nothing to apply, no checkpoint written yet: nothing to do
        with strata.view() as conn:
            assert rows(conn, AssetRow) == []
    assert catch_ups == []
    # Another process appends the first event (its projections not caught up here).
    append_quietly(strata.store, asset_stream("sha256:" + "a" * 64),
                   [SelectionRated(digest="sha256:" + "a" * 64, rating=4)])
    with strata.view() as conn:
        assert [r["rating"] for r in rows(conn, SelectionRow)] == [4]
    assert len(catch_ups) == 1


def test_a_projection_behind_the_others_catches_up_alone(strata: Strata) -> None:
    store = strata.store
    a, b = import_png(strata, 1), import_png(strata, 2)
    c = derive_png(strata, 3, [(a, "source"), (b, "layer")])
    strata.record(asset_stream(c), [SelectionPicked(digest=c), FinalMarked(digest=c)])
    strata.record("branch:main", [BranchCreated(name="main", head=c)], expected_version=0)
    before = dump_store(store)
    # Empty the curation tables and wind only its checkpoint back to 0.
    with store.engine.begin() as conn:
        for model in (SelectionRow, ReviewRow, FinalRow):
            conn.execute(delete(table(model)))
        checkpoint = table(ProjectionCheckpoint)
        conn.execute(update(checkpoint).where(checkpoint.c.name == "curation")
                     .values(position=0))
    assert store.projections.catch_up() == head(store)
    assert_same_tables(dump_store(store), before, "after re-catching one projection")


def test_rebuild_equals_incremental(strata: Strata) -> None:
    store = strata.store
    a, b = import_png(strata, 1), import_png(strata, 2)
    c = derive_png(strata, 3, [(a, "source"), (b, "mask")])
    d = derive_png(strata, 4, [(c, "source")])
    import_png(strata, 2, name="again")
    strata.record("branch:main", [BranchCreated(name="main", head=c)], expected_version=0)
    strata.record("branch:main", [BranchAdvanced(name="main", head=d, previous_head=c)],
                  expected_version=1)
    strata.record("branch:main", [BranchRolledBack(name="main", head=c, previous_head=d)],
                  expected_version=2)
    strata.record(asset_stream(d), [SelectionRejected(digest=d), ReviewRecorded(
        digest=c, verdict="approve"), FinalMarked(digest=c)])
    incremental = dump_store(store)
    assert strata.rebuild() == head(store)
    assert_same_tables(dump_store(store), incremental, "after rebuild")
    assert strata.rebuild() == head(store)  # twice is the same as once
    assert_same_tables(dump_store(store), incremental, "after a second rebuild")
    with store.engine.connect() as conn:
        assert checkpoints(conn) == caught_up(store)


# --- time travel ---------------------------------------------------------------------------


def test_view_as_of_shows_the_state_at_each_position(strata: Strata) -> None:
    store = strata.store
    states: dict[int, Dump] = {0: dump_store(store)}
    a = import_png(strata, 1)
    states[head(store)] = dump_store(store)
    b = derive_png(strata, 2, [(a, "source")])
    states[head(store)] = dump_store(store)
    strata.record("branch:main", [BranchCreated(name="main", head=a)], expected_version=0)
    states[head(store)] = dump_store(store)
    strata.record("branch:main", [BranchAdvanced(name="main", head=b, previous_head=a)],
                  expected_version=1)
    states[head(store)] = dump_store(store)
    strata.record(asset_stream(b), [SelectionPicked(digest=b), FinalMarked(digest=b)])
    states[head(store)] = dump_store(store)
    assert sorted(states) == [0, 1, 2, 3, 4, 6]
    for position, expected in states.items():
        with strata.view(as_of=position) as conn:
            assert_same_tables(dump(conn), expected, f"as of {position}")
    with strata.view(as_of=5) as conn:  # between the two events of one append
        assert [r["decision"] for r in rows(conn, SelectionRow)] == ["picked"]
        assert rows(conn, FinalRow) == []
    with strata.view(as_of=3) as conn:
        assert counts(conn)["assets"] == 2
        assert branch(conn, "main")["head"] == a  # type: ignore[index]
    with pytest.raises(InvalidInput, match=r"1000 is past the end of the log .* is 6"), \
            strata.view(as_of=1000):
        pass  # never the live state under a time-travel label
    with pytest.raises(InvalidInput, match="position"), strata.view(as_of=-1):
        pass


# --- regressions: bugs found and fixed in core ---------------------------------------------------


def test_a_repeated_branch_creation_does_not_wedge_the_projections(strata: Strata) -> None:
    strata.record("branch:main", [BranchCreated(name="main")], expected_version=0)
    with contextlib.suppress(InvalidInput):  # refusing it before appending would do too
        strata.record("elsewhere", [BranchCreated(name="main")])
    a = import_png(strata, 1)
    with strata.view() as conn:
        assert [r["digest"] for r in rows(conn, AssetRow)] == [a]
        assert checkpoints(conn) == caught_up(strata.store)


# --- the key property: random histories, rebuilt == incremental ---------------------------------


ROLES = ("source", "mask", "layer", "audio", "reference", "parent")
BRANCHES = ("main", "alt", "wip")
NOTES = st.none() | st.sampled_from(["ok", "too dark", "crop tighter", "ü ✓"])


class LedgerMachine(RuleBasedStateMachine):
    """Random histories through Strata, checked against a simple model of the state."""

    open_store: Callable[[], AbstractContextManager[Store]]
    _job_columns = ("layer", "status", "stream_version", "attempts", "worker", "retry_at",
                    "error_class", "outputs")

    def __init__(self) -> None:
        super().__init__()
        self.resources = ExitStack()
        self.store = self.resources.enter_context(type(self).open_store())
        self.strata = Strata(self.store)
        self.next_derived_seed = 1_000_000  # derived outputs never collide with imports
        # The model: what the projections must show.
        self.assets: list[str] = []
        self.labels: dict[str, str] = {}
        self.edges: set[tuple[str, str, str]] = set()
        self.branches: dict[str, tuple[int, str | None]] = {}  # name → (version, head)
        self.heads_seen: dict[str, list[str]] = {}
        self.selections: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}  # job id → the row's columns we check
        self.job_inputs: dict[str, list[str]] = {}  # parent or candidates of each job
        self.reviews: dict[str, tuple[str, str | None]] = {}
        self.finals: dict[str, str | None] = {}
        self.pending = False  # events appended that the projections have not seen yet
        self.snapshots: dict[int, Dump] = {}

    # --- helpers -------------------------------------------------------------------------

    def _record(self, stream: str, payloads: list[Payload], deferred: bool = False,
                expected_version: int = -1) -> None:
        if deferred:
            self.store.ledger.append(stream, [NewEvent.of(p) for p in payloads],
                                     expected_version)
            self.pending = True
        else:
            self.strata.record(stream, payloads, expected_version=expected_version)
            self.pending = False  # record catches up everything, the deferred events too

    def _ingest(self, seed: int) -> AssetInfo:
        return self.strata.blobs.ingest_bytes(png_bytes(seed, (8, 8)))

    def _selection_row(self, digest: str) -> dict[str, Any]:
        return self.selections.setdefault(digest, dict.fromkeys(
            ("decision", "rating", "note", "quality", "cluster", "rank")))

    def _new_asset(self) -> AssetInfo:
        info = self._ingest(self.next_derived_seed)
        self.next_derived_seed += 1
        return info

    def _job_event(self, job_id: str, payload: Payload, deferred: bool = False,
                   **changes: Any) -> None:
        model = self.jobs[job_id]
        self._record(jobs.stream(job_id), [payload], deferred,
                     expected_version=model["stream_version"])
        model.update(changes, stream_version=model["stream_version"] + 1)

    def _jobs_in(self, *statuses: str) -> list[str]:
        return sorted(j for j, m in self.jobs.items() if m["status"] in statuses)

    # --- assets ----------------------------------------------------------------------------

    @rule(seed=st.integers(0, 40), deferred=st.booleans())
    def import_asset(self, seed: int, deferred: bool) -> None:
        info = self._ingest(seed)
        name = f"import-{len(self.labels)}-{seed}.png"
        self._record(asset_stream(info.digest),
                     [AssetImported(asset=info, source=ImportSource(name=name))], deferred)
        if info.digest not in self.labels:
            self.assets.append(info.digest)
            self.labels[info.digest] = name

    @precondition(lambda self: self.assets)
    @rule(data=st.data())
    def reimport_same_bytes(self, data: st.DataObject) -> None:
        digest = data.draw(st.sampled_from(self.assets))
        info = self.strata.blobs.ingest_bytes(self.strata.blobs.read_bytes(digest))
        assert info.digest == digest
        self._record(asset_stream(digest),
                     [AssetImported(asset=info, source=ImportSource(name="again.png"))])

    @precondition(lambda self: self.assets)
    @rule(data=st.data(), operation=st.sampled_from(["inpaint", "upscale", "composite"]),
          deferred=st.booleans())
    def derive(self, data: st.DataObject, operation: str, deferred: bool) -> None:
        parents = data.draw(st.lists(
            st.tuples(st.sampled_from(self.assets), st.sampled_from(ROLES)),
            min_size=1, max_size=3))
        info = self._new_asset()
        produced = ProducedAsset(
            asset=info, inputs=[InputRef(digest=d, role=r) for d, r in parents],
            seed=data.draw(st.none() | st.integers(0, 2**32)))
        self._record(asset_stream(info.digest),
                     [AssetDerived(output=produced, operation=operation)], deferred)
        self.assets.append(info.digest)
        self.labels[info.digest] = None  # type: ignore[assignment]
        self.edges |= {(info.digest, d, r) for d, r in parents}

    # --- branches --------------------------------------------------------------------------

    @rule(name=st.sampled_from(BRANCHES), data=st.data())
    def create_branch(self, name: str, data: st.DataObject) -> None:
        if name in self.branches:
            version = self.branches[name][0]
            with pytest.raises(ConcurrencyError):
                self.strata.record(f"branch:{name}", [BranchCreated(name=name)],
                                   expected_version=0)
            assert self.branches[name][0] == version
            return
        start = data.draw(st.none() | st.sampled_from(self.assets)) if self.assets else None
        self._record(f"branch:{name}", [BranchCreated(name=name, head=start)],
                     expected_version=0)
        self.branches[name] = (1, start)
        self.heads_seen[name] = [start] if start else []

    @precondition(lambda self: self.branches and self.assets)
    @rule(data=st.data(), deferred=st.booleans())
    def advance_branch(self, data: st.DataObject, deferred: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.branches)))
        version, current = self.branches[name]
        new_head = data.draw(st.sampled_from(self.assets))
        self._record(f"branch:{name}", [BranchAdvanced(
            name=name, head=new_head, previous_head=current)], deferred,
            expected_version=version)
        self.branches[name] = (version + 1, new_head)
        self.heads_seen[name].append(new_head)

    @precondition(lambda self: any(self.heads_seen.values()))
    @rule(data=st.data(), reason=NOTES)
    def roll_back_branch(self, data: st.DataObject, reason: str | None) -> None:
        name = data.draw(st.sampled_from(sorted(n for n, h in self.heads_seen.items() if h)))
        version, current = self.branches[name]
        earlier = data.draw(st.sampled_from(self.heads_seen[name]))
        self._record(f"branch:{name}", [BranchRolledBack(
            name=name, head=earlier, previous_head=current, reason=reason)],
            expected_version=version)
        self.branches[name] = (version + 1, earlier)

    @precondition(lambda self: self.branches and self.assets)
    @rule(data=st.data(), off_by=st.sampled_from([-1, 1, 5]))
    def stale_branch_write_is_refused(self, data: st.DataObject, off_by: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.branches)))
        version, current = self.branches[name]
        before = head(self.store)
        with pytest.raises(ConcurrencyError):
            self.strata.record(f"branch:{name}", [BranchAdvanced(
                name=name, head=self.assets[0], previous_head=current)],
                expected_version=version + off_by)
        assert head(self.store) == before

    # --- curation ----------------------------------------------------------------------------

    @precondition(lambda self: self.assets)
    @rule(data=st.data(), action=st.sampled_from(["pick", "reject", "rate"]), note=NOTES,
          deferred=st.booleans())
    def select(self, data: st.DataObject, action: str, note: str | None,
               deferred: bool) -> None:
        digest = data.draw(st.sampled_from(self.assets))
        row = self._selection_row(digest)
        payload: Payload
        if action == "rate":
            rating = data.draw(st.integers(1, 5))
            payload = SelectionRated(digest=digest, rating=rating, note=note)
            row["rating"] = rating
        elif action == "pick":
            payload = SelectionPicked(digest=digest, note=note)
            row["decision"] = "picked"
        else:
            payload = SelectionRejected(digest=digest, note=note)
            row["decision"] = "rejected"
        row["note"] = note
        self._record(asset_stream(digest), [payload], deferred)

    @precondition(lambda self: self.assets)
    @rule(data=st.data(), verdict=st.sampled_from(["approve", "reject", "changes"]),
          note=NOTES)
    def review(self, data: st.DataObject, verdict: str, note: str | None) -> None:
        digest = data.draw(st.sampled_from(self.assets))
        self._record(asset_stream(digest), [ReviewRecorded(digest=digest, verdict=verdict,
                                                           note=note)])
        self.reviews[digest] = (verdict, note)

    @precondition(lambda self: self.assets)
    @rule(data=st.data(), note=NOTES, deferred=st.booleans())
    def mark_final(self, data: st.DataObject, note: str | None, deferred: bool) -> None:
        digest = data.draw(st.sampled_from(self.assets))
        self._record(asset_stream(digest), [FinalMarked(digest=digest, note=note)], deferred)
        self.finals[digest] = note

    # --- jobs --------------------------------------------------------------------------------

    @rule(data=st.data(), layer=st.sampled_from(["generation", "selection"]))
    def request_job(self, data: st.DataObject, layer: str) -> None:
        job_id = f"job-{len(self.jobs)}"
        request: Payload
        if layer == "selection" and self.assets:
            candidates = data.draw(st.lists(st.sampled_from(self.assets), min_size=1,
                                            max_size=4, unique=True))
            request = SelectionRequested(job_id=job_id, candidates=candidates)
            self.job_inputs[job_id] = candidates
        else:
            layer = "generation"
            parent = data.draw(st.none() | st.sampled_from(self.assets)) if self.assets else None
            request = generation_requested(job_id, parent=parent)
            self.job_inputs[job_id] = [parent] if parent else []
        self._record(jobs.stream(job_id), [request], expected_version=0)
        self.jobs[job_id] = {"layer": layer, "status": "requested", "stream_version": 1,
                             "attempts": 0, "worker": None, "retry_at": None,
                             "error_class": None, "outputs": None}

    @precondition(lambda self: self._jobs_in("requested", "running", "retrying"))
    @rule(data=st.data(), deferred=st.booleans())
    def progress_job(self, data: st.DataObject, deferred: bool) -> None:
        """The next step of an unfinished job, as a worker (or a user cancelling) takes it."""
        job_id = data.draw(st.sampled_from(self._jobs_in("requested", "running", "retrying")))
        if self.jobs[job_id]["status"] == "running":
            step = data.draw(st.sampled_from(["complete", "complete", "fail", "cancel"]))
        else:
            step = data.draw(st.sampled_from(["start", "start", "cancel"]))
        if step == "start":
            self._start_job(job_id, data.draw(st.sampled_from(["w1", "w2"])), deferred)
        elif step == "complete":
            self._complete_job(job_id, data, deferred)
        elif step == "fail":
            self._fail_job(job_id, data.draw(st.booleans()))
        else:
            self._job_event(job_id, JobCancelled(job_id=job_id), status="cancelled",
                            worker=None, retry_at=None)

    def _start_job(self, job_id: str, worker: str, deferred: bool) -> None:
        attempt = self.jobs[job_id]["attempts"] + 1
        self._job_event(job_id, JobStarted(job_id=job_id, attempt=attempt, worker=worker,
                                           lease_seconds=30), deferred,
                        status="running", attempts=attempt, worker=worker, retry_at=None)

    def _complete_job(self, job_id: str, data: st.DataObject, deferred: bool) -> None:
        inputs = self.job_inputs[job_id]
        payload: Payload
        if self.jobs[job_id]["layer"] == "generation":
            produced = [ProducedAsset(asset=self._new_asset(), seed=n,
                                      inputs=[InputRef(digest=d) for d in inputs])
                        for n in range(data.draw(st.integers(1, 2)))]
            payload = generation_completed(job_id, produced)
            for output in produced:
                self.assets.append(output.asset.digest)
                self.labels[output.asset.digest] = None  # type: ignore[assignment]
                self.edges |= {(output.asset.digest, d, "source") for d in inputs}
            outputs = [o.asset.digest for o in produced]
        else:
            scores = {d: scored(0.125 * n, inputs[0], n + 1 if n % 2 == 0 else None)
                      for n, d in enumerate(inputs)}
            payload = selection_completed(job_id, scores)
            for d, facts in scores.items():
                self._selection_row(d).update(quality=facts.score, cluster=facts.cluster,
                                              rank=facts.rank)
            outputs = []
        self._job_event(job_id, payload, deferred, status="completed", worker=None,
                        outputs=json.dumps(outputs))

    def _fail_job(self, job_id: str, retryable: bool) -> None:
        retry_at = "2026-01-01T00:00:05Z" if retryable else None
        self._job_event(job_id, JobFailed(
            job_id=job_id, attempt=self.jobs[job_id]["attempts"], error_class="Boom",
            message="it broke", retryable=retryable, retry_at=retry_at),
            status="retrying" if retryable else "failed", retry_at=retry_at,
            error_class="Boom", worker=None)

    # --- the projection machinery ------------------------------------------------------------

    @rule()
    def catch_up(self) -> None:
        self.store.projections.catch_up()
        self.pending = False

    @precondition(lambda self: not self.pending)
    @rule()
    def rebuild_in_the_middle(self) -> None:
        incremental = dump_store(self.store)
        assert self.strata.rebuild() == head(self.store)
        assert_same_tables(dump_store(self.store), incremental, "rebuild in the middle")

    @invariant()
    def projections_match_the_model(self) -> None:
        if self.pending:
            return
        position = head(self.store)
        with self.store.engine.connect() as conn:
            state = dump(conn)
            assert checkpoints(conn) == caught_up(self.store)
            assets = {r["digest"]: r for r in rows(conn, AssetRow)}
            edges = {(r["output_digest"], r["input_digest"], r["role"])
                     for r in rows(conn, DerivationRow)}
            branches = {r["name"]: (r["version"], r["head"]) for r in rows(conn, BranchRow)}
            selections = {r["digest"]: {k: r[k] for k in (
                "decision", "rating", "note", "quality", "cluster", "rank")}
                for r in rows(conn, SelectionRow)}
            job_rows = {r["job_id"]: {k: r[k] for k in self._job_columns}
                        for r in rows(conn, JobRow)}
            reviews = {r["digest"]: (r["verdict"], r["note"]) for r in rows(conn, ReviewRow)}
            finals = {r["digest"]: r["note"] for r in rows(conn, FinalRow)}
        assert set(assets) == set(self.assets)
        assert {d: r["label"] for d, r in assets.items()} == self.labels
        assert edges == self.edges
        assert branches == self.branches
        assert selections == self.selections
        assert reviews == self.reviews
        assert finals == self.finals
        assert job_rows == self.jobs
        self.snapshots[position] = state

    def teardown(self) -> None:
        try:
            projections = self.store.projections
            projections.catch_up()
            position = head(self.store)
            incremental = dump_store(self.store)
            with self.store.engine.connect() as conn:
                assert checkpoints(conn) == caught_up(self.store)
            assert self.strata.rebuild() == position
            assert_same_tables(dump_store(self.store), incremental, "rebuild")
            # Time travel: the state at N is the state the store had when the log ended at N.
            self.snapshots[position] = incremental
            known = sorted(self.snapshots)
            for at in [*known[:: max(1, len(known) // 6)], known[-1]]:
                with self.strata.view(as_of=at) as conn:
                    assert_same_tables(dump(conn), self.snapshots[at], f"as of {at}")
            with pytest.raises(InvalidInput, match="past the end of the log"), \
                    self.strata.view(as_of=position + 3):
                pass
        finally:
            self.resources.close()


def test_random_histories_rebuild_to_the_same_state(
    store_factory: Callable[[], AbstractContextManager[Store]],
) -> None:
    machine = type("Machine", (LedgerMachine,), {"open_store": staticmethod(store_factory)})
    run_state_machine_as_test(machine, settings=hypothesis_settings(
        max_examples=25, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow], database=None))
