"""Signed checkpoints: a statement of the log's head that anyone with the public key can
hold the log to later, wherever it was kept (a ticket, an email, a git repository).

The hash chain proves the order and contents of what is in the log, not that nothing was
removed from its end or that the whole tail was not replaced by another consistent chain.
A checkpoint kept outside the store does: the log must still have, at the checkpoint's
position, the event with the checkpoint's hash, and a chain intact from there.

The format is a C2SP transparency-log checkpoint (https://c2sp.org/tlog-checkpoint), a
signed note (https://c2sp.org/signed-note) whose text is:

    <origin>                     the store's key name (core/provenance/keys.py)
    <size>                       the position of the log's head (0: an empty log)
    <base64 root hash>           the head event's chain hash, 32 bytes (zeros when empty)
    time <UTC ISO time>          an extension line: when the checkpoint was made

followed by a blank line and the signature line ``— <origin> <base64(key id || sig)>``.
One difference from a Merkle log: the root hash is the head of a hash chain, not an RFC
6962 tree root. It commits to every earlier event all the same; consistency with the log
is shown by walking the chain from the checkpoint's position, not by a Merkle proof. Any
signed-note reader (Go's `note.Open`) checks the signature.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from strata.core.errors import InvalidInput, VerificationFailed
from strata.core.ledger.events import GENESIS_HASH, RecordedEvent
from strata.core.ledger.log import ChainWalker, Ledger, chain_hash, utc_now
from strata.core.provenance.keys import (
    Signer,
    Verifier,
    check_name,
    load_signer,
    open_note,
    split_note,
    write_new,
)
from strata.core.service import Strata
from strata.core.storage.files import atomic_write

# The newest checkpoint `verify` (or `checkpoint`) has seen, kept in the store folder.
NEWEST_SEEN_FILE = "checkpoint.newest"
_TIME_PREFIX = "time "


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    hash: str  # hex, as the log writes chain hashes
    time: str | None  # None in a checkpoint made by another tool without the time line

    def text(self) -> str:
        root = base64.b64encode(bytes.fromhex(self.hash)).decode()
        time = f"{_TIME_PREFIX}{self.time}\n" if self.time else ""
        return f"{self.origin}\n{self.size}\n{root}\n{time}"

    def describe(self) -> str:
        when = f", made {self.time}" if self.time else ""
        return f"checkpoint {self.origin} at position {self.size}{when}"

    @classmethod
    def parse(cls, text: str, source: str) -> Checkpoint:
        lines = text.split("\n")[:-1]  # a note text ends in a newline
        if len(lines) < 3 or not all(lines):
            raise InvalidInput(f"{source} is not a checkpoint: it needs origin, size and root "
                               "hash lines, and no empty line")
        origin, size, root, *extensions = lines
        if not size.isdigit() or (size != "0" and size.startswith("0")):
            raise InvalidInput(f"{source}: the size line {size!r} is not a decimal number")
        try:
            digest = base64.b64decode(root, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != 32:
            raise InvalidInput(f"{source}: the root hash line is not 32 bytes of base64")
        time = next((line[len(_TIME_PREFIX):] for line in extensions
                     if line.startswith(_TIME_PREFIX)), None)
        return cls(check_name(origin), int(size), digest.hex(), time)


def make_checkpoint(ledger: Ledger, signer: Signer) -> tuple[Checkpoint, str]:
    """A checkpoint of the log's head now, and its signed text."""
    last = ledger.read_last(1)
    size, digest = (last[0].position, last[0].hash) if last else (0, GENESIS_HASH)
    checkpoint = Checkpoint(signer.name, size, digest, utc_now())
    return checkpoint, signer.sign(checkpoint.text())


def checkpoint_store(strata: Strata, out: Path | None = None) -> tuple[Checkpoint, str]:
    """Sign a checkpoint of the store's log now with the store's key; write it to `out`
    (a new file: an earlier checkpoint is evidence, never replaced) and keep it as the
    newest seen."""
    home = strata.store.settings.resolved_home
    checkpoint, message = make_checkpoint(strata.ledger, load_signer(home))
    if out is not None:
        try:
            write_new(out, message, 0o644)
        except FileExistsError:
            raise InvalidInput(f"{out} exists; a checkpoint is written to a new file, "
                               "never over an earlier one") from None
    remember(home, checkpoint, message)
    return checkpoint, message


def open_checkpoint(message: str, verifier: Verifier, source: str) -> Checkpoint:
    """The checkpoint in a signed note, once its signature by `verifier` holds and its
    origin is the key's name (a checkpoint of another log is refused)."""
    checkpoint = Checkpoint.parse(open_note(message, verifier, source), source)
    if checkpoint.origin != verifier.name:
        raise InvalidInput(f"{source} is a checkpoint of {checkpoint.origin!r}, signed by the "
                           f"key of {verifier.name!r}: a log's checkpoints carry its own name")
    return checkpoint


# --- holding the log to a checkpoint ---------------------------------------------------------

Kind = Literal["extends", "shortened", "rewritten", "forked", "unverified"]


@dataclass(frozen=True)
class Verdict:
    """What a checkpoint says of the log now: it `extends` the checkpoint, or was
    `shortened`, `rewritten` (at `position`) or `forked` since; or the checkpoint's
    signature did not verify (`unverified`)."""

    source: str
    kind: Kind
    position: int | None
    detail: str
    checkpoint: Checkpoint | None = None
    signed: str = ""  # the checkpoint file's text, to keep it as the newest seen

    @property
    def ok(self) -> bool:
        return self.kind == "extends"

    def line(self) -> str:
        # A refused signature's message names the file already.
        return self.detail if self.kind == "unverified" else f"{self.source}: {self.detail}"


def _first_break(ledger: Ledger, to_position: int) -> int | None:
    """The first position up to `to_position` where the chain from the genesis breaks."""
    walker = ChainWalker()
    for event in ledger.read_all(to_position=to_position):
        breaks = walker.step(event)
        if breaks:
            return min(b.position for b in breaks)
    return None


def _event_at(ledger: Ledger, position: int) -> RecordedEvent | None:
    found = next(ledger.read_all(from_position=position, limit=1), None)
    return found if found is not None and found.position == position else None


def hold_to(ledger: Ledger, checkpoint: Checkpoint, source: str) -> Verdict:
    """Whether the log still extends `checkpoint`, and if not, how and where it changed.

    The common case (it does) costs one read of the event at the checkpoint's position and
    the chain walk from there to the head. The chain before the checkpoint is walked only to
    name where a log that no longer holds was changed.
    """
    size = checkpoint.size
    head = ledger.head_position()

    def verdict(kind: Kind, position: int | None, detail: str) -> Verdict:
        return Verdict(source, kind, position, detail, checkpoint)

    if head < size:
        broken = _first_break(ledger, head)
        if broken is not None:
            return verdict("rewritten", broken,
                           f"the log was rewritten at position {broken} and is shorter than "
                           f"{checkpoint.describe()}: it now ends at position {head}")
        return verdict("shortened", head + 1,
                       f"the log was shortened: {checkpoint.describe()} attests {size} "
                       f"events, the log now ends at position {head}; positions "
                       f"{head + 1} to {size} were deleted")
    event = _event_at(ledger, size) if size else None
    held = event.hash if event is not None else GENESIS_HASH
    # An event altered in place but left with its old hash still has the checkpoint's
    # hash; its contents must still hash to it.
    if held != checkpoint.hash or (event is not None
                                   and chain_hash(event.prev_hash, event) != event.hash):
        broken = _first_break(ledger, size)
        if broken is not None:
            return verdict("rewritten", broken,
                           f"the log was rewritten at position {broken}, at or before "
                           f"{checkpoint.describe()}")
        return verdict("forked", size,
                       f"the log forked: the event at position {size} is not the one "
                       f"{checkpoint.describe()} attests, yet its chain from the genesis "
                       "holds; the history up to it was replaced by another")
    walker = ChainWalker()
    walker.prev_hash, walker.expected_position = checkpoint.hash, size + 1
    for later in ledger.read_all(from_position=size + 1):
        breaks = walker.step(later)
        if breaks:
            first = min(b.position for b in breaks)
            return verdict("rewritten", first,
                           f"the log was rewritten at position {first}, after "
                           f"{checkpoint.describe()}")
    return verdict("extends", None, f"the log extends {checkpoint.describe()} "
                                    f"(now at position {head})")


def hold_to_files(
    ledger: Ledger, files: Sequence[Path], verifier: Verifier
) -> list[Verdict]:
    """A verdict for each checkpoint file. A fork's position is narrowed by the others:
    it happened after the newest checkpoint that the log still extends."""
    verdicts = []
    for path in files:
        source = str(path)
        try:
            message = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInput(f"no checkpoint file {path}") from None
        try:
            checkpoint = open_checkpoint(message, verifier, source)
        except VerificationFailed as refused:
            verdicts.append(Verdict(source, "unverified", None, str(refused)))
            continue
        verdicts.append(replace(hold_to(ledger, checkpoint, source), signed=message))
    held = [v.checkpoint.size for v in verdicts if v.ok and v.checkpoint is not None]
    for index, found in enumerate(verdicts):
        if found.kind == "forked" and found.position is not None:
            since = max((size for size in held if size < found.position), default=None)
            if since is not None:
                verdicts[index] = replace(
                    found, detail=f"{found.detail}; it still extends the checkpoint at "
                    f"position {since}, so the fork is after position {since}")
    return verdicts


# --- the newest checkpoint seen ------------------------------------------------------------


def newest_seen(home: Path) -> tuple[Checkpoint, Path] | None:
    """The newest checkpoint this store has seen (its signature was checked when it was)."""
    path = home / NEWEST_SEEN_FILE
    try:
        message = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    text, _ = split_note(message, str(path))
    return Checkpoint.parse(text, str(path)), path


def remember(home: Path, checkpoint: Checkpoint, message: str) -> None:
    """Keep `checkpoint` (signed `message`) if it is newer than the one kept so far."""
    seen = newest_seen(home)
    if seen is not None and seen[0].size >= checkpoint.size:
        return
    home.mkdir(parents=True, exist_ok=True)
    path = home / NEWEST_SEEN_FILE
    atomic_write(path, message)
    os.chmod(path, 0o644)  # a checkpoint is public; atomic_write makes files private


def seen_warning(ledger: Ledger, home: Path) -> str | None:
    """A warning when the log no longer extends the newest checkpoint seen: shorter, or
    forked (a rewrite shows in the chain walk itself). Only a warning: a database restored
    from an older backup on purpose does the same, and the file is in the store's own
    folder; checkpoints kept elsewhere (`verify --checkpoint`) decide."""
    seen = newest_seen(home)
    if seen is None:
        return None
    checkpoint, path = seen
    found = hold_to(ledger, checkpoint, str(path))
    if found.kind not in ("shortened", "forked"):
        return None
    return (f"{found.detail}. If the database was not restored from a backup on purpose, "
            f"events were removed: check with `strata verify --checkpoint {path}` and the "
            "checkpoints kept outside the store")
