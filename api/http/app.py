"""The app factory: `create_app()` → a FastAPI app over one store, opened in its lifespan.

Routers are discovered: every module of `strata.api.http.routers` that defines
`router: APIRouter` is included, as the command line discovers its command modules.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from strata.api.http import problems, routers
from strata.api.http.settings import HttpSettings
from strata.core import layers
from strata.core.auth import tokens
from strata.core.config import Settings, strata_version
from strata.core.service import Strata
from strata.core.store import Store


def discover_routers() -> list[APIRouter]:
    found = []
    for module in pkgutil.iter_modules(routers.__path__):
        loaded = importlib.import_module(f"{routers.__name__}.{module.name}")
        router = getattr(loaded, "router", None)
        if isinstance(router, APIRouter):
            found.append(router)
    return found


def create_app(settings: Settings | None = None, http: HttpSettings | None = None) -> FastAPI:
    http = http or HttpSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store.open(settings or Settings())
        app.state.strata = Strata(store)
        app.state.tokens = tokens.TokenCache(store.engine)
        try:
            yield
        finally:
            store.close()

    layers.load_layers()  # the job routes are made from the registered layers
    app = FastAPI(title="Strata", version=strata_version(), lifespan=lifespan,
                  description="An event-sourced ledger for generative-media pipelines.")
    app.state.http = http
    problems.install(app)
    for router in discover_routers():
        app.include_router(router, responses=problems.COMMON_RESPONSES)
    if http.cors_origins:  # closed unless origins are listed
        app.add_middleware(CORSMiddleware, allow_origins=http.cors_origins,
                           allow_methods=["*"], allow_headers=["Authorization", "Content-Type",
                                                               "Last-Event-ID", "Range"],
                           expose_headers=["ETag", "Content-Range", "Accept-Ranges"])
    return app
