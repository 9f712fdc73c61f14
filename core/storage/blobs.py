"""Content-addressed blob storage: `sha256:<hex>` → bytes, each stored exactly once.

`BlobStore` is the interface every backend implements (the local folder in
`storage/local.py`; an S3 bucket later), so callers never know where the bytes live.
What does not depend on where the bytes live is done here, once: an ingest is streamed
in constant memory to a temporary file in a local spool folder, hashed and bounded in
size on the way, sniffed and inspected (images decoded in full), and only then handed to
the backend, which makes it durable under its digest. So a refused input never reaches
the backend, and a blob appears under its final name only once it is complete (rule 1:
blob before event; rule 5: no partial blob under its final name).

A backend implements the storage primitives: `_publish`, `_exists`, `_open` and
`iter_digests`. Addresses are checked here before any primitive sees them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from strata.core.errors import BlobCorrupt, InvalidInput
from strata.core.ledger.event_types import AssetInfo
from strata.core.storage.media import SNIFF_BYTES, inspect

CHUNK = 1024 * 1024
DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")
# Temporary files of ingests in progress (or of killed ones) in a spool folder.
TEMPORARY_PREFIX, TEMPORARY_SUFFIX = "ingest-", ".part"


def parse_digest(digest: str) -> str:
    """The hex part of a full digest; anything else (a path, a prefix) is refused."""
    match = DIGEST_RE.fullmatch(digest)
    if match is None:
        raise InvalidInput(f"not a blob address: {digest!r} (expected sha256:<64 hex>)")
    return match.group(1)


@dataclass(frozen=True)
class Staged:
    """An input spooled to a temporary file, hashed and inspected, not stored yet."""

    temporary: Path
    info: AssetInfo


class BlobStore(ABC):
    """Where the bytes of assets live.

    `spool` is a local folder, named by the backend, that holds each ingest's temporary
    file while it is hashed and inspected; it holds nothing else.
    """

    def __init__(self, spool: Path, max_image_pixels: int, max_bytes: int) -> None:
        self.spool = spool
        self.max_image_pixels = max_image_pixels
        self.max_bytes = max_bytes

    # --- the storage primitives of a backend -------------------------------------------

    @abstractmethod
    def _publish(self, temporary: Path, digest: str) -> None:
        """Make the complete, inspected file `temporary` durable under `digest`.

        Idempotent: when `digest` is already stored, the stored blob is kept as it is.
        The method may move `temporary` away; whatever is left of it is removed after.
        """

    @abstractmethod
    def _exists(self, digest: str) -> bool:
        """Whether a complete blob is stored under the (valid) `digest`."""

    @abstractmethod
    def _open(self, digest: str) -> BinaryIO:
        """The stored bytes of the (valid) `digest`; AssetNotFound when there are none."""

    @abstractmethod
    def iter_digests(self) -> Iterator[str]:
        """Every complete blob in the store, in order (never a temporary file)."""

    # --- ingest ---------------------------------------------------------------------------

    def ingest(self, source: BinaryIO) -> AssetInfo:
        """Store the bytes read from `source` and describe them.

        Refused input (too large, a broken image, a decompression bomb) raises
        InvalidInput and leaves nothing behind: no blob, no temporary file.
        """
        with self.staging([source]) as (staged,):
            return self.publish(staged)

    @contextmanager
    def staging(self, sources: Sequence[BinaryIO]) -> Iterator[list[Staged]]:
        """Spool, hash and inspect every source before any is stored. One refused source
        raises InvalidInput with nothing stored, so a caller can store all or none."""
        with self._temporaries() as staged:
            for source in sources:
                staged.append(self._stage(source))
            yield staged

    @contextmanager
    def _temporaries(self) -> Iterator[list[Staged]]:
        """A list to stage into; its temporary files are removed on leaving, whatever was
        published from them."""
        staged: list[Staged] = []
        try:
            yield staged
        finally:
            for each in staged:
                each.temporary.unlink(missing_ok=True)

    def publish(self, staged: Staged) -> AssetInfo:
        """Make a staged, inspected file durable under its digest."""
        self._publish(staged.temporary, staged.info.digest)
        return staged.info

    def _stage(self, source: BinaryIO) -> Staged:
        self.spool.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=self.spool, prefix=TEMPORARY_PREFIX,
                                            suffix=TEMPORARY_SUFFIX)
        temporary = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as spooled:
                digest, size, head = self._spool(source, spooled)
            info = inspect(temporary, head, self.max_image_pixels)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        # What inspection found, under the same names as the asset record's fields.
        return Staged(temporary, AssetInfo(digest=digest, size=size, **dataclasses.asdict(info)))

    def _spool(self, source: BinaryIO, spooled: BinaryIO) -> tuple[str, int, bytes]:
        """Copy `source` to `spooled` chunk by chunk: its digest, size and first bytes."""
        hasher = hashlib.sha256()
        size = 0
        head = b""
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
            spooled.write(chunk)
        return f"sha256:{hasher.hexdigest()}", size, head

    def ingest_path(self, path: Path) -> AssetInfo:
        with self.staging_paths([path]) as (staged,):
            return self.publish(staged)

    @contextmanager
    def staging_paths(self, paths: Sequence[Path]) -> Iterator[list[Staged]]:
        """`staging` for files; a refusal names the file it is about."""
        with self._temporaries() as staged:
            for path in paths:
                if not path.is_file():
                    raise InvalidInput(f"not a file: {path}")
                try:
                    with path.open("rb") as source:
                        staged.append(self._stage(source))
                except InvalidInput as exc:
                    raise InvalidInput(f"{path}: {exc}") from exc
            yield staged

    def ingest_bytes(self, data: bytes) -> AssetInfo:
        return self.ingest(io.BytesIO(data))

    def ingest_all(self, outputs: Sequence[bytes]) -> list[AssetInfo]:
        """Store a job's outputs: every one inspected before any is stored (one refused,
        none stored), then made durable together (`_publish_all`)."""
        with self.staging([io.BytesIO(data) for data in outputs]) as staged:
            self._publish_all([(each.temporary, each.info.digest) for each in staged])
            return [each.info for each in staged]

    def _publish_all(self, blobs: Sequence[tuple[Path, str]]) -> None:
        """`_publish` for several (temporary, digest) pairs; a backend that can flush
        them together overrides this."""
        for temporary, digest in blobs:
            self._publish(temporary, digest)

    # --- leftovers of killed ingests ----------------------------------------------------------

    def stale_temporary_files(self) -> list[Path]:
        """Temporary files in the spool: those of ingests killed before they finished (never
        part of the store), and those of ingests running right now."""
        if not self.spool.is_dir():
            return []
        return sorted(self.spool.glob(f"{TEMPORARY_PREFIX}*{TEMPORARY_SUFFIX}"))

    def remove_stale_temporary_files(self, older_than_seconds: float) -> list[Path]:
        """Remove the temporary files not written to for `older_than_seconds`, and name them.

        An ingest in progress writes to its file as it reads; choose an age longer than
        the slowest upload can stall and an image can take to decode, so that only
        leftovers of killed ingests are removed.
        """
        cutoff = time.time() - older_than_seconds
        removed = []
        for temporary in self.stale_temporary_files():
            try:
                if temporary.stat().st_mtime < cutoff:
                    temporary.unlink()
                    removed.append(temporary)
            except FileNotFoundError:
                continue  # its ingest finished (or another cleanup won) meanwhile
        return removed

    # --- reading ------------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        parse_digest(digest)  # paths and prefixes are refused before a backend sees them
        return self._exists(digest)

    def open(self, digest: str) -> BinaryIO:
        """A binary file over the stored bytes, to be read front to back: it may be a stream
        that cannot seek (a network body). Readers that seek, such as Pillow, use
        `open_seekable`. AssetNotFound when no blob is stored under `digest`."""
        parse_digest(digest)
        return self._open(digest)

    def open_seekable(self, digest: str) -> BinaryIO:
        """A seekable binary file over the stored bytes: the backend's own file when it can
        seek (the local store's), else a copy in an anonymous file in the spool, which the
        operating system removes once it is closed."""
        stored = self.open(digest)
        if stored.seekable():
            return stored
        with stored:
            self.spool.mkdir(parents=True, exist_ok=True)
            copy = tempfile.TemporaryFile(dir=self.spool)  # noqa: SIM115 (the caller closes it)
            try:
                shutil.copyfileobj(stored, copy, CHUNK)
                copy.seek(0)
            except BaseException:
                copy.close()
                raise
        return copy

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
