"""How provenance finds the automatic selections and branch moves of an ancestry: through
the selection_scores and branch_moves projection tables rather than by reading every such
event in the log, with the same answer, on a store migrated from before those tables too.
"""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command

from strata.core.decisions import branches
from strata.core.layers.selection import Scored, SelectionCompleted, SelectionRequested
from strata.core.ledger.event_types import BranchAdvanced
from strata.core.provenance.ancestry import Provenance, provenance
from strata.core.runtime import jobs
from strata.core.service import Strata
from strata.core.storage import migrate
from strata.core.store import Store
from tests.helpers import png_bytes


def add(strata: Strata, folder: Path, seed: int,
        parents: list[tuple[str, str]] | None = None) -> str:
    path = folder / f"{seed}.png"
    path.write_bytes(png_bytes(seed))
    (event,) = strata.add_files([path], parents=parents or [], operation="crop")
    asset = event.data["output"]["asset"] if parents else event.data["asset"]
    return str(asset["digest"])


def select(strata: Strata, candidates: list[str], actor: str) -> str:
    """A completed automatic selection over `candidates`, as its job records it."""
    request = SelectionRequested(job_id=jobs.new_job_id(), candidates=candidates)
    strata.record(jobs.stream(request.job_id), [request], meta={"actor": actor})
    scored = {d: Scored(sharpness=1.0, exposure=0.5, contrast=0.5, score=1.0 - n / 10,
                        cluster=d, rank=1 if n == 0 else None)
              for n, d in enumerate(candidates)}
    strata.record(jobs.stream(request.job_id), [SelectionCompleted(
        job_id=request.job_id, operation="auto-select", outputs=[], scored=scored,
        clusters=[[d] for d in candidates], chosen=candidates[:1], dedupe_distance=6,
        top=1)])
    return request.job_id


def story(strata: Strata, folder: Path) -> tuple[str, str, str]:
    """A crop of `root`; a selection that scored the root and one that did not; branch
    moves to and from the ancestry, one of them appended outside its branch's stream."""
    root, other, unrelated = (add(strata, folder, seed) for seed in (1, 2, 3))
    crop = add(strata, folder, 4, parents=[(root, "source")])
    kept = select(strata, [root, other], "ana")
    select(strata, [other, unrelated], "bo")
    branches.create(strata, "look", root)
    branches.create(strata, "elsewhere", unrelated)
    branches.advance(strata, "look", crop)
    strata.record("outside", [BranchAdvanced(name="look", head=crop, previous_head=root)])
    branches.create(strata, "away", crop)
    branches.advance(strata, "away", unrelated)  # the crop only as the previous head
    return crop, root, kept


def decisions(found: Provenance) -> list[tuple[str, list[str], str | None]]:
    return [(d.type, d.assets, d.details.get("job_id") or d.details.get("name"))
            for d in found.decisions]


def test_only_the_selections_and_moves_that_involve_the_ancestry(strata: Strata,
                                                                 tmp_path: Path) -> None:
    crop, root, kept = story(strata, tmp_path)
    found = provenance(strata, crop)
    assert decisions(found) == [
        ("selection.completed", [root], kept),
        ("branch.created", [root], "look"),
        ("branch.advanced", [crop, root], "look"),
        ("branch.advanced", [crop, root], "look"),  # the one on the "outside" stream
        ("branch.created", [crop], "away"),
        ("branch.advanced", [crop], "away"),
    ]
    (selection,) = (d for d in found.decisions if d.type == "selection.completed")
    assert selection.actor == "ana"  # who asked for it, read from its job's request
    assert [c["in_ancestry"] for c in selection.details["candidates"]] == [True, False]
    # As the log stood before the selections: neither they nor the moves were there yet.
    crop_made = found.step(found.assets[-1].step).position
    assert provenance(strata, crop, as_of=crop_made).decisions == []


def test_a_store_from_before_the_selection_scores_table_finds_its_selections(
        store: Store, tmp_path: Path) -> None:
    strata = Strata(store)
    crop, _, kept = story(strata, tmp_path)
    before = provenance(strata, crop).to_json()
    assert kept in json.dumps(before)
    config = migrate.alembic_config()
    with store.engine.begin() as conn:  # the schema as the previous Strata left it
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    store.close()

    upgraded = Store.open(store.settings, create=True)  # `strata init`: migrate to head
    try:
        assert provenance(Strata(upgraded), crop).to_json() == before
    finally:
        upgraded.close()
