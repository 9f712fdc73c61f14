"""`strata migrate-store`: a SQLite store with local blobs copied to a PostgreSQL database
made for the test and to the loopback S3 bucket; resumed after an interruption; verified;
the same answers from the copy as from the original."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.core.config import Settings
from strata.core.errors import InvalidInput
from strata.core.models import registry as models
from strata.core.service import Strata
from strata.core.store import Store
from strata.core.transfer import migrate_store
from tests.api.cli.test_cli import Cli
from tests.conftest import _postgres_schema_url
from tests.core.storage.s3server import BUCKET, S3Server
from tests.helpers import png_bytes


@pytest.fixture
def target_url(postgres_database: str) -> Iterator[str]:
    """An empty PostgreSQL schema of its own for the copy."""
    yield from _postgres_schema_url(postgres_database)


@pytest.fixture
def blob_url(s3_server: S3Server) -> str:
    return f"s3://{BUCKET}/migrated-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Strata]:
    """A local store: imports (one batch of four, one derived), a registered model."""
    store = Store.open(Settings(home=tmp_path / "store"), create=True)
    strata = Strata(store)
    files = []
    for seed in range(5):
        path = tmp_path / f"{seed}.png"
        path.write_bytes(png_bytes(seed))
        files.append(path)
    imported = strata.add_files(files[:4])
    strata.add_file(files[4], parents=[(imported[0].data["asset"]["digest"], "source")])
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"weights of a model" * 100)
    models.register(strata, "house-style", weights)
    yield strata
    store.close()


def outputs(cli: Cli, digest: str) -> list[str]:
    return [cli("log", "--json", "--limit", "100").stdout, cli("show", digest[7:19]).stdout,
            cli("lineage", digest[7:19]).stdout, cli("model", "list", "--json").stdout]


def test_a_local_store_moves_to_postgres_and_a_bucket(
    source: Strata, target_url: str, blob_url: str, s3_server: S3Server, tmp_path: Path
) -> None:
    settings = source.store.settings
    here = Cli(settings, tmp_path)
    result = here("migrate-store", "--to", target_url, "--blobs", blob_url)
    assert "events: 6 copied, 0 already there" in result.stdout, result.stdout
    assert "blobs: 5 copied, 0 already there" in result.stdout
    assert "verify OK" in result.stdout

    there = Cli(settings, tmp_path)
    there.env.update(STRATA_DATABASE_URL=target_url, STRATA_BLOB_URL=blob_url)
    assert "verify OK: 6 events, chain intact, 5 blobs re-hashed" in there("verify").stdout
    derived = json.loads(here("log", "--json").stdout.splitlines()[-2])
    digest = derived["data"]["output"]["asset"]["digest"]
    assert outputs(there, digest) == outputs(here, digest)

    again = here("migrate-store", "--to", target_url, "--blobs", blob_url)
    assert "events: 0 copied, 6 already there" in again.stdout
    assert "blobs: 0 copied, 5 already there" in again.stdout


def test_an_interrupted_copy_resumes_without_duplicates(
    source: Strata, target_url: str, blob_url: str
) -> None:
    class Stop(Exception):
        pass

    def stop_after(kind: str, limit: int) -> object:
        def progress(what: str, count: int) -> None:
            if what == kind and count >= limit:
                raise Stop

        return progress

    with pytest.raises(Stop):  # killed while copying blobs
        migrate_store(source.store, target_url, blob_url, progress=stop_after("blob", 2))
    with pytest.raises(Stop):  # and again after a page of three events
        migrate_store(source.store, target_url, blob_url, page=3,
                      progress=stop_after("events", 3))
    target = Store.open(Settings(home=source.store.settings.home, database_url=target_url,
                                 blob_url=blob_url))
    try:
        assert target.ledger.head_position() == 3
        report = migrate_store(source.store, target_url, blob_url, page=3)
        assert (report.blobs_copied, report.blobs_present) == (0, 5)
        assert (report.events_copied, report.events_present) == (3, 3)
        assert report.blobs_verified == 5
        assert [e.hash for e in target.ledger.read_all()] == [
            e.hash for e in source.ledger.read_all()]
        assert list(target.blobs.iter_digests()) == list(source.blobs.iter_digests())
        assert Strata(target).rebuild() == 6
    finally:
        target.close()


def test_a_target_with_another_history_is_refused(
    source: Strata, target_url: str, tmp_path: Path
) -> None:
    other = Store.open(Settings(home=tmp_path / "other", database_url=target_url),
                       create=True)
    try:
        (tmp_path / "x.png").write_bytes(png_bytes(99))
        Strata(other).add_file(tmp_path / "x.png")
    finally:
        other.close()
    with pytest.raises(InvalidInput, match="another history: position 1 differs"):
        migrate_store(source.store, target_url)


def test_a_target_that_is_the_store_itself_is_refused(source: Strata) -> None:
    with pytest.raises(InvalidInput, match="the store's own database"):
        migrate_store(source.store, source.store.settings.effective_database_url)


def test_a_target_that_is_not_a_url_is_refused(source: Strata, tmp_path: Path) -> None:
    result = Cli(source.store.settings, tmp_path)("migrate-store", "--to", "not a url",
                                                 ok=False)
    assert result.returncode == 2 and "is not a database URL" in result.stderr
