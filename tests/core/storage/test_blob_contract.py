"""The contract every blob store backend passes: one suite, parametrized over backends.

A backend joins with a harness in `HARNESSES` (how to open it on a scratch place, and the
few things a test must do behind the store's back: alter stored bytes, tell whether a
blob was rewritten, free a large blob) and its name in `BACKENDS`.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import BinaryIO, Protocol

import imagehash
import pytest
from PIL import Image

from strata.core.errors import AssetNotFound, BlobCorrupt, InvalidInput
from strata.core.storage.blobs import CHUNK, BlobStore, parse_digest
from strata.core.storage.local import LocalBlobStore
from strata.core.storage.s3 import S3BlobStore
from tests.core.storage.s3server import BUCKET
from tests.core.storage.samples import (
    BAD_DIGESTS,
    FailingStream,
    GeneratedStream,
    bomb_png,
    corrupt_images,
    files_under,
    generated_chunks,
    image_bytes,
    sha,
)
from tests.helpers import png_bytes

MAX_PIXELS = 100 * 100
MAX_BYTES = 4 * CHUNK
HOUR = 3600.0
REPOSITORY = Path(__file__).resolve().parents[3]


class Harness(Protocol):
    # The size the constant-memory test ingests: four times its memory bound at least.
    large_bytes: int

    def open(self, place: Path, max_bytes: int = MAX_BYTES) -> BlobStore:
        """A store of this backend whose state lives under (or is named after) `place`."""

    def overwrite(self, store: BlobStore, digest: str, data: bytes) -> None:
        """Replace the stored bytes of `digest`, as a failing disk or a meddler would."""

    def stamp(self, store: BlobStore, digest: str) -> object:
        """A value that changes whenever the stored blob is written again."""

    def discard(self, store: BlobStore, digest: str) -> None:
        """Free a large blob once a test is done with it."""


class LocalHarness:
    large_bytes = 1024**3

    def open(self, place: Path, max_bytes: int = MAX_BYTES) -> BlobStore:
        return LocalBlobStore(place / "objects", MAX_PIXELS, max_bytes)

    def overwrite(self, store: BlobStore, digest: str, data: bytes) -> None:
        assert isinstance(store, LocalBlobStore)
        store.path_of(digest).write_bytes(data)

    def stamp(self, store: BlobStore, digest: str) -> object:
        assert isinstance(store, LocalBlobStore)
        stat = store.path_of(digest).stat()
        return stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns

    def discard(self, store: BlobStore, digest: str) -> None:
        assert isinstance(store, LocalBlobStore)
        store.path_of(digest).unlink()


class S3Harness:
    """Stores in the loopback server's bucket (the `s3_server` fixture), each under a prefix
    named after its place, so that a child process opening the same place finds the same
    store. The bucket is versioned: a version id changes whenever a key is written."""

    # moto keeps objects in memory and serves about 10 MB/s through Python: a GiB would
    # take this suite minutes to prove what 256 MiB proves (4 times the memory bound).
    large_bytes = 256 * 1024**2

    def open(self, place: Path, max_bytes: int = MAX_BYTES) -> BlobStore:
        prefix = f"contract/{hashlib.sha256(str(place).encode()).hexdigest()[:16]}"
        return S3BlobStore(BUCKET, prefix, place / "spool", MAX_PIXELS, max_bytes)

    def overwrite(self, store: BlobStore, digest: str, data: bytes) -> None:
        assert isinstance(store, S3BlobStore)
        store.client.put_object(Bucket=store.bucket, Key=store.key_of(digest), Body=data)

    def stamp(self, store: BlobStore, digest: str) -> object:
        assert isinstance(store, S3BlobStore)
        return store.client.head_object(Bucket=store.bucket,
                                        Key=store.key_of(digest))["VersionId"]

    def discard(self, store: BlobStore, digest: str) -> None:
        assert isinstance(store, S3BlobStore)
        key = store.key_of(digest)
        versions = store.client.list_object_versions(Bucket=store.bucket, Prefix=key)
        for version in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
            store.client.delete_object(Bucket=store.bucket, Key=key,
                                       VersionId=version["VersionId"])


HARNESSES: dict[str, Harness] = {"local": LocalHarness(), "s3": S3Harness()}
BACKENDS = ["local", "s3"]  # what `blob_store` is parametrized over


@pytest.fixture(params=BACKENDS)
def blob_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "s3":
        request.getfixturevalue("s3_server")  # the server and the environment that finds it
    return str(request.param)


@pytest.fixture
def harness(blob_backend: str) -> Harness:
    return HARNESSES[blob_backend]


@pytest.fixture
def blob_store(harness: Harness, tmp_path: Path) -> BlobStore:
    return harness.open(tmp_path)


def assert_nothing_stored(store: BlobStore, *digests: str) -> None:
    """No blob, no temporary file: what a refused or interrupted ingest must leave."""
    assert list(store.iter_digests()) == []
    assert not any(store.exists(digest) for digest in digests)
    assert store.stale_temporary_files() == []
    assert files_under(store.spool) == []


# --- ingest -------------------------------------------------------------------------------


def test_an_image_is_stored_under_its_digest_and_described(blob_store: BlobStore) -> None:
    data = image_bytes("PNG", size=(48, 36), seed=9)
    info = blob_store.ingest_bytes(data)
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    assert info.digest == sha(data)
    assert (info.media_type, info.size, info.width, info.height) == (
        "image/png", len(data), 48, 36)
    assert (info.phash, info.dhash) == (str(imagehash.phash(rgb)), str(imagehash.dhash(rgb)))
    assert blob_store.exists(info.digest)
    assert blob_store.read_bytes(info.digest) == data
    assert blob_store.verify(info.digest)
    assert list(blob_store.iter_digests()) == [info.digest]
    assert blob_store.stale_temporary_files() == []
    assert files_under(blob_store.spool) == []


def test_other_bytes_are_stored_without_image_facts(blob_store: BlobStore) -> None:
    info = blob_store.ingest_bytes(b'  {"prompt": "a cat"}')
    assert (info.media_type, info.width, info.height, info.phash, info.dhash) == (
        "application/json", None, None, None, None)
    empty = blob_store.ingest_bytes(b"")  # the empty blob is a blob too
    assert (empty.digest, empty.size) == (sha(b""), 0)
    assert blob_store.read_bytes(sha(b"")) == b""


def test_different_bytes_get_different_blobs_listed_in_order(blob_store: BlobStore) -> None:
    digests = {blob_store.ingest_bytes(png_bytes(seed)).digest for seed in range(6)}
    assert len(digests) == 6
    assert list(blob_store.iter_digests()) == sorted(digests)


def test_a_store_with_nothing_in_it_lists_nothing(blob_store: BlobStore) -> None:
    assert list(blob_store.iter_digests()) == []
    assert blob_store.stale_temporary_files() == []
    assert blob_store.remove_stale_temporary_files(older_than_seconds=0) == []


def test_ingest_path_reads_the_bytes_and_ignores_the_name(blob_store: BlobStore,
                                                          tmp_path: Path) -> None:
    png_named_txt = tmp_path / "notes.txt"
    png_named_txt.write_bytes(png_bytes(5, (30, 20)))
    text_named_png = tmp_path / "picture.png"
    text_named_png.write_bytes(b"this is plain text with an image's name")
    as_png = blob_store.ingest_path(png_named_txt)
    assert (as_png.media_type, as_png.width, as_png.height) == ("image/png", 30, 20)
    as_text = blob_store.ingest_path(text_named_png)
    assert as_text.media_type == "application/octet-stream"
    assert (as_text.width, as_text.height, as_text.phash, as_text.dhash) == (None,) * 4


def test_ingest_path_refuses_what_is_not_a_file(blob_store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a file"):
        blob_store.ingest_path(tmp_path / "missing.png")
    with pytest.raises(InvalidInput, match="not a file"):
        blob_store.ingest_path(tmp_path)
    assert_nothing_stored(blob_store)


def test_the_same_bytes_are_stored_once_and_never_rewritten(harness: Harness,
                                                            blob_store: BlobStore) -> None:
    data = png_bytes(3)
    first = blob_store.ingest_bytes(data)
    before = harness.stamp(blob_store, first.digest)
    second = blob_store.ingest(io.BytesIO(data))
    assert second == first
    assert harness.stamp(blob_store, first.digest) == before
    assert list(blob_store.iter_digests()) == [first.digest]
    assert blob_store.stale_temporary_files() == []
    assert files_under(blob_store.spool) == []


@pytest.mark.slow
def test_ingesting_one_gib_streams_in_constant_memory(harness: Harness, tmp_path: Path) -> None:
    total, seed = harness.large_bytes, 42
    expected = hashlib.sha256()
    for piece in generated_chunks(total, seed):
        expected.update(piece)
    store = harness.open(tmp_path, max_bytes=total)
    tracemalloc.start()
    try:
        info = store.ingest(GeneratedStream(total, seed))  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert (info.digest, info.size) == (f"sha256:{expected.hexdigest()}", total)
        assert info.media_type == "application/octet-stream"
        assert peak < 64 * 1024**2, f"ingest held {peak:,} bytes at its peak"
        assert store.stale_temporary_files() == []
        assert store.verify(info.digest)
    finally:
        harness.discard(store, info.digest)  # do not leave a GiB behind


# --- refusals leave nothing behind --------------------------------------------------------


def refused_inputs() -> list[tuple[str, bytes, str]]:
    return [
        *corrupt_images(),
        ("bomb-just-over-the-limit", image_bytes("PNG", size=(101, 100)), "decompression bomb"),
        ("bomb-beyond-twice-the-limit", bomb_png(300, 300), "decompression bomb"),
        ("one-byte-over-the-size-limit", b"x" * (MAX_BYTES + 1),
         r"larger than the limit of 4,194,304 bytes \(STRATA_MAX_UPLOAD_BYTES\)"),
    ]


@pytest.mark.parametrize(("name", "data", "message"), refused_inputs(),
                         ids=[case[0] for case in refused_inputs()])
def test_refused_input_leaves_no_blob_and_no_temporary_file(
    blob_store: BlobStore, tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        blob_store.ingest_bytes(data)
    assert_nothing_stored(blob_store, sha(data))
    # Through a path, the refusal names the file.
    source = tmp_path / f"{name}.bin"
    source.write_bytes(data)
    with pytest.raises(InvalidInput, match=f"{name}.bin"):
        blob_store.ingest_path(source)
    assert_nothing_stored(blob_store, sha(data))


def test_the_limits_themselves_are_allowed(blob_store: BlobStore) -> None:
    assert blob_store.ingest_bytes(b"x" * MAX_BYTES).size == MAX_BYTES
    assert blob_store.ingest_bytes(image_bytes("PNG", size=(100, 100))).width == 100


@pytest.mark.parametrize("error", [OSError("connection reset"), KeyboardInterrupt()],
                         ids=["oserror", "keyboardinterrupt"])
def test_an_interrupted_ingest_leaves_nothing(blob_store: BlobStore,
                                              error: BaseException) -> None:
    with pytest.raises(type(error)):
        blob_store.ingest(FailingStream(3, error))  # type: ignore[arg-type]
    assert_nothing_stored(blob_store)


# --- an ingest killed mid-stream ----------------------------------------------------------

# The child starts an ingest whose source stalls after one chunk, says so, and waits to be
# killed: its temporary file is then exactly what a crash mid-upload leaves.
KILLED_INGEST = """
import signal, sys
from pathlib import Path
from tests.core.storage.test_blob_contract import HARNESSES, CHUNK

class Stalling:
    def __init__(self):
        self.chunks = 0

    def read(self, size=-1):
        self.chunks += 1
        if self.chunks == 1:
            return b"\\x89PNG\\r\\n\\x1a\\n".ljust(CHUNK, b"\\x07")
        print("stalled", flush=True)
        signal.pause()

HARNESSES[sys.argv[1]].open(Path(sys.argv[2])).ingest(Stalling())
"""


def kill_an_ingest_mid_stream(backend: str, place: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, backend, str(place)],
                             cwd=REPOSITORY, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "stalled\n", "the child never reached its stall"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate()
    assert child.returncode == -signal.SIGKILL


def test_leftovers_of_a_killed_ingest_are_never_blobs_and_are_cleaned_up(
    blob_backend: str, blob_store: BlobStore, tmp_path: Path
) -> None:
    kept = blob_store.ingest_bytes(png_bytes(1)).digest
    kill_an_ingest_mid_stream(blob_backend, tmp_path)

    leftovers = blob_store.stale_temporary_files()
    assert len(leftovers) == 1
    assert leftovers[0].stat().st_size == CHUNK  # the chunk read before the kill
    assert list(blob_store.iter_digests()) == [kept]
    assert not blob_store.exists(sha(leftovers[0].read_bytes()))
    # A later ingest neither trips over the leftover nor lists it.
    second = blob_store.ingest_bytes(png_bytes(2)).digest
    assert list(blob_store.iter_digests()) == sorted([kept, second])

    # A recent file may belong to an ingest still running: it stays until it is old.
    assert blob_store.remove_stale_temporary_files(older_than_seconds=HOUR) == []
    assert blob_store.stale_temporary_files() == leftovers
    two_hours_ago = leftovers[0].stat().st_mtime - 2 * HOUR
    os.utime(leftovers[0], (two_hours_ago, two_hours_ago))
    assert blob_store.remove_stale_temporary_files(older_than_seconds=HOUR) == leftovers
    assert blob_store.stale_temporary_files() == []
    assert files_under(blob_store.spool) == []
    assert list(blob_store.iter_digests()) == sorted([kept, second])
    assert all(blob_store.verify(digest) for digest in (kept, second))


# --- reading ------------------------------------------------------------------------------


def test_open_reads_the_stored_bytes(blob_store: BlobStore) -> None:
    data = png_bytes(8)
    digest = blob_store.ingest_bytes(data).digest
    with blob_store.open(digest) as handle:
        assert handle.read() == data


def test_open_seekable_gives_a_file_pillow_can_read(blob_store: BlobStore) -> None:
    data = png_bytes(9, (20, 10))
    digest = blob_store.ingest_bytes(data).digest
    with blob_store.open_seekable(digest) as handle:
        assert handle.seekable()
        with Image.open(handle) as image:
            assert image.size == (20, 10)
            image.load()
        handle.seek(0)
        assert handle.read() == data


class Unseekable(io.RawIOBase):
    """What a network body looks like: readable front to back, nothing else."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def test_open_seekable_copies_a_stream_that_cannot_seek(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = png_bytes(10, (24, 12))
    digest = blob_store.ingest_bytes(data).digest
    stored_open = blob_store._open
    opened: list[Unseekable] = []

    def streaming_open(digest: str) -> BinaryIO:
        opened.append(Unseekable(stored_open(digest)))
        return opened[-1]  # type: ignore[return-value]

    monkeypatch.setattr(blob_store, "_open", streaming_open)
    with blob_store.open(digest) as stream:
        assert not stream.seekable()
    with blob_store.open_seekable(digest) as handle:
        assert handle.seekable()
        with Image.open(handle) as image:
            assert image.size == (24, 12)
        handle.seek(0)
        assert handle.read() == data
    assert all(stream.closed for stream in opened)
    assert files_under(blob_store.spool) == []  # the copy had no name to leave behind


def test_altered_bytes_are_detected_on_read(harness: Harness, blob_store: BlobStore) -> None:
    good = blob_store.ingest_bytes(png_bytes(1))
    bad = blob_store.ingest_bytes(png_bytes(2))
    altered = bytearray(png_bytes(2))
    altered[len(altered) // 2] ^= 0x01
    harness.overwrite(blob_store, bad.digest, bytes(altered))
    with pytest.raises(BlobCorrupt, match=bad.digest):
        blob_store.read_bytes(bad.digest)
    assert blob_store.read_bytes(bad.digest, verify=False) == bytes(altered)
    assert blob_store.verify(bad.digest) is False
    assert blob_store.verify(good.digest) is True
    assert blob_store.read_bytes(good.digest) == png_bytes(1)


def test_a_missing_blob_is_not_found(blob_store: BlobStore) -> None:
    blob_store.ingest_bytes(b"something")
    missing = sha(b"never stored")
    assert not blob_store.exists(missing)
    for read in (blob_store.open, blob_store.open_seekable, blob_store.read_bytes,
                 blob_store.verify):
        with pytest.raises(AssetNotFound, match=missing):
            read(missing)


# --- addresses that are not digests -------------------------------------------------------


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_addresses_that_are_not_digests_are_refused(blob_store: BlobStore, digest: str) -> None:
    blob_store.ingest_bytes(b"something")
    for call in (blob_store.exists, blob_store.open, blob_store.open_seekable,
                 blob_store.read_bytes, blob_store.verify):
        with pytest.raises(InvalidInput, match="not a blob address"):
            call(digest)


def test_a_digest_with_a_trailing_newline_is_refused(blob_store: BlobStore) -> None:
    digest = blob_store.ingest_bytes(b"something").digest
    with pytest.raises(InvalidInput):
        parse_digest(digest + "\n")
    with pytest.raises(InvalidInput):
        blob_store.exists(digest + "\n")
    with pytest.raises(InvalidInput):
        blob_store.open(digest + "\n")


def test_parse_digest_returns_the_hex_part() -> None:
    assert parse_digest("sha256:" + "0f" * 32) == "0f" * 32
