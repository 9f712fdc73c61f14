"""The local folder blob store: its layout, its flushes, and the service on top of it.

What every backend must do is in test_blob_contract.py; this file holds what only the
local folder has: the two-level `objects/ab/cdef…` layout beside its `tmp/` spool, the
fsync of each file and folder a blob lands in, and `Strata.add_file` on a real store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from strata.core.errors import AssetNotFound, InvalidInput
from strata.core.ledger.log import events_table
from strata.core.service import Strata
from strata.core.storage import local
from strata.core.storage.local import LocalBlobStore
from tests.core.storage.samples import BAD_DIGESTS, bomb_png, files_under, sha
from tests.helpers import png_bytes

MAX_PIXELS = 178_956_970
GIB = 1024**3


def make_store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "objects", max_image_pixels=MAX_PIXELS, max_bytes=GIB)


# --- layout -------------------------------------------------------------------------------


def test_blobs_are_files_under_a_two_level_layout(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    data = png_bytes(7)
    info = store.ingest_bytes(data)
    hex_digest = hashlib.sha256(data).hexdigest()
    expected = tmp_path / "objects" / hex_digest[:2] / hex_digest[2:]
    assert store.path_of(info.digest) == expected
    assert expected.read_bytes() == data
    assert store.spool == tmp_path / "objects" / "tmp"  # same file system: publish renames
    # Nothing but the blob itself is left: no temporary file next to it.
    assert files_under(tmp_path / "objects") == [expected]


def test_a_missing_blob_names_the_folder_it_was_looked_for_in(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(AssetNotFound, match=f"not in the store at {tmp_path / 'objects'}"):
        store.open(sha(b"never stored"))


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_path_of_refuses_addresses_that_are_not_digests(tmp_path: Path, digest: str) -> None:
    with pytest.raises(InvalidInput, match="not a blob address"):
        make_store(tmp_path).path_of(digest)


def test_iter_digests_lists_only_blob_files_of_the_layout(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    kept = store.ingest_bytes(png_bytes(1)).digest
    hex_digest = "ab" * 32
    # A file in the spool that looks like a blob, and stray names that are not blobs.
    (store.spool / hex_digest[2:]).write_bytes(b"looks like a blob, lives in tmp")
    (store.root / "ab").mkdir()
    (store.root / "ab" / "short").write_bytes(b"not a digest")
    (store.root / "ab" / (hex_digest[2:].upper())).write_bytes(b"uppercase")
    (store.root / "zz").mkdir()
    (store.root / "zz" / ("0" * 62)).write_bytes(b"shard is not hex")
    (store.root / "README").write_text("not a shard")
    assert list(store.iter_digests()) == [kept]
    assert store.stale_temporary_files() == []  # not an ingest's temporary file either


def test_iter_digests_on_a_store_that_does_not_exist_yet(tmp_path: Path) -> None:
    assert list(make_store(tmp_path).iter_digests()) == []


# --- durability ---------------------------------------------------------------------------


def test_a_new_blob_is_flushed_before_its_rename_and_its_folders_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path)
    data = png_bytes(1)
    final = store.path_of(sha(data))
    flushed: list[tuple[str, Path, bool]] = []  # what, which, and was the blob there yet
    monkeypatch.setattr(local, "fsync_file",
                        lambda path: flushed.append(("file", path, final.exists())))
    monkeypatch.setattr(local, "fsync_dir",
                        lambda path: flushed.append(("dir", path, final.exists())))
    store.ingest_bytes(data)
    # The file's bytes and the new shard folder's entry in the root (flushed together, in
    # either order) before the rename; the blob's entry in its folder after.
    *before, blob_entry = flushed
    ((kind, temporary, renamed),) = [f for f in before if f[0] == "file"]
    assert (kind, temporary.parent, renamed) == ("file", store.spool, False)
    assert [f for f in before if f[0] == "dir"] == [("dir", store.root, False)]
    assert blob_entry == ("dir", final.parent, True)

    flushed.clear()
    store.ingest_bytes(data)
    # Stored already: not written again, but its entry is made durable before an event
    # comes to rely on it (its writer may have died between rename and flush).
    assert flushed == [("dir", final.parent, True)]


def test_a_jobs_outputs_are_flushed_together_before_any_is_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ingest_all`: every file flushed before any blob appears, each folder after its
    blob is in place, the root once; the same bytes twice are stored once."""
    store = make_store(tmp_path)
    outputs = [png_bytes(1), png_bytes(2), png_bytes(3), png_bytes(1)]
    finals = [store.path_of(sha(data)) for data in outputs]
    flushed: list[tuple[str, Path, int]] = []  # what, which, how many blobs were there

    def note(kind: str) -> Callable[[Path], None]:
        return lambda path: flushed.append((kind, path, sum(f.exists() for f in finals)))

    monkeypatch.setattr(local, "fsync_file", note("file"))
    monkeypatch.setattr(local, "fsync_dir", note("dir"))
    infos = store.ingest_all(outputs)

    assert [info.digest for info in infos] == [sha(data) for data in outputs]
    assert all(final.read_bytes() == data for final, data in zip(finals, outputs, strict=True))
    files = [f for f in flushed if f[0] == "file"]
    assert len(files) == 3 and {count for *_, count in files} == {0}
    assert [f for f in flushed if f[1] == store.root] == [("dir", store.root, 0)]
    folders = [f for f in flushed if f[0] == "dir" and f[1] != store.root]
    assert sorted(f[1] for f in folders) == sorted({final.parent for final in finals})
    assert {count for *_, count in folders} == {4}
    assert store.stale_temporary_files() == []


def test_ingest_all_refusing_one_output_stores_none(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(InvalidInput):
        store.ingest_all([png_bytes(1), b"\x89PNG\r\n\x1a\n broken"])
    assert list(store.iter_digests()) == []
    assert store.stale_temporary_files() == []


# --- through the service: blob before event, nothing recorded on refusal ------------------


def event_count(strata: Strata) -> int:
    with strata.store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(events_table))


def test_add_file_stores_the_blob_and_sniffs_the_type(strata: Strata, tmp_path: Path) -> None:
    source = tmp_path / "render.txt"
    data = png_bytes(21, (16, 12))
    source.write_bytes(data)
    event = strata.add_file(source)
    asset = event.data["asset"]
    assert asset["digest"] == sha(data)
    assert (asset["media_type"], asset["width"], asset["height"]) == ("image/png", 16, 12)
    blobs = strata.blobs
    assert isinstance(blobs, LocalBlobStore)
    assert blobs.root == strata.store.settings.objects_dir
    hex_digest = sha(data).removeprefix("sha256:")
    assert (blobs.root / hex_digest[:2] / hex_digest[2:]).read_bytes() == data
    assert list(blobs.iter_digests()) == [sha(data)]


def test_add_file_refusing_a_bomb_records_nothing(strata: Strata, tmp_path: Path) -> None:
    bomb = tmp_path / "harmless.png"
    bomb.write_bytes(bomb_png(60_000, 60_000))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png_bytes(4)[:-30])
    for path, message in ((bomb, "decompression bomb"), (truncated, "truncated")):
        with pytest.raises(InvalidInput, match=message):
            strata.add_file(path)
    assert event_count(strata) == 0
    assert files_under(strata.store.settings.objects_dir) == []
