"""`strata provenance` and `strata audit` on a real piece of work (tests/core/provenance/
story.py: generation → automatic selection → pick → iterate → failed job → review →
rollback → external retouch with an imported logo), on both backends."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from strata.core.decisions import curation
from strata.core.errors import InvalidInput
from strata.core.provenance.ancestry import provenance
from strata.core.provenance.audit import audit
from strata.core.provenance.report import render
from strata.core.runtime import jobs
from strata.core.service import Strata
from tests.core.provenance.story import Story, make_story
from tests.helpers import png_bytes

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "docs" /
                     "provenance.schema.json").read_text())


@pytest.fixture
def story(tiny: Strata, tmp_path: Path) -> Story:
    return make_story(tiny, tmp_path)


def test_the_whole_ancestry_with_every_step_and_decision(tiny: Strata, story: Story) -> None:
    document = json.loads(render(tiny, story.final[7:20], "json"))
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    found = provenance(tiny, story.final)
    assert document == json.loads(json.dumps(found.to_json()))
    assert found.asset == story.final
    assert found.roots == sorted([story.chosen, story.logo])
    assert {(e.input, e.output, e.role) for e in found.edges} == {
        (story.chosen, story.revised, "parent"), (story.revised, story.final, "source"),
        (story.logo, story.final, "layer")}

    first, again, logo, retouch = found.steps
    assert (first.kind, first.layer, first.operation) == ("job", "generation", "text-to-image")
    assert first.job_id == story.generation_job and first.batch == story.batch
    assert first.parameters["prompt"] == "a red fox" and first.parameters["steps"] == 2
    (output,) = first.outputs
    assert (output.digest, output.seed, output.parameters) == (story.chosen, 11, {"seed": 11})
    model_digest = tiny.ledger.read_stream(jobs.stream(story.generation_job))[0].data[
        "model"]["digest"]
    assert first.model is not None and first.model["digest"] == model_digest
    assert first.model["name"] == "tiny" and first.device == "cpu"
    assert first.versions is not None and {"torch", "diffusers", "python"} <= set(first.versions)
    assert first.executor == {"name": "generation", "version": "1"}
    assert first.facts["scheduler"]["class_name"] == "DDIMScheduler"
    assert first.requested_by and first.requested_at and first.started_at
    assert [(a.attempt, a.outcome) for a in first.attempts] == [(1, "completed")]
    assert not first.made_outside_strata

    assert again.iterates == story.generation_job and again.parameters["steps"] == 3
    assert again.changes is not None and again.changes["steps"] == {"from": 2, "to": 3}
    assert [(i.digest, i.role) for i in again.outputs[0].inputs] == [(story.chosen, "parent")]
    assert (logo.kind, logo.made_outside_strata, logo.facts["source"]) == (
        "import", True, "logo.png")
    assert (retouch.kind, retouch.operation, retouch.made_outside_strata) == (
        "external", "retouch", True)
    assert {(i.digest, i.role) for i in retouch.outputs[0].inputs} == {
        (story.revised, "source"), (story.logo, "layer")}
    assert [a.step for a in found.assets] == [first.id, again.id, logo.id, retouch.id]

    assert [d.type for d in found.decisions] == [
        "branch.advanced", "selection.completed", "selection.picked", "selection.rated",
        "branch.advanced", "review.recorded", "branch.rolled_back", "review.recorded",
        "final.marked"]
    selection = found.decisions[1]
    assert selection.details["job_id"] == story.selection_job
    assert selection.details["chosen"] == [story.chosen]
    candidates = selection.details["candidates"]
    assert {c["digest"] for c in candidates} == set(story.batch)
    losers = [c for c in candidates if not c["kept"]]
    assert len(losers) == 2 and not any(c["in_ancestry"] for c in losers)
    assert [c["score"] for c in candidates] == sorted((c["score"] for c in candidates),
                                                      reverse=True)
    assert found.decisions[3].details["rating"] == 4
    rollback = found.decisions[6]
    assert (rollback.details["previous_head"], rollback.details["head"]) == (
        story.revised, story.chosen)
    assert rollback.note == "too busy" and rollback.actor


def test_the_json_text_is_to_json_written_with_sorted_keys(tiny: Strata, story: Story) -> None:
    """`Provenance.dumps` (orjson straight from the dataclasses) writes exactly what the
    standard encoder makes of `to_json()`, and refuses a value JSON cannot hold."""
    found = provenance(tiny, story.final)
    assert found.dumps().decode() == json.dumps(found.to_json(), sort_keys=True,
                                                separators=(",", ":"), ensure_ascii=False)
    odd = dataclasses.replace(found, steps=[dataclasses.replace(found.steps[0],
                                                                facts={"odd": {1, 2}})])
    with pytest.raises(TypeError):
        odd.dumps()


def test_as_of_and_the_faces_for_people(tiny: Strata, story: Story) -> None:
    revised_at = next(s.position for s in provenance(tiny, story.revised).steps
                      if story.revised in s.batch)
    earlier = provenance(tiny, story.revised, as_of=revised_at)
    assert earlier.log_position == revised_at
    assert [d.type for d in earlier.decisions] == [
        "branch.advanced", "selection.completed", "selection.picked", "selection.rated"]
    with pytest.raises(InvalidInput):
        render(tiny, story.final, "yaml")

    tree = render(tiny, story.final, "tree")
    assert tree.splitlines()[0].startswith(story.final[7:19])
    assert "imported from logo.png (made outside Strata)" in tree
    assert f"parent: {story.chosen[7:19]}" in tree and "seed 11" in tree
    assert "branch.rolled_back" in tree

    report = render(tiny, story.final, "markdown")
    assert report.startswith(f"# Provenance of `{story.final}`")
    assert "**Made outside Strata**" in report and "Iterates job" in report
    assert report.count("| no | no |") == 2  # the two candidates that lost
    assert story.chosen in report and "tiny, weights `sha256:" in report


def test_audit_names_every_event_that_touched_the_ancestry(tiny: Strata, story: Story) -> None:
    found = audit(tiny, story.final)
    positions = [e.position for e in found.events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    kinds = [(e.stream, e.type) for e in found.events]
    failed = jobs.stream(story.failed_job)
    assert [t for s, t in kinds if s == failed] == [
        "selection.requested", "job.started", "job.failed"]
    for job in (story.generation_job, story.selection_job):
        assert [t for s, t in kinds if s == jobs.stream(job)][1:] == [
            "job.started", f"{'generation' if job == story.generation_job else 'selection'}"
                           ".completed"]
    assert {"asset.imported", "asset.derived", "selection.picked", "review.recorded",
            "branch.rolled_back", "final.marked"} <= {t for _, t in kinds}
    assert all(e.actor and e.time for e in found.events)
    # The text file of the failed selection is not in the ancestry: its import is not here.
    assert not any(e.type == "asset.imported" and story.logo not in e.assets
                   for e in found.events)
    assert set(found.ancestry) == {story.final, story.revised, story.chosen, story.logo}
    earlier = audit(tiny, story.final, as_of=found.events[-1].position - 1)
    assert [e.type for e in earlier.events][-1] == "review.recorded"


def test_steps_made_outside_strata_without_a_model(strata: Strata, tmp_path: Path) -> None:
    """Imports and external derivations alone: a diamond, and decisions after the fact."""
    paths = []
    for seed in (1, 2, 3, 4):
        paths.append(tmp_path / f"{seed}.png")
        paths[-1].write_bytes(png_bytes(seed))
    (root,) = strata.add_files([paths[0]])
    digest = root.data["asset"]["digest"]
    (left,) = strata.add_files([paths[1]], parents=[(digest, "source")], operation="crop")
    (right,) = strata.add_files([paths[2]], parents=[(digest, "mask")], operation="paint")
    left_digest = left.data["output"]["asset"]["digest"]
    right_digest = right.data["output"]["asset"]["digest"]
    (top,) = strata.add_files([paths[3]], operation="stack",
                              parents=[(left_digest, "layer"), (right_digest, "layer")])
    top_digest = top.data["output"]["asset"]["digest"]
    curation.reject(strata, left_digest, note="too tight")

    found = provenance(strata, top_digest)
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads(json.dumps(found.to_json())))
    assert found.roots == [digest]
    assert [s.kind for s in found.steps] == ["import", "external", "external", "external"]
    assert all(s.made_outside_strata and s.job_id is None for s in found.steps)
    assert [s.operation for s in found.steps] == ["import", "crop", "paint", "stack"]
    assert len(found.assets) == 4  # the diamond's root once
    (decision,) = found.decisions
    assert (decision.type, decision.assets, decision.note) == (
        "selection.rejected", [left_digest], "too tight")
    assert render(strata, top_digest, "tree").count("(shown above)") == 1
    assert provenance(strata, top_digest, as_of=top.position).decisions == []
