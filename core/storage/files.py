"""Durable writes on a local file system, shared by everything that must survive a crash.

A file's bytes and a folder's entries are flushed separately: after a power cut, a file
renamed into place can be missing (its folder was not flushed) or empty (its contents
were not), so durable writers flush both.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush the contents of the file at `path` to the disk."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(folder: Path) -> None:
    """Flush the entries of `folder`, so that a file created or renamed in it survives."""
    # Only POSIX systems let a folder be opened to flush its entries.
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Replace the file at `path` with `data` (text as UTF-8): a reader, or the disk after a
    crash, sees the old contents or the new ones, never a mix.

    The data goes to a temporary file beside `path` (the same file system, so the rename
    is atomic), which is flushed, renamed over `path`, and its folder flushed; on failure
    the temporary file is removed and `path` is untouched. Like every `mkstemp` file, the
    new file is readable and writable by its owner only.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
