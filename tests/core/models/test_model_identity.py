"""A job records the weights that ran: pipelines are cached by the digest of their weights,
and weights that are not the registered ones fail the job with ModelDrift (issue 14.2)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from strata.core.layers import build_executors
from strata.core.layers.generation import GenerationExecutor, build_request
from strata.core.models import pipelines as pipelines_module
from strata.core.models import registry as models
from strata.core.models.digest import WEIGHT_SUFFIXES, weights_digest
from strata.core.models.pipelines import ModelDrift, PipelineCache
from strata.core.models.tiny import write_tiny_pipeline
from strata.core.runtime import jobs
from strata.core.runtime.worker import Worker
from strata.core.service import Strata


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the claim is about the executor and its cache, not the database


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline with other seeded weights: same shapes, other digest."""
    return write_tiny_pipeline(tmp_path_factory.mktemp("other") / "tiny", seed=1)


@pytest.fixture
def model_copy(tiny_model_folder: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model, so a test may replace its files."""
    return Path(shutil.copytree(tiny_model_folder, tmp_path / "model"))


def replace_weights(folder: Path, source: Path) -> None:
    """Swap every weight file for the one at the same place under `source`, as a copy tool
    that writes then renames would (new inode, new mtime)."""
    for file in folder.rglob("*"):
        if file.suffix in WEIGHT_SUFFIXES:
            staged = file.with_name(file.name + ".new")
            shutil.copyfile(source / file.relative_to(folder), staged)
            os.replace(staged, file)


def generate(strata: Strata, worker: Worker) -> dict:
    request = build_request(strata, "a red fox", model="m", n=1, seed=3, steps=2)
    jobs.request(strata, request)
    return worker.wait_for(request.job_id)


def completed_model(strata: Strata, job_id: str) -> dict:
    return strata.ledger.read_stream(jobs.stream(job_id))[-1].data["model"]


def test_weights_replaced_under_a_running_worker_fail_the_job_until_re_registered(
    strata: Strata, model_copy: Path, other_weights: Path,
) -> None:
    registered = models.register(strata, "m", model_copy).data["digest"]
    executors = build_executors(("generation",))
    worker = Worker(strata, executors)
    executor = executors["generation"]
    assert isinstance(executor, GenerationExecutor)

    first = generate(strata, worker)
    assert first["status"] == "completed"
    assert completed_model(strata, first["job_id"])["digest"] == registered
    old_pipeline = executor.pipelines.get(model_copy, "cpu", "float32")

    replace_weights(model_copy, other_weights)
    drifted = generate(strata, worker)
    assert (drifted["status"], drifted["error_class"], drifted["outputs"]) == (
        "failed", "ModelDrift", [])
    assert drifted["attempts"] == 1  # a model error is not retried
    new_digest = weights_digest(other_weights)
    for part in (registered.removeprefix("sha256:")[:12], new_digest.removeprefix("sha256:")[:12],
                 "'m'", str(model_copy), f"strata model add m {model_copy}"):
        assert part in drifted["error_message"]
    types = [e.type for e in strata.ledger.read_stream(jobs.stream(drifted["job_id"]))]
    assert types == ["generation.requested", "job.started", "job.failed"]

    assert models.register(strata, "m", model_copy).data["digest"] == new_digest
    third = generate(strata, worker)
    assert third["status"] == "completed"
    assert completed_model(strata, third["job_id"])["digest"] == new_digest
    # The same request on the new weights: other bytes, so the new weights ran, not the
    # pipeline the cache had loaded from the same path before.
    assert third["outputs"] != first["outputs"]
    assert executor.pipelines.get(model_copy, "cpu", "float32") is not old_pipeline


def test_weights_replaced_while_loading_are_refused(
    model_copy: Path, tiny_model_folder: Path, other_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered = weights_digest(model_copy)
    load: Callable[..., object] = pipelines_module._load_text2img
    loads: list[Path] = []

    def load_while_a_copy_lands(path: Path, device: str, dtype: str) -> object:
        loaded = load(path, device, dtype)
        if not loads:
            replace_weights(model_copy, other_weights)  # another process's copy lands
        loads.append(path)
        return loaded

    monkeypatch.setattr(pipelines_module, "_load_text2img", load_while_a_copy_lands)
    cache = PipelineCache()
    with pytest.raises(ModelDrift, match="changed while they were being loaded") as raised:
        cache.get(model_copy, "cpu", "float32", digest=registered, name="m")
    assert (raised.value.registered, raised.value.found) == (
        registered, weights_digest(other_weights))
    with pytest.raises(ModelDrift, match="are not the registered ones"):
        cache.get(model_copy, "cpu", "float32", digest=registered, name="m")

    # What was loaded during the swap is of unknown weights, so it was not kept under the
    # registered digest: with the files restored, the registered weights load again.
    replace_weights(model_copy, tiny_model_folder)
    cache.get(model_copy, "cpu", "float32", digest=registered, name="m")
    assert len(loads) == 2


def test_the_cache_is_keyed_by_the_weights_not_the_path(
    model_copy: Path, tiny_model_folder: Path, other_weights: Path,
) -> None:
    cache = PipelineCache()
    original = cache.get(tiny_model_folder, "cpu", "float32")
    # The same weights under another path: one pipeline in memory.
    assert cache.get(model_copy, "cpu", "float32") is original

    replace_weights(model_copy, other_weights)
    replaced = cache.get(model_copy, "cpu", "float32")
    assert replaced is not original
    assert cache.get(model_copy, "cpu", "float32", kind="img2img").unet is replaced.unet
    # The original weights are still at the first path, so they stay loaded.
    assert cache.get(tiny_model_folder, "cpu", "float32") is original


def test_replaced_weights_leave_the_cache(model_copy: Path, other_weights: Path,
                                          tmp_path: Path) -> None:
    backup = Path(shutil.copytree(model_copy, tmp_path / "backup"))
    cache = PipelineCache()
    first = cache.get(model_copy, "cpu", "float32")
    replace_weights(model_copy, other_weights)
    cache.get(model_copy, "cpu", "float32")
    # No other path held the first weights, so a long-running worker dropped them; putting
    # the files back loads them again rather than finding a stale copy.
    replace_weights(model_copy, backup)
    assert cache.get(model_copy, "cpu", "float32") is not first
