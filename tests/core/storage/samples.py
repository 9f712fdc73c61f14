"""Inputs for the blob and media tests: real images, bombs, and streams that stall or fail."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import wave
import zlib
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from strata.core.storage.blobs import CHUNK


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def files_under(folder: Path) -> list[Path]:
    """Every plain file below `folder` (blobs and temporary files alike)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# Addresses that a blob store refuses: paths, prefixes and near misses of a digest.
BAD_DIGESTS = [
    "../../etc/passwd",
    "../x",
    "sha256:../..",
    "sha256:../../" + "a" * 58,  # 64 characters, not 64 hex digits
    "sha256:" + "../" * 21 + "a",
    "sha256:" + "A" * 64,  # uppercase hex
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:abcd",  # a prefix
    "a" * 64,  # no algorithm
    "md5:" + "a" * 32,
    "SHA256:" + "a" * 64,
    "sha256:" + "a" * 62 + "/x",
    "/sha256:" + "a" * 64,
    "",
]


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


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x01" * 800)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def bomb_png(width: int, height: int) -> bytes:
    """A real, tiny PNG whose header claims `width` x `height` 1-bit pixels."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" * (1 + (width + 7) // 8)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(row * 4, 9)) + _png_chunk(b"IEND", b""))


def corrupt_images() -> list[tuple[str, bytes, str]]:
    """(name, bytes, the refusal's message) of images that announce a type and break."""
    png = image_bytes("PNG", size=(64, 64))
    jpeg = image_bytes("JPEG", size=(64, 64))
    return [
        ("truncated-png", png[: len(png) // 2], r"corrupt or truncated image/png"),
        ("truncated-jpeg", jpeg[: len(jpeg) // 2], r"corrupt or truncated image/jpeg"),
        ("corrupt-jpeg", jpeg[:3] + bytes(range(256)) * 4, r"corrupt or truncated image/jpeg"),
        ("png-signature-only", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
         r"corrupt or truncated image/png"),
    ]


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


class FailingStream(io.RawIOBase):
    """Gives a few chunks of a PNG-looking stream, then fails as a dropped connection would."""

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
