"""Durable writes: atomic_write replaces a file whole and flushes it and its folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strata.core.storage import files
from strata.core.storage.files import atomic_write, fsync_dir


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths flushed with os.fsync, in order (read back from the descriptor)."""
    seen: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        seen.append(Path(os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    monkeypatch.setattr(files.os, "fsync", recording_fsync)
    return seen


def test_atomic_write_writes_bytes_and_text(tmp_path: Path) -> None:
    atomic_write(tmp_path / "blob", b"\x00\xff bytes")
    atomic_write(tmp_path / "note.json", '{"prompt": "ein Bär"}')
    assert (tmp_path / "blob").read_bytes() == b"\x00\xff bytes"
    assert (tmp_path / "note.json").read_bytes() == '{"prompt": "ein Bär"}'.encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "note.json"]


def test_atomic_write_replaces_a_file_through_a_new_one(tmp_path: Path) -> None:
    target = tmp_path / "cache.json"
    target.write_text("old")
    before = target.stat().st_ino
    atomic_write(target, "new")
    assert target.read_text() == "new"
    # A new file renamed over the old one: a reader holding the old one never sees a mix.
    assert target.stat().st_ino != before
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_atomic_write_flushes_the_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, fsynced: list[Path]
) -> None:
    target = tmp_path / "cache.json"
    atomic_write(target, "contents")
    temporary, folder = fsynced
    assert temporary.parent == tmp_path.resolve() and temporary.name.startswith(".cache.json.")
    assert folder == tmp_path.resolve()


def test_a_failed_atomic_write_keeps_the_old_contents_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "inside").write_text("kept")
    with pytest.raises(IsADirectoryError):
        atomic_write(occupied, b"a file cannot replace a folder")
    assert (occupied / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name descriptors")
def test_fsync_dir_flushes_the_folder(tmp_path: Path, fsynced: list[Path]) -> None:
    fsync_dir(tmp_path)
    assert fsynced == [tmp_path.resolve()]
