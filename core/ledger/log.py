"""The event log: atomic, optimistic-concurrency appends onto a hash chain, and reads.

Appends are serialised by the database write lock (core.storage.db.write_transaction), so the
global position is assigned as max + 1 inside the lock: gap-free and strictly increasing
in commit order, which lets a reader that follows positions never miss an event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Row, Select, bindparam, func, select

from strata.core.errors import ConcurrencyError, DuplicateEvent, InvalidInput
from strata.core.ledger.canonical import canonical_json, parse_json, sha256_hex
from strata.core.ledger.events import GENESIS_HASH, NewEvent, RecordedEvent, registry
from strata.core.storage.db import KeptWriter, driver_sql, is_sqlite
from strata.core.storage.schema import EventRow

events_table = EventRow.__table__  # type: ignore[attr-defined]
_c = events_table.c

ANY_VERSION = -1
"""Pass as expected_version to append without a concurrency check."""


@dataclass(frozen=True)
class StreamAppend:
    """Events for one stream, and the version that stream must be at."""

    stream: str
    events: Sequence[NewEvent]
    expected_version: int = ANY_VERSION

READ_PAGE = 500
T = TypeVar("T")


def retry_on_conflict(attempt: Callable[[], T], tries: int = 5) -> T:
    """Run `attempt` — which reads the state it appends against, then appends at that
    version — again while another writer keeps getting there first; after `tries`
    attempts the last ConcurrencyError propagates."""
    for _ in range(tries - 1):
        try:
            return attempt()
        except ConcurrencyError:
            continue
    return attempt()


def utc_iso(moment: datetime) -> str:
    """The one text form of a time in the log: UTC, microseconds, a trailing Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> str:
    return utc_iso(datetime.now(UTC))


def chain_hash(prev_hash: str, event: RecordedEvent) -> str:
    return sha256_hex(prev_hash + canonical_json(event.envelope()))


_CURRENT_VERSION_SQL = "SELECT coalesce(max(version), 0) FROM events WHERE stream = ?"
# The chain's end and the first stream's version in one round trip (no row: an empty log).
_LAST_EVENT_SQL = (
    "SELECT position, hash, (SELECT coalesce(max(version), 0) FROM events WHERE stream = ?) "
    "FROM events ORDER BY position DESC LIMIT 1"
)
_NOTIFY_SQL = "SELECT pg_notify('strata_events', %s)"  # channel: core.ledger.notify.CHANNEL
_INSERT_SQL = (
    "INSERT INTO events (position, event_id, stream, version, type, schema_version, "
    "data, meta, recorded_at, prev_hash, hash, idempotency_key, batch_size) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def envelope_json(
    position: int, event_id: str, stream_json: str, version: int, type_json: str, schema: int,
    data_json: str, meta_json: str, recorded_json: str,
) -> str:
    """canonical_json(RecordedEvent.envelope()), assembled from already-canonical parts.

    Keys in sorted order, exactly as canonical_json writes them; `verify_chain` recomputes
    every hash the slow, obvious way, so a difference between the two would show at once.
    """
    return (
        f'{{"data":{data_json},"event_id":{canonical_json(event_id)},"meta":{meta_json},'
        f'"position":{position},"recorded_at":{recorded_json},"schema":{schema},'
        f'"stream":{stream_json},"type":{type_json},"version":{version}}}'
    )


_NOTHING_YET = object()


def _seal(
    events: Sequence[NewEvent], stream: str, version: int, position: int, prev_hash: str,
    idempotency: tuple[str, int] | None, recorded_at: str,
) -> tuple[list[RecordedEvent], list[tuple]]:
    """Number, timestamp and chain a batch: its recorded events and their table rows.

    `idempotency` (key, size of the whole append) is stored on the first event, so that a
    retry can be compared with exactly the events its key recorded.
    """
    key, size = idempotency if idempotency is not None else (None, None)
    # What a batch shares is serialised once: its stream, its time, usually its meta and
    # its event types.
    stream_json, recorded_json = canonical_json(stream), canonical_json(recorded_at)
    type_json: dict[str, str] = {}
    recorded: list[RecordedEvent] = []
    rows: list[tuple] = []
    meta_source: object = _NOTHING_YET  # not None: a None meta must be serialised too
    meta_json = ""
    for offset, new in enumerate(events, start=1):
        if new.meta is not meta_source:
            meta_source, meta_json = new.meta, canonical_json(new.meta)
        if new.type not in type_json:
            type_json[new.type] = canonical_json(new.type)
        data_json = canonical_json(new.data)
        envelope = envelope_json(position + offset, new.event_id, stream_json, version + offset,
                                 type_json[new.type], new.schema, data_json, meta_json,
                                 recorded_json)
        digest = sha256_hex(prev_hash + envelope)
        recorded.append(RecordedEvent(
            position=position + offset, event_id=new.event_id, stream=stream,
            version=version + offset, type=new.type, schema=new.schema, data=new.data,
            meta=new.meta, recorded_at=recorded_at, prev_hash=prev_hash, hash=digest,
        ))
        rows.append((position + offset, new.event_id, stream, version + offset, new.type,
                     new.schema, data_json, meta_json, recorded_at, prev_hash, digest,
                     key if offset == 1 else None, size if offset == 1 else None))
        prev_hash = digest
    return recorded, rows


_COLUMNS = ("position, event_id, stream, version, type, schema_version, data, meta, "
            "recorded_at, prev_hash, hash")


def row_to_event(row: Row | tuple, meta_cache: dict[str, Any] | None = None) -> RecordedEvent:
    """An event from a row of the events table's columns in `_COLUMNS` order.

    Events appended together share one meta text; `meta_cache` decodes it once.
    """
    position, event_id, stream, version, type_, schema, data, meta_text = row[:8]
    if meta_cache is None:
        meta = parse_json(meta_text)
    elif (meta := meta_cache.get(meta_text)) is None:
        meta_cache.clear()  # keep only the latest: batches are contiguous
        meta = meta_cache[meta_text] = parse_json(meta_text)
    return RecordedEvent(
        position=position,
        event_id=event_id,
        stream=stream,
        version=version,
        type=type_,
        schema=schema,
        data=parse_json(data),
        meta=meta,
        recorded_at=row[8],
        prev_hash=row[9],
        hash=row[10],
    )


_ROWS_AFTER_SQL = (f"SELECT {_COLUMNS} FROM events WHERE position > ? AND position <= ? "
                   "ORDER BY position LIMIT ?")


_BY_ID = select(events_table).where(_c.event_id == bindparam("event_id"))


def event_by_id(conn: Connection, event_id: str) -> RecordedEvent | None:
    """The event `event_id`, read on `conn` (a reader's own connection, such as a current
    view's, saves opening one)."""
    row = conn.execute(_BY_ID, {"event_id": event_id}).first()
    return row_to_event(row) if row else None


def rows_after(
    conn: Connection, position: int, to_position: int | None, limit: int
) -> Sequence[Any]:
    """Up to `limit` rows of the events after `position` (and up to `to_position`) in
    `_COLUMNS` order, their data and meta as stored, straight from the driver: the
    projection runner's hot path."""
    upper = to_position if to_position is not None else 2**62
    cursor = conn.connection.cursor()
    cursor.execute(driver_sql(conn, _ROWS_AFTER_SQL), (position, upper, limit))
    return cursor.fetchall()


def events_after(
    conn: Connection, position: int, to_position: int | None, limit: int
) -> list[RecordedEvent]:
    """Up to `limit` events after `position` (and up to `to_position`)."""
    meta_cache: dict[str, Any] = {}
    return [row_to_event(row, meta_cache)
            for row in rows_after(conn, position, to_position, limit)]


@dataclass(frozen=True)
class ChainBreak:
    position: int
    reason: str


def _filtered(
    types: Sequence[str] | None, streams: Sequence[str] | None, to_position: int | None
) -> Select:
    query = select(events_table)
    if types:
        query = query.where(_c.type.in_(list(types)))
    if streams:
        query = query.where(_c.stream.in_(list(streams)))
    if to_position is not None:
        query = query.where(_c.position <= to_position)
    return query


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = KeptWriter(engine)

    # --- writing ----------------------------------------------------------------------

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int = ANY_VERSION,
        idempotency_key: str | None = None,
        within: Callable[[Connection, list[RecordedEvent]], None] | None = None,
    ) -> list[RecordedEvent]:
        """Append `events` to `stream` atomically, all or nothing.

        `expected_version` is the version the stream must be at (0: must not exist yet;
        ANY_VERSION: no check). With an `idempotency_key` that was already recorded, the
        events recorded then are returned and nothing is written again. `within` runs in
        the append's transaction, for state that must change together with the log (a
        job's lease is taken in the same commit as its `job.started`).
        """
        return self.append_together([StreamAppend(stream, events, expected_version)],
                                    idempotency_key, within)

    def append_together(
        self,
        appends: Sequence[StreamAppend],
        idempotency_key: str | None = None,
        within: Callable[[Connection, list[RecordedEvent]], None] | None = None,
    ) -> list[RecordedEvent]:
        """Append to several streams in one transaction, each at its expected version:
        all of it is recorded or none of it (a job's result and the branch move it
        causes). A ConcurrencyError names the stream that was not where expected."""
        events = [event for part in appends for event in part.events]
        if not events or any(not part.events for part in appends):
            raise InvalidInput("nothing to append: a batch of events is empty")
        for part in appends:
            if not part.stream or len(part.stream) > 200:
                raise InvalidInput(f"invalid stream name {part.stream!r}")
        if len({part.stream for part in appends}) != len(appends):
            raise InvalidInput("one append names a stream twice; give its events together")
        for event in events:
            if not isinstance(event.meta, dict):
                raise InvalidInput(f"event meta must be a JSON object, not {event.meta!r}")
            if not event.validated:
                registry.validate(event)
        ids = [e.event_id for e in events]
        if len(set(ids)) != len(ids):
            raise DuplicateEvent(f"the batch repeats an event id: {ids}")

        with self._writer.transaction() as conn:
            if idempotency_key is not None:
                earlier = self._recorded_for_key(conn, idempotency_key, appends)
                if earlier is not None:
                    return earlier
            # The hot path speaks to the driver directly: building SQLAlchemy statements
            # costs several times more CPU than the statements themselves.
            cursor = conn.connection.cursor()
            cursor.execute(driver_sql(conn, _LAST_EVENT_SQL), (appends[0].stream,))
            last = cursor.fetchone()
            position, prev_hash, current = last if last else (0, GENESIS_HASH, 0)
            recorded: list[RecordedEvent] = []
            rows: list[tuple] = []
            recorded_at = utc_now()  # one commit, one time
            for part in appends:
                if rows:  # the first stream's version came with the chain's end
                    cursor.execute(driver_sql(conn, _CURRENT_VERSION_SQL), (part.stream,))
                    current = cursor.fetchone()[0]
                if part.expected_version not in (ANY_VERSION, current):
                    raise ConcurrencyError(part.stream, part.expected_version, current)
                sealed, part_rows = _seal(part.events, part.stream, current, position,
                                          prev_hash,
                                          None if rows or idempotency_key is None
                                          else (idempotency_key, len(events)),
                                          recorded_at)
                recorded += sealed
                rows += part_rows
                position, prev_hash = sealed[-1].position, sealed[-1].hash
            try:
                cursor.executemany(driver_sql(conn, _INSERT_SQL), rows)
            except conn.dialect.dbapi.IntegrityError as error:  # type: ignore[union-attr]
                if "event_id" in str(error):
                    raise DuplicateEvent(
                        f"event id(s) already in the log: {', '.join(ids)}"
                    ) from None
                raise
            if within is not None:
                within(conn, recorded)
            if not is_sqlite(conn):
                # Delivered at commit, and only if it commits: listeners (core.ledger.notify)
                # wake for committed events only.
                cursor.execute(_NOTIFY_SQL, (str(position),))
        return recorded

    def _recorded_for_key(
        self, conn: Connection, key: str, appends: Sequence[StreamAppend]
    ) -> list[RecordedEvent] | None:
        """The events an earlier append with `key` recorded, if the retry repeats exactly
        that batch; None if the key is new. A key reused for other events is refused: a
        retry must never be answered with another append's events."""
        first = conn.execute(select(events_table).where(_c.idempotency_key == key)).first()
        if first is None:
            return None
        offered = [(part.stream, e.type, e.schema, canonical_json(e.data))
                   for part in appends for e in part.events]
        # Appends are serialised, so the events of one append sit at consecutive positions;
        # stores written before batch sizes were recorded compare the offered count.
        size = first.batch_size or len(offered)
        rows = conn.execute(
            select(events_table)
            .where(_c.position >= first.position)
            .order_by(_c.position)
            .limit(size)
        ).all()
        earlier = [row_to_event(r) for r in rows]
        recorded = [(e.stream, e.type, e.schema, canonical_json(e.data)) for e in earlier]
        if recorded != offered:
            raise InvalidInput(
                f"idempotency key {key!r} was already used at position {first.position} for "
                f"a different batch ({len(recorded)} event(s): "
                f"{', '.join(sorted({e.type for e in earlier}))} on {first.stream!r}); "
                "a retry must repeat the same events — use a new key for new events"
            )
        return earlier

    # --- reading ----------------------------------------------------------------------

    def stream_version(self, stream: str) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(
                select(func.coalesce(func.max(_c.version), 0)).where(_c.stream == stream)
            )

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(events_table)
                .where(_c.stream == stream, _c.version >= from_version)
                .order_by(_c.version)
            ).all()
        return [row_to_event(r) for r in rows]

    def read_streams(self, streams: Sequence[str], from_position: int = 1,
                     to_position: int | None = None, types: Sequence[str] | None = None
                     ) -> list[RecordedEvent]:
        """Every event of `streams` (of `types`, when given) between the positions, in log
        order, read in one query: for a reader that wants them all at once, which
        `read_all`'s pages (each a query that finds and sorts what is left of every stream
        again) cost several times over."""
        if not streams:
            return []
        query = _filtered(types, streams, to_position).where(_c.position >= from_position)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return sorted((row_to_event(row) for row in rows), key=lambda e: e.position)

    def read_all(
        self,
        from_position: int = 1,
        limit: int | None = None,
        types: Sequence[str] | None = None,
        to_position: int | None = None,
        streams: Sequence[str] | None = None,
    ) -> Iterator[RecordedEvent]:
        """Events in position order, fetched lazily a page at a time."""
        remaining = limit
        next_position = from_position
        selection = _filtered(types, streams, to_position)
        # With streams named, let the (stream, version) index lead and sort what it finds:
        # ordered by the bare position, SQLite walks the whole log and filters each event.
        position = _c.position + 0 if streams else _c.position
        while remaining is None or remaining > 0:
            page = READ_PAGE if remaining is None else min(READ_PAGE, remaining)
            query = selection.where(position >= next_position)
            with self.engine.connect() as conn:
                rows = conn.execute(query.order_by(position).limit(page)).all()
            for row in rows:
                yield row_to_event(row)
            if len(rows) < page:
                return
            next_position = rows[-1].position + 1
            if remaining is not None:
                remaining -= len(rows)

    def read_last(self, limit: int, types: Sequence[str] | None = None,
                  streams: Sequence[str] | None = None,
                  to_position: int | None = None) -> list[RecordedEvent]:
        """The newest `limit` events (oldest first), for `strata log`."""
        query = _filtered(types, streams, to_position)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(_c.position.desc()).limit(limit)).all()
        return [row_to_event(r) for r in reversed(rows)]

    def get(self, event_id: str) -> RecordedEvent | None:
        with self.engine.connect() as conn:
            return event_by_id(conn, event_id)

    def event_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.scalars(select(_c.event_id).where(_c.event_id.startswith(prefix))
                                     .order_by(_c.event_id).limit(limit)))

    def head_position(self) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(select(func.coalesce(func.max(_c.position), 0)))

    # --- verifying --------------------------------------------------------------------

    def verify_chain(
        self, observe: Callable[[RecordedEvent], None] | None = None
    ) -> Iterator[ChainBreak]:
        """Recompute the chain from the first event; yield every break found.

        `observe` sees every event on the way, so a caller checking more than the chain
        (verify's blob references) reads the log once.
        """
        walker = ChainWalker()
        for event in self.read_all():
            if observe is not None:
                observe(event)
            yield from walker.step(event)


class ChainWalker:
    """Follows the hash chain event by event from the genesis, naming every break: a
    missing position, a link to the wrong previous event, contents that do not hash to
    the recorded hash."""

    def __init__(self) -> None:
        self.prev_hash = GENESIS_HASH
        self.expected_position = 1
        self._json: dict[str, str] = {}  # canonical JSON of the strings events share

    def step(self, event: RecordedEvent,
             stored: tuple[str, str] | None = None) -> list[ChainBreak]:
        """Check the next event. With `stored` (its data and meta texts as the log holds
        them) the hash is taken over those texts, which the ledger wrote as canonical
        JSON, instead of encoding the decoded event again: several times cheaper."""
        breaks = []
        if event.position != self.expected_position:
            breaks.append(ChainBreak(self.expected_position,
                                     f"position {self.expected_position} is missing"))
        if event.prev_hash != self.prev_hash:
            breaks.append(ChainBreak(event.position,
                                     "prev_hash does not match the previous event"))
        if not ((stored is not None and self._stored_hash(event, *stored) == event.hash)
                # Text that is not canonical but means the same (written by other
                # means than this ledger) is judged the obvious way.
                or chain_hash(event.prev_hash, event) == event.hash):
            breaks.append(ChainBreak(event.position,
                                     "hash does not match the event's contents"))
        self.prev_hash = event.hash
        self.expected_position = event.position + 1
        return breaks

    def _stored_hash(self, event: RecordedEvent, data_text: str, meta_text: str) -> str:
        if len(self._json) > 10_000:
            self._json.clear()  # streams come and go; keep the cache bounded

        def text(value: str) -> str:
            found = self._json.get(value)
            if found is None:
                found = self._json[value] = canonical_json(value)
            return found

        return sha256_hex(event.prev_hash + envelope_json(
            event.position, event.event_id, text(event.stream), event.version,
            text(event.type), event.schema, data_text, meta_text, text(event.recorded_at)))
