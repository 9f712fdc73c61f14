"""The content-addressed blob store: addressing, streaming ingest, sniffing, refusals.

Most tests use LocalBlobStore directly on a temporary folder (no database); a few go
through `Strata.add_file` to check that a refused file records nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import tracemalloc
import wave
import zlib
from collections.abc import Iterator
from pathlib import Path

import imagehash
import pytest
from PIL import Image
from sqlalchemy import func, select

from strata.core.errors import AssetNotFound, BlobCorrupt, InvalidInput
from strata.core.ledger.log import events_table
from strata.core.service import Strata
from strata.core.storage.blobs import CHUNK, LocalBlobStore, parse_digest
from tests.helpers import png_bytes

MAX_PIXELS = 178_956_970
GIB = 1024**3


def make_store(tmp_path: Path, max_pixels: int = MAX_PIXELS, max_bytes: int = 8 * GIB,
               ) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "objects", max_image_pixels=max_pixels,
                          max_bytes=max_bytes)


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def files_under(folder: Path) -> list[Path]:
    """Every plain file below `folder` (blobs and temporary files alike)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def image_bytes(fmt: str, size: tuple[int, int] = (40, 24), seed: int = 1,
                mode: str = "RGB") -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", size)
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256))
                   for _ in range(size[0] * size[1])])
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def bomb_png(width: int, height: int) -> bytes:
    """A real, tiny PNG whose header claims `width` x `height` 1-bit pixels."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" * (1 + (width + 7) // 8)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(row * 4, 9)) + png_chunk(b"IEND", b""))


# --- addressing and layout ------------------------------------------------------------


def test_blobs_are_addressed_by_sha256_under_a_two_level_layout(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    data = png_bytes(7)
    info = store.ingest_bytes(data)
    hex_digest = hashlib.sha256(data).hexdigest()
    assert info.digest == f"sha256:{hex_digest}"
    assert info.size == len(data)
    expected = tmp_path / "objects" / hex_digest[:2] / hex_digest[2:]
    assert store.path_of(info.digest) == expected
    assert expected.read_bytes() == data
    assert store.exists(info.digest)
    assert store.read_bytes(info.digest) == data
    assert store.verify(info.digest)
    assert list(store.iter_digests()) == [info.digest]
    # Nothing but the blob itself is left: no temporary file next to it.
    assert files_under(tmp_path / "objects") == [expected]


def test_the_same_bytes_are_stored_once_and_never_rewritten(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    data = png_bytes(3)
    first = store.ingest_bytes(data)
    path = store.path_of(first.digest)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # an old mtime a rewrite would change
    before = path.stat()
    second = store.ingest(io.BytesIO(data))
    after = path.stat()
    assert second == first
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino, before.st_mtime_ns, before.st_size)
    assert list(store.iter_digests()) == [first.digest]
    assert store.stale_temporary_files() == []
    assert files_under(tmp_path / "objects") == [path]


def test_different_bytes_get_different_blobs_listed_in_order(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    digests = {store.ingest_bytes(png_bytes(seed)).digest for seed in range(6)}
    digests.add(store.ingest_bytes(b"").digest)  # the empty blob is a blob too
    assert len(digests) == 7
    assert list(store.iter_digests()) == sorted(digests)
    assert store.read_bytes(sha(b"")) == b""


def test_iter_digests_on_a_store_that_does_not_exist_yet(tmp_path: Path) -> None:
    assert list(make_store(tmp_path).iter_digests()) == []


# --- streaming in constant memory -------------------------------------------------------


def generated_chunks(total: int, seed: int) -> Iterator[bytes]:
    """`total` pseudo-random-ish bytes, one MiB at a time, never all held at once."""
    block = random.Random(seed).randbytes(CHUNK)
    produced, index = 0, 0
    while produced < total:
        turn = (index * 7919 + 13) % CHUNK  # every chunk is a different rotation
        piece = (block[turn:] + block[:turn])[: total - produced]
        produced += len(piece)
        index += 1
        yield piece


class GeneratedStream(io.RawIOBase):
    """A readable raw stream over `generated_chunks`, holding at most one chunk."""

    def __init__(self, total: int, seed: int) -> None:
        self._chunks = generated_chunks(total, seed)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pending:
            self._pending = next(self._chunks, b"")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


@pytest.mark.slow
def test_ingesting_one_gib_streams_in_constant_memory(tmp_path: Path) -> None:
    total, seed = GIB, 42
    expected = hashlib.sha256()
    for piece in generated_chunks(total, seed):
        expected.update(piece)
    store = make_store(tmp_path)
    tracemalloc.start()
    try:
        info = store.ingest(GeneratedStream(total, seed))  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert info.digest == f"sha256:{expected.hexdigest()}"
        assert info.size == total
        assert info.media_type == "application/octet-stream"
        assert store.path_of(info.digest).stat().st_size == total
        assert peak < 64 * 1024**2, f"ingest held {peak:,} bytes at its peak"
        assert store.stale_temporary_files() == []
    finally:
        store.path_of(info.digest).unlink()  # do not leave a GiB behind in the temp folder


# --- media type from the bytes, never the name -------------------------------------------


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x01" * 800)
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "media_type"), [
    (png_bytes(1), "image/png"),
    (image_bytes("JPEG"), "image/jpeg"),
    (image_bytes("GIF", mode="P"), "image/gif"),
    (image_bytes("BMP"), "image/bmp"),
    (image_bytes("TIFF"), "image/tiff"),
    (image_bytes("WEBP"), "image/webp"),
    (wav_bytes(), "audio/wav"),
    (b'  {"prompt": "a cat"}', "application/json"),
    (b"%PDF-1.7\n%...", "application/pdf"),
    (b"just some text, not an image", "application/octet-stream"),
], ids=["png", "jpeg", "gif", "bmp", "tiff", "webp", "wav", "json", "pdf", "text"])
def test_media_type_is_sniffed_from_the_bytes(tmp_path: Path, data: bytes,
                                              media_type: str) -> None:
    assert make_store(tmp_path).ingest_bytes(data).media_type == media_type


def test_file_names_are_ignored(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    png_named_txt = tmp_path / "notes.txt"
    png_named_txt.write_bytes(png_bytes(5, (30, 20)))
    text_named_png = tmp_path / "picture.png"
    text_named_png.write_bytes(b"this is plain text with an image's name")
    as_png = store.ingest_path(png_named_txt)
    assert (as_png.media_type, as_png.width, as_png.height) == ("image/png", 30, 20)
    as_text = store.ingest_path(text_named_png)
    assert as_text.media_type == "application/octet-stream"
    assert (as_text.width, as_text.height, as_text.phash, as_text.dhash) == (None,) * 4


def test_ingest_path_refuses_what_is_not_a_file(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(InvalidInput, match="not a file"):
        store.ingest_path(tmp_path / "missing.png")
    with pytest.raises(InvalidInput, match="not a file"):
        store.ingest_path(tmp_path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_image_dimensions_and_perceptual_hashes_match_imagehash(tmp_path: Path,
                                                                fmt: str) -> None:
    store = make_store(tmp_path)
    data = image_bytes(fmt, size=(48, 36), seed=9, mode="P" if fmt == "GIF" else "RGB")
    info = store.ingest_bytes(data)
    assert (info.width, info.height) == (48, 36)
    with Image.open(store.path_of(info.digest)) as image:
        rgb = image.convert("RGB")
    assert info.phash == str(imagehash.phash(rgb))
    assert info.dhash == str(imagehash.dhash(rgb))
    assert len(info.phash) == len(info.dhash) == 16  # 64-bit hashes in hex


# --- refusals leave nothing behind --------------------------------------------------------


def corrupt_inputs() -> list[tuple[str, bytes, str]]:
    png = image_bytes("PNG", size=(64, 64))
    jpeg = image_bytes("JPEG", size=(64, 64))
    return [
        ("truncated-png", png[: len(png) // 2], r"corrupt or truncated image/png"),
        ("truncated-jpeg", jpeg[: len(jpeg) // 2], r"corrupt or truncated image/jpeg"),
        ("corrupt-jpeg", jpeg[:3] + bytes(range(256)) * 4, r"corrupt or truncated image/jpeg"),
        ("png-signature-only", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
         r"corrupt or truncated image/png"),
    ]


@pytest.mark.parametrize(("name", "data", "message"), corrupt_inputs(),
                         ids=[c[0] for c in corrupt_inputs()])
def test_broken_images_are_refused_and_leave_no_file(tmp_path: Path, name: str, data: bytes,
                                                    message: str) -> None:
    store = make_store(tmp_path)
    with pytest.raises(InvalidInput, match=message):
        store.ingest_bytes(data)
    assert files_under(tmp_path / "objects") == []
    assert not store.exists(sha(data))
    # Through a path the refusal names the file.
    source = tmp_path / f"{name}.bin"
    source.write_bytes(data)
    with pytest.raises(InvalidInput, match=f"{name}.bin"):
        store.ingest_path(source)
    assert files_under(tmp_path / "objects") == []


def test_a_decompression_bomb_is_refused_without_decoding_it(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    data = bomb_png(60_000, 60_000)
    assert len(data) < 1024  # small on disk, 3.6 billion pixels when decoded
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="decompression bomb"):
            store.ingest_bytes(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024**2
    assert files_under(tmp_path / "objects") == []


def test_the_configured_pixel_limit_refuses_bombs(tmp_path: Path) -> None:
    store = make_store(tmp_path, max_pixels=100 * 100)
    with pytest.raises(InvalidInput, match=r"decompression bomb: 101x100 = 10,100 pixels.*"
                                           r"STRATA_MAX_IMAGE_PIXELS"):
        store.ingest_bytes(image_bytes("PNG", size=(101, 100)))
    assert files_under(tmp_path / "objects") == []
    assert store.ingest_bytes(image_bytes("PNG", size=(100, 100))).width == 100


def test_a_big_bomb_is_reported_as_a_bomb_not_as_a_corrupt_file(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(InvalidInput) as refused:
        store.ingest_bytes(bomb_png(60_000, 60_000))
    message = str(refused.value)
    assert "refused as a decompression bomb" in message
    assert "STRATA_MAX_IMAGE_PIXELS" in message
    assert "corrupt" not in message


def test_files_over_the_size_limit_are_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path, max_bytes=1000)
    with pytest.raises(InvalidInput, match=r"larger than the limit of 1,000 bytes"):
        store.ingest_bytes(b"x" * 1001)
    assert files_under(tmp_path / "objects") == []
    assert store.ingest_bytes(b"x" * 1000).size == 1000  # the limit itself is allowed


class FailingStream(io.RawIOBase):
    """Gives a few chunks, then fails as a dropped network connection would."""

    def __init__(self, good_chunks: int, error: BaseException) -> None:
        self.left = good_chunks
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.left == 0:
            raise self.error
        self.left -= 1
        buffer[:] = b"\x89PNG\r\n\x1a\n".ljust(len(buffer), b"\x07")
        return len(buffer)


@pytest.mark.parametrize("error", [OSError("connection reset"), KeyboardInterrupt()],
                         ids=["oserror", "keyboardinterrupt"])
def test_an_interrupted_ingest_leaves_no_temporary_file(tmp_path: Path,
                                                        error: BaseException) -> None:
    store = make_store(tmp_path)
    with pytest.raises(type(error)):
        store.ingest(FailingStream(3, error))  # type: ignore[arg-type]
    assert store.stale_temporary_files() == []
    assert files_under(tmp_path / "objects") == []
    assert list(store.iter_digests()) == []


# --- corruption on disk ------------------------------------------------------------------


def test_a_corrupted_blob_is_detected(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    good = store.ingest_bytes(png_bytes(1))
    bad = store.ingest_bytes(png_bytes(2))
    path = store.path_of(bad.digest)
    stored = bytearray(path.read_bytes())
    stored[len(stored) // 2] ^= 0x01
    path.write_bytes(bytes(stored))
    with pytest.raises(BlobCorrupt, match=bad.digest):
        store.read_bytes(bad.digest)
    with pytest.raises(BlobCorrupt):
        store.read_bytes(bad.digest, verify=True)
    assert store.read_bytes(bad.digest, verify=False) == bytes(stored)
    assert store.verify(bad.digest) is False
    assert store.verify(good.digest) is True
    assert store.read_bytes(good.digest) == png_bytes(1)


def test_a_missing_blob_is_not_found(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    missing = sha(b"never stored")
    assert not store.exists(missing)
    with pytest.raises(AssetNotFound, match=missing):
        store.open(missing)
    with pytest.raises(AssetNotFound):
        store.read_bytes(missing)


# --- addresses that try to leave the store --------------------------------------------------


BAD_DIGESTS = [
    "../../etc/passwd",
    "sha256:../..",
    "sha256:../../" + "a" * 58,  # 64 characters, not 64 hex digits
    "sha256:" + "../" * 21 + "a",
    "sha256:" + "A" * 64,  # uppercase hex
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:abcd",
    "a" * 64,  # no algorithm
    "md5:" + "a" * 32,
    "SHA256:" + "a" * 64,
    "sha256:" + "a" * 62 + "/x",
    "/sha256:" + "a" * 64,
    "",
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_addresses_that_are_not_digests_are_refused(tmp_path: Path, digest: str) -> None:
    store = make_store(tmp_path)
    store.ingest_bytes(b"something")
    with pytest.raises(InvalidInput, match="not a blob address"):
        store.path_of(digest)
    with pytest.raises(InvalidInput):
        store.open(digest)
    with pytest.raises(InvalidInput):
        store.exists(digest)
    with pytest.raises(InvalidInput):
        store.read_bytes(digest)
    with pytest.raises(InvalidInput):
        store.verify(digest)
    with pytest.raises(InvalidInput):
        store.copy_to(digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_digest_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    digest = store.ingest_bytes(b"something").digest
    with pytest.raises(InvalidInput):
        parse_digest(digest + "\n")
    with pytest.raises(InvalidInput):
        store.exists(digest + "\n")


def test_iter_digests_never_lists_temporary_or_stray_files(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    kept = store.ingest_bytes(png_bytes(1)).digest
    hex_digest = "ab" * 32
    # What a killed ingest leaves behind, and stray names that are not blobs.
    (store.tmp / "ingest-killed.part").write_bytes(b"half a file")
    (store.tmp / hex_digest[2:]).write_bytes(b"looks like a blob, lives in tmp")
    (store.root / "ab").mkdir()
    (store.root / "ab" / "short").write_bytes(b"not a digest")
    (store.root / "ab" / (hex_digest[2:].upper())).write_bytes(b"uppercase")
    (store.root / "zz").mkdir()
    (store.root / "zz" / ("0" * 62)).write_bytes(b"shard is not hex")
    (store.root / "README").write_text("not a shard")
    assert list(store.iter_digests()) == [kept]
    assert store.stale_temporary_files() == [store.tmp / "ingest-killed.part"]
    # A later ingest does not trip over the leftovers, nor lists them.
    second = store.ingest_bytes(png_bytes(2)).digest
    assert list(store.iter_digests()) == sorted([kept, second])


def test_copy_to_writes_the_stored_bytes(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    data = png_bytes(11)
    digest = store.ingest_bytes(data).digest
    store.copy_to(digest, tmp_path / "copy.png")
    assert (tmp_path / "copy.png").read_bytes() == data


def test_parse_digest_returns_the_hex_part() -> None:
    assert parse_digest("sha256:" + "0f" * 32) == "0f" * 32


# --- through the service: blob before event, nothing recorded on refusal ----------------------


def event_count(strata: Strata) -> int:
    with strata.store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(events_table))


def test_add_file_stores_the_blob_and_sniffs_the_type(strata: Strata, tmp_path: Path) -> None:
    source = tmp_path / "render.txt"
    data = png_bytes(21, (16, 12))
    source.write_bytes(data)
    event = strata.add_file(source)
    asset = event.data["asset"]
    assert asset["digest"] == sha(data)
    assert (asset["media_type"], asset["width"], asset["height"]) == ("image/png", 16, 12)
    blobs = strata.blobs
    assert isinstance(blobs, LocalBlobStore)
    assert blobs.root == strata.store.settings.objects_dir
    hex_digest = sha(data).removeprefix("sha256:")
    assert (blobs.root / hex_digest[:2] / hex_digest[2:]).read_bytes() == data
    assert list(blobs.iter_digests()) == [sha(data)]


def test_add_file_refusing_a_bomb_records_nothing(strata: Strata, tmp_path: Path) -> None:
    bomb = tmp_path / "harmless.png"
    bomb.write_bytes(bomb_png(60_000, 60_000))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png_bytes(4)[:-30])
    for path, message in ((bomb, "decompression bomb"), (truncated, "truncated")):
        with pytest.raises(InvalidInput, match=message):
            strata.add_file(path)
    assert event_count(strata) == 0
    objects = strata.store.settings.objects_dir
    assert files_under(objects) == []
