"""Generation, selection and iteration end to end on the tiny model, on the CPU."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from strata.core.decisions.iteration import iterate, parse_changes
from strata.core.errors import InvalidInput, ModelError
from strata.core.layers import build_executors
from strata.core.layers.generation import build_request
from strata.core.layers.selection import SelectionRequested
from strata.core.projections import views
from strata.core.provenance.recipe import diff, recipe
from strata.core.provenance.verify import verify
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata


def run_generation(strata: Strata, worker: Worker, **options: object) -> dict:
    request = build_request(strata, str(options.pop("prompt", "a red fox")), model="tiny",
                            **options)  # type: ignore[arg-type]
    jobs.request(strata, request)
    return worker.wait_for(request.job_id)


@pytest.fixture
def worker(tiny: Strata) -> Worker:
    return Worker(tiny, build_executors())


def test_generation_records_every_parameter_and_its_provenance(
    tiny: Strata, worker: Worker
) -> None:
    steps_seen: list[tuple[int, int]] = []
    worker.on_progress = lambda _job, done, total: steps_seen.append((done, total))
    row = run_generation(tiny, worker, n=3, seed=11, steps=3, cfg=5.0, negative_prompt="blur",
                         scheduler="euler")
    assert row["status"] == "completed" and len(row["outputs"]) == 3
    assert steps_seen[-1] == (3, 3)  # one progress report per denoising step
    requested, started, completed = tiny.ledger.read_stream(jobs.stream(row["job_id"]))
    assert (requested.type, started.type, completed.type) == (
        "generation.requested", "job.started", "generation.completed")
    assert requested.data["seeds"] == [11, 12, 13]
    data = completed.data
    assert [o["seed"] for o in data["outputs"]] == [11, 12, 13]
    assert data["model"]["digest"].startswith("sha256:")
    assert data["model"]["digest"] == requested.data["model"]["digest"]
    assert data["scheduler"]["class_name"] == "EulerDiscreteScheduler"
    assert data["scheduler"]["config"]["num_train_timesteps"] == 1000
    assert data["device"] == "cpu" and data["dtype"] == "float32"
    assert {"torch", "diffusers", "transformers", "strata", "python"} <= set(data["versions"])
    assert data["timings"]["total_s"] > 0
    assert completed.meta["executor"] == "generation/1" and "actor" in completed.meta
    # Correlation ties the job's story together; causation says what led to each event.
    assert {e.meta["correlation_id"] for e in (requested, started, completed)} == {
        row["job_id"]}
    assert started.meta["causation_id"] == requested.event_id
    assert completed.meta["causation_id"] == started.event_id

    digest = row["outputs"][0]
    image = Image.open(io.BytesIO(tiny.blobs.read_bytes(digest)))
    assert image.size == (64, 64)
    embedded = json.loads(image.text["strata"])  # type: ignore[attr-defined]
    assert embedded["seed"] == 11 and embedded["prompt"] == "a red fox"
    with tiny.view() as conn:
        asset = views.asset_row(conn, digest)
    assert asset is not None
    assert (asset["layer"], asset["job_id"], asset["width"]) == ("generation", row["job_id"], 64)
    assert verify(tiny.ledger, tiny.blobs).ok


def test_the_same_request_twice_gives_the_same_bytes(tiny: Strata, worker: Worker) -> None:
    first = run_generation(tiny, worker, n=2, seed=5, steps=3)
    second = run_generation(tiny, worker, n=2, seed=5, steps=3)
    other_seed = run_generation(tiny, worker, n=2, seed=7, steps=3)
    assert first["outputs"] == second["outputs"]
    assert len(set(first["outputs"])) == 2
    assert not set(first["outputs"]) & set(other_seed["outputs"])


def test_bad_arguments_are_refused_before_anything_is_appended(tiny: Strata) -> None:
    head = tiny.ledger.head_position()
    bad_options: list[dict] = [
        {"n": 0}, {"steps": 0}, {"width": 63}, {"cfg": -1.0}, {"scheduler": "nope"},
        {"seed": -5},
    ]
    for options in bad_options:
        with pytest.raises(InvalidInput):
            build_request(tiny, "fox", model="tiny", **options)
    with pytest.raises(InvalidInput):
        build_request(tiny, "", model="tiny")
    with pytest.raises(ModelError, match="no model named 'missing'"):
        build_request(tiny, "fox", model="missing")
    assert tiny.ledger.head_position() == head


def test_auto_selection_records_scores_clusters_and_choices(
    tiny: Strata, worker: Worker
) -> None:
    batch = run_generation(tiny, worker, n=4, seed=1, steps=2)["outputs"]
    duplicate = batch[0]
    request = SelectionRequested(job_id=jobs.new_job_id(), candidates=[*batch, duplicate][:4],
                                 top=2, dedupe_distance=6)
    jobs.request(tiny, request)
    assert worker.wait_for(request.job_id)["status"] == "completed"
    data = tiny.ledger.read_stream(jobs.stream(request.job_id))[-1].data
    assert len(data["chosen"]) == 2
    assert set(data["scored"]) == set(batch[:4])
    ranks = sorted(f["rank"] for f in data["scored"].values() if f["rank"])
    assert ranks == [1, 2]
    scores = [data["scored"][d]["score"] for d in data["chosen"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= f["score"] <= 1 for f in data["scored"].values())
    with tiny.view() as conn:
        from sqlalchemy import text

        rows = conn.execute(text("SELECT digest, quality, rank FROM selections")).all()
    assert {r.digest for r in rows if r.rank} == set(data["chosen"])


def test_iteration_reissues_with_the_diff_and_links_the_parent(
    tiny: Strata, worker: Worker
) -> None:
    batch = run_generation(tiny, worker, n=3, seed=20, steps=2)
    chosen = batch["outputs"][1]  # seed 21
    event = iterate(tiny, chosen[:14], ["steps=3", "prompt+=, golden hour"])
    assert event.data["iterates"] == batch["job_id"]
    assert event.data["changes"]["steps"] == {"from": 2, "to": 3}
    assert event.data["changes"]["prompt"]["to"] == "a red fox, golden hour"
    assert event.data["seeds"] == [21]  # --seed keep: the chosen output's own seed
    assert event.data["parent"] == chosen
    assert event.meta["causation_id"] == tiny.ledger.read_stream(
        jobs.stream(batch["job_id"]))[-1].event_id  # the completion that made `chosen`
    row = worker.wait_for(event.data["job_id"])
    new = row["outputs"][0]
    with tiny.view() as conn:
        from strata.core.projections.lineage import walk

        (edge,) = walk(conn, new, "up", depth=1)
    assert (edge.input_digest, edge.role) == (chosen, "parent")

    differences = {key: (a, b) for key, a, b in diff(tiny, chosen, new)}
    assert differences["steps"] == (2, 3)
    assert differences["prompt"] == ("a red fox", "a red fox, golden hour")
    assert "seed" not in differences
    assert recipe(tiny, new)["model"]["digest"] == recipe(tiny, chosen)["model"]["digest"]

    fresh = iterate(tiny, chosen, ["n=2"], seed="new")
    assert len(fresh.data["seeds"]) == 2 and fresh.data["seeds"] != [21, 22]


def test_iteration_refuses_bad_changes_without_appending(tiny: Strata, worker: Worker) -> None:
    asset = run_generation(tiny, worker, n=1, seed=3, steps=2)["outputs"][0]
    head = tiny.ledger.head_position()
    for bad in (["steps=0"], ["colour=red"], ["job_id=x"], ["steps+=3"], ["size=big"],
                ["novalue"]):
        with pytest.raises(InvalidInput):
            iterate(tiny, asset, bad)
    assert tiny.ledger.head_position() == head


def test_parse_changes() -> None:
    changes = parse_changes(["steps=40", "prompt+=, dusk", "size=96x64", "negative=blur",
                             "cfg=6.5"])
    assert [(c.key, c.value, c.append) for c in changes] == [
        ("steps", 40, False), ("prompt", ", dusk", True), ("width", 96, False),
        ("height", 64, False), ("negative_prompt", "blur", False), ("cfg", 6.5, False),
    ]
