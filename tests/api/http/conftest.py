"""Fixtures of the HTTP API's tests: the ASGI test client, and a real uvicorn server on a
loopback port, each over the store of the `strata` fixture (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from strata.api.http.app import create_app
from strata.api.http.settings import HttpSettings
from strata.core.service import Strata


@pytest.fixture
def app(strata: Strata) -> FastAPI:
    return create_app(strata.store.settings, HttpSettings(keepalive_seconds=15))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The ASGI test client over the `strata` fixture's store (its lifespan runs)."""
    with TestClient(app) as test_client:
        yield test_client


@dataclass(frozen=True)
class LiveServer:
    url: str  # the base URL, e.g. http://127.0.0.1:41234
    strata: Strata  # the same store, for the test to write to and check against
    app: FastAPI


@pytest.fixture
def live_server(strata: Strata, app: FastAPI) -> Iterator[LiveServer]:
    """uvicorn serving the app in a background thread on 127.0.0.1, on a free port."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name="strata-live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", strata, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
