"""STRATA_BLOB_URL: a folder, a file URL or an S3 bucket, and nothing else taken for a folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from strata.core.config import LocalBlobLocation, S3BlobLocation, Settings
from strata.core.errors import InvalidInput
from strata.core.storage.local import LocalBlobStore
from strata.core.store import make_blob_store


def from_environment(monkeypatch: pytest.MonkeyPatch, home: Path, blob_url: str) -> Settings:
    monkeypatch.setenv("STRATA_HOME", str(home))
    monkeypatch.setenv("STRATA_BLOB_URL", blob_url)
    return Settings()


def test_without_a_blob_url_blobs_live_in_the_home_folder(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    assert settings.blob_location == LocalBlobLocation(tmp_path / "home" / "objects")
    assert settings.objects_dir == tmp_path / "home" / "objects"


def test_a_folder_path_or_file_url_names_a_local_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url, folder in [
        (str(tmp_path / "blobs"), tmp_path / "blobs"),
        ("relative/blobs", tmp_path / "relative" / "blobs"),
        (f"file://{tmp_path}/with%20space", tmp_path / "with space"),
        (f"file://localhost{tmp_path}/blobs", tmp_path / "blobs"),
    ]:
        settings = from_environment(monkeypatch, tmp_path / "home", url)
        assert settings.blob_location == LocalBlobLocation(folder), url
        store = make_blob_store(settings)
        assert isinstance(store, LocalBlobStore) and store.root == folder


def test_an_s3_url_names_a_bucket_and_a_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url, location in [
        ("s3://media-assets/strata/objects/", S3BlobLocation("media-assets", "strata/objects")),
        ("s3://media.assets-2", S3BlobLocation("media.assets-2", "")),
    ]:
        settings = from_environment(monkeypatch, tmp_path / "home", url)
        assert settings.blob_location == location
        no_folder = re.escape(f"STRATA_BLOB_URL={url!r} names no local folder")
        with pytest.raises(InvalidInput, match=no_folder):
            _ = settings.objects_dir


def test_make_blob_store_opens_the_bucket_of_an_s3_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strata.core.storage.s3 import S3BlobStore

    settings = from_environment(monkeypatch, tmp_path / "home", "s3://media-assets/strata")
    store = make_blob_store(settings)  # opening it reaches no server
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("media-assets", "strata")
    assert store.key_of("sha256:" + "ab" * 32) == "strata/ab/" + "ab" * 31
    assert store.spool == tmp_path / "home" / "spool"


@pytest.mark.parametrize(("url", "message"), [
    ("gs://media-assets/strata", "unknown scheme 'gs'"),
    ("https://example.com/blobs", "unknown scheme 'https'"),
    ("S3x://media-assets", "unknown scheme 's3x'"),
    ("s3://", "does not name a bucket"),
    ("s3:///strata", "does not name a bucket"),
    ("s3://Media_Assets/strata", "does not name a bucket"),
    ("s3://media-assets/strata?region=eu", "query or fragment"),
    ("file://fileserver/blobs", "names a folder on host 'fileserver'"),
])
def test_other_urls_are_refused_never_taken_for_the_local_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = from_environment(monkeypatch, tmp_path / "home", url)
    for where_blobs_live in (lambda: settings.blob_location, lambda: make_blob_store(settings)):
        with pytest.raises(InvalidInput, match=message) as refused:
            where_blobs_live()
        assert f"STRATA_BLOB_URL={url!r}" in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # no folder was made for it
