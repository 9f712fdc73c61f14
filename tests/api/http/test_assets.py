"""Assets over HTTP (ASGI client, SQLite and PostgreSQL): upload, list, metadata, bytes,
thumbnails, lineage, provenance, audit, decisions, and the problems bad input gets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from strata.api.http.app import create_app
from strata.api.http.settings import HttpSettings
from strata.core.lookup import AssetFound, lookup
from strata.core.service import Strata
from tests.helpers import png_bytes

PNG = {"Content-Type": "image/png"}


def upload(client: TestClient, data: bytes, name: str = "a.png") -> dict:
    response = client.post("/assets", params={"name": name}, content=data, headers=PNG)
    assert response.status_code == 201, response.text
    return response.json()


def test_upload_stores_once_and_checks_the_expected_hash(client: TestClient,
                                                         strata: Strata) -> None:
    data = png_bytes(1)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    first = client.post("/assets", params={"name": "cat.png", "sha256": digest[7:]},
                        content=data, headers=PNG)
    assert first.status_code == 201
    assert first.json()["digest"] == digest and first.json()["created"] is True
    assert (first.json()["width"], first.json()["height"]) == (32, 32)
    event = strata.ledger.get(first.json()["event_id"])
    assert event is not None and event.type == "asset.imported"
    assert event.data["source"]["name"] == "cat.png"
    head = strata.ledger.head_position()

    again = client.post("/assets", params={"name": "other.png"}, content=data, headers=PNG)
    assert again.status_code == 200 and again.json()["created"] is False
    wrong = client.post("/assets", params={"sha256": "0" * 64}, content=png_bytes(2),
                        headers=PNG)
    assert wrong.status_code == 422
    assert wrong.headers["content-type"] == "application/problem+json"
    assert "nothing was stored" in wrong.json()["detail"]
    assert strata.ledger.head_position() == head  # neither recorded anything
    assert not strata.blobs.exists("sha256:" + hashlib.sha256(png_bytes(2)).hexdigest())


def test_upload_streams_a_chunked_body_and_multipart(client: TestClient) -> None:
    data = png_bytes(3, (64, 48))

    def chunks() -> Iterator[bytes]:
        for at in range(0, len(data), 1000):
            yield data[at:at + 1000]

    streamed = client.post("/assets", params={"name": "s.png"}, content=chunks(), headers=PNG)
    assert streamed.status_code == 201 and streamed.json()["width"] == 64
    form = client.post("/assets", files={"file": ("f.png", png_bytes(4), "image/png")})
    assert form.status_code == 201 and form.json()["media_type"] == "image/png"


def test_upload_refusals(strata: Strata, tmp_path: Path) -> None:
    small = strata.store.settings.model_copy(update={"max_upload_bytes": 1000})
    with TestClient(create_app(small, HttpSettings())) as client:
        head = strata.ledger.head_position()
        big = client.post("/assets", content=png_bytes(5, (64, 64)), headers=PNG)
        assert big.status_code == 413 and "limit" in big.json()["detail"]
        text = client.post("/assets", content=b"hello", headers={"Content-Type": "text/plain"})
        assert text.status_code == 415
        broken = client.post("/assets", content=b"\x89PNG\r\n\x1a\nbroken",
                             headers=PNG)
        assert broken.status_code == 422
        assert strata.ledger.head_position() == head
    assert not list((strata.blobs.spool).glob("upload-*"))  # no upload left behind


def test_list_filters_and_metadata(client: TestClient, strata: Strata) -> None:
    a, b, c = (upload(client, png_bytes(i), f"{i}.png")["digest"] for i in (10, 11, 12))
    derived = strata.add_file(_file(strata, png_bytes(13)), [(a, "source")], "paint")
    d = derived.data["output"]["asset"]["digest"]
    assert client.post(f"/assets/{b[7:15]}/rating", json={"rating": 4}).status_code == 201
    assert client.post(f"/assets/{c}/final", json={"note": "ship"}).status_code == 201
    assert client.post("/branches", json={"name": "look", "head": d}).status_code == 201

    everything = client.get("/assets").json()
    assert everything["total"] == 4
    assert [x["digest"] for x in everything["assets"]] == [d, c, b, a]  # newest first
    card = everything["assets"][0]
    assert card["operation"] == "paint" and card["branches"] == ["look"]
    assert [x["digest"] for x in client.get("/assets?rating_min=3").json()["assets"]] == [b]
    assert [x["digest"] for x in client.get("/assets?final=true").json()["assets"]] == [c]
    assert client.get("/assets?final=false").json()["total"] == 3
    assert [x["digest"] for x in client.get("/assets?branch=look").json()["assets"]] == [d]
    assert client.get("/assets?media=video").json()["total"] == 0
    page = client.get("/assets?limit=2&offset=1").json()
    assert [x["digest"] for x in page["assets"]] == [c, b] and page["total"] == 4

    # A find query: the gallery's filters become find terms beside it, paged by find.
    def searched(query: str) -> list[str]:
        found = client.get(f"/assets?{query}")
        assert found.status_code == 200, found.text
        assert found.json()["total_exact"] is True
        return [x["digest"] for x in found.json()["assets"]]

    assert searched("q=media:image") == [d, c, b, a]
    assert searched("q=media:image&final=true") == [c]
    assert searched("q=media:image&final=false&limit=1&offset=1") == [b]
    assert searched("q=layer:import&rating_min=4") == [b]
    assert searched(f"q=from:{a[7:19]}&branch=look") == [d]
    head = strata.ledger.head_position()
    refused = client.get("/assets", params={"q": "media:image (", "final": "true"})
    assert refused.status_code == 422
    assert "media:image (" in refused.json()["detail"]  # the user's query, not a composed one
    assert "final" not in refused.json()["detail"].split("\n")[1]
    assert strata.ledger.head_position() == head

    shown = client.get(f"/assets/{d[7:19]}").json()
    assert shown["asset"]["digest"] == d
    assert [p["input_digest"] for p in shown["parents"]] == [a]
    assert shown["branches"] == ["look"]


def _file(strata: Strata, data: bytes) -> Path:
    path = strata.store.settings.resolved_home.parent / f"{hashlib.sha256(data).hexdigest()}.png"
    path.write_bytes(data)
    return path


def test_content_etag_and_conditional_get(client: TestClient) -> None:
    data = png_bytes(20)
    digest = upload(client, data)["digest"]
    got = client.get(f"/assets/{digest}/content")
    assert got.status_code == 200 and got.content == data
    assert got.headers["etag"] == f'"{digest}"'
    assert got.headers["content-type"] == "image/png"
    same = client.get(f"/assets/{digest}/content", headers={"If-None-Match": f'"{digest}"'})
    assert same.status_code == 304 and same.content == b""
    other = client.get(f"/assets/{digest}/content", headers={"If-None-Match": '"sha256:0"'})
    assert other.status_code == 200


def test_thumbnails_are_cached_files_never_events(client: TestClient, strata: Strata) -> None:
    digest = upload(client, png_bytes(21, (200, 100)))["digest"]
    head = strata.ledger.head_position()
    first = client.get(f"/assets/{digest}/thumbnail", params={"size": 64})
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(first.content)).size == (64, 32)
    cached = list((strata.store.settings.resolved_home / "thumbnails").rglob("*-64.jpg"))
    assert len(cached) == 1
    assert client.get(f"/assets/{digest}/thumbnail", params={"size": 64}).content == first.content
    assert strata.ledger.head_position() == head
    assert client.get(f"/assets/{digest}/thumbnail", params={"size": 4}).status_code == 422


def test_lineage_graph_provenance_and_audit(client: TestClient, strata: Strata) -> None:
    a = upload(client, png_bytes(30))["digest"]
    mask = upload(client, png_bytes(31))["digest"]
    b = strata.add_file(_file(strata, png_bytes(32)), [(a, "source"), (mask, "mask")],
                        "inpaint").data["output"]["asset"]["digest"]
    c = strata.add_file(_file(strata, png_bytes(33)), [(b, "source")],
                        "upscale").data["output"]["asset"]["digest"]

    up = client.get(f"/assets/{c}/lineage").json()
    assert {n["digest"] for n in up["nodes"]} == {a, mask, b, c}
    assert {(e["from"], e["to"], e["role"]) for e in up["edges"]} == {
        (a, b, "source"), (mask, b, "mask"), (b, c, "source")}
    ops = {n["digest"]: n["operation"] for n in up["nodes"]}
    # `show` is what `strata show --json` prints (the route converts only the edges).
    found = lookup(strata, b)
    assert isinstance(found, AssetFound)
    assert client.get(f"/assets/{b}").json() == json.loads(json.dumps(
        {**dataclasses.asdict(found.details), "recipe": found.recipe,
         "recorded_by": found.created.meta if found.created else None}))
    assert ops == {a: "import", mask: "import", b: "inpaint", c: "upscale"}
    down = client.get(f"/assets/{b}/lineage", params={"direction": "descendants"}).json()
    assert {(e["from"], e["to"]) for e in down["edges"]} == {(b, c)}
    both = client.get(f"/assets/{b}/lineage", params={"direction": "graph"}).json()
    assert len(both["edges"]) == 3 and len(both["nodes"]) == 4
    # As of the log before c existed: c is unknown, b has no descendants.
    before = strata.ledger.head_position() - 1
    assert client.get(f"/assets/{c}/lineage", params={"as_of": before}).status_code == 404
    past = client.get(f"/assets/{b}/lineage",
                      params={"direction": "descendants", "as_of": before}).json()
    assert past["edges"] == []

    as_json = client.get(f"/assets/{c}/provenance")
    assert as_json.headers["content-type"].startswith("application/json")
    assert a in as_json.text
    for fmt, kind in (("markdown", "text/markdown"), ("tree", "text/plain"),
                      ("prov-json", "application/json"), ("prov-n", "text/plain"),
                      ("prov-xml", "application/xml")):
        got = client.get(f"/assets/{c}/provenance", params={"format": fmt})
        assert got.status_code == 200 and got.headers["content-type"].startswith(kind), fmt
    assert client.get(f"/assets/{c}/provenance", params={"format": "pdf"}).status_code == 422
    audit = client.get(f"/assets/{c}/audit").json()
    assert {a, b, c} <= set(audit["ancestry"])


def test_decisions_and_events(client: TestClient, strata: Strata) -> None:
    digest = upload(client, png_bytes(40))["digest"]
    assert client.post(f"/assets/{digest}/selection",
                       json={"decision": "pick", "note": "best"}).json()["type"] == (
        "selection.picked")
    assert client.post(f"/assets/{digest}/review",
                       json={"verdict": "approve"}).json()["type"] == "review.recorded"
    assert client.post(f"/assets/{digest}/rating", json={"rating": 9}).status_code == 422
    assert client.post(f"/assets/{digest}/review", json={"verdict": "meh"}).status_code == 422

    listed = client.get("/events", params={"limit": 2}).json()
    assert [e["position"] for e in listed["events"]] == [1, 2] and listed["next"] == 3
    rest = client.get("/events", params={"from": listed["next"]}).json()
    assert [e["type"] for e in rest["events"]] == ["review.recorded"] and rest["next"] is None
    only = client.get("/events", params={"type": "selection.picked"}).json()["events"]
    assert len(only) == 1
    event = only[0]
    assert set(event) == {"position", "event_id", "stream", "version", "type", "schema",
                          "data", "meta", "recorded_at", "prev_hash", "hash"}
    assert client.get(f"/events/{event['event_id'][:10]}").json() == event
    by_stream = client.get("/events", params={"stream": event["stream"]}).json()["events"]
    assert len(by_stream) == 3


@pytest.mark.parametrize("path", ["/assets/ffffffff", "/events/ffffffff", "/jobs/ffffffff",
                                  "/branches/nope", "/assets/ffffffff/lineage", "/nowhere",
                                  f"/assets/sha256:{'f' * 64}/lineage"])
def test_not_found_is_a_problem(client: TestClient, path: str) -> None:
    got = client.get(path)
    assert got.status_code == 404
    assert got.headers["content-type"] == "application/problem+json"
    assert got.json()["status"] == 404 and got.json()["title"]
