"""What both watchers say about a file, and how they recognise what they already took."""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from strata.core.ledger.event_types import AssetImported
from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.service import Strata, asset_stream
from strata.core.storage.media import SNIFF_BYTES, sniff_media_type

MEDIA = ("image/", "video/", "audio/")


@dataclass(frozen=True)
class Notice:
    """One thing a watcher did or refused, for the face to print.

    kind: imported, reimported (the same bytes again: another record of a known asset),
    edited (an external edit), refused (left in place, with the reason), skipped (not an
    image, video or audio file), deleted (nothing recorded), moved (out of the inbox)."""

    kind: str
    path: Path
    message: str = ""
    digest: str | None = None
    event: RecordedEvent | None = None


Report = Callable[[Notice], None]


def media_check(path: Path) -> str | None:
    """Why `path` is not taken as media (None when its bytes are an image, video or audio
    file): refused when its name promises media its bytes are not, skipped otherwise."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if sniff_media_type(head).startswith(MEDIA):
        return None
    guessed = mimetypes.guess_type(path.name)[0] or ""
    if guessed.startswith(MEDIA):
        return f"refused: its name says {guessed} but its bytes are not a file of that kind"
    return "skipped: not an image, video or audio file"


def digest_of(path: Path) -> str:
    with path.open("rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


def recorded(strata: Strata, digest: str, matches: Callable[[Payload], bool]
             ) -> RecordedEvent | None:
    """The first event of the asset's stream whose payload `matches` (how a restart finds
    what the watcher recorded before it stopped)."""
    for event in strata.ledger.read_stream(asset_stream(digest)):
        payload = event.payload
        if isinstance(payload, Payload) and matches(payload):
            return event
    return None


def imported_from(path: Path) -> Callable[[Payload], bool]:
    """Matches an import of the file at `path` (by its resolved path)."""
    where = str(path.resolve())

    def matches(payload: Payload) -> bool:
        return isinstance(payload, AssetImported) and payload.source.path == where

    return matches
