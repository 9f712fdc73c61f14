"""The local folder blob store: each blob a file `objects/ab/cdef…` named by its digest.

Ingests spool into `objects/tmp/`, on the same file system as the blobs, so that
publishing a blob is one atomic rename; the file and the folders it lands in are
flushed, so a blob that an event names survives a crash.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from strata.core.errors import AssetNotFound
from strata.core.storage.blobs import DIGEST_RE, BlobStore, parse_digest
from strata.core.storage.files import fsync_dir, fsync_file


class LocalBlobStore(BlobStore):
    """Blobs as files `objects/ab/cdef…` in a local folder."""

    def __init__(self, root: Path, max_image_pixels: int, max_bytes: int) -> None:
        super().__init__(root / "tmp", max_image_pixels, max_bytes)
        self.root = root

    def path_of(self, digest: str) -> Path:
        hex_digest = parse_digest(digest)
        return self.root / hex_digest[:2] / hex_digest[2:]

    def _publish(self, temporary: Path, digest: str) -> None:
        final = self.path_of(digest)
        if final.exists():
            # Another writer may have been killed between its rename and its fsync:
            # make the entry durable before an event comes to rely on it.
            fsync_dir(final.parent)
            return
        if not final.parent.is_dir():
            final.parent.mkdir(exist_ok=True)
            fsync_dir(self.root)  # the new shard folder must survive a crash too
        fsync_file(temporary)  # its bytes reach the disk before its name does
        os.replace(temporary, final)
        fsync_dir(final.parent)

    def _exists(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    def _open(self, digest: str) -> BinaryIO:
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
