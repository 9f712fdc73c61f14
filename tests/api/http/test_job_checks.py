"""The job endpoints refuse what each layer's command refuses (its `Layer.check`): assets
that are missing or of the wrong media, sizes that do not fit, masks, motion adapters and
models of the wrong kind answer 404 or 422, and nothing is appended."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from strata.core.service import Strata
from tests.core.storage.samples import wav_bytes
from tests.helpers import png_bytes

MISSING = "sha256:" + "0" * 64


def _upload(client: TestClient, data: bytes, media_type: str) -> str:
    stored = client.post("/assets", content=data, headers={"Content-Type": media_type})
    assert stored.status_code == 201, stored.text
    digest: str = stored.json()["digest"]
    return digest


# layer → (body, status, words of the refusal); the body names assets by role, below.
REFUSED: dict[str, tuple[dict[str, Any], int, str]] = {
    "generation": ({"prompt": "x", "seeds": [1], "model": "tiny",
                    "video": {"frames": 8, "fps": 8, "motion_adapter": "tiny"}},
                   422, "is not a motion adapter"),
    "editing": ({"operation": "inpaint", "source": "{image}", "mask": "{small}",
                 "prompt": "a boat", "seed": 1, "model": "tiny"},
                422, "the mask is 16x16 but the source is 32x32"),
    "compositing": ({"layers": [{"asset": "{image}", "mask": "{small}"}], "width": 32,
                     "height": 32}, 422, "a mask must have its layer's size"),
    "enhancement": ({"source": "{audio}", "operations": [{"op": "auto-contrast"}]},
                    422, "not an image"),
    "motion": ({"operation": "kenburns", "sources": ["{image}"], "width": 64, "height": 64,
                "duration": 1.0, "fps": 4}, 422, "the sources are 32x32"),
    "selection": ({"candidates": ["{image}", MISSING]}, 404, "no asset"),
    "sound": ({"operation": "add", "video": "{image}", "tracks": [{"audio": "{audio}"}]},
              422, "not a video"),
}


def _filled(value: Any, assets: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("{"):
        return assets[value.strip("{}")]
    if isinstance(value, dict):
        return {k: _filled(v, assets) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, assets) for v in value]
    return value


@pytest.fixture
def assets(client: TestClient, tiny: Strata) -> dict[str, str]:
    return {"image": _upload(client, png_bytes(1), "image/png"),
            "small": _upload(client, png_bytes(2, (16, 16)), "image/png"),
            "audio": _upload(client, wav_bytes(), "audio/wav")}


@pytest.mark.parametrize("layer", sorted(REFUSED))
def test_a_request_the_command_line_refuses_is_refused_and_nothing_is_appended(
        client: TestClient, tiny: Strata, assets: dict[str, str], layer: str) -> None:
    body, status, words = REFUSED[layer]
    head = tiny.ledger.head_position()
    refused = client.post(f"/jobs/{layer}", json=_filled(body, assets))
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert words in refused.json()["detail"]
    assert tiny.ledger.head_position() == head


def test_the_same_checks_pass_a_good_request(client: TestClient, tiny: Strata,
                                             assets: dict[str, str]) -> None:
    # Not a refusal of everything: the motion request at the sources' own size is taken.
    body = _filled({**REFUSED["motion"][0], "width": 32, "height": 32}, assets)
    assert client.post("/jobs/motion", json=body).status_code == 202
