"""The inbox with real watchdog observers on temporary folders, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from strata.core.ledger.event_types import AssetImported
from strata.core.service import Strata
from strata.watchers.inbox import Inbox
from strata.watchers.settle import Timing
from tests.helpers import png_bytes
from tests.watchers.helpers import Notes, events_of, running, wait_until


def _imports(strata: Strata) -> list[AssetImported]:
    found = []
    for event in events_of(strata, "asset.imported"):
        assert isinstance(event.payload, AssetImported)
        found.append(event.payload)
    return found


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def test_a_slow_writer_is_taken_once_when_it_closes(strata: Strata, inbox: Path) -> None:
    data = png_bytes(1, size=(64, 64))
    notes = Notes()
    # Pauses longer than the settle interval: only the close says the file is finished.
    with running(Inbox(strata, inbox, notes.append, timing=Timing(interval=0.2))):
        with (inbox / "slow.png").open("wb") as handle:
            chunks = [data[i:i + len(data) // 5 + 1] for i in range(0, len(data),
                                                                   len(data) // 5 + 1)]
            for chunk in chunks:
                handle.write(chunk)
                handle.flush()
                time.sleep(2.0 / len(chunks))
        wait_until(lambda: bool(notes.kinds("imported")), "the import")
    (imported,) = _imports(strata)
    assert imported.source.name == "slow.png"
    assert imported.source.path == str((inbox / "slow.png").resolve())
    assert strata.blobs.read_bytes(imported.asset.digest) == data
    assert not notes.kinds("refused")


def test_atomic_saves_and_moves_in_are_taken_and_temporaries_never(
        strata: Strata, inbox: Path, tmp_path: Path) -> None:
    notes = Notes()
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(png_bytes(2))
    with running(Inbox(strata, inbox, notes.append)):
        for name in (".hidden.png", "download.png.part", "x.crdownload", "y.tmp", "z.png~",
                     ".z.png.swp"):
            (inbox / name).write_bytes(png_bytes(len(name)))
        temporary = inbox / ".saving.png.tmp"
        temporary.write_bytes(png_bytes(3))
        os.replace(temporary, inbox / "saved.png")  # write a temporary, rename over
        os.replace(elsewhere, inbox / "moved.png")  # a move from outside: no close event
        wait_until(lambda: len(notes.kinds("imported")) == 2, "two imports")
    assert sorted(i.source.name or "" for i in _imports(strata)) == ["moved.png", "saved.png"]
    assert {n.path.name for n in notes} == {"moved.png", "saved.png"}


def test_the_same_bytes_twice_are_a_reimport_of_one_asset(strata: Strata, inbox: Path) -> None:
    notes = Notes()
    with running(Inbox(strata, inbox, notes.append)):
        (inbox / "first.png").write_bytes(png_bytes(4))
        wait_until(lambda: len(notes) == 1, "the first import")
        (inbox / "again.png").write_bytes(png_bytes(4))
        wait_until(lambda: len(notes) == 2, "the second arrival")
    imports = _imports(strata)
    assert [i.source.name for i in imports] == ["first.png", "again.png"]
    assert len({i.asset.digest for i in imports}) == 1
    assert [n.kind for n in notes] == ["imported", "reimported"]
    with strata.view() as conn:
        from strata.core.projections import views
        assert views.asset_row(conn, imports[0].asset.digest)["label"] == "first.png"


def test_corrupt_files_are_reported_and_left_in_place(strata: Strata, inbox: Path) -> None:
    notes = Notes()
    truncated = png_bytes(5, size=(64, 64))[:200]
    with running(Inbox(strata, inbox, notes.append)):
        (inbox / "garbage.png").write_bytes(b"not an image at all")
        (inbox / "truncated.png").write_bytes(truncated)
        (inbox / "good.png").write_bytes(png_bytes(6))
        (inbox / "notes.txt").write_text("a text file is no media")
        wait_until(lambda: len(notes) == 4, "four notices")
    assert sorted(n.path.name for n in notes.kinds("refused")) == ["garbage.png",
                                                                   "truncated.png"]
    assert [n.path.name for n in notes.kinds("skipped")] == ["notes.txt"]
    assert [i.source.name for i in _imports(strata)] == ["good.png"]
    assert (inbox / "garbage.png").read_bytes() == b"not an image at all"
    assert (inbox / "truncated.png").read_bytes() == truncated


def test_a_restart_imports_only_what_arrived_while_it_was_down(
        strata: Strata, inbox: Path) -> None:
    notes = Notes()
    with running(Inbox(strata, inbox, notes.append)):
        for seed in range(3):
            (inbox / f"before-{seed}.png").write_bytes(png_bytes(10 + seed))
        wait_until(lambda: len(notes) == 3, "three imports")
    for seed in range(2):  # while nobody watches
        (inbox / f"meanwhile-{seed}.png").write_bytes(png_bytes(20 + seed))
    restarted = Notes()
    with running(Inbox(strata, inbox, restarted.append)):
        wait_until(lambda: len(restarted) == 2, "the two new files")
    with running(Inbox(strata, inbox, restarted.append)):
        pass  # a third start finds nothing new
    assert sorted(n.path.name for n in restarted) == ["meanwhile-0.png", "meanwhile-1.png"]
    assert len(_imports(strata)) == 5


def test_move_to_moves_imported_files_out(strata: Strata, inbox: Path, tmp_path: Path) -> None:
    done = tmp_path / "done"
    done.mkdir()
    (done / "a.png").write_bytes(b"an earlier file of that name")
    notes = Notes()
    with running(Inbox(strata, inbox, notes.append, move_to=done)):
        (inbox / "a.png").write_bytes(png_bytes(30))
        (inbox / "bad.png").write_bytes(b"corrupt")
        wait_until(lambda: len(notes.kinds("moved")) == 1 and len(notes.kinds("refused")) == 1,
                   "the move")
    assert sorted(p.name for p in inbox.iterdir()) == ["bad.png"]
    assert (done / "a-1.png").read_bytes() == png_bytes(30)
    assert (done / "a.png").read_bytes() == b"an earlier file of that name"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_burst_of_a_thousand_files_is_imported_exactly_once(
        strata: Strata, inbox: Path, tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    staged.mkdir()
    for seed in range(1000):
        (staged / f"burst-{seed:04}.png").write_bytes(png_bytes(seed, size=(8, 8)))
    notes = Notes()
    with running(Inbox(strata, inbox, notes.append)):
        for path in sorted(staged.iterdir()):
            os.replace(path, inbox / path.name)
        wait_until(lambda: len(notes) >= 1000, "a thousand imports")
    names = [i.source.name for i in _imports(strata)]
    assert len(names) == 1000
    assert len(set(names)) == 1000
    assert {n.kind for n in notes} == {"imported"}
