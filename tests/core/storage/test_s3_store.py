"""What only the S3 store does: publishing through a temporary key with the hash checked,
multipart uploads, crashes mid-publish, prefixes, and the errors a user sees when the
bucket, the credentials or the endpoint are wrong. The blob contract suite
(test_blob_contract.py) covers everything a backend shares."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from strata.core.errors import BlobCorrupt, InvalidInput, RetryableError, StoreNotInitialised
from strata.core.storage.s3 import MiB, S3BlobStore, check_prefix
from tests.core.storage.s3server import BUCKET, SERVER, S3Server
from tests.core.storage.samples import files_under, sha

REPOSITORY = Path(__file__).resolve().parents[3]


def open_store(tmp_path: Path, *, bucket: str = BUCKET, **transfer: int) -> S3BlobStore:
    return S3BlobStore(bucket, f"unit/{uuid.uuid4().hex[:12]}", tmp_path / "spool",
                       100 * 100, 64 * MiB, **transfer)


def keys(store: S3BlobStore) -> list[str]:
    """Every object under the store's prefix: blobs, temporary keys, anything."""
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "/")
    return sorted(entry["Key"] for entry in listed.get("Contents", []))


def blob_keys(store: S3BlobStore, *digests: str) -> list[str]:
    return sorted(store.key_of(digest) for digest in digests)


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def test_a_blob_lands_under_the_local_layout_and_nothing_else_is_left(
    s3_server: S3Server, tmp_path: Path
) -> None:
    store = open_store(tmp_path)
    digest = store.ingest_bytes(b"some bytes").digest
    hex_digest = digest.removeprefix("sha256:")
    assert keys(store) == [f"{store.prefix}/{hex_digest[:2]}/{hex_digest[2:]}"]
    assert files_under(store.spool) == []


def test_a_large_upload_goes_in_parts_and_reads_back_whole(
    s3_server: S3Server, tmp_path: Path
) -> None:
    store = open_store(tmp_path, multipart_threshold=5 * MiB, part_size=5 * MiB)
    data = random_bytes(12 * MiB + 1, seed=3)  # three parts, the last one short
    info = store.ingest_bytes(data)
    assert info.digest == sha(data)
    head = store.client.head_object(Bucket=BUCKET, Key=store.key_of(info.digest))
    assert head["ContentLength"] == len(data)
    assert store.read_bytes(info.digest) == data
    assert store.verify(info.digest)
    assert keys(store) == blob_keys(store, info.digest)


def test_the_upload_is_multipart_above_the_threshold(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path, multipart_threshold=5 * MiB, part_size=5 * MiB)
    parts: list[int] = []
    upload_part = store.client.upload_part

    def counting(**kwargs: Any) -> Any:
        parts.append(kwargs["PartNumber"])
        return upload_part(**kwargs)

    monkeypatch.setattr(store.client, "upload_part", counting)
    store.ingest_bytes(random_bytes(5 * MiB - 1, seed=1))
    assert parts == []
    store.ingest_bytes(random_bytes(11 * MiB, seed=2))
    assert sorted(parts) == [1, 2, 3]


@pytest.mark.parametrize("size", [1000, 11 * MiB], ids=["single", "multipart"])
@pytest.mark.parametrize("server_checksum", [True, False], ids=["checksum", "read-back"])
def test_bytes_that_do_not_hash_to_the_digest_never_reach_it(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int,
    server_checksum: bool,
) -> None:
    store = open_store(tmp_path, multipart_threshold=5 * MiB, part_size=5 * MiB)
    if not server_checksum:  # a server that keeps no checksum: the object is read back
        head_object = store.client.head_object

        def without_checksum(**kwargs: Any) -> Any:
            answer = head_object(**kwargs)
            answer.pop("ChecksumSHA256", None)
            return answer

        monkeypatch.setattr(store.client, "head_object", without_checksum)
    data = random_bytes(size, seed=5)
    with store.staging_paths([_written(tmp_path / "in.bin", data)]) as (staged,):
        # The spooled file changes between hashing and upload (a failing disk, a bug).
        altered = bytearray(data)
        altered[size // 2] ^= 0xFF
        staged.temporary.write_bytes(bytes(altered))
        with pytest.raises(BlobCorrupt, match="nothing was stored under its digest"):
            store.publish(staged)
    assert not store.exists(sha(data))
    assert keys(store) == []  # neither a final nor a temporary key
    assert files_under(store.spool) == []


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_failed_upload_leaves_no_key(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path, multipart_threshold=5 * MiB, part_size=5 * MiB)
    upload_part = store.client.upload_part

    def failing_third(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 3:
            raise OSError("connection reset")
        return upload_part(**kwargs)

    monkeypatch.setattr(store.client, "upload_part", failing_third)
    data = random_bytes(12 * MiB, seed=7)
    with pytest.raises(OSError, match="connection reset"):
        store.ingest_bytes(data)
    assert not store.exists(sha(data))
    assert keys(store) == []
    uploads = store.client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix + "/")
    assert uploads.get("Uploads", []) == []  # the parts were aborted, not left billed
    assert files_under(store.spool) == []


# The child publishes a blob but stops, as if killed, between the upload to the temporary
# key and the copy to the final key, and waits for its SIGKILL.
KILLED_PUBLISH = """
import signal, sys
from pathlib import Path
from strata.core.storage.s3 import S3BlobStore

store = S3BlobStore(sys.argv[1], sys.argv[2], Path(sys.argv[3]), 10000, 2**26)
check = store._check_upload

def stall(*args):
    check(*args)
    print("uploaded", flush=True)
    signal.pause()

store._check_upload = stall
store.ingest_bytes(b"bytes of a publish that is killed")
"""


def test_a_publish_killed_mid_way_leaves_no_blob_and_a_later_one_succeeds(
    s3_server: S3Server, tmp_path: Path
) -> None:
    store = open_store(tmp_path)
    data = b"bytes of a publish that is killed"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_PUBLISH, BUCKET, store.prefix, str(store.spool)],
        cwd=REPOSITORY, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "uploaded\n", "the child never reached its stall"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
    (leftover,) = keys(store)  # the uploaded temporary key, never a blob
    assert leftover.startswith(f"{store.prefix}/tmp/") and leftover.endswith(".part")
    assert not store.exists(sha(data))
    assert list(store.iter_digests()) == []

    assert store.ingest_bytes(data).digest == sha(data)
    assert list(store.iter_digests()) == [sha(data)]
    assert store.read_bytes(sha(data)) == data


def test_only_blob_keys_are_listed(s3_server: S3Server, tmp_path: Path) -> None:
    store = open_store(tmp_path)
    digest = store.ingest_bytes(b"a blob").digest
    for stray in ("tmp/abc.part", "ab/short", "notes.txt", "AB/" + "c" * 62, "ab/cd/" + "e" * 59):
        store.client.put_object(Bucket=BUCKET, Key=f"{store.prefix}/{stray}", Body=b"x")
    # A neighbouring prefix that starts with this one's name is another store.
    hex_digest = digest.removeprefix("sha256:")
    store.client.put_object(Bucket=BUCKET, Key=f"{store.prefix}x/{hex_digest[:2]}/"
                            f"{hex_digest[2:]}", Body=b"x")
    assert list(store.iter_digests()) == [digest]


def test_a_store_at_the_top_of_the_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = f"top-{uuid.uuid4().hex[:8]}"
    s3_server.client.create_bucket(Bucket=bucket)
    store = S3BlobStore(bucket, "", tmp_path / "spool", 100, 1000)
    digest = store.ingest_bytes(b"at the top").digest
    hex_digest = digest.removeprefix("sha256:")
    listed = s3_server.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [entry["Key"] for entry in listed] == [f"{hex_digest[:2]}/{hex_digest[2:]}"]
    assert list(store.iter_digests()) == [digest]


@pytest.mark.parametrize("prefix", ["..", "a/../b", "a/./b", "a//b", "./a", "a\\b", "a\nb"])
def test_prefixes_that_could_escape_are_refused(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(InvalidInput, match="blob prefix"):
        S3BlobStore(BUCKET, prefix, tmp_path, 100, 1000)


def test_plain_prefixes_are_kept() -> None:
    assert check_prefix("studio/strata-2026/objects") == "studio/strata-2026/objects"
    assert check_prefix("") == ""


# --- what a user sees when something outside is wrong --------------------------------------


def test_a_missing_bucket_is_named(s3_server: S3Server, tmp_path: Path) -> None:
    store = open_store(tmp_path, bucket="no-such-bucket")
    for call in (lambda: store.ingest_bytes(b"x"), lambda: list(store.iter_digests()),
                 lambda: store.read_bytes(sha(b"x"))):
        with pytest.raises(StoreNotInitialised, match="the bucket 'no-such-bucket' does not "
                                                      "exist"):
            call()
    assert files_under(store.spool) == []


def test_a_missing_bucket_is_named_by_a_head_request_too(
    s3_server: S3Server, tmp_path: Path
) -> None:
    # HEAD answers carry no error code, only 404: an existence check in a missing bucket
    # says "no such blob", and the first write names the bucket.
    store = open_store(tmp_path, bucket="no-such-bucket")
    assert store.exists(sha(b"x")) is False


def test_an_endpoint_that_is_down_is_named(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    store = open_store(tmp_path)
    with pytest.raises(RetryableError, match=f"cannot reach the S3 endpoint "
                                             f"http://127.0.0.1:{port}"):
        store.ingest_bytes(b"x")
    with pytest.raises(RetryableError, match="is it up"):
        store.exists(sha(b"x"))
    assert files_under(store.spool) == []


def test_missing_credentials_are_named(
    s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask
    store = open_store(tmp_path)
    with pytest.raises(InvalidInput, match="no usable AWS credentials"):
        store.ingest_bytes(b"x")


@pytest.fixture(scope="module")
def checking_server() -> Any:
    """A second loopback server that checks credentials (moto checks none by default)."""
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    child = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env=env)
    assert child.stdout is not None and child.stdin is not None
    try:
        yield f"http://127.0.0.1:{int(child.stdout.readline())}"
    finally:
        child.stdin.close()
        child.wait(timeout=10)


def test_wrong_credentials_are_named(
    s3_server: S3Server, checking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", checking_server)
    store = open_store(tmp_path)
    with pytest.raises(InvalidInput, match="refused the credentials"):
        store.ingest_bytes(b"x")
    with pytest.raises(InvalidInput, match=r"\(InvalidAccessKeyId\); check AWS_ACCESS_KEY_ID"):
        list(store.iter_digests())
