"""schemathesis against the app's own OpenAPI document: bad input never gives a server
error, and every answer conforms to what the document says (status, content type,
schema). Examples are bounded so the suite stays fast; one store (SQLite) with a few
assets, a branch and a job, so that valid references are also tried."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from strata.api.http.app import create_app
from strata.api.http.settings import HttpSettings
from strata.core.config import Settings
from strata.core.decisions import branches
from strata.core.service import Strata
from strata.core.store import Store
from tests.helpers import png_bytes

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance)


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    home = tmp_path_factory.mktemp("conformance") / "store"
    store = Store.open(Settings(home=home), create=True)
    strata = Strata(store)
    files = []
    for seed in range(3):
        path = Path(home.parent / f"{seed}.png")
        path.write_bytes(png_bytes(seed))
        files.append(path)
    first = strata.add_files(files)[0].data["asset"]["digest"]
    branches.create(strata, "main", first)
    store.close()
    app = create_app(Settings(home=home), HttpSettings())
    with TestClient(app):  # runs the lifespan: the store stays open for every case
        yield app


@pytest.mark.slow
def test_the_api_conforms_to_its_document(served_app: FastAPI) -> None:
    # Every operation in turn (schemathesis' pytest plugin does not load under this
    # pytest), each failure kept, so one run names every operation that fails.
    document = schemathesis.openapi.from_asgi("/openapi.json", served_app)
    failures: list[str] = []
    operations = [result.ok() for result in document.get_all_operations()]
    assert len(operations) > 30

    for operation in operations:

        @given(operation.as_strategy())
        @settings(max_examples=8, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except Exception as error:  # collected: every failing operation is reported
            failures.append(f"{operation.label}: {error}"[:2000])
    assert not failures, "\n\n".join(failures)
