"""A model folder may recommend its guidance scale (strata.json): requests that leave cfg
out take it, on the command line's path (build_request) and over HTTP alike, and record
the value used; an explicit cfg wins; a bad file is refused with its name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from strata.api.http.app import create_app
from strata.core.errors import InvalidInput
from strata.core.layers import editing
from strata.core.layers.generation import build_request
from strata.core.models import registry as models
from strata.core.models.diffusion import DEFAULT_CFG
from strata.core.service import Strata
from tests.helpers import png_bytes


@pytest.fixture
def advised(strata: Strata, tiny_model_folder: Path, tmp_path: Path) -> Strata:
    """"tiny" as it is, and "advised": the same weights in a folder recommending cfg 3 for
    generation and 4 for inpainting."""
    models.register(strata, "tiny", tiny_model_folder)
    folder = Path(shutil.copytree(tiny_model_folder, tmp_path / "advised"))
    (folder / models.SETTINGS_FILE).write_text(json.dumps({"cfg": {"generation": 3,
                                                                    "inpaint": 4}}),
                                               encoding="utf-8")
    models.register(strata, "advised", folder)
    return strata


def test_the_folders_cfg_is_read_and_checked(tmp_path: Path) -> None:
    def recommended(operation: str = "generation") -> float | None:
        return models.recommended_cfg("m", str(tmp_path), operation)

    assert recommended() is None  # no file
    settings = tmp_path / models.SETTINGS_FILE
    settings.write_text('{"cfg": 2.5}', encoding="utf-8")  # every operation
    assert recommended() == recommended("inpaint") == 2.5
    settings.write_text('{"cfg": {"generation": 2}}', encoding="utf-8")  # those named
    assert (recommended(), recommended("inpaint")) == (2.0, None)
    settings.write_text("{}", encoding="utf-8")
    assert recommended() is None
    for bad in ('{"cfg": "high"}', '{"cfg": 51}', '{"cfg": -1}', '{"cfg": true}', "[1]",
                "{not json"):
        settings.write_text(bad, encoding="utf-8")
        with pytest.raises(InvalidInput, match=r"strata\.json"):
            recommended()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_generation_without_cfg_takes_the_models_and_an_explicit_one_wins(
        advised: Strata) -> None:
    assert build_request(advised, "a boat", model="advised", seed=1).cfg == 3.0
    assert build_request(advised, "a boat", model="advised", seed=1, cfg=9).cfg == 9.0
    assert build_request(advised, "a boat", model="tiny", seed=1).cfg == DEFAULT_CFG


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_edit_without_cfg_takes_the_models(advised: Strata, tmp_path: Path) -> None:
    (tmp_path / "source.png").write_bytes(png_bytes(1))
    source = advised.add_file(tmp_path / "source.png").data["asset"]["digest"]

    def inpaint(model: str, **options: float) -> float | None:
        return editing.build_request(advised, "inpaint", source, box=(0, 0, 16, 16),
                                     model=model, prompt="a boat", seed=1, **options).cfg

    assert inpaint("advised") == 4.0
    assert inpaint("advised", cfg=6) == 6.0
    assert inpaint("tiny") == DEFAULT_CFG


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_generation_over_http_without_cfg_takes_the_models(advised: Strata) -> None:
    with TestClient(create_app(advised.store.settings)) as client:
        for body, cfg in (({"model": "advised"}, 3.0), ({"model": "advised", "cfg": 7.5}, 7.5),
                          ({"model": "tiny"}, DEFAULT_CFG)):
            answer = client.post("/jobs/generation",
                                 json={"prompt": "a boat", "seeds": [1], **body})
            assert answer.status_code == 202, answer.text
            job = advised.ledger.read_stream(f"job:{answer.json()['job_id']}")[0]
            assert job.data["cfg"] == cfg
        # An edit takes what the folder says for its own operation: nothing for img2img.
        stored = client.post("/assets", content=png_bytes(1),
                             headers={"Content-Type": "image/png"}).json()["digest"]
        answer = client.post("/jobs/editing", json={
            "operation": "img2img", "source": stored, "prompt": "a boat", "seed": 1,
            "model": "advised"})
        assert answer.status_code == 202, answer.text
        job = advised.ledger.read_stream(f"job:{answer.json()['job_id']}")[0]
        assert job.data["cfg"] == DEFAULT_CFG
