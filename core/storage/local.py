"""The local folder blob store: each blob a file `objects/ab/cdef…` named by its digest.

Ingests spool into `objects/tmp/`, on the same file system as the blobs, so that
publishing a blob is one atomic rename; the file and the folders it lands in are
flushed, so a blob that an event names survives a crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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
        self._publish_all([(temporary, digest)])

    def _publish_all(self, blobs: Sequence[tuple[Path, str]]) -> None:
        """Each file's bytes reach the disk before its name does, and its folder's entry
        (and a new shard folder's, in the root) before this returns. The flushes of each
        step are issued together: a journalling file system commits them at once, where
        one after the other each waits for its own commit (a job's outputs wait for about
        two commits rather than up to three per blob)."""
        fresh: dict[str, Path] = {}  # digest -> temporary, for blobs not stored yet
        folders: set[Path] = set()
        for temporary, digest in blobs:
            final = self.path_of(digest)
            # An existing blob's writer may have been killed between its rename and its
            # fsync: its folder is flushed again below, before an event relies on it.
            folders.add(final.parent)
            if not final.exists():
                fresh.setdefault(digest, temporary)
        new_shards = {f for f in (self.path_of(d).parent for d in fresh) if not f.is_dir()}
        for shard in new_shards:
            shard.mkdir(exist_ok=True)
        flushes: list[tuple[Callable[[Path], None], Path]] = [
            (fsync_file, temporary) for temporary in fresh.values()]
        if new_shards:
            flushes.append((fsync_dir, self.root))  # the new shard folders' entries
        _flush_together(flushes)
        for digest, temporary in fresh.items():
            os.replace(temporary, self.path_of(digest))
        _flush_together([(fsync_dir, folder) for folder in folders])

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


def _flush_together(flushes: Sequence[tuple[Callable[[Path], None], Path]]) -> None:
    if len(flushes) <= 1:
        for flush, path in flushes:
            flush(path)
        return
    with ThreadPoolExecutor(max_workers=len(flushes)) as pool:
        list(pool.map(lambda each: each[0](each[1]), flushes))  # re-raises a failure
