"""A model's identity as a digest of its weight files, with a cache for large checkpoints.

Provenance names a model by what its weights are, not what it is called (design rule 4).
Only weight files count, so editing a README or a scheduler default beside the weights
does not change the identity, while any change to a single tensor does.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from strata.core.errors import ModelError
from strata.core.models.pipelines import ModelNotFound
from strata.core.storage.files import atomic_write

WEIGHT_SUFFIXES = frozenset(
    {".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx", ".gguf", ".msgpack", ".h5"}
)
_CACHE_VERSION = 1


class NoWeightFiles(ModelError, ValueError):
    def __init__(self, folder: Path) -> None:
        super().__init__(
            f"model folder {folder} holds no weight files "
            f"(looked for {', '.join(sorted(WEIGHT_SUFFIXES))} in all subfolders)"
        )
        self.folder = folder


def weights_digest(path: Path, cache_file: Path | None = None) -> str:
    """Return "sha256:<hex>" identifying the weights of the model at `path`.

    A single-file checkpoint's digest is the sha256 of the file. A folder's digest is the
    sha256 over its weight files in POSIX relative-path order, each contributing its
    relative path, a NUL byte and the hex sha256 of its content. Per-file digests are
    remembered in `cache_file`, keyed by absolute path and checked against size, mtime_ns
    and inode, so an unchanged multi-gigabyte checkpoint is read once.
    """
    path = Path(path)
    if not path.exists():
        raise ModelNotFound(path)
    cache = _DigestCache(cache_file)
    if path.is_file():
        digest = cache.file_sha256(path)
    else:
        weight_files = _weight_files(path)
        if not weight_files:
            raise NoWeightFiles(path)
        combined = hashlib.sha256()
        for relative, file in weight_files:
            combined.update(relative.encode("utf-8", "surrogateescape"))
            combined.update(b"\0")
            combined.update(cache.file_sha256(file).encode("ascii"))
        digest = combined.hexdigest()
    cache.save()
    return f"sha256:{digest}"


def _weight_files(folder: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    # os.walk does not descend into symlinked folders (no cycles), but symlinked files,
    # as in a Hugging Face cache snapshot, are hashed by their content.
    for directory, _, names in os.walk(folder):
        for name in names:
            file = Path(directory, name)
            if file.suffix.lower() in WEIGHT_SUFFIXES and file.is_file():
                found.append((file.relative_to(folder).as_posix(), file))
    return sorted(found)


class _DigestCache:
    """Per-file sha256 digests in a JSON file; a missing or unreadable cache is empty."""

    def __init__(self, cache_file: Path | None) -> None:
        self._file = cache_file
        self._entries = _load_entries(cache_file) if cache_file else {}
        self._changed = False

    def file_sha256(self, file: Path) -> str:
        key = str(file.resolve())
        before = os.stat(key)
        fingerprint = {"size": before.st_size, "mtime_ns": before.st_mtime_ns, "ino": before.st_ino}
        entry = self._entries.get(key)
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in fingerprint.items()):
            return str(entry["sha256"])
        digest = _stream_sha256(key)
        after = os.stat(key)
        # A file written to while we read it has no single digest worth remembering.
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            self._entries[key] = {**fingerprint, "sha256": digest}
            self._changed = True
        return digest

    def save(self) -> None:
        if self._file is None or not self._changed:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"version": _CACHE_VERSION, "files": self._entries}, indent=1)
        atomic_write(self._file, payload)  # a reader never sees half a cache
        self._changed = False


def _load_entries(cache_file: Path) -> dict[str, dict[str, int | str]]:
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # The cache only saves time; a lost or damaged one means re-reading the weights.
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _stream_sha256(file: str) -> str:
    # file_digest reads in fixed-size chunks, so a 5 GB checkpoint needs constant memory.
    with open(file, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
