"""A store whose blobs live in the loopback S3 bucket (STRATA_BLOB_URL=s3://…), used
end to end through the real command line: add, show, verify, and a tampered object."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from strata.core.config import Settings
from tests.api.cli.test_cli import Cli, write_png
from tests.core.storage.s3server import BUCKET, S3Server


@pytest.fixture
def backend() -> str:
    """SQLite only: the blob store is what is under test here, and each CLI run costs."""
    return "sqlite"


@pytest.fixture
def s3_settings(settings: Settings, s3_server: S3Server) -> Settings:
    blob_url = f"s3://{BUCKET}/cli-{uuid.uuid4().hex[:12]}/objects"
    return settings.model_copy(update={"blob_url": blob_url})


@pytest.fixture
def s3_cli(s3_settings: Settings, tmp_path: Path) -> Cli:
    runner = Cli(s3_settings, tmp_path)
    assert s3_settings.blob_url
    runner.env["STRATA_BLOB_URL"] = s3_settings.blob_url  # AWS_* come from the fixture
    runner("init", "--no-tiny")
    return runner


def test_add_and_verify_with_blobs_in_a_bucket(
    s3_cli: Cli, s3_settings: Settings, s3_server: S3Server, tmp_path: Path
) -> None:
    paths = [write_png(tmp_path, f"{n}.png", n) for n in range(3)]
    s3_cli("add", *map(str, paths))
    digests = s3_cli.digests()
    assert len(digests) == 3
    prefix = (s3_settings.blob_url or "").removeprefix(f"s3://{BUCKET}/")
    listed = s3_server.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    assert sorted(entry["Key"] for entry in listed["Contents"]) == sorted(
        f"{prefix}/{digest[7:9]}/{digest[9:]}" for digest in digests)
    assert not (s3_settings.resolved_home / "objects").exists()  # nothing went to a folder
    assert "32x32" in s3_cli("show", digests[0][7:19]).stdout
    assert "3 blobs re-hashed" in s3_cli("verify").stdout

    # Someone rewrites an object in the bucket: verify re-hashes it remotely and says so.
    key = f"{prefix}/{digests[1][7:9]}/{digests[1][9:]}"
    s3_server.client.put_object(Bucket=BUCKET, Key=key, Body=b"not the picture")
    result = s3_cli("verify", ok=False)
    assert result.returncode == 5 and f"corrupt blob {digests[1]}" in result.stderr


def test_a_missing_bucket_is_named_and_nothing_is_recorded(
    s3_cli: Cli, tmp_path: Path
) -> None:
    s3_cli.env["STRATA_BLOB_URL"] = "s3://no-such-bucket/objects"
    result = s3_cli("add", str(write_png(tmp_path, "a.png", 1)), ok=False)
    assert result.returncode == 6
    assert "the bucket 'no-such-bucket' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert s3_cli("log", "--json").stdout == ""
