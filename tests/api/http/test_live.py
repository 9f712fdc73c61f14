"""A real uvicorn server on a loopback port: the live event stream (SSE) and byte ranges."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx

from strata.core.decisions import curation
from tests.api.http.conftest import LiveServer
from tests.helpers import png_bytes


def messages(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Server-Sent Events messages (comments and retry-only messages skipped)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def _import(live: LiveServer, data: bytes) -> str:
    path = live.strata.store.settings.resolved_home.parent / "imported.png"
    path.write_bytes(data)
    event = live.strata.add_file(path)
    digest: str = event.data["asset"]["digest"]
    return digest


def test_the_stream_follows_the_log_live_and_resumes(live_server: LiveServer) -> None:
    first = _import(live_server, png_bytes(1))
    with httpx.Client(base_url=live_server.url, timeout=30) as http, \
            http.stream("GET", "/events/stream", params={"from": 1}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = messages(response.iter_lines())
        backlog = next(received)
        assert (backlog["id"], backlog["event"]) == ("1", "asset.imported")
        assert json.loads(backlog["data"])["data"]["asset"]["digest"] == first
        # Appended while the client is connected: it arrives without a new request.
        curation.pick(live_server.strata, first, "live")
        live = next(received)
        assert (live["id"], live["event"]) == ("2", "selection.picked")
        assert json.loads(live["data"])["data"]["note"] == "live"

    curation.rate(live_server.strata, first, 5)
    curation.review(live_server.strata, first, "approve")
    # A reconnecting client sends the last id it saw and gets what it missed, in order.
    with httpx.Client(base_url=live_server.url, timeout=30) as http, \
            http.stream("GET", "/events/stream", headers={"Last-Event-ID": "2"}) as response:
        received = messages(response.iter_lines())
        assert [next(received)["id"] for _ in range(2)] == ["3", "4"]


def test_byte_ranges(live_server: LiveServer) -> None:
    data = png_bytes(7, (100, 100))
    digest = _import(live_server, data)
    size = len(data)
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        url = f"/assets/{digest}/content"
        whole = http.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["accept-ranges"] == "bytes"
        part = http.get(url, headers={"Range": "bytes=10-99"})
        assert part.status_code == 206 and part.content == data[10:100]
        assert part.headers["content-range"] == f"bytes 10-99/{size}"
        assert part.headers["etag"] == f'"{digest}"'
        tail = http.get(url, headers={"Range": "bytes=-16"})
        assert tail.status_code == 206 and tail.content == data[-16:]
        open_end = http.get(url, headers={"Range": f"bytes={size - 5}-"})
        assert open_end.content == data[-5:]
        past = http.get(url, headers={"Range": f"bytes={size}-{size + 10}"})
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{size}"
        assert past.headers["content-type"] == "application/problem+json"
        # Several ranges, or a malformed one, are ignored: the whole file (RFC 9110).
        assert http.get(url, headers={"Range": "bytes=0-1,5-6"}).status_code == 200
        assert http.get(url, headers={"Range": "lines=1-2"}).content == data
