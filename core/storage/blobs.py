"""Content-addressed blob storage: `sha256:<hex>` → bytes, each stored exactly once.

`BlobStore` is the interface every backend implements (the local folder first; an S3
bucket later), so callers never know where the bytes live. Ingest is streamed in
constant memory, and a blob appears under its final name only once it is complete and
durable: written to a temporary file on the same file system, fsynced, then atomically
renamed (rule 1: blob before event; rule 5: no partial blob under its final name).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from strata.core.errors import AssetNotFound, BlobCorrupt, InvalidInput
from strata.core.ledger.event_types import AssetInfo
from strata.core.storage.media import SNIFF_BYTES, inspect

CHUNK = 1024 * 1024
DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")


def parse_digest(digest: str) -> str:
    """The hex part of a full digest; anything else (a path, a prefix) is refused."""
    match = DIGEST_RE.fullmatch(digest)
    if match is None:
        raise InvalidInput(f"not a blob address: {digest!r} (expected sha256:<64 hex>)")
    return match.group(1)


class BlobStore(ABC):
    """Where the bytes of assets live."""

    @abstractmethod
    def ingest(self, source: BinaryIO) -> AssetInfo:
        """Store the bytes read from `source` and describe them."""

    @abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """A binary file object over the stored bytes."""

    @abstractmethod
    def iter_digests(self) -> Iterator[str]:
        """Every complete blob in the store (never a temporary file)."""

    def stale_temporary_files(self) -> list[Path]:
        """Leftovers of ingests killed before their rename (never part of the store)."""
        return []

    def ingest_path(self, path: Path) -> AssetInfo:
        if not path.is_file():
            raise InvalidInput(f"not a file: {path}")
        try:
            with path.open("rb") as source:
                return self.ingest(source)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}: {exc}") from exc

    def ingest_bytes(self, data: bytes) -> AssetInfo:
        import io

        return self.ingest(io.BytesIO(data))

    def read_bytes(self, digest: str, verify: bool = True) -> bytes:
        with self.open(digest) as handle:
            data = handle.read()
        if verify and f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
            raise BlobCorrupt(f"blob {digest} is corrupt: its bytes no longer hash to it")
        return data

    def verify(self, digest: str) -> bool:
        """Re-hash the stored bytes (streamed); False if they no longer match."""
        hasher = hashlib.sha256()
        with self.open(digest) as handle:
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
        return f"sha256:{hasher.hexdigest()}" == digest


class LocalBlobStore(BlobStore):
    """Blobs as files `objects/ab/cdef…` in a local folder."""

    def __init__(self, root: Path, max_image_pixels: int, max_bytes: int) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.max_image_pixels = max_image_pixels
        self.max_bytes = max_bytes

    def path_of(self, digest: str) -> Path:
        hex_digest = parse_digest(digest)
        return self.root / hex_digest[:2] / hex_digest[2:]

    def ingest(self, source: BinaryIO) -> AssetInfo:
        self.tmp.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.sha256()
        size = 0
        head = b""
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="ingest-", suffix=".part")
        tmp_path = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise InvalidInput(
                            f"refused: the file is larger than the limit of {self.max_bytes:,} "
                            "bytes (STRATA_MAX_UPLOAD_BYTES)"
                        )
                    if len(head) < SNIFF_BYTES:
                        head += chunk[: SNIFF_BYTES - len(head)]
                    hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            info = inspect(tmp_path, head, self.max_image_pixels)
            digest = f"sha256:{hasher.hexdigest()}"
            final = self.path_of(digest)
            if final.exists():
                tmp_path.unlink()
                # Another writer may have been killed between its rename and its fsync:
                # make the entry durable before an event comes to rely on it.
                _fsync_dir(final.parent)
            else:
                if not final.parent.is_dir():
                    final.parent.mkdir(exist_ok=True)
                    _fsync_dir(self.root)  # the new shard folder must survive a crash too
                os.replace(tmp_path, final)
                _fsync_dir(final.parent)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        return AssetInfo(
            digest=digest,
            media_type=info.media_type,
            size=size,
            width=info.width,
            height=info.height,
            phash=info.phash,
            dhash=info.dhash,
        )

    def exists(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        try:
            return self.path_of(digest).open("rb")
        except FileNotFoundError:
            raise AssetNotFound(f"blob {digest} is not in the store at {self.root}") from None

    def iter_digests(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for shard in sorted(self.root.iterdir()):
            if len(shard.name) != 2 or not shard.is_dir():
                continue
            for blob in sorted(shard.iterdir()):
                digest = f"sha256:{shard.name}{blob.name}"
                if DIGEST_RE.fullmatch(digest):
                    yield digest

    def stale_temporary_files(self) -> list[Path]:
        return sorted(self.tmp.glob("*.part")) if self.tmp.is_dir() else []

    def copy_to(self, digest: str, destination: Path) -> None:
        with self.open(digest) as source, destination.open("wb") as out:
            shutil.copyfileobj(source, out, CHUNK)


def _fsync_dir(folder: Path) -> None:
    # The rename itself must survive a crash, not only the file's contents.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
