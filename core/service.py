"""The application service: the one place the faces (CLI, HTTP, watchers) call into.

It records events (the projections catch up in the same commit), resolves the names
users type (hash prefixes, event ids) and opens read views of the projections, either
current or as they were at an earlier position of the log.
"""

from __future__ import annotations

import getpass
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select

from strata.core.config import strata_version
from strata.core.errors import (
    AmbiguousReference,
    AssetNotFound,
    EventNotFound,
    InvalidInput,
    JobNotFound,
    NotFound,
)
from strata.core.interop.chunks import SIDECAR_SUFFIX
from strata.core.ledger.event_types import (
    ROLES,
    AssetDerived,
    AssetImported,
    ImportSource,
    InputRef,
    ProducedAsset,
)
from strata.core.ledger.events import NewEvent, Payload, RecordedEvent
from strata.core.ledger.log import ANY_VERSION, StreamAppend
from strata.core.projections import asof
from strata.core.projections.base import table
from strata.core.projections.runner import CatchUpFirst, ProjectionRunner
from strata.core.storage.db import memory_engine
from strata.core.storage.schema import AssetRow, ProjectionCheckpoint, metadata
from strata.core.store import Store

HEX_PREFIX = re.compile(r"^[0-9a-f]{4,64}$")
PREFIX_MATCHES_SHOWN = 5


@cache
def _assets_with_prefix() -> Select[Any]:
    """Built once: every HTTP request that names an asset asks it. A range on the primary
    key, not `LIKE 'prefix%'`, which no index serves (100 ms at a million events): every
    digest that starts with a hex prefix sorts at or after it and before prefix + "g"."""
    assets = table(AssetRow)
    return (select(assets.c.digest)
            .where(assets.c.digest >= bindparam("prefix"), assets.c.digest < bindparam("past"))
            .order_by(assets.c.digest).limit(PREFIX_MATCHES_SHOWN))


def _hex_prefix(prefix: str, ref: str, what: str) -> str:
    if not HEX_PREFIX.match(prefix):
        raise InvalidInput(
            f"{ref!r} does not name {what}: give at least 4 hex digits of its id or hash")
    return prefix


def _unique(ref: str, kind: str, found: list[str], not_found: type[NotFound]) -> str:
    """The one name a prefix matched; a clear error when it matched none or several."""
    if not found:
        raise not_found(f"no {kind} matches {ref!r}")
    if len(found) > 1:
        shown = ", ".join(name.removeprefix("sha256:")[:16] for name in found)
        more = " and more" if len(found) >= PREFIX_MATCHES_SHOWN else ""
        raise AmbiguousReference(
            f"{ref!r} is ambiguous: it matches several {kind}s ({shown}…{more}); "
            "give more digits")
    return found[0]


def default_meta() -> dict[str, Any]:
    """Who and where, recorded with every event (a fresh dict: callers add to it)."""
    return dict(_process_meta())


@cache
def _process_meta() -> dict[str, Any]:
    """The user, host and version of this process: looked up once, not on every record
    (the user and host name lookups cost about 50 µs each time)."""
    try:
        actor = getpass.getuser()
    except (KeyError, OSError):
        actor = "unknown"
    return {"actor": actor, "host": socket.gethostname(), "strata": strata_version()}


def asset_stream(digest: str) -> str:
    return f"asset:{digest.removeprefix('sha256:')}"


def _produced_digest(event: RecordedEvent) -> str:
    payload = event.payload
    if isinstance(payload, AssetDerived):
        return payload.output.asset.digest
    if isinstance(payload, AssetImported):
        return payload.asset.digest
    raise InvalidInput(f"{event.type} does not import an asset")


class Strata:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.ledger = store.ledger
        self.blobs = store.blobs

    # --- recording ---------------------------------------------------------------------

    def record(
        self,
        stream: str,
        payloads: Sequence[Payload],
        expected_version: int = ANY_VERSION,
        idempotency_key: str | None = None,
        meta: dict[str, Any] | None = None,
        within: Callable[[Connection, list[RecordedEvent]], None] | None = None,
    ) -> list[RecordedEvent]:
        """Append typed events to `stream`; the projections catch up in the same commit."""
        return self.record_together([(stream, payloads, expected_version)], idempotency_key,
                                    meta, within)

    def record_together(
        self,
        parts: Sequence[tuple[str, Sequence[Payload], int]],
        idempotency_key: str | None = None,
        meta: dict[str, Any] | None = None,
        within: Callable[[Connection, list[RecordedEvent]], None] | None = None,
    ) -> list[RecordedEvent]:
        """Append typed events to several streams in one commit, each at its expected
        version (stream, payloads, expected_version); the projections catch up in it too.

        Inline projection means a reader never sees an event its projections lack, and an
        event that a projection cannot take is refused instead of wedging every reader.
        """
        full_meta = {**default_meta(), **(meta or {})}
        appends = [StreamAppend(stream, [NewEvent.of(p, full_meta) for p in payloads], version)
                   for stream, payloads, version in parts]

        inline = False

        def alongside(conn: Connection, appended: list[RecordedEvent]) -> None:
            if within is not None:
                within(conn, appended)
            self.store.projections.apply_pending(conn, appended, far_behind_ok=inline)

        attempts = 0
        while True:
            # If other writers keep the projections far behind, the third try catches up
            # inside the append after all.
            inline = attempts >= 2
            try:
                return self.ledger.append_together(appends, idempotency_key, alongside)
            except CatchUpFirst:
                # Far behind: catch up in batches that each commit on their own (running
                # jobs keep their leases meanwhile), then append again.
                self.store.projections.catch_up()
                attempts += 1

    def add_files(
        self,
        paths: Sequence[Path],
        parents: Sequence[tuple[str, str]] = (),
        operation: str = "external",
        idempotency_key: str | None = None,
    ) -> list[RecordedEvent]:
        """Import files: all of them, or none.

        Every file is checked (readable, within limits, a sound image if it is one) and
        stored before anything is recorded; then one append records them all:
        `asset.imported`, or `asset.derived` from `parents` (asset reference, role). A
        refused file, or a derivation that would make an asset its own ancestor, records
        nothing. An imported file's generation metadata (A1111, ComfyUI, InvokeAI, …) is
        recorded with it as `embedded`: reconstructed from the file, not verified; a
        Strata export's step and original digest (from the file, or for video and audio
        its `<file>.strata.json` sidecar), and a C2PA manifest store with its validation.
        """
        for _, role in parents:
            if role not in ROLES:
                raise InvalidInput(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if not paths:
            raise InvalidInput("no files to import")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:  # all of them named at once, before any is read
            raise InvalidInput(f"not a file: {', '.join(missing)}; nothing was imported")
        inputs = [InputRef.model_validate({"digest": self.resolve_asset(ref), "role": role})
                  for ref, role in parents]
        # Imported here: the other tools' metadata readers cost every command's start-up.
        from strata.core.interop.embedded import read_embedded

        # Every file is checked before any is stored, and every blob is stored before its
        # event: a refusal (a bad file, a cycle) leaves no blob and no event behind.
        with self.blobs.staging_paths(paths) as staged:
            if inputs:
                self._refuse_cycles([each.info.digest for each in staged], inputs)
            # Read from the staged copy, not the user's path: what is parsed is what is
            # stored (an export's sidecar, beside the user's path, must name its digest).
            # It never refuses a file; a derivation has no place for it.
            embedded = [None if inputs else read_embedded(
                each.temporary, each.info.media_type, each.info.digest,
                sidecar=path.with_name(path.name + SIDECAR_SUFFIX))
                for path, each in zip(paths, staged, strict=True)]
            stored = [(path, self.blobs.publish(each)) for path, each in zip(paths, staged,
                                                                                strict=True)]
        by_stream: dict[str, list[Payload]] = {}
        for (path, info), found in zip(stored, embedded, strict=True):
            source = ImportSource(name=path.name, path=str(path.resolve()))
            payload: Payload = (
                AssetDerived(output=ProducedAsset(asset=info, inputs=inputs),
                             operation=operation, source=source)
                if inputs else AssetImported(asset=info, source=source, embedded=found))
            by_stream.setdefault(asset_stream(info.digest), []).append(payload)
        recorded = self.record_together(
            [(stream, payloads, ANY_VERSION) for stream, payloads in by_stream.items()],
            idempotency_key=idempotency_key)
        # In the order the files were given (the same bytes twice: the same event).
        by_digest = {_produced_digest(event): event for event in recorded}
        return [by_digest[info.digest] for _, info in stored]

    def add_file(self, path: Path, parents: Sequence[tuple[str, str]] = (),
                 operation: str = "external") -> RecordedEvent:
        return self.add_files([path], parents, operation)[0]

    def _refuse_cycles(self, digests: Sequence[str], inputs: Sequence[InputRef]) -> None:
        """An asset may not be derived from itself or from anything made from it."""
        from strata.core.projections.lineage import walk

        with self.view() as conn:
            for source in inputs:
                ancestors = {source.digest} | {e.input_digest
                                               for e in walk(conn, source.digest, "up")}
                for digest in digests:
                    if digest in ancestors:
                        relation = ("itself" if digest == source.digest
                                    else f"{source.digest[:19]}…, which was made from it")
                        raise InvalidInput(
                            f"refused: {digest[:19]}… cannot be derived from {relation} — "
                            "an asset cannot be its own ancestor; nothing was imported")

    # --- naming ------------------------------------------------------------------------

    def resolve_asset(self, ref: str, conn: Connection | None = None) -> str:
        """A full digest from a unique prefix (`sha256:` optional), as git does."""
        prefix = _hex_prefix(ref.lower().strip().removeprefix("sha256:"), ref, "an asset")
        with self._connection(conn) as c:
            found = list(c.scalars(_assets_with_prefix(), {"prefix": f"sha256:{prefix}",
                                                           "past": f"sha256:{prefix}g"}))
        return _unique(ref, "asset", found, AssetNotFound)

    def resolve_event(self, ref: str) -> RecordedEvent:
        """An event from a unique prefix of its id."""
        prefix = _hex_prefix(ref.lower().strip(), ref, "an event")
        event_id = _unique(ref, "event", self.ledger.event_ids_with_prefix(
            prefix, limit=PREFIX_MATCHES_SHOWN), EventNotFound)
        event = self.ledger.get(event_id)
        if event is None:  # listed a moment ago, and events are never deleted
            raise EventNotFound(f"event {event_id} is no longer in the log")
        return event

    def resolve_job(self, ref: str) -> str:
        """A job id from the id itself or a unique prefix of it."""
        from strata.core.projections import views

        with self.view() as conn:
            if views.job(conn, ref) is not None:  # a whole id, whatever its spelling
                return ref
            prefix = _hex_prefix(ref.lower().strip(), ref, "a job")
            found = views.job_ids_with_prefix(conn, prefix, limit=PREFIX_MATCHES_SHOWN)
        return _unique(ref, "job", found, JobNotFound)

    # --- reading -----------------------------------------------------------------------

    @contextmanager
    def _connection(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.store.engine.connect() as fresh:
                yield fresh

    def require_position(self, position: int) -> None:
        """Refuse a position that is not in the log (a time-travel target)."""
        head = self.ledger.head_position()
        if position < 0:
            raise InvalidInput(f"--as-of must be a position (0 or more), not {position}")
        if position > head:
            raise InvalidInput(f"--as-of {position} is past the end of the log (its last "
                               f"position is {head}); leave --as-of out for the current state")

    @contextmanager
    def view(self, as_of: int | None = None) -> Iterator[Connection]:
        """A connection onto the projections, current or as they were at `as_of`."""
        if as_of is not None:
            self.require_position(as_of)
        runner = self.store.projections
        if as_of is not None and not asof.covers(
                table(m).name for p in runner.projections for m in p.models):
            # A plug-in's table that cannot be read as of a position: replay instead.
            with self._replayed_view(as_of) as conn:
                yield conn
            return
        if as_of is None:
            with self.store.engine.connect() as conn:
                # Other processes may have appended. Asked on the view's own connection (one
                # query: readers ask it on every request); when behind, that transaction
                # ends so that the view sees what the catch-up applies.
                if not runner.is_current(conn):
                    conn.rollback()
                    runner.catch_up()
                yield conn
            return
        runner.catch_up()  # other processes may have appended
        # Time travel: the same tables, each restricted to what was true at `as_of`
        # (core.projections.asof): bounded work whatever the log's length.
        with asof.as_of_connection(self.store.engine, as_of) as conn:
            yield conn

    @contextmanager
    def _replayed_view(self, as_of: int) -> Iterator[Connection]:
        """The projections at `as_of` by replaying the log up to it into a private
        in-memory database, with the very projection code that built the current state:
        the reference the as-of views are checked against, and the way for projection
        tables they cannot restrict. Its cost grows with the log."""
        scratch = memory_engine()
        runner = self.store.projections
        # Two projections may share a table (human decisions and automatic scores).
        models = {m: None for p in runner.projections for m in p.models}
        metadata.create_all(
            scratch, tables=[table(m) for m in [*models, ProjectionCheckpoint]])
        ProjectionRunner(scratch, runner.projections, source=self.store.engine).catch_up(
            to_position=as_of
        )
        try:
            with scratch.connect() as conn:
                yield conn
        finally:
            scratch.dispose()

    def rebuild(self) -> int:
        return self.store.projections.rebuild()


class ReplayingStrata(Strata):
    """The same service answering every as-of read by replaying the log, as time travel
    did before the as-of views: the reference the tests compare them with and the
    baseline the time-travel benchmark measures them against."""

    @contextmanager
    def view(self, as_of: int | None = None) -> Iterator[Connection]:
        if as_of is None:
            with super().view() as conn:
                yield conn
            return
        self.require_position(as_of)
        with self._replayed_view(as_of) as conn:
            yield conn
