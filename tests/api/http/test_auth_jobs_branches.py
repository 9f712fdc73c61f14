"""Tokens and scopes (the actor recorded is the token's name), CORS, the job endpoints
made from each layer's request model, and branch moves with expected versions."""

from __future__ import annotations

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from strata.api.cli.commands import serve as _serve_command  # noqa: F401 (adds `serve`)
from strata.api.cli.main import app as cli
from strata.api.http.app import create_app
from strata.api.http.settings import HttpSettings
from strata.core import layers
from strata.core.auth import tokens
from strata.core.service import Strata
from tests.helpers import png_bytes

PNG = {"Content-Type": "image/png"}


def test_tokens_scopes_and_actor(client: TestClient, strata: Strata) -> None:
    # No token yet, on loopback: open, and events name the CLI's default actor.
    opened = client.post("/assets", content=png_bytes(1), headers=PNG)
    assert opened.status_code == 201
    digest = opened.json()["digest"]

    engine = strata.store.engine
    _, reader = tokens.create(engine, ["read"], "viewer")
    _, writer = tokens.create(engine, ["write"], "alice")
    _, admin = tokens.create(engine, ["admin"], "root-bot")
    stored = {t.name: t for t in tokens.list_tokens(engine)}
    assert stored["alice"].scopes == ["write"]
    # Only hashes are kept.
    assert writer not in str(tokens.list_tokens(engine))

    refused = client.get("/assets")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert "strata token create" in refused.json()["detail"]
    bad = client.get("/assets", headers={"Authorization": "Bearer strata_nope"})
    assert bad.status_code == 401
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert client.get("/assets", headers=as_reader).status_code == 200
    denied = client.post(f"/assets/{digest}/final", headers=as_reader)
    assert denied.status_code == 403 and "'write'" in denied.json()["detail"]
    # <img> and EventSource cannot send headers: the token may come as a parameter.
    assert client.get(f"/assets/{digest}/content",
                      params={"access_token": reader}).status_code == 200

    picked = client.post(f"/assets/{digest}/selection", json={"decision": "pick"},
                         headers={"Authorization": f"Bearer {writer}"})
    assert picked.status_code == 201 and picked.json()["meta"]["actor"] == "alice"
    assert client.get("/admin/status",
                      headers={"Authorization": f"Bearer {writer}"}).status_code == 403
    assert client.get("/admin/status",
                      headers={"Authorization": f"Bearer {admin}"}).json()["events"] == 2

    tokens.revoke(engine, "alice")
    assert client.get("/assets", headers={"Authorization": f"Bearer {writer}"}).status_code == 401


def test_off_loopback_a_token_is_always_required(strata: Strata) -> None:
    with TestClient(create_app(strata.store.settings, HttpSettings(host="0.0.0.0"))) as client:
        assert client.get("/assets").status_code == 401
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"],
                                env={"STRATA_HOME": str(strata.store.settings.home),
                                     **({"STRATA_DATABASE_URL": strata.store.settings.database_url}
                                        if strata.store.settings.database_url else {})})
    assert result.exit_code != 0
    assert "strata token create" in str(result.exception) + result.output


def test_cors_is_closed_unless_origins_are_listed(strata: Strata) -> None:
    preflight = {"Origin": "https://studio.example", "Access-Control-Request-Method": "GET"}
    with TestClient(create_app(strata.store.settings, HttpSettings())) as client:
        got = client.get("/assets", headers={"Origin": "https://studio.example"})
        assert "access-control-allow-origin" not in got.headers
    opened = HttpSettings(cors_origins=["https://studio.example"])
    with TestClient(create_app(strata.store.settings, opened)) as client:
        answer = client.options("/assets", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://studio.example"


def test_one_job_endpoint_per_layer_from_its_request_model(client: TestClient,
                                                           tiny: Strata) -> None:
    spec = client.get("/openapi.json").json()
    for layer in layers.all_layers():
        operation = spec["paths"][f"/jobs/{layer.name}"]["post"]
        schema_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
        expected = set(layer.requested.model_fields) - {"job_id", "iterates", "changes",
                                                         "parent"}
        assert set(body["properties"]) == expected, layer.name
    generation = spec["components"]["schemas"]["GenerationRequestedBody"]["properties"]
    assert generation["model"]["type"] == "string"  # a registered model's name

    accepted = client.post("/jobs/generation",
                           json={"prompt": "a lighthouse", "seeds": [7, 8], "model": "tiny"})
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]
    job = client.get(f"/jobs/{job_id[:10]}").json()
    assert job["status"] == "requested" and job["layer"] == "generation"
    assert job["request"]["seeds"] == [7, 8]
    assert job["request"]["model"]["digest"].startswith("sha256:")  # from the registry
    assert client.post(f"/jobs/{job_id}/cancel", json={"reason": "no"}).status_code == 200
    again = client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]

    head = tiny.ledger.head_position()
    for body in ({"prompt": "x", "seeds": [1], "model": "missing"},
                 {"prompt": "x", "seeds": [1, 1], "model": "tiny"},
                 {"prompt": "x", "seeds": [1], "model": "tiny", "width": 65},
                 {"prompt": "x", "seeds": [1], "model": "tiny", "branch": "nope"}):
        refused = client.post("/jobs/generation", json=body)
        assert refused.status_code in (404, 422), (body, refused.text)
    assert tiny.ledger.head_position() == head


def test_branch_moves_with_expected_versions(client: TestClient, strata: Strata) -> None:
    a, b, c = (client.post("/assets", content=png_bytes(i), headers=PNG).json()["digest"]
               for i in (1, 2, 3))
    created = client.post("/branches", json={"name": "hero/v1", "head": a})
    assert created.status_code == 201 and created.json()["version"] == 1
    assert client.post("/branches", json={"name": "hero/v1"}).status_code == 422
    moved = client.post("/branches/hero/v1/advance", json={"to": b, "expected_version": 1})
    assert moved.status_code == 200 and moved.json()["version"] == 2
    stale = client.post("/branches/hero/v1/advance", json={"to": c, "expected_version": 1})
    assert stale.status_code == 409
    problem = stale.json()
    assert (problem["expected_version"], problem["actual_version"]) == (1, 2)
    assert client.post("/branches/hero/v1/advance", json={"to": c}).json()["version"] == 3

    conflict = client.post("/branches/hero/v1/rollback", json={"to": a, "expected_version": 2})
    assert conflict.status_code == 409 and conflict.json()["actual_version"] == 3
    back = client.post("/branches/hero/v1/rollback",
                       json={"to": a, "expected_version": 3, "reason": "too dark"})
    assert back.status_code == 200 and back.json()["head"] == a
    branch = client.get("/branches/hero/v1").json()
    assert branch["head"] == a and branch["version"] == 4
    assert [m["action"] for m in branch["moves"]] == ["created", "advanced", "advanced",
                                                      "rolled_back"]
    assert [x["name"] for x in client.get("/branches").json()] == ["hero/v1"]
