"""W3C PROV exports, written by the `prov` package and read back by its own
deserializers (PROV-JSON, PROV-N and PROV-XML) into an equal document, with the mapping
checked record by record."""

from __future__ import annotations

from pathlib import Path

import pytest
from prov.model import (
    PROV,
    ProvActivity,
    ProvAgent,
    ProvAssociation,
    ProvDelegation,
    ProvDerivation,
    ProvDocument,
    ProvEntity,
    ProvGeneration,
    ProvInvalidation,
    ProvMembership,
    ProvRecord,
    ProvSpecialization,
    ProvUsage,
)

from strata.core.provenance.ancestry import provenance
from strata.core.provenance.prov import PROV_FORMATS, STRATA, asset_id, document
from strata.core.provenance.report import render
from strata.core.runtime import jobs
from strata.core.service import Strata
from tests.core.provenance.story import Story, make_story


def attribute(record: ProvRecord, name: object) -> object:
    values = record.get_attribute(name)
    assert len(values) == 1, (record, name, values)
    return next(iter(values))


def test_prov_exports_read_back_equal_and_map_the_whole_story(
    tiny: Strata, tmp_path: Path
) -> None:
    story: Story = make_story(tiny, tmp_path)
    expected = document(provenance(tiny, story.final))
    for fmt, prov_format in PROV_FORMATS.items():
        text = render(tiny, story.final, fmt)
        read_back = ProvDocument.deserialize(content=text, format=prov_format)
        assert read_back == expected, fmt
    doc = ProvDocument.deserialize(content=render(tiny, story.final, "prov-json"),
                                   format="json")
    records = doc.get_records()

    def of(kind: type) -> list:
        return [r for r in records if isinstance(r, kind)]

    job = STRATA[f"job/{story.generation_job}"]
    (activity,) = [a for a in of(ProvActivity) if a.identifier == job]
    assert activity.get_startTime() < activity.get_endTime()
    people = [a for a in of(ProvAgent) if PROV["Person"] in a.get_attribute("prov:type")]
    assert people and all(str(p.identifier).startswith("strata:person/") for p in people)
    (executor,) = [a for a in of(ProvAgent)
                   if a.identifier == STRATA["executor/generation/1"]]
    assert PROV["SoftwareAgent"] in executor.get_attribute("prov:type")
    digest = tiny.ledger.read_stream(jobs.stream(story.generation_job))[0].data["model"][
        "digest"]
    model = STRATA[f"model/{digest.replace(':', '-')}"]
    (weights,) = [e for e in of(ProvEntity) if e.identifier == model]
    assert attribute(weights, STRATA["digest"]) == digest
    assert any(a.identifier == model and PROV["SoftwareAgent"] in a.get_attribute("prov:type")
               for a in of(ProvAgent))
    (planned,) = [a for a in of(ProvAssociation)
                  if a.args[0] == job and a.args[1] == executor.identifier]
    plan = STRATA[f"recipe/{story.generation_job}"]
    assert planned.args[2] == plan
    (recipe,) = [e for e in of(ProvEntity) if e.identifier == plan]
    assert PROV["Plan"] in recipe.get_attribute("prov:type")
    assert '"prompt": "a red fox"' in str(attribute(recipe, STRATA["parameters"]))
    assert any(d.args[0] == executor.identifier and d.args[2] == job
               for d in of(ProvDelegation))

    final, revised, chosen = (asset_id(d) for d in (story.final, story.revised, story.chosen))
    (retouch,) = [a for a in of(ProvActivity) if str(a.identifier).startswith("strata:external/")]
    assert {(u.args[1], attribute(u, "prov:role")) for u in of(ProvUsage)
            if u.args[0] == retouch.identifier} == {(revised, "source"),
                                                    (asset_id(story.logo), "layer")}
    assert {(g.args[0], str(g.args[1]).split("/")[0]) for g in of(ProvGeneration)
            if g.args[0] in (final, revised, chosen)} == {
        (final, "strata:external"), (revised, "strata:job"), (chosen, "strata:job")}
    derived = {(d.args[0], d.args[1]): d for d in of(ProvDerivation)}
    assert set(derived) >= {(revised, chosen), (final, revised), (final, asset_id(story.logo))}
    assert PROV["Revision"] in derived[(revised, chosen)].get_attribute("prov:type")
    assert not derived[(final, revised)].get_attribute("prov:type")

    batch = STRATA[f"batch/{story.generation_job}"]
    assert {m.args[1] for m in of(ProvMembership) if m.args[0] == batch} == {
        asset_id(d) for d in story.batch}
    (collection,) = [e for e in of(ProvEntity) if e.identifier == batch]
    assert PROV["Collection"] in collection.get_attribute("prov:type")

    (invalidated,) = of(ProvInvalidation)
    head = invalidated.args[0]
    assert (head, revised) in {(s.args[0], s.args[1]) for s in of(ProvSpecialization)}
    rollback = [a for a in of(ProvActivity) if a.identifier == invalidated.args[1]]
    assert STRATA["branch.rolled_back"] in rollback[0].get_attribute("prov:type")
    assert all(isinstance(r, ProvEntity) or r.identifier != revised for r in records
               if r.identifier is not None)  # the asset itself is never invalidated

    decided = {attribute(a, "prov:type") for a in of(ProvActivity)
               if str(a.identifier).startswith("strata:decision/")}
    assert {STRATA["selection.picked"], STRATA["review.recorded"],
            STRATA["final.marked"]} <= decided
    deciders = {a.args[0]: a.args[1] for a in of(ProvAssociation)
                if attribute(a, "prov:role") == "decider"}
    assert all(str(person).startswith("strata:person/") for person in deciders.values())
    selection = STRATA[f"job/{story.selection_job}"]
    scored = [u for u in of(ProvUsage) if u.args[0] == selection]
    assert {u.args[1] for u in scored} == {asset_id(d) for d in story.batch}
    assert {attribute(u, STRATA["kept"]) for u in scored} == {True, False}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_prov_n_is_parsed_by_prov_itself(strata: Strata, tmp_path: Path) -> None:
    """prov parses PROV-N (since 2.1): the export is checked as text another tool reads,
    not only as prov's own output."""
    from tests.helpers import png_bytes

    path = tmp_path / "a b.png"
    path.write_bytes(png_bytes(7))
    (event,) = strata.add_files([path])
    text = render(strata, event.data["asset"]["digest"], "prov-n")
    assert text.startswith("document") and "prefix strata <urn:strata:>" in text
    parsed = ProvDocument.deserialize(content=text, format="provn", profile="strict")
    assert any(isinstance(r, ProvActivity) and str(r.identifier).startswith("strata:import/")
               for r in parsed.get_records())
