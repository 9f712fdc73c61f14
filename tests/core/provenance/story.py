"""One real piece of work, made through the real layers on the tiny model (CPU), whose
final output has every kind of step and decision in its ancestry:

    logo.png (imported) ─────────────────────────── layer ─┐
    generation (3 seeds, branch "look") → auto-selection keeps one ("chosen"),
    a person picks and rates it → iterate (steps=3) → "revised" (parent: chosen)
    → a selection job over revised and a text file fails → review "changes"
    → branch rolled back from revised to chosen ("too busy")
    → retouched outside Strata from revised (source) and the logo (layer): "final",
    reviewed "approve" and marked final.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from strata.core.decisions import branches, curation
from strata.core.decisions.iteration import iterate
from strata.core.layers import build_executors
from strata.core.layers.generation import build_request
from strata.core.layers.selection import SelectionRequested
from strata.core.layers.selection import result as selection_result
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata
from tests.helpers import png_bytes


@dataclass(frozen=True)
class Story:
    generation_job: str
    batch: list[str]
    selection_job: str
    chosen: str
    iteration_job: str
    revised: str
    failed_job: str
    logo: str
    final: str


def make_story(strata: Strata, folder: Path) -> Story:
    worker = Worker(strata, build_executors())
    branches.create(strata, "look")
    generation = build_request(strata, "a red fox", model="tiny", n=3, seed=11, steps=2,
                               branch="look")
    jobs.request(strata, generation)
    batch = worker.wait_for(generation.job_id)["outputs"]

    selection = SelectionRequested(job_id=jobs.new_job_id(), candidates=batch, top=1,
                                   source_job=generation.job_id)
    jobs.request(strata, selection)
    assert worker.wait_for(selection.job_id)["status"] == "completed"
    (chosen_digest,) = selection_result(strata, selection.job_id).chosen
    curation.pick(strata, chosen_digest, note="the best fox")
    curation.rate(strata, chosen_digest, 4)

    again = iterate(strata, chosen_digest, ["steps=3"])
    (revised,) = worker.wait_for(again.data["job_id"])["outputs"]

    text = folder / "notes.txt"
    text.write_text("not an image")
    (notes,) = strata.add_files([text])
    doomed = SelectionRequested(job_id=jobs.new_job_id(), max_attempts=1,
                                candidates=[revised, notes.data["asset"]["digest"]])
    jobs.request(strata, doomed)
    assert worker.wait_for(doomed.job_id)["status"] == "failed"

    curation.review(strata, revised, "changes", note="too busy")
    branches.rollback(strata, "look", chosen_digest, reason="too busy")

    logo_path, final_path = folder / "logo.png", folder / "final.png"
    logo_path.write_bytes(png_bytes(501, (64, 64)))
    final_path.write_bytes(png_bytes(502, (64, 64)))
    (logo_event,) = strata.add_files([logo_path])
    logo = logo_event.data["asset"]["digest"]
    (final_event,) = strata.add_files([final_path], operation="retouch",
                                      parents=[(revised, "source"), (logo, "layer")])
    final = final_event.data["output"]["asset"]["digest"]
    curation.review(strata, final, "approve", note="ship it")
    curation.mark_final(strata, final)
    return Story(generation.job_id, batch, selection.job_id, chosen_digest,
                 again.data["job_id"], revised, doomed.job_id, logo, final)
