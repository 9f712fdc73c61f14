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
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from strata.core.config import strata_version
from strata.core.errors import AmbiguousReference, AssetNotFound, EventNotFound, InvalidInput
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetImported,
    ImportSource,
    InputRef,
    ProducedAsset,
    Role,
)
from strata.core.ledger.events import NewEvent, Payload, RecordedEvent
from strata.core.ledger.log import ANY_VERSION, StreamAppend
from strata.core.projections.base import table
from strata.core.projections.runner import CatchUpFirst, ProjectionRunner
from strata.core.storage.db import memory_engine
from strata.core.storage.schema import AssetRow, ProjectionCheckpoint, SQLModel
from strata.core.store import Store

HEX_PREFIX = re.compile(r"^[0-9a-f]{4,64}$")


def default_meta() -> dict[str, Any]:
    """Who and where, recorded with every event."""
    try:
        actor = getpass.getuser()
    except (KeyError, OSError):
        actor = "unknown"
    return {"actor": actor, "host": socket.gethostname(), "strata": strata_version()}


def asset_stream(digest: str) -> str:
    return f"asset:{digest.removeprefix('sha256:')}"


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

    def add_file(
        self,
        path: Path,
        parents: Sequence[tuple[str, Role]] = (),
        operation: str = "external",
        idempotency_key: str | None = None,
    ) -> RecordedEvent:
        """Ingest a file's bytes, then record `asset.imported` (or `asset.derived`)."""
        inputs = [InputRef(digest=self.resolve_asset(ref), role=role) for ref, role in parents]
        info = self.blobs.ingest_path(path)  # blob before event
        source = ImportSource(name=path.name, path=str(path.resolve()))
        payload: Payload
        if inputs:
            payload = AssetDerived(output=ProducedAsset(asset=info, inputs=inputs),
                                   operation=operation, source=source)
        else:
            payload = AssetImported(asset=info, source=source)
        return self.record(asset_stream(info.digest), [payload],
                           idempotency_key=idempotency_key)[0]

    # --- naming ------------------------------------------------------------------------

    def resolve_asset(self, ref: str, conn: Connection | None = None) -> str:
        """A full digest from a unique prefix (`sha256:` optional), as git does."""
        prefix = ref.strip().lower().removeprefix("sha256:")
        if not HEX_PREFIX.match(prefix):
            raise InvalidInput(
                f"{ref!r} is not an asset reference: give at least 4 hex digits of its hash"
            )
        with self._connection(conn) as c:
            assets = table(AssetRow)
            found = list(c.scalars(
                select(assets.c.digest).where(assets.c.digest.startswith(f"sha256:{prefix}"))
                .limit(5)
            ))
        if not found:
            raise AssetNotFound(f"no asset matches {ref!r}")
        if len(found) > 1:
            raise AmbiguousReference(
                f"{ref!r} is ambiguous: it matches {', '.join(d[:19] for d in found)}…; "
                "give more digits"
            )
        return found[0]

    def resolve_event(self, ref: str) -> RecordedEvent:
        prefix = ref.strip().lower()
        found = self.ledger.event_ids_with_prefix(prefix) if HEX_PREFIX.match(prefix) else []
        if not found:
            raise EventNotFound(f"no event matches {ref!r}")
        if len(found) > 1:
            raise AmbiguousReference(f"{ref!r} matches several events; give more digits")
        event = self.ledger.get(found[0])
        assert event is not None
        return event

    # --- reading -----------------------------------------------------------------------

    @contextmanager
    def _connection(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.store.engine.connect() as fresh:
                yield fresh

    @contextmanager
    def view(self, as_of: int | None = None) -> Iterator[Connection]:
        """A connection onto the projections, current or as they were at `as_of`."""
        if as_of is None:
            self.store.projections.catch_up()  # other processes may have appended
            with self.store.engine.connect() as conn:
                yield conn
            return
        if as_of < 0:
            raise InvalidInput(f"--as-of must be a position (0 or more), not {as_of}")
        # Time travel: replay the log up to `as_of` into a private in-memory database,
        # with the very projection code that built the current state.
        scratch = memory_engine()
        runner = self.store.projections
        # Two projections may share a table (human decisions and automatic scores).
        models = {m: None for p in runner.projections for m in p.models}
        SQLModel.metadata.create_all(
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
