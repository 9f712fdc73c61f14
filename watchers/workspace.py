"""The workspace: a folder of checked-out assets that outside tools edit.

`checkout` writes assets into a folder beside a manifest (`.strata-workspace.json`,
written atomically) that says which asset each file is and on which branch. A watched
workspace turns every saved change of such a file into an editing step, operation
`external` (core.layers.editing.record_external_edit): the asset the manifest names is
its `source`, the saved bytes its output, the software the file names is kept, and the
file's branch, when it has one, advances in the same commit. The manifest then names the
new asset, so successive saves form a chain. A new file dropped in is imported (and from
then on is a workspace file); a deleted file records nothing.

On start, the files are compared by hash with the manifest and the store: a change made
while nobody watched is recorded once, and a change recorded just before a stop whose
manifest update was lost is found in the log instead of being recorded again.
"""

from __future__ import annotations

import json
import mimetypes
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from strata.core.errors import BranchNotFound, InvalidInput, NotFound
from strata.core.layers.editing import EditedOutside, record_external_edit
from strata.core.ledger.event_types import AssetImported, short
from strata.core.ledger.events import Payload
from strata.core.service import Strata
from strata.core.storage.files import atomic_write
from strata.watchers.files import (
    Notice,
    Report,
    digest_of,
    imported_from,
    media_check,
    recorded,
)
from strata.watchers.settle import Signature, Timing, ignored, signature, watch

MANIFEST = ".strata-workspace.json"
FORMAT = 1


@dataclass(frozen=True)
class Entry:
    """What a workspace file is: an asset, and the branch its edits advance (if any)."""

    asset: str
    branch: str | None = None


def read_manifest(folder: Path) -> dict[str, Entry]:
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: Entry(item["asset"], item.get("branch"))
                for name, item in data["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InvalidInput(f"{path} is not a workspace manifest Strata can read: "
                           f"{error}") from error


def write_manifest(folder: Path, entries: dict[str, Entry]) -> None:
    files = {name: {"asset": e.asset, "branch": e.branch} for name, e in sorted(entries.items())}
    atomic_write(folder / MANIFEST, json.dumps({"format": FORMAT, "files": files}, indent=2)
                 + "\n")


def _file_name(label: str | None, digest: str, media_type: str) -> str:
    """The asset's original name when it has a usable one, else its short hash."""
    if label and Path(label).name == label and not ignored(label):
        return label
    return short(digest) + (mimetypes.guess_extension(media_type) or "")


def checkout(strata: Strata, refs: Sequence[str], folder: Path,
             branch: str | None = None) -> dict[str, Entry]:
    """Write the assets into `folder` (made if missing) and name them in its manifest.

    Each file's branch is `branch` when given, else the checked-out branch if the asset
    is its head, else none. Nothing is written if any asset or the branch is unknown, or
    a file of the same name with other bytes is already there (work is never overwritten).
    The manifest is written before the files, so a watcher never takes them for new ones.
    """
    from strata.core.decisions import branches
    from strata.core.projections import views

    if not refs:
        raise InvalidInput("no assets to check out")
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder")
    digests = [strata.resolve_asset(ref) for ref in refs]
    current = branches.current(strata)
    with strata.view() as conn:
        rows = [views.asset_row(conn, digest) for digest in digests]
        if branch is not None and views.branch(conn, branch) is None:
            raise BranchNotFound(f"no branch named {branch!r}")
        current_row = views.branch(conn, current) if current else None
    current_head = current_row["head"] if current_row else None
    entries = read_manifest(folder) if folder.is_dir() else {}
    planned: dict[str, str] = {}
    for digest, row in zip(digests, rows, strict=True):
        assert row is not None  # resolved a moment ago
        name = _file_name(row["label"], digest, str(row["media_type"]))
        if planned.get(name, digest) != digest:  # two assets with one original name
            name = f"{Path(name).stem}-{short(digest)}{Path(name).suffix}"
        target = folder / name
        if target.exists() and (not target.is_file() or digest_of(target) != digest):
            raise InvalidInput(f"{target} is already there with other contents; check out "
                               "into another folder (nothing was written)")
        planned[name] = digest
        entries[name] = Entry(digest, branch if branch is not None else
                              current if current_head == digest else None)
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, entries)
    for name, digest in planned.items():
        if not (folder / name).exists():
            atomic_write(folder / name, strata.blobs.read_bytes(digest))
    return {name: entries[name] for name in planned}


def _edited_from(source: str) -> Callable[[Payload], bool]:
    def matches(payload: Payload) -> bool:
        return isinstance(payload, EditedOutside) and any(
            i.digest == source for i in payload.output.inputs)

    return matches


class Workspace:
    def __init__(self, strata: Strata, folder: Path, report: Report,
                 timing: Timing | None = None) -> None:
        if not folder.is_dir():
            raise InvalidInput(f"the workspace {folder} is not a folder")
        read_manifest(folder)  # refuse an unreadable manifest before watching
        self.strata = strata
        self.folder = folder.resolve()
        self.report = report
        self.timing = timing or Timing()
        self._taken: dict[Path, Signature] = {}
        self.started = threading.Event()  # set once watching (after reconciling)

    def run(self, stop: threading.Event) -> None:
        """Record saves until `stop` is set (the file in hand is finished first)."""
        watch(self.folder, self.timing, stop, self.reconcile, self.take, batch=1,
              started=self.started)

    def reconcile(self, present: Sequence[Path]) -> list[Path]:
        """The files whose change since the last run is not yet recorded."""
        entries = read_manifest(self.folder)
        found: dict[str, Entry] = {}
        waiting: list[Path] = []
        for path in present:
            seen = signature(path)
            if seen is None:
                continue
            digest = digest_of(path)
            entry = entries.get(path.name)
            if entry is not None and digest == entry.asset:
                self._taken[path] = seen
            elif entry is not None and recorded(self.strata, digest,
                                                _edited_from(entry.asset)) is not None:
                found[path.name] = Entry(digest, entry.branch)  # the manifest lagged
                self._taken[path] = seen
            elif entry is None and media_check(path) is None and recorded(
                    self.strata, digest, imported_from(path)) is not None:
                found[path.name] = Entry(digest)
                self._taken[path] = seen
            else:
                waiting.append(path)
        if found:
            write_manifest(self.folder, {**entries, **found})
        return waiting

    def take(self, paths: Sequence[Path]) -> None:
        for path in paths:
            seen = signature(path)
            if seen is None or self._taken.get(path) == seen:
                continue
            self._taken[path] = seen
            # Read each time: a checkout into the folder may have added files meanwhile.
            entries = read_manifest(self.folder)
            entry = entries.get(path.name)
            try:
                made = (self._edit(path, entry) if entry is not None
                        else self._import(path))
            except (InvalidInput, NotFound, OSError) as error:
                self.report(Notice("refused", path, f"refused, nothing recorded: {error}"))
                continue
            if made is not None:
                write_manifest(self.folder, {**read_manifest(self.folder), path.name: made})

    def _edit(self, path: Path, entry: Entry) -> Entry | None:
        event = record_external_edit(self.strata, path, entry.asset, entry.branch)
        if event is None:
            return None  # saved without a change
        assert isinstance(event.payload, EditedOutside)
        digest = event.payload.output.asset.digest
        software = event.payload.output.params.get("software")
        self.report(Notice("edited", path, f"edited outside Strata from "
                           f"{short(entry.asset)}" + (f" in {software}" if software else "")
                           + (f"; branch {entry.branch} advanced" if entry.branch else ""),
                           digest, event))
        return Entry(digest, entry.branch)

    def _import(self, path: Path) -> Entry | None:
        problem = media_check(path)
        if problem is not None:
            self.report(Notice(problem.split(":", 1)[0], path, problem))
            return None
        (event,) = self.strata.add_files([path])
        assert isinstance(event.payload, AssetImported)
        digest = event.payload.asset.digest
        self.report(Notice("imported" if event.version == 1 else "reimported", path,
                           digest=digest, event=event))
        return Entry(digest)
