"""The workspace with real watchdog observers: checkout, saves as external edits (a chain
with the right parents, the software, the branch head), new and deleted files, restarts."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from strata.core.decisions import branches
from strata.core.errors import InvalidInput
from strata.core.layers.editing import EditedOutside, record_external_edit
from strata.core.projections import views
from strata.core.projections.lineage import walk
from strata.core.provenance.ancestry import provenance
from strata.core.service import Strata
from strata.watchers.settle import Timing
from strata.watchers.workspace import MANIFEST, Workspace, checkout, read_manifest
from tests.helpers import png_bytes
from tests.watchers.helpers import Notes, events_of, running, wait_until


def _saved_by(seed: int, software: str) -> bytes:
    """A PNG as an editor saves it: new pixels and its name in the Software chunk."""
    image = Image.open(io.BytesIO(png_bytes(seed)))
    info = PngInfo()
    info.add_text("Software", software)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _save_atomically(path: Path, data: bytes) -> None:
    """As many editors save: a temporary file beside it, renamed over it."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@pytest.fixture
def original(strata: Strata, tmp_path: Path) -> str:
    path = tmp_path / "portrait.png"
    path.write_bytes(png_bytes(1))
    (event,) = strata.add_files([path])
    return event.data["asset"]["digest"]


def _edits(strata: Strata) -> list[EditedOutside]:
    found = []
    for event in events_of(strata, "editing.external"):
        assert isinstance(event.payload, EditedOutside)
        found.append(event.payload)
    return found


def test_three_saves_make_a_three_step_lineage_and_advance_the_branch(
        strata: Strata, original: str, tmp_path: Path) -> None:
    branches.create(strata, "retouch", original)
    folder = tmp_path / "ws"
    assert checkout(strata, [original[7:15]], folder, branch="retouch") == {
        "portrait.png": read_manifest(folder)["portrait.png"]}
    target = folder / "portrait.png"
    assert target.read_bytes() == png_bytes(1)
    notes = Notes()
    saves = [_saved_by(2, "GIMP 2.10.38"), _saved_by(3, "Krita 5.2"), _saved_by(4, "GIMP 3.0")]
    with running(Workspace(strata, folder, notes.append)):
        for number, data in enumerate(saves, start=1):
            if number == 2:
                _save_atomically(target, data)
            else:
                target.write_bytes(data)  # saved in place
            wait_until(lambda n=number: len(notes) == n, f"save {number}")
    edits = _edits(strata)
    made = [e.output.asset.digest for e in edits]
    assert [e.output.inputs[0].digest for e in edits] == [original, *made[:2]]
    assert {i.role for e in edits for i in e.output.inputs} == {"source"}
    assert [e.operation for e in edits] == ["external"] * 3
    assert [e.output.params["software"] for e in edits] == ["GIMP 2.10.38", "Krita 5.2",
                                                            "GIMP 3.0"]
    assert [strata.blobs.read_bytes(d) for d in made] == saves
    assert read_manifest(folder)["portrait.png"].asset == made[-1]
    with strata.view() as conn:
        assert views.branch(conn, "retouch")["head"] == made[-1]
        chain = walk(conn, made[-1], "up")
    assert [(e.output_digest, e.input_digest) for e in chain] == [
        (made[2], made[1]), (made[1], made[0]), (made[0], original)]
    steps = sorted(provenance(strata, made[-1]).steps, key=lambda s: s.position)
    assert [s.kind for s in steps] == ["import", "external", "external", "external"]
    assert all(s.made_outside_strata for s in steps)


def test_new_files_are_imported_and_deleted_files_record_nothing(
        strata: Strata, original: str, tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    checkout(strata, [original], folder)
    notes = Notes()
    with running(Workspace(strata, folder, notes.append)):
        (folder / "reference.png").write_bytes(png_bytes(7))
        wait_until(lambda: len(notes) == 1, "the import")
        (folder / "portrait.png").unlink()
        (folder / "reference.png").write_bytes(_saved_by(8, "Photoshop"))
        wait_until(lambda: len(notes) == 2, "the edit of the new file")
    assert [n.kind for n in notes] == ["imported", "edited"]
    manifest = read_manifest(folder)
    assert manifest["portrait.png"].asset == original  # kept: nothing destructive
    assert manifest["reference.png"].asset == notes[1].digest
    (edit,) = _edits(strata)
    assert edit.output.inputs[0].digest == notes[0].digest
    assert len(events_of(strata, "asset.imported")) == 2  # the fixture's and the new file


def test_a_restart_records_what_changed_while_down_once(
        strata: Strata, original: str, tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    checkout(strata, [original], folder)
    (folder / "portrait.png").write_bytes(_saved_by(9, "GIMP"))  # while nobody watches
    (folder / "dropped.png").write_bytes(png_bytes(10))
    for _ in range(2):
        notes = Notes()
        with running(Workspace(strata, folder, notes.append, timing=Timing(interval=0.1))):
            if not _edits(strata):
                wait_until(lambda found=notes: len(found) == 2, "the edit and the import")
    assert len(_edits(strata)) == 1
    assert len(events_of(strata, "asset.imported")) == 2


def test_a_recorded_edit_whose_manifest_update_was_lost_is_not_recorded_again(
        strata: Strata, original: str, tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    checkout(strata, [original], folder)
    manifest = (folder / MANIFEST).read_text()
    (folder / "portrait.png").write_bytes(_saved_by(11, "GIMP"))
    event = record_external_edit(strata, folder / "portrait.png", original)
    assert event is not None
    (folder / MANIFEST).write_text(manifest)  # as if it stopped before updating it
    notes = Notes()
    with running(Workspace(strata, folder, notes.append)):
        pass
    assert notes == []
    assert len(_edits(strata)) == 1
    assert json.loads((folder / MANIFEST).read_text())["files"]["portrait.png"]["asset"] == (
        event.payload.output.asset.digest)  # type: ignore[union-attr]


def test_checkout_never_overwrites_other_work(strata: Strata, original: str,
                                              tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "portrait.png").write_bytes(b"someone's work")
    with pytest.raises(InvalidInput, match="other contents"):
        checkout(strata, [original], folder)
    assert (folder / "portrait.png").read_bytes() == b"someone's work"
    assert not (folder / MANIFEST).exists()
