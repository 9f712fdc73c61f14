"""Shared fixtures: every ledger test runs against SQLite and PostgreSQL.

PostgreSQL: one database per test run (created here, dropped at the end), and one schema
per test inside it, so tests never see each other's events (which cannot be deleted: the
log is append-only). Without a reachable server the PostgreSQL cases skip with the reason,
unless STRATA_REQUIRE_POSTGRES=1 (set by CI) turns that into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from strata.core.config import Settings
from strata.core.service import Strata
from strata.core.store import Store

# One loopback S3 server for the whole run. A fixture imported into a test module is a
# fixture of its own there: two servers would then run, and the AWS_ENDPOINT_URL the
# later one set would send the other's tests' command-line runs to the wrong server.
from tests.core.storage.s3server import s3_server

__all__ = ["s3_server"]

PG_ADMIN_URL = os.environ.get(
    "STRATA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgres")


def _postgres_reason() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means: no server for these tests
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a database made for this test run, dropped when it ends."""
    reason = _postgres_reason()
    if reason is not None:
        if os.environ.get("STRATA_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (STRATA_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    name = f"strata_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _postgres_schema_url(database_url: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    # Every connection of the code under test sees only this schema.
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    home = tmp_path / "store"
    # Requests that name no model draw with the tiny one, the fastest; the shapes model,
    # every user's default, is named where a test is about it.
    if backend == "sqlite":
        yield Settings(home=home, default_model="tiny")
        return
    database = request.getfixturevalue("postgres_database")
    for url in _postgres_schema_url(database):
        yield Settings(home=home, database_url=url, default_model="tiny")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = Store.open(settings, create=True)
    yield opened
    opened.close()


@pytest.fixture
def strata(store: Store) -> Strata:
    return Strata(store)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process (CLI, worker) open the same store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["STRATA_HOME"] = str(settings.home)
    env["STRATA_DEFAULT_MODEL"] = settings.default_model
    if settings.database_url:
        env["STRATA_DATABASE_URL"] = settings.database_url
    return env


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled tiny pipeline, written once per test run (nothing is downloaded)."""
    from strata.core.models.tiny import write_tiny_pipeline

    return write_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def tiny(strata: Strata, tiny_model_folder: Path) -> Strata:
    """A store with the tiny model registered as "tiny"."""
    from strata.core.models import registry as models

    models.register(strata, "tiny", tiny_model_folder)
    return strata
