"""Time travel without a full replay: `Strata.view(as_of)` reads the store's own tables
through as-of views (core.projections.asof). Checked against the full replay of the log
(`Strata._replayed_view`, the reference) at random positions of a history with every kind
of event, through the reads users make: show, lineage, provenance, find.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, select, text

from strata.core.find.search import search
from strata.core.layers.selection import SelectionRequested
from strata.core.ledger.event_types import (
    BranchAdvanced,
    BranchCreated,
    BranchRolledBack,
    FinalMarked,
    InputRef,
    JobFailed,
    JobStarted,
    ModelRegistered,
    ProducedAsset,
    ReviewRecorded,
    SelectionPicked,
    SelectionRated,
    SelectionRejected,
)
from strata.core.lookup import AssetFound, lookup
from strata.core.projections import asof, lineage, views
from strata.core.projections.base import table
from strata.core.provenance.ancestry import provenance
from strata.core.runtime import jobs
from strata.core.service import ReplayingStrata, Strata, asset_stream
from strata.core.storage import migrate
from strata.core.storage.schema import AssetRow, JobRow
from tests.core.projections.test_projections import (
    MODEL,
    derive_png,
    dump,
    generation_completed,
    generation_requested,
    head,
    import_png,
    scored,
    selection_completed,
)
from tests.helpers import png_bytes

PROMPTS = ("a lighthouse at dusk", "a red fox in snow", "harbour fog, oil painting")


def build_history(strata: Strata, seed: int, steps: int) -> None:
    """A random history with every kind of event: imports and re-imports, outside edits,
    generation jobs (started, failed and retried, completed, on branches), automatic
    selections, human decisions, reviews, finals, branch moves and rollbacks, models."""
    rng = random.Random(seed)
    assets = [import_png(strata, n) for n in range(3)]
    branch_heads: dict[str, list[str]] = {}
    job_count = 0
    fresh = iter(range(10_000, 20_000))

    def new_output() -> ProducedAsset:
        info = strata.blobs.ingest_bytes(png_bytes(next(fresh), (8, 8)))
        return ProducedAsset(asset=info, seed=rng.randrange(2**32),
                             inputs=[InputRef(digest=rng.choice(assets))])

    for _ in range(steps):
        action = rng.choice(["import", "reimport", "edit", "generate", "generate", "select",
                             "decide", "decide", "review", "final", "branch", "branch",
                             "model"])
        if action == "import":
            assets.append(import_png(strata, next(fresh)))
        elif action == "reimport":
            import_png(strata, int(rng.choice(range(3))), name="again.png")
        elif action == "edit":
            parents = [(rng.choice(assets), "source")] + (
                [(rng.choice(assets), "mask")] if rng.random() < 0.5 else [])
            assets.append(derive_png(strata, next(fresh), parents))
        elif action == "generate":
            job_id = f"job-{job_count}"
            job_count += 1
            branch = rng.choice([None, *branch_heads])
            request = generation_requested(job_id, parent=rng.choice([None, *assets]),
                                           branch=branch)
            request = request.model_copy(update={"prompt": rng.choice(PROMPTS)})
            stream = jobs.stream(job_id)
            strata.record(stream, [request], expected_version=0)
            strata.record(stream, [JobStarted(job_id=job_id, attempt=1, worker="w1",
                                              lease_seconds=30)], expected_version=1)
            version = 2
            if rng.random() < 0.3:
                strata.record(stream, [
                    JobFailed(job_id=job_id, attempt=1, error_class="Boom", message="no",
                              retryable=True, retry_at="2026-01-01T00:00:05Z"),
                    JobStarted(job_id=job_id, attempt=2, worker="w2", lease_seconds=30)],
                    expected_version=2)
                version = 4
            if rng.random() < 0.85:
                outputs = [new_output() for _ in range(rng.randint(1, 3))]
                strata.record(stream, [generation_completed(job_id, outputs)],
                              expected_version=version)
                assets += [o.asset.digest for o in outputs]
        elif action == "select":
            job_id = f"job-{job_count}"
            job_count += 1
            candidates = rng.sample(assets, min(len(assets), 4))
            stream = jobs.stream(job_id)
            strata.record(stream, [SelectionRequested(job_id=job_id, candidates=candidates)],
                          expected_version=0)
            scores = {d: scored(rng.random(), candidates[0], n + 1 if n % 2 == 0 else None)
                      for n, d in enumerate(candidates)}
            strata.record(stream, [selection_completed(job_id, scores)], expected_version=1)
        elif action == "decide":
            digest = rng.choice(assets)
            decision = rng.choice([SelectionPicked(digest=digest, note="yes"),
                                   SelectionRejected(digest=digest),
                                   SelectionRated(digest=digest, rating=rng.randint(1, 5))])
            strata.record(asset_stream(digest), [decision])
        elif action == "review":
            digest = rng.choice(assets)
            strata.record(asset_stream(digest), [ReviewRecorded(
                digest=digest, verdict=rng.choice(["approve", "reject", "changes"]))])
        elif action == "final":
            digest = rng.choice(assets)
            strata.record(asset_stream(digest), [FinalMarked(digest=digest,
                                                             note=rng.choice([None, "v2"]))])
        elif action == "branch":
            name = rng.choice(["main", "alt"])
            current = None
            if name in branch_heads:
                with strata.view() as conn:
                    current = views.branch(conn, name)
            if current is None:
                head_digest = rng.choice(assets)
                strata.record(f"branch:{name}", [BranchCreated(name=name, head=head_digest)],
                              expected_version=0)
                branch_heads[name] = [head_digest]
            elif rng.random() < 0.35 and len(branch_heads[name]) > 1:
                earlier = rng.choice(branch_heads[name][:-1])
                strata.record(f"branch:{name}", [BranchRolledBack(
                    name=name, head=earlier, previous_head=current["head"], reason="worse")],
                    expected_version=current["version"])
                branch_heads[name].append(earlier)
            else:
                new_head = rng.choice(assets)
                strata.record(f"branch:{name}", [BranchAdvanced(
                    name=name, head=new_head, previous_head=current["head"])],
                    expected_version=current["version"])
                branch_heads[name].append(new_head)
        else:
            strata.record("models", [ModelRegistered(
                name=rng.choice(["tiny", "other"]), path=f"/models/{rng.randrange(9)}",
                digest=MODEL.digest, format="folder")])


def reads(strata: Strata, position: int, rng: random.Random) -> dict[str, Any]:
    """What show, lineage, provenance and find answer as of `position`, for a sample of
    the assets that existed then."""
    with strata.view(position) as conn:
        state = dump(conn)
        digests = sorted(conn.scalars(select(table(AssetRow).c.digest)))
        job_ids = sorted(conn.scalars(select(table(JobRow).c.job_id)))
    sample = rng.sample(digests, min(len(digests), 4))
    answers: dict[str, Any] = {"tables": state, "jobs": job_ids}
    for digest in sample:
        found = lookup(strata, digest[7:19], position)
        assert isinstance(found, AssetFound)
        answers[f"show {digest}"] = (dataclasses.asdict(found.details), found.recipe)
        with strata.view(position) as conn:
            answers[f"lineage {digest}"] = (lineage.walk(conn, digest, "up"),
                                            lineage.walk(conn, digest, "down"),
                                            lineage.roots(conn, digest))
        answers[f"provenance {digest}"] = provenance(strata, digest, position).to_json()
    for query in ("lighthouse", "prompt:fox", "layer:generation", "is:picked", "is:final",
                  "branch:main", "rating>=3", "review:approve", "seed>=0", "model:tiny",
                  *(f"from:{d[7:19]}" for d in sample[:2])):
        answers[f"find {query}"] = search(strata, query, as_of=position, limit=1000).to_json()
    return answers


def positions(strata: Strata, rng: random.Random, count: int) -> list[int]:
    last = head(strata.store)
    return sorted({1, last, *(rng.randint(1, last) for _ in range(count))})


def test_as_of_answers_equal_the_full_replay_at_random_positions(strata: Strata) -> None:
    build_history(strata, seed=7, steps=90)
    reference = ReplayingStrata(strata.store)
    rng = random.Random(11)
    for position in positions(strata, rng, 10):
        seed = rng.randrange(2**32)
        expected = reads(reference, position, random.Random(seed))
        actual = reads(strata, position, random.Random(seed))
        assert actual.keys() == expected.keys()
        for what in expected:
            assert actual[what] == expected[what], f"as of {position}: {what} differs"


def test_as_of_reads_leave_no_trace_on_the_pooled_connections(strata: Strata) -> None:
    a = import_png(strata, 1)
    import_png(strata, 2)
    strata.record(asset_stream(a), [SelectionPicked(digest=a)])
    strata.record(asset_stream(a), [SelectionRejected(digest=a)])
    with strata.view() as conn:
        current = dump(conn)
    for _ in range(3):  # whichever pooled connection the next read gets
        with strata.view(1) as conn:
            assert len(dump(conn)["assets"]) == 1
        with pytest.raises(RuntimeError), strata.view(3) as conn:
            raise RuntimeError("a read that fails half-way")
        with strata.view() as conn:
            assert dump(conn) == current
    with strata.view(3) as conn:
        assert dump(conn)["selections"][0][1] == "picked"  # the version replaced at 4


def test_time_travel_replays_nothing(strata: Strata, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded work: no private database is built and no event is re-applied."""
    build_history(strata, seed=3, steps=15)
    expected = reads(ReplayingStrata(strata.store), 20, random.Random(1))

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("time travel replayed the log")

    monkeypatch.setattr(Strata, "_replayed_view", refuse)
    assert reads(strata, 20, random.Random(1)) == expected


def test_every_projection_table_is_readable_as_of_a_position(strata: Strata) -> None:
    names = [table(m).name for p in strata.store.projections.projections for m in p.models]
    assert asof.covers(names)
    assert not asof.covers([*names, "a_plugin_table"])


def test_a_rebuild_keeps_the_history_it_rebuilt(strata: Strata) -> None:
    build_history(strata, seed=5, steps=30)
    with strata.store.engine.connect() as conn:
        before = {name: sorted(map(tuple, conn.execute(select(history))))
                  for name, history in asof.HISTORY.items()}
    assert any(before.values())
    strata.rebuild()
    with strata.store.engine.connect() as conn:
        after = {name: sorted(map(tuple, conn.execute(select(history))))
                 for name, history in asof.HISTORY.items()}
    assert after == before


def test_a_store_upgraded_to_the_history_tables_travels_in_time_correctly(
    strata: Strata,
) -> None:
    """A store from before migration 0008 has only the latest versions of its rows: the
    migration has their projections replay the log, which keeps every older version."""
    build_history(strata, seed=9, steps=40)
    engine = strata.store.engine
    _downgrade(engine, "0007")  # history and triggers gone
    with engine.connect() as conn:
        assert "jobs_history" not in _tables(conn)
    migrate.upgrade(engine)
    reference = ReplayingStrata(strata.store)
    rng = random.Random(2)
    for position in positions(strata, rng, 5):
        seed = rng.randrange(2**32)
        assert reads(strata, position, random.Random(seed)) == reads(
            reference, position, random.Random(seed)), f"as of {position}"


def _downgrade(engine: Engine, revision: str) -> None:
    config = migrate.alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def _tables(conn: Connection) -> set[str]:
    if conn.dialect.name == "sqlite":
        return set(conn.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'")))
    return set(conn.scalars(text(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")))
