"""A generation request's own rules, without a model: the bounds of its sizes and seeds,
and the seeds an iteration asks for (`reissued`): `seed=N`, `n=K`, the output's own seed or
fresh ones. End-to-end runs (test_generation.py) reach few of these edges."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from strata.core.errors import InvalidInput
from strata.core.layers import generation
from strata.core.layers.generation import MAX_SEED, GenerationRequested, build_request
from strata.core.ledger.event_types import AssetInfo, ProducedAsset
from strata.core.models import registry as models
from strata.core.models.diffusion import ModelRef
from strata.core.service import Strata

MODEL = ModelRef(name="tiny", path="/models/tiny", digest="sha256:" + "0" * 64)


def request(**fields: Any) -> GenerationRequested:
    return GenerationRequested(**{"job_id": "j", "prompt": "a fox", "seeds": [7, 8, 9],
                                  "model": MODEL, **fields})


def output(seed: int | None) -> ProducedAsset:
    asset = AssetInfo(digest="sha256:" + "1" * 64, media_type="image/png", size=1)
    return ProducedAsset(asset=asset, seed=seed)


@pytest.mark.parametrize("side", [8, 64, 8192])
def test_sizes_that_are_multiples_of_eight_within_bounds_are_accepted(side: int) -> None:
    assert (request(width=side, height=side).width, request(height=side).height) == (side, side)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("width", 12, "12 is not a multiple of 8"), ("height", 68, "68 is not a multiple of 8"),
    ("width", 0, "greater than or equal to 8"), ("height", 8200, "less than or equal to 8192"),
])
def test_sizes_off_the_grid_or_out_of_bounds_are_refused(
    field: str, value: int, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        request(**{field: value})


def test_an_unknown_scheduler_is_refused_naming_the_known_ones() -> None:
    assert request(scheduler="euler").scheduler == "euler"
    with pytest.raises(ValidationError, match=r"unknown scheduler 'nope'; use one of ddim, euler"):
        request(scheduler="nope")


def test_seeds_are_accepted_from_0_to_max_seed_and_refused_beyond() -> None:
    assert MAX_SEED == 2**63 - 1
    assert request(seeds=[0, MAX_SEED]).seeds == [0, MAX_SEED]
    for bad in (-1, MAX_SEED + 1):
        with pytest.raises(ValidationError, match=f"seeds must be between 0 and {MAX_SEED}"):
            request(seeds=[5, bad])


def test_the_seeds_of_one_request_must_differ() -> None:
    with pytest.raises(ValidationError, match="the seeds of one request must differ"):
        request(seeds=[3, 4, 3])


def test_one_outputs_parameters_leave_out_the_batchs_seeds() -> None:
    parameters = request().parameters(output(8))
    assert "seeds" not in parameters
    assert (parameters["prompt"], parameters["steps"]) == ("a fox", 20)


def reissue(settings: dict[str, Any], made: ProducedAsset | None = output(8),
            fresh: bool = False) -> list[int]:
    data = request().model_dump(mode="json")
    reissued = request().reissued(data, settings, made, fresh_seeds=fresh)
    assert {k: v for k, v in reissued.items() if k != "seeds"} == {
        k: v for k, v in data.items() if k != "seeds"}  # nothing but the seeds changes
    return reissued["seeds"]


def test_an_iteration_keeps_the_outputs_own_seed_by_default() -> None:
    assert reissue({}) == [8]
    assert reissue({"n": 2}) == [8, 9]
    # No output seed to keep: the request's first.
    assert reissue({}, made=output(None)) == [7]
    assert reissue({}, made=None) == [7]


def test_seed_n_starts_there_with_as_many_seeds_as_the_batch() -> None:
    assert reissue({"seed": 100}) == [100, 101, 102]
    assert reissue({"seed": 100, "n": 1}) == [100]


def test_fresh_seeds_come_from_the_whole_32_bit_range(monkeypatch: pytest.MonkeyPatch) -> None:
    bounds: list[int] = []

    def highest(bound: int) -> int:
        bounds.append(bound)
        return bound - 1

    monkeypatch.setattr(generation.secrets, "randbelow", highest)
    assert reissue({}, fresh=True) == [2**32 - 1, 2**32, 2**32 + 1]
    assert bounds == [2**32]


@pytest.mark.parametrize(("settings", "message"), [
    ({"seed": True}, "seed must be a whole number, not True"),
    ({"seed": "5"}, "seed must be a whole number, not '5'"),
    ({"n": 2.0}, "n must be a whole number, not 2.0"),
    ({"n": 0}, "n must be between 1 and 256, not 0"),
    ({"n": 257}, "n must be between 1 and 256, not 257"),
])
def test_bad_iteration_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        reissue(settings)


def test_n_may_ask_for_up_to_256_seeds() -> None:
    assert reissue({"n": 256}) == list(range(8, 8 + 256))


# --- build_request: the arguments of `strata generate` -----------------------------------


@pytest.fixture
def registered(strata: Strata, tmp_path: Path) -> Strata:
    """A store with a model registered as "fake": build_request only looks it up."""
    weights = tmp_path / "fake.safetensors"
    weights.write_bytes(b"not really weights")
    models.register(strata, "fake", weights)
    return strata


def test_build_request_carries_every_argument(registered: Strata) -> None:
    built = build_request(registered, "a heron", model="fake", n=3, seed=40,
                          negative_prompt="blur", steps=9, cfg=3.5, width=96, height=72,
                          scheduler="euler", branch="look-dev", device="cpu", dtype="float32")
    assert (built.prompt, built.negative_prompt, built.seeds) == ("a heron", "blur", [40, 41, 42])
    assert (built.steps, built.cfg, built.width, built.height) == (9, 3.5, 96, 72)
    assert (built.scheduler, built.branch, built.device, built.dtype) == (
        "euler", "look-dev", "cpu", "float32")
    with registered.view() as conn:
        model = models.lookup(conn, "fake")
    assert built.model == ModelRef(name="fake", path=model.path, digest=model.digest)
    assert re.fullmatch(r"[0-9a-f]{32}", built.job_id)


def test_build_request_defaults_to_one_seed(registered: Strata) -> None:
    built = build_request(registered, "a heron", model="fake", seed=5)
    assert built.seeds == [5]
    assert (built.steps, built.cfg, built.width, built.height, built.scheduler) == (
        20, 7.5, 64, 64, "ddim")
    assert build_request(registered, "a heron", model="fake", n=256, seed=0).seeds == list(
        range(256))


def test_build_request_draws_a_32_bit_seed_when_none_is_given(
    registered: Strata, monkeypatch: pytest.MonkeyPatch
) -> None:
    bounds: list[int] = []

    def highest(bound: int) -> int:
        bounds.append(bound)
        return bound - 1

    monkeypatch.setattr(generation.secrets, "randbelow", highest)
    assert build_request(registered, "a heron", model="fake", n=2).seeds == [2**32 - 1, 2**32]
    assert bounds == [2**32]


@pytest.mark.parametrize(("options", "message"), [
    ({"n": 0}, "--n must be between 1 and 256, not 0"),
    ({"n": 257}, "--n must be between 1 and 256, not 257"),
    ({"steps": 0}, "invalid generation request: "),
])
def test_build_request_refuses_bad_arguments_in_words(
    registered: Strata, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=f"^{message}"):
        build_request(registered, "a heron", model="fake", **options)
