"""The inbox: every image, video or audio file that lands in a folder becomes an asset.

Files are imported through `Strata.add_files`, the path of `strata add`: checked, stored,
then recorded as `asset.imported` with their source path and original name and whatever
generation metadata an importer finds in them. Files finished together are imported in
one append; a batch that one bad file refuses is imported again file by file, so only
the bad file is left out (reported, and left where it is).

Exactly once: a file is imported once per arrival. While the watcher runs it remembers
what it took (size and modification time); on start it hashes the files already there
and skips those the store already holds an import of from the same path. The same bytes
arriving again (another name, or written again) are recorded again as an import of the
existing asset (`strata add` does the same): the asset itself is stored once.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

from strata.core.errors import InvalidInput
from strata.core.ledger.event_types import AssetImported
from strata.core.ledger.events import RecordedEvent
from strata.core.service import Strata
from strata.watchers.files import (
    Notice,
    Report,
    digest_of,
    imported_from,
    media_check,
    recorded,
)
from strata.watchers.settle import Signature, Timing, signature, watch


def _free_name(folder: Path, name: str) -> Path:
    """`name` in `folder`, or `stem-N.suffix` when it is taken."""
    target = folder / name
    stem, suffix = os.path.splitext(name)
    number = 1
    while target.exists():
        target = folder / f"{stem}-{number}{suffix}"
        number += 1
    return target


class Inbox:
    def __init__(self, strata: Strata, folder: Path, report: Report,
                 move_to: Path | None = None, timing: Timing | None = None) -> None:
        if not folder.is_dir():
            raise InvalidInput(f"the inbox {folder} is not a folder")
        if move_to is not None:
            if not move_to.is_dir():
                raise InvalidInput(f"--move-to {move_to} is not a folder")
            if move_to.resolve() == folder.resolve():
                raise InvalidInput("--move-to must be another folder than the inbox")
        self.strata = strata
        self.folder = folder.resolve()
        self.report = report
        self.move_to = move_to
        self.timing = timing or Timing()
        self._taken: dict[Path, Signature] = {}  # what each file was when it was handled
        self.started = threading.Event()  # set once watching (after reconciling)

    def run(self, stop: threading.Event) -> None:
        """Import until `stop` is set (the batch in hand is finished first)."""
        watch(self.folder, self.timing, stop, self.reconcile, self.take,
              started=self.started)

    def reconcile(self, present: Sequence[Path]) -> list[Path]:
        """The files already in the inbox that still need importing; those imported
        before a restart (same path, same bytes) are only moved out if asked."""
        waiting: list[Path] = []
        for path in present:
            seen = signature(path)
            if seen is None:
                continue
            if media_check(path) is not None:
                waiting.append(path)  # reported once, when taken
                continue
            digest = digest_of(path)
            if recorded(self.strata, digest, imported_from(path)) is None:
                waiting.append(path)
                continue
            self._taken[path] = seen
            self._move(path, digest)
        return waiting

    def take(self, paths: Sequence[Path]) -> None:
        """Import the finished files (those not already handled as they are now)."""
        media: list[tuple[Path, Signature]] = []
        for path in paths:
            seen = signature(path)
            if seen is None or self._taken.get(path) == seen:
                continue
            self._taken[path] = seen
            try:
                problem = media_check(path)
            except OSError as error:
                problem = f"refused: cannot read it: {error.strerror or error}"
            if problem is None:
                media.append((path, seen))
            else:
                self.report(Notice(problem.split(":", 1)[0], path, problem))
        if not media:
            return
        try:
            events = self.strata.add_files([path for path, _ in media])
        except InvalidInput:  # one bad file refuses the batch: find it, import the rest
            for path, _ in media:
                self._import_one(path)
            return
        # The same bytes twice in one batch are two events on the asset's stream; the
        # last of them is returned for both files, so the first file is told apart here.
        repeats: dict[str, int] = {}
        for event in events:
            repeats[event.stream] = repeats.get(event.stream, 0) + 1
        earlier: dict[str, int] = {}
        for (path, _), event in zip(media, events, strict=True):
            earlier[event.stream] = earlier.get(event.stream, 0) + 1
            self._imported(path, event, event.version - repeats[event.stream]
                           + earlier[event.stream])

    def _import_one(self, path: Path) -> None:
        try:
            (event,) = self.strata.add_files([path])
        except (InvalidInput, OSError) as error:
            self.report(Notice("refused", path, f"refused, left in place: {error}"))
            return
        self._imported(path, event, event.version)

    def _imported(self, path: Path, event: RecordedEvent, version: int) -> None:
        """Report an import whose event is at `version` of the asset's stream."""
        assert isinstance(event.payload, AssetImported)
        digest = event.payload.asset.digest
        # The asset's stream already had an event: these bytes were known before.
        kind = "imported" if version == 1 else "reimported"
        self.report(Notice(kind, path, digest=digest, event=event))
        self._move(path, digest)

    def _move(self, path: Path, digest: str) -> None:
        if self.move_to is None:
            return
        target = _free_name(self.move_to, path.name)
        try:
            shutil.move(path, target)
        except OSError as error:
            self.report(Notice("refused", path, f"imported, but not moved: {error}", digest))
            return
        self._taken.pop(path, None)
        self.report(Notice("moved", target, f"moved to {target}", digest))
