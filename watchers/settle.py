"""When a file in a watched folder is finished: the debounce both watchers share.

A file is taken once its writer is done with it:

- where the platform reports closes (inotify on Linux: watchdog's FileOpenedEvent and
  FileClosedEvent), a file written in place is taken when the last writer closes it, at
  once, however long it paused between writes;
- a file renamed into place (an atomic save: a temporary file renamed over the name) is
  complete by construction and is taken at once;
- otherwise (a move into the folder from elsewhere, platforms without close events, a
  writer still open after `open_timeout`), once its size and modification time have not
  changed for `interval` seconds.

Temporary and hidden files (`.part`, `.crdownload`, `.tmp`, `~`, `.swp`, dotfiles) are
never taken: they are what an atomic save or a download is written to first.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

TEMPORARY_SUFFIXES = (".part", ".crdownload", ".tmp", "~", ".swp", ".swx")

Signature = tuple[int, int]  # size, modification time (ns): what "unchanged" compares


def ignored(name: str) -> bool:
    """Whether a file name is a temporary or hidden file that is never taken."""
    return name.startswith(".") or name.endswith(TEMPORARY_SUFFIXES)


def signature(path: Path) -> Signature | None:
    """The size and modification time of a regular file; None when there is none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return stat.st_size, stat.st_mtime_ns


@dataclass
class Timing:
    """How long a file must stay unchanged to be taken, and how long one held open by a
    writer is waited for (a writer that never closes is taken after that, once stable)."""

    interval: float = 0.3
    open_timeout: float = 30.0


@dataclass
class _Pending:
    since: float  # when its signature last changed (or it was last written)
    signature: Signature | None = None
    opens: int = 0  # opens not yet closed, as the platform reported them
    complete: bool = False  # closed after writing, or renamed into place


class Settler:
    """The files of one folder that are waiting to be finished, fed by the observer's
    thread and polled by the watcher's."""

    def __init__(self, timing: Timing, clock: Callable[[], float] = time.monotonic) -> None:
        self.timing = timing
        self.clock = clock
        self._pending: dict[Path, _Pending] = {}
        self._changed = threading.Condition()

    def _entry(self, path: Path) -> _Pending:
        entry = self._pending.get(path)
        if entry is None:
            entry = self._pending[path] = _Pending(since=self.clock())
        return entry

    def saw(self, path: Path) -> None:
        """The file appeared or was written: wait until it is finished."""
        with self._changed:
            entry = self._entry(path)
            entry.since, entry.complete = self.clock(), False
            self._changed.notify()

    def opened(self, path: Path) -> None:
        with self._changed:
            self._entry(path).opens += 1

    def closed(self, path: Path, wrote: bool) -> None:
        with self._changed:
            entry = self._pending.get(path)
            if entry is None:
                if not wrote:  # a reader (this watcher hashing it, say): nothing new
                    return
                entry = self._entry(path)
            entry.opens = max(0, entry.opens - 1)
            entry.complete = entry.complete or wrote
            self._changed.notify()

    def arrived(self, path: Path) -> None:
        """The file was renamed into place: its contents are complete."""
        with self._changed:
            entry = self._pending[path] = _Pending(since=self.clock(), complete=True)
            entry.signature = signature(path)
            self._changed.notify()

    def gone(self, path: Path) -> None:
        with self._changed:
            self._pending.pop(path, None)

    def settled(self) -> list[Path]:
        """The files that are finished now (in the order they were first seen), no longer
        pending; files that vanished are dropped."""
        now = self.clock()
        ready: list[Path] = []
        with self._changed:
            for path, entry in list(self._pending.items()):
                current = signature(path)
                if current is None:
                    del self._pending[path]
                    continue
                if current != entry.signature:
                    entry.signature = current
                    if not entry.complete:
                        entry.since = now
                        continue
                quiet = now - entry.since
                if entry.opens and quiet < self.timing.open_timeout:
                    continue
                if entry.complete or quiet >= self.timing.interval:
                    ready.append(path)
                    del self._pending[path]
        return ready

    def wait(self, timeout: float) -> None:
        """Sleep until the observer reports something, or `timeout` seconds."""
        with self._changed:
            self._changed.wait(timeout)


class _Handler(FileSystemEventHandler):
    """Feeds a Settler from watchdog's events about the top level of one folder."""

    def __init__(self, folder: Path, settler: Settler) -> None:
        self.folder = folder
        self.settler = settler

    def _ours(self, raw: bytes | str) -> Path | None:
        path = Path(os.fsdecode(raw))
        if not raw or path.parent != self.folder or ignored(path.name):
            return None
        return path

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            source, destination = self._ours(event.src_path), self._ours(event.dest_path)
            if source is not None:
                self.settler.gone(source)
            if destination is not None:
                self.settler.arrived(destination)
            return
        path = self._ours(event.src_path)
        if path is None:
            return
        if isinstance(event, FileCreatedEvent | FileModifiedEvent):
            self.settler.saw(path)
        elif isinstance(event, FileOpenedEvent):
            self.settler.opened(path)
        elif isinstance(event, FileClosedEvent):
            self.settler.closed(path, wrote=True)
        elif isinstance(event, FileClosedNoWriteEvent):
            self.settler.closed(path, wrote=False)
        elif isinstance(event, FileDeletedEvent):
            self.settler.gone(path)


def candidates(folder: Path) -> list[Path]:
    """The files at the top level of `folder` a watcher may take, by name."""
    return sorted(p for p in folder.iterdir() if not ignored(p.name) and p.is_file())


def watch(
    folder: Path,
    timing: Timing,
    stop: threading.Event,
    reconcile: Callable[[list[Path]], Iterable[Path]],
    take: Callable[[list[Path]], None],
    batch: int = 500,
    started: threading.Event | None = None,
) -> None:
    """Watch the top level of `folder` until `stop` is set.

    The observer starts first, then `reconcile` is given the files already there and
    returns those still to be taken (so nothing written meanwhile is missed); `take` is
    given the finished files, at most `batch` at a time. On `stop`, the batch in hand is
    finished and the observer stopped; files not yet taken are found again by the next
    start's reconciliation. `started` is set once the files already there are reconciled.
    """
    folder = folder.resolve()
    settler = Settler(timing)
    observer = Observer()
    observer.schedule(_Handler(folder, settler), str(folder), recursive=False)
    observer.start()
    poll = max(0.02, min(0.1, timing.interval / 4))
    try:
        for path in reconcile(candidates(folder)):
            settler.saw(path)
        if started is not None:
            started.set()
        while not stop.is_set():
            ready = settler.settled()
            if not ready:
                settler.wait(poll)
                continue
            for start in range(0, len(ready), batch):
                if stop.is_set():
                    break
                take(ready[start:start + batch])
    finally:
        observer.stop()
        observer.join()


def until_signalled(run: Callable[[threading.Event], None]) -> None:
    """Run a watcher until SIGINT or SIGTERM: the file in hand is finished, the rest is
    found again by the next start."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
