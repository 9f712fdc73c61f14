"""Benchmarks of Strata's embedded (SQLite) ledger, each beside a baseline from the same run.

    python bench/ledger.py [--quick] [--events N] [--appends N] [--dir PATH] [--keep]

Everything is created in a temporary folder (on the file system of `--dir`, default: the
system's temporary folder) and removed afterwards. Progress goes to stderr; the results go
to stdout as a markdown table, ready to paste into a README.

What is measured, and against what:

1. single-event durable appends (`Ledger.append` of one `asset.imported` event per
   transaction) vs raw `sqlite3` inserting the same rows into a table of the same shape
   (same unique indexes), and vs the `eventsourcing` library's SQLite application recorder,
   all in WAL mode with synchronous=FULL, one transaction per event; and the CPU time of
   `Strata.record` of one event, its projections caught up in the same commit (1e);
2. batch appends (`Ledger.append` of 500 events) vs raw `executemany` of the same rows in
   one transaction;
3. `ProjectionRunner.rebuild()` over a realistic log vs a plain `SELECT` of the same rows;
   3b: the same over bench/provenance.py's mix of every layer's events (about 100,000), and
   3c on PostgreSQL (`--postgres URL`);
4. `lineage.walk(..., "up", depth=1000)` from the tip of a 1,000-long chain among the
   log's assets vs the same recursive query in raw SQL;
5. `LocalBlobStore.ingest_path` on random files vs hashlib + write + fsync + rename, and,
   for information, one large PNG (decode and perceptual hashes included).

Rows for the raw baselines are built before the clock starts; the Strata side is timed
from the call the application makes (`Ledger.append` with ready `NewEvent`s) to its return.
Contenders run interleaved in rounds, so that drift of the machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sqlalchemy import text

from strata.core.config import Settings
from strata.core.ledger.canonical import canonical_json
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetImported,
    AssetInfo,
    BranchAdvanced,
    BranchCreated,
    ImportSource,
    InputRef,
    ProducedAsset,
    SelectionPicked,
    SelectionRated,
)
from strata.core.ledger.events import GENESIS_HASH, NewEvent, RecordedEvent
from strata.core.ledger.log import chain_hash
from strata.core.lookup import AssetFound, lookup
from strata.core.projections import lineage
from strata.core.service import ReplayingStrata, Strata
from strata.core.storage.media import SNIFF_BYTES, inspect
from strata.core.store import Store

META = {"actor": "bench", "host": "bench-host", "strata": "0.1.0"}
BATCH_SIZE = 500
LOG_BATCH = 1000  # events per Ledger.append while writing the log (setup, not measured)
CHAIN_DEPTH = 1000


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- results ----------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    strata: str
    baseline: str
    ratio: str
    target: str
    result: str  # PASS, MISS or "info"


def fmt_rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --- payloads and rows ------------------------------------------------------------------


def fake_digest(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def asset_info(label: str, rng: random.Random) -> AssetInfo:
    return AssetInfo(
        digest=fake_digest(label),
        media_type="image/png",
        size=rng.randrange(200_000, 4_000_000),
        width=1024,
        height=1024,
        phash=f"{rng.getrandbits(64):016x}",
        dhash=f"{rng.getrandbits(64):016x}",
    )


def imported_event(label: str, rng: random.Random) -> NewEvent:
    return NewEvent.of(imported_payload(label, rng), META)


def imported_payload(label: str, rng: random.Random) -> AssetImported:
    return AssetImported(
        asset=asset_info(label, rng),
        source=ImportSource(name=f"{label}.png", path=f"/home/bench/inbox/{label}.png"),
    )


def derived_event(label: str, inputs: list[tuple[str, str]], rng: random.Random) -> NewEvent:
    payload = AssetDerived(
        output=ProducedAsset(
            asset=asset_info(label, rng),
            inputs=[InputRef(digest=d, role=role) for d, role in inputs],  # type: ignore[arg-type]
            params={"tool": "krita", "strength": round(rng.random(), 3)},
        ),
        operation=rng.choice(["retouch", "crop", "colour", "inpaint"]),
        source=ImportSource(name=f"{label}.png", path=f"/home/bench/work/{label}.png"),
    )
    return NewEvent.of(payload, META)


EVENT_COLUMNS = (
    "position, event_id, stream, version, type, schema_version, data, meta, recorded_at, "
    "prev_hash, hash, idempotency_key"
)


class RawRows:
    """Rows exactly as the ledger would write them (canonical JSON, a real hash chain)."""

    def __init__(self) -> None:
        self.position = 0
        self.prev_hash = GENESIS_HASH

    def make(self, stream: str, start_version: int, events: list[NewEvent]) -> list[tuple]:
        rows = []
        recorded_at = "2026-11-25T12:00:00.000000Z"
        for offset, new in enumerate(events, start=1):
            self.position += 1
            event = RecordedEvent(
                position=self.position, event_id=new.event_id, stream=stream,
                version=start_version + offset, type=new.type, schema=new.schema,
                data=new.data, meta=new.meta, recorded_at=recorded_at,
                prev_hash=self.prev_hash, hash="",
            )
            digest = chain_hash(self.prev_hash, event)
            rows.append((
                event.position, event.event_id, stream, event.version, event.type,
                event.schema, canonical_json(event.data), canonical_json(event.meta),
                recorded_at, self.prev_hash, digest, None,
            ))
            self.prev_hash = digest
        return rows


def events_ddl(store: Store) -> list[str]:
    """The events table and its indexes, as the migrations made them (triggers left out:
    they fire on UPDATE and DELETE only)."""
    path = store.engine.url.database
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND type IN "
            "('table', 'index') AND sql IS NOT NULL ORDER BY type DESC"
        ).fetchall()
    conn.close()
    return [r[0] for r in rows]


def raw_connection(path: Path, ddl: list[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    assert mode == "wal", mode
    conn.execute("PRAGMA synchronous=FULL")
    for statement in ddl:
        conn.execute(statement)
    return conn


RAW_INSERT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"


def open_store(root: Path, name: str) -> Store:
    return Store.open(Settings(home=root / name), create=True)


def eventsourcing_recorder(path: Path) -> tuple[Any, Any]:
    """eventsourcing's SQLite application recorder on a file, WAL + synchronous=FULL."""
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    datastore = SQLiteDatastore(db_name=str(path))
    pool = datastore.pool
    create = pool._create_connection  # the library sets WAL itself; add synchronous=FULL

    def create_full() -> Any:
        connection = create()
        connection._sqlite_conn.execute("PRAGMA synchronous=FULL")
        return connection

    pool._create_connection = create_full  # type: ignore[method-assign]
    recorder = SQLiteApplicationRecorder(datastore, events_table_name="stored_events")
    recorder.create_table()
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()[0]
        cursor.execute("PRAGMA synchronous")
        sync = cursor.fetchone()[0]
    assert (mode, sync) == ("wal", 2), (mode, sync)
    return datastore, recorder


def stored_event(originator: uuid.UUID, version: int, new: NewEvent) -> Any:
    from eventsourcing.persistence import StoredEvent

    state = canonical_json({"data": new.data, "meta": new.meta}).encode()
    return StoredEvent(originator_id=originator, originator_version=version,
                       topic="strata.core.ledger.event_types:AssetImported", state=state)


@dataclass
class Timing:
    wall: float = 0.0  # seconds of perf_counter
    cpu: float = 0.0  # seconds of this process's CPU time (disk waits excluded)


def interleave(contenders: dict[str, Callable[[int], object]], rounds: int) -> dict[str, Timing]:
    """Run each contender's round r in turn, rotating who goes first; total time of each."""
    totals = {name: Timing() for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            gc.collect()
            cpu, wall = time.process_time(), time.perf_counter()
            contenders[name](r)
            totals[name].wall += time.perf_counter() - wall
            totals[name].cpu += time.process_time() - cpu
    return totals


# --- 1. single-event appends ------------------------------------------------------------


def bench_single(root: Path, count: int) -> list[Row]:
    log(f"1. single-event appends: {count:,} events each, one transaction per event")
    rng = random.Random(1)
    warm, rounds = 100, 4
    per_round = count // rounds

    store = open_store(root, "single-strata")
    ledger = store.ledger
    for i in range(warm):
        ledger.append("bench:warm", [imported_event(f"w{i}", rng)], i)
    strata_events = [imported_event(f"s{i}", rng) for i in range(per_round * rounds)]

    raw_rows = RawRows()
    raw = raw_connection(root / "single-raw.db", events_ddl(store))
    for row in raw_rows.make("bench:warm", 0, [imported_event(f"w{i}", rng)
                                              for i in range(warm)]):
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(RAW_INSERT, row)
        raw.execute("COMMIT")
    rows = raw_rows.make("bench:s", 0, [imported_event(f"r{i}", rng)
                                        for i in range(per_round * rounds)])

    # What every command does: Strata.record, the projections caught up in the commit.
    recording = Strata(open_store(root, "single-record"))
    for i in range(warm):
        recording.record("bench:warm", [imported_payload(f"w{i}", rng)], i)
    payloads = [imported_payload(f"p{i}", rng) for i in range(per_round * rounds)]

    datastore, recorder = eventsourcing_recorder(root / "single-eventsourcing.db")
    warm_id, es_id = uuid.uuid4(), uuid.uuid4()
    for i in range(warm):
        recorder.insert_events([stored_event(warm_id, i + 1, imported_event(f"w{i}", rng))])
    stored = [stored_event(es_id, i + 1, imported_event(f"e{i}", rng))
              for i in range(per_round * rounds)]

    def run_strata(r: int) -> None:
        for i in range(r * per_round, (r + 1) * per_round):
            ledger.append("bench:s", [strata_events[i]], i)

    def run_record(r: int) -> None:
        for i in range(r * per_round, (r + 1) * per_round):
            recording.record("bench:p", [payloads[i]], i)

    def run_raw(r: int) -> None:
        for row in rows[r * per_round:(r + 1) * per_round]:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute(RAW_INSERT, row)
            raw.execute("COMMIT")

    def run_es(r: int) -> None:
        for event in stored[r * per_round:(r + 1) * per_round]:
            recorder.insert_events([event])

    totals = interleave({"strata": run_strata, "raw": run_raw, "es": run_es,
                         "record": run_record}, rounds)
    n = per_round * rounds
    assert ledger.stream_version("bench:s") == n
    assert recording.ledger.stream_version("bench:p") == n
    assert not recording.store.projections.state().lagging
    strata_rate, raw_rate, es_rate = (n / totals[k].wall for k in ("strata", "raw", "es"))
    strata_cpu, raw_cpu, es_cpu, record_cpu = (totals[k].cpu / n * 1e6
                                               for k in ("strata", "raw", "es", "record"))
    raw.close()
    datastore.close()
    store.close()
    recording.store.close()
    log(f"   strata {strata_rate:,.0f}/s, raw {raw_rate:,.0f}/s, eventsourcing {es_rate:,.0f}/s")
    log(f"   CPU per append: strata {strata_cpu:,.0f} µs (Strata.record, projections "
        f"included: {record_cpu:,.0f} µs), raw {raw_cpu:,.0f} µs, eventsourcing "
        f"{es_cpu:,.0f} µs")
    return [
        Row("1a. single-event durable append vs raw sqlite3",
            fmt_rate(strata_rate, "ev/s"), f"raw sqlite3: {fmt_rate(raw_rate, 'ev/s')}",
            f"{strata_rate / raw_rate:.2f}x", "≥ 0.50x raw",
            verdict(strata_rate >= 0.5 * raw_rate)),
        Row("1b. single-event durable append vs eventsourcing",
            fmt_rate(strata_rate, "ev/s"),
            f"eventsourcing SQLite: {fmt_rate(es_rate, 'ev/s')} (raw sqlite3 is "
            f"{raw_rate / es_rate:.2f}x it)",
            f"{strata_rate / es_rate:.2f}x", "≥ 2.00x eventsourcing",
            verdict(strata_rate >= 2 * es_rate)),
        Row("1c. CPU time per single-event append (disk waits excluded)",
            f"{strata_cpu:,.0f} µs", f"raw sqlite3: {raw_cpu:,.0f} µs; "
            f"eventsourcing: {es_cpu:,.0f} µs",
            f"{strata_cpu / raw_cpu:.1f}x raw, {strata_cpu / es_cpu:.2f}x eventsourcing",
            "≤ 1.00x eventsourcing", verdict(strata_cpu <= es_cpu)),
        Row("1e. CPU time per Strata.record of one event (hash chain, and the projections "
            "caught up in the same commit)",
            f"{record_cpu:,.0f} µs", f"eventsourcing's recorder: {es_cpu:,.0f} µs",
            f"{record_cpu / es_cpu:.2f}x eventsourcing", "≤ 1.00x eventsourcing",
            verdict(record_cpu <= es_cpu)),
    ]


def bench_domain_events(root: Path, count: int) -> list[Row]:
    """1d. The same append one level up: a typed domain event in, a durable record out.

    Strata: build the `AssetImported` payload, `NewEvent.of`, `Ledger.append` to a new
    stream (expected version 0). eventsourcing: create an aggregate whose `__init__` event
    carries the same fields and `Application.save` it (mapper, transcoder, recorder).
    Both in WAL mode with synchronous=FULL, one transaction per event.
    """
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    log(f"1d. domain events: {count:,} each, one new stream per event")

    class ImportedAsset(Aggregate):
        @event("Imported")
        def __init__(self, digest: str, media_type: str, size: int, width: int, height: int,
                     phash: str, dhash: str, name: str, path: str) -> None:
            self.digest = digest

    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                           "SQLITE_DBNAME": str(root / "domain-eventsourcing.db")})
    pool = app.recorder.datastore.pool  # type: ignore[attr-defined]
    create = pool._create_connection

    def create_full() -> Any:
        connection = create()
        connection._sqlite_conn.execute("PRAGMA synchronous=FULL")
        return connection

    pool._create_connection = create_full
    store = open_store(root, "domain-strata")
    rng = random.Random(4)
    infos = [asset_info(f"d{i}", rng) for i in range(count + 50)]
    rounds, per_round = 4, count // 4

    def run_strata(r: int, offset: int = 50) -> None:
        for i in range(offset + r * per_round, offset + (r + 1) * per_round):
            payload = AssetImported(asset=infos[i], source=ImportSource(
                name=f"d{i}.png", path=f"/home/bench/inbox/d{i}.png"))
            store.ledger.append(f"asset:{i}", [NewEvent.of(payload, META)], 0)

    def run_es(r: int, offset: int = 50) -> None:
        for i in range(offset + r * per_round, offset + (r + 1) * per_round):
            info = infos[i]
            app.save(ImportedAsset(info.digest, info.media_type, info.size, info.width or 0,
                                   info.height or 0, info.phash or "", info.dhash or "",
                                   f"d{i}.png", f"/home/bench/inbox/d{i}.png"))

    for warm in range(2):  # warm both paths on events outside the timed range
        for i in range(warm * 25, warm * 25 + 25):
            store.ledger.append(f"warm:{i}", [NewEvent.of(AssetImported(asset=infos[i]),
                                                          META)], 0)
            info = infos[i]
            app.save(ImportedAsset(info.digest, "image/png", 1, 1, 1, "", "", "w", "w"))
    totals = interleave({"strata": run_strata, "es": run_es}, rounds)
    n = per_round * rounds
    strata_rate, es_rate = n / totals["strata"].wall, n / totals["es"].wall
    strata_cpu, es_cpu = (totals[k].cpu / n * 1e6 for k in ("strata", "es"))
    store.close()
    app.close()
    return [
        Row("1d. typed domain event → durable record vs eventsourcing Application.save",
            f"{fmt_rate(strata_rate, 'ev/s')} ({strata_cpu:,.0f} µs CPU)",
            f"eventsourcing: {fmt_rate(es_rate, 'ev/s')} ({es_cpu:,.0f} µs CPU)",
            f"{strata_rate / es_rate:.2f}x", "≥ 2.00x eventsourcing",
            verdict(strata_rate >= 2 * es_rate)),
    ]


# --- 2. batch appends -------------------------------------------------------------------


def bench_batch(root: Path, batches: int) -> list[Row]:
    log(f"2. batch appends: {batches} batches of {BATCH_SIZE} events each")
    rng = random.Random(2)
    warm = 2
    store = open_store(root, "batch-strata")
    ledger = store.ledger
    for b in range(warm):
        ledger.append("bench:warm", [imported_event(f"w{b}-{i}", rng)
                                     for i in range(BATCH_SIZE)], b * BATCH_SIZE)
    strata_batches = [[imported_event(f"s{b}-{i}", rng) for i in range(BATCH_SIZE)]
                      for b in range(batches)]

    raw_rows = RawRows()
    raw = raw_connection(root / "batch-raw.db", events_ddl(store))
    for b in range(warm):
        warm_rows = raw_rows.make("bench:warm", b * BATCH_SIZE,
                                  [imported_event(f"w{b}-{i}", rng) for i in range(BATCH_SIZE)])
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(RAW_INSERT, warm_rows)
        raw.execute("COMMIT")
    raw_batches = [raw_rows.make("bench:b", b * BATCH_SIZE,
                                 [imported_event(f"r{b}-{i}", rng) for i in range(BATCH_SIZE)])
                   for b in range(batches)]

    def run_strata(b: int) -> None:
        ledger.append("bench:b", strata_batches[b], b * BATCH_SIZE)

    def run_raw(b: int) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(RAW_INSERT, raw_batches[b])
        raw.execute("COMMIT")

    totals = interleave({"strata": run_strata, "raw": run_raw}, batches)
    n = batches * BATCH_SIZE
    strata_rate, raw_rate = n / totals["strata"].wall, n / totals["raw"].wall
    strata_cpu, raw_cpu = (totals[k].cpu / n * 1e6 for k in ("strata", "raw"))
    raw.close()
    store.close()
    log(f"   strata {strata_rate:,.0f}/s ({strata_cpu:.0f} µs CPU/event), "
        f"raw {raw_rate:,.0f}/s ({raw_cpu:.0f} µs CPU/event)")
    return [Row(f"2. batch append ({BATCH_SIZE} events / transaction)",
                f"{fmt_rate(strata_rate, 'ev/s')} ({strata_cpu:.0f} µs CPU/ev)",
                f"raw sqlite3 executemany: {fmt_rate(raw_rate, 'ev/s')} "
                f"({raw_cpu:.0f} µs CPU/ev)",
                f"{strata_rate / raw_rate:.2f}x", "≥ 0.50x raw",
                verdict(strata_rate >= 0.5 * raw_rate))]


# --- 3 and 4. the realistic log: rebuild, then lineage ----------------------------------


@dataclass
class LogShape:
    events: int
    assets: int
    derivations: int
    chain_tip: str


def realistic_log(assets: int, seed: int = 3) -> Iterator[NewEvent]:
    """`assets` asset events (about 55% imported, 45% derived, one chain 1,000 long),
    with selection and branch events among them (about 4% more events)."""
    rng = random.Random(seed)
    chain_every = max(1, (assets - 1) // (CHAIN_DEPTH + 1))
    chain: list[str] = []
    recent: list[str] = []  # assets that other derivations may start from
    branches: list[tuple[str, str]] = []
    made = 0
    while made < assets:
        label = f"a{made}"
        digest = fake_digest(label)
        if made % chain_every == 0 and len(chain) <= CHAIN_DEPTH:
            if chain:
                yield derived_event(label, [(chain[-1], "source")], rng)
            else:
                yield imported_event(label, rng)
            chain.append(digest)
        elif recent and rng.random() < 0.45:
            inputs = [(rng.choice(recent[-500:]), "source")]
            if rng.random() < 0.1:
                inputs.append((rng.choice(recent[-500:]), "mask"))
            yield derived_event(label, inputs, rng)
            recent.append(digest)
        else:
            yield imported_event(label, rng)
            recent.append(digest)
        made += 1
        roll = rng.random()
        if roll < 0.025:
            yield NewEvent.of(SelectionRated(digest=digest, rating=rng.randint(1, 5)), META)
        elif roll < 0.035:
            yield NewEvent.of(SelectionPicked(digest=digest, note="keeper"), META)
        elif roll < 0.04:
            if not branches or rng.random() < 0.2:
                name = f"work-{len(branches)}"
                branches.append((name, digest))
                yield NewEvent.of(BranchCreated(name=name, head=digest), META)
            else:
                i = rng.randrange(len(branches))
                name, head = branches[i]
                branches[i] = (name, digest)
                yield NewEvent.of(BranchAdvanced(name=name, head=digest, previous_head=head),
                                  META)
    assert len(chain) == CHAIN_DEPTH + 1, (len(chain), chain_every)


def write_log(store: Store, assets: int) -> LogShape:
    batch: list[NewEvent] = []
    stream_no = 0
    written = 0
    derivations = 0
    for event in realistic_log(assets):
        batch.append(event)
        if event.type == "asset.derived":
            derivations += len(event.data["output"]["inputs"])
        if len(batch) == LOG_BATCH:
            store.ledger.append(f"bench:import:{stream_no}", batch, 0)
            written += len(batch)
            stream_no += 1
            batch = []
    if batch:
        store.ledger.append(f"bench:import:{stream_no}", batch, 0)
        written += len(batch)
    chain_every = max(1, (assets - 1) // (CHAIN_DEPTH + 1))
    return LogShape(written, assets, derivations, fake_digest(f"a{CHAIN_DEPTH * chain_every}"))


def bench_rebuild(root: Path, assets: int) -> tuple[list[Row], Store, LogShape]:
    log(f"3. projection rebuild: writing a log of {assets:,} assets (setup)")
    # Warm up the projection code on a small store (imports, pydantic, SQLAlchemy).
    small = open_store(root, "rebuild-warm")
    write_log(small, 2000)
    small.projections.rebuild()
    small.close()

    start = time.perf_counter()
    store = open_store(root, "rebuild")
    shape = write_log(store, assets)
    log(f"   wrote {shape.events:,} events in {time.perf_counter() - start:.1f} s; "
        "rebuilding")
    gc.collect()
    start = time.perf_counter()
    applied = store.projections.rebuild()
    seconds = time.perf_counter() - start
    assert applied == shape.events, (applied, shape.events)
    with sqlite3.connect(store.engine.url.database) as conn:
        counted_assets = conn.execute("SELECT count(*) FROM assets").fetchone()[0]
        counted_edges = conn.execute("SELECT count(*) FROM derivations").fetchone()[0]
    conn.close()
    assert counted_assets == assets, counted_assets
    assert counted_edges <= shape.derivations, (counted_edges, shape.derivations)
    rate = shape.events / seconds

    raw_seconds = []
    for _ in range(3):
        conn = sqlite3.connect(store.engine.url.database)
        start = time.perf_counter()
        rows = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY position").fetchall()
        raw_seconds.append(time.perf_counter() - start)
        conn.close()
        assert len(rows) == shape.events
    raw_rate = shape.events / min(raw_seconds)
    log(f"   rebuild {rate:,.0f} ev/s ({seconds:.1f} s), raw SELECT {raw_rate:,.0f} rows/s")
    return [Row(f"3. projection rebuild ({shape.events:,} events, {counted_assets:,} assets, "
                f"{counted_edges:,} edges)",
                fmt_rate(rate, "ev/s"), f"raw SELECT of the rows: {fmt_rate(raw_rate, 'rows/s')}",
                f"{rate / raw_rate:.3f}x", "≥ 20,000 ev/s", verdict(rate >= 20_000))], \
        store, shape


def rebuild_mix_store(store: Store, assets: int) -> int:
    """Write bench/provenance.py's mix of every layer's events (requests, starts, failures
    and retries, completions of all seven layers, imports, outside edits, decisions,
    reviews, branch moves) for `assets` assets; return the number of events."""
    from provenance import write_store  # beside this file; it imports this module too

    return write_store(store, assets).events


def raw_select_rate(store: Store, events: int) -> float:
    """Rows per second of the plain SELECT of the events' columns, best of three, through
    the store's own driver (sqlite3 or psycopg)."""
    best = math.inf
    for _ in range(3):
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            start = time.perf_counter()
            cursor.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY position")
            rows = cursor.fetchall()
            best = min(best, time.perf_counter() - start)
        finally:
            raw.close()
        assert len(rows) == events, (len(rows), events)
    return events / best


def bench_rebuild_mix(root: Path, assets: int, postgres: str | None) -> list[Row]:
    """3b (and 3c on PostgreSQL). `rebuild()` of a log of every layer's events — the find
    indexes, jobs, selections, branches included — beside a raw SELECT of its rows."""
    rows: list[Row] = []
    places = [("SQLite", None)] + ([("PostgreSQL", postgres)] if postgres else [])
    for number, (name, url) in zip("bc", places, strict=False):
        log(f"3{number}. rebuild of every layer's events on {name}: writing about "
            f"{assets:,} assets (setup)")
        settings = Settings(home=root / f"mix-{name}", database_url=url)
        store = Store.open(settings, create=True)
        try:
            warm = Store.open(Settings(home=root / f"mix-warm-{name}"), create=True)
            rebuild_mix_store(warm, 500)  # imports, pydantic, statement caches
            warm.projections.rebuild()
            warm.close()
            events = rebuild_mix_store(store, assets)
            store.projections.catch_up()
            raw_rate = raw_select_rate(store, events)
            gc.collect()
            start = time.perf_counter()
            applied = store.projections.rebuild()
            seconds = time.perf_counter() - start
            assert applied == events, (applied, events)
            rate = events / seconds
            log(f"   rebuild {rate:,.0f} ev/s ({seconds:.1f} s), raw SELECT "
                f"{raw_rate:,.0f} rows/s; load average {os.getloadavg()[0]:.1f}")
            rows.append(Row(
                f"3{number}. projection rebuild, every layer's events, {name} ({events:,} "
                f"events of {assets:,} assets; find indexes included)",
                fmt_rate(rate, "ev/s"), f"raw SELECT of the rows: {fmt_rate(raw_rate, 'rows/s')}",
                f"{rate / raw_rate:.3f}x", "≥ 100,000 ev/s", verdict(rate >= 100_000)))
        finally:
            if url is not None:
                with store.engine.begin() as conn:  # leave the database as it was found
                    conn.execute(text("DROP SCHEMA public CASCADE"))
                    conn.execute(text("CREATE SCHEMA public"))
            store.close()
    return rows


LINEAGE_SQL = """
WITH RECURSIVE frontier(input_digest, output_digest, role, layer, operation, event_id, depth)
AS (
    SELECT input_digest, output_digest, role, layer, operation, event_id, 1
    FROM derivations WHERE output_digest = ?
    UNION
    SELECT step.input_digest, step.output_digest, step.role, step.layer, step.operation,
           step.event_id, frontier.depth + 1
    FROM derivations AS step JOIN frontier ON step.output_digest = frontier.input_digest
    WHERE frontier.depth < ?
)
SELECT input_digest, output_digest, role, layer, operation, event_id, depth FROM frontier
ORDER BY depth, output_digest, input_digest, role
"""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def bench_lineage(store: Store, shape: LogShape, reps: int) -> list[Row]:
    log(f"4. lineage walk up {CHAIN_DEPTH} steps among {shape.assets:,} assets, {reps} reps")
    tip = shape.chain_tip
    raw = sqlite3.connect(store.engine.url.database)
    with store.engine.connect() as conn:
        edges = lineage.walk(conn, tip, "up", depth=CHAIN_DEPTH)
        assert len(edges) == CHAIN_DEPTH, len(edges)
        raw_rows = raw.execute(LINEAGE_SQL, (tip, CHAIN_DEPTH)).fetchall()
        assert len(raw_rows) == CHAIN_DEPTH, len(raw_rows)
        for _ in range(10):
            lineage.walk(conn, tip, "up", depth=CHAIN_DEPTH)
            raw.execute(LINEAGE_SQL, (tip, CHAIN_DEPTH)).fetchall()
        gc.collect()
        full_gc: list[float] = []  # when each generation-2 collection started

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start" and info["generation"] == 2:
                full_gc.append(time.perf_counter())

        gc.callbacks.append(on_gc)
        strata_ms: list[float] = []
        raw_ms: list[float] = []
        slow_with_gc = 0
        try:
            for _ in range(reps):
                collections = len(full_gc)
                start = time.perf_counter()
                lineage.walk(conn, tip, "up", depth=CHAIN_DEPTH)
                strata_ms.append((time.perf_counter() - start) * 1000)
                slow_with_gc += len(full_gc) > collections
                start = time.perf_counter()
                raw.execute(LINEAGE_SQL, (tip, CHAIN_DEPTH)).fetchall()
                raw_ms.append((time.perf_counter() - start) * 1000)
        finally:
            gc.callbacks.remove(on_gc)
    raw.close()
    p50, p99 = percentile(strata_ms, 50), percentile(strata_ms, 99)
    r50, r99 = percentile(raw_ms, 50), percentile(raw_ms, 99)
    log(f"   strata p50 {p50:.2f} ms p99 {p99:.2f} ms; raw p50 {r50:.2f} ms p99 {r99:.2f} ms; "
        f"{slow_with_gc} Strata walks ran a full (generation 2) garbage collection")
    what = f"{CHAIN_DEPTH:,} deep, {shape.assets:,} assets, {reps} reps"
    return [
        Row(f"4a. lineage walk p50 ({what})", f"{p50:.2f} ms", f"raw recursive SQL: {r50:.2f} ms",
            f"{p50 / r50:.2f}x the time", "—", "info"),
        Row(f"4b. lineage walk p99 ({what}; {slow_with_gc} of the walks ran a full GC)",
            f"{p99:.2f} ms", f"raw recursive SQL: {r99:.2f} ms",
            f"{p99 / r99:.2f}x the time", "≤ 20 ms", verdict(p99 <= 20.0)),
    ]


# --- 5. blob ingest ---------------------------------------------------------------------


def plain_ingest(path: Path, folder: Path) -> str:
    """The baseline: hash while copying, fsync, rename into place, fsync the folder."""
    hasher = hashlib.sha256()
    tmp = folder / f"{uuid.uuid4().hex}.part"
    with path.open("rb") as source, tmp.open("wb") as out:
        while chunk := source.read(1024 * 1024):
            hasher.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    digest = hasher.hexdigest()
    os.replace(tmp, folder / digest)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest


def write_png(path: Path, width: int, height: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(5)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    base = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1)
    noisy = base + rng.normal(0, 12, size=(height, width, 3)).astype(np.float32)
    pixels = np.clip(noisy, 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path, compress_level=1)


def bench_blobs(root: Path, files: int, size_mb: int, png_side: tuple[int, int]) -> list[Row]:
    log(f"5. blob ingest: {files} files of {size_mb} MB of random bytes")
    from strata.core.storage.local import LocalBlobStore

    sources = root / "blob-sources"
    sources.mkdir()
    paths = []
    for i in range(files + 1):  # the first file is the warm-up
        path = sources / f"random-{i}.bin"
        path.write_bytes(os.urandom(size_mb * 1024 * 1024))
        paths.append(path)
    settings = Settings(home=root / "blob-store")
    blobs = LocalBlobStore(settings.objects_dir, settings.max_image_pixels,
                           settings.max_upload_bytes)
    plain = root / "blob-plain"
    plain.mkdir()
    blobs.ingest_path(paths[0])
    plain_ingest(paths[0], plain)

    def run_strata(i: int) -> None:
        info = blobs.ingest_path(paths[i + 1])
        assert info.size == size_mb * 1024 * 1024

    def run_plain(i: int) -> None:
        plain_ingest(paths[i + 1], plain)

    totals = interleave({"strata": run_strata, "plain": run_plain}, files)
    megabytes = files * size_mb
    rate, plain_rate = megabytes / totals["strata"].wall, megabytes / totals["plain"].wall
    log(f"   strata {rate:,.0f} MB/s, plain {plain_rate:,.0f} MB/s")
    rows = [Row(f"5a. blob ingest ({files} x {size_mb} MB random bytes)",
                fmt_rate(rate, "MB/s"),
                f"sha256 + write + fsync + rename: {fmt_rate(plain_rate, 'MB/s')}",
                f"{rate / plain_rate:.2f}x", "≥ 0.60x baseline",
                verdict(rate >= 0.6 * plain_rate))]

    width, height = png_side
    log(f"   PNG case: {width}x{height}")
    png = sources / "large.png"
    write_png(png, width, height)
    png_mb = png.stat().st_size / 1024 / 1024
    png_times, plain_times, inspect_times = [], [], []
    for r in range(3):
        store_r = LocalBlobStore(root / f"png-store-{r}", settings.max_image_pixels,
                                 settings.max_upload_bytes)
        start = time.perf_counter()
        info = store_r.ingest_path(png)
        png_times.append(time.perf_counter() - start)
        assert info.width == width and info.phash
        start = time.perf_counter()
        plain_ingest(png, plain)
        plain_times.append(time.perf_counter() - start)
        with png.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
        start = time.perf_counter()
        inspect(png, head, settings.max_image_pixels)
        inspect_times.append(time.perf_counter() - start)
    best, best_plain = min(png_times), min(plain_times)
    best_inspect = min(inspect_times)
    log(f"   PNG ingest {best * 1000:.0f} ms (inspect {best_inspect * 1000:.0f} ms), "
        f"plain {best_plain * 1000:.0f} ms")
    rows.append(Row(
        f"5b. PNG ingest, {width}x{height}, {png_mb:.1f} MB (decode + phash/dhash "
        f"{best_inspect * 1000:.0f} ms of {best * 1000:.0f} ms)",
        f"{fmt_rate(png_mb / best, 'MB/s')} ({1 / best:.2f} files/s)",
        f"sha256 + write + fsync + rename: {fmt_rate(png_mb / best_plain, 'MB/s')}",
        f"{best_plain / best:.2f}x", "—", "info"))
    return rows


# --- main -------------------------------------------------------------------------------


# --- 6. time travel ---------------------------------------------------------------------


TIME_TRAVEL_FORMAT = 1  # bump when the cached store's contents change


def time_travel_store(cache: Path, events: int) -> tuple[Store, str]:
    """A store of about `events` events of every layer (bench/provenance.py's realistic
    mix, with its final MP4 of 1,000 ancestors at the end), built once and kept under
    `cache`; returns it and the final's digest."""
    from provenance import write_store  # beside this file; it imports this module too

    from strata.core.storage.migrate import head_revision

    folder = cache / f"time-travel-{events}-v{TIME_TRAVEL_FORMAT}"
    marker = folder / "complete.json"
    if marker.exists():
        log(f"6. time travel: the cached store in {folder}")
        store = Store.open(Settings(home=folder / "store"), create=True)  # upgrades it
        if store.projections.state().lagging:  # a newer schema reset some projections
            log("   its projections are behind (a schema upgrade): rebuilding them")
            store.projections.rebuild()
        return store, json.loads(marker.read_text())["final"]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    # About 1.81 events per asset in that mix (988,318 events for 544,959 assets).
    assets = int(events / 1.80)
    log(f"6. time travel: writing a store of about {events:,} events ({assets:,} assets) "
        f"into {folder} (setup, kept for later runs)")
    start = time.perf_counter()
    store = Store.open(Settings(home=folder / "store"), create=True)
    shape = write_store(store, assets)
    log(f"   wrote {shape.events:,} events in {time.perf_counter() - start:.0f} s; "
        "building the projections")
    start = time.perf_counter()
    store.projections.rebuild()  # one transaction: no pauses for other writers
    log(f"   built in {time.perf_counter() - start:.0f} s")
    marker.write_text(json.dumps({"events": shape.events, "final": shape.final,
                                  "schema": head_revision()}))
    return store, shape.final


def show_as_of(strata: Strata, digest: str, position: int) -> None:
    """What `strata show PREFIX --as-of N` does before printing."""
    found = lookup(strata, digest[7:19], position)
    assert isinstance(found, AssetFound), found


def lineage_as_of(strata: Strata, digest: str, position: int) -> None:
    """What `strata lineage PREFIX --as-of N` does before printing (its default depth)."""
    with strata.view(position) as conn:
        lineage.walk(conn, strata.resolve_asset(digest[7:19], conn), "up", depth=50)


def bench_time_travel(cache: Path, events: int, reps: int, replay_at: int) -> list[Row]:
    store, final = time_travel_store(cache, events)
    strata = Strata(store)
    head = store.ledger.head_position()
    at = sorted({head // 10, head // 2, head * 9 // 10, head})
    samples: dict[int, list[str]] = {}
    with store.engine.connect() as conn:
        for position in at:
            samples[position] = list(conn.scalars(text(
                # Digests are hashes: the lowest are a fixed sample from all over the log.
                "SELECT digest FROM assets WHERE created_position <= :n "
                "ORDER BY digest LIMIT :k"), {"n": position, "k": reps}))
    samples[head][0] = final  # the deepest: 1,000 ancestors (lineage stops at 50 steps)
    for position in at:  # warm: imports, statement caches, the database's pages
        show_as_of(strata, samples[position][-1], position)
        lineage_as_of(strata, samples[position][-1], position)
    show_ms: dict[int, list[float]] = {p: [] for p in at}
    lineage_ms: dict[int, list[float]] = {p: [] for p in at}
    for i in range(reps):
        for position in at:
            digest = samples[position][i % len(samples[position])]
            for measure, into in ((show_as_of, show_ms), (lineage_as_of, lineage_ms)):
                gc.collect()
                start = time.perf_counter()
                measure(strata, digest, position)
                into[position].append((time.perf_counter() - start) * 1000)
    for position in at:
        log(f"   as of {position:,}: show p50 {percentile(show_ms[position], 50):.0f} ms "
            f"p99 {percentile(show_ms[position], 99):.0f} ms; lineage p50 "
            f"{percentile(lineage_ms[position], 50):.0f} ms "
            f"p99 {percentile(lineage_ms[position], 99):.0f} ms")

    # The baseline: the full replay, at a position small enough to wait for; and the
    # as-of views at that same position.
    replaying = ReplayingStrata(store)
    with store.engine.connect() as conn:
        early = list(conn.scalars(text(
            "SELECT digest FROM assets WHERE created_position <= :n ORDER BY digest "
            "LIMIT 3"), {"n": replay_at}))
    replay_ms: list[float] = []
    views_ms: list[float] = []
    for digest in early:
        for side, times in ((replaying, replay_ms), (strata, views_ms)):
            start = time.perf_counter()
            show_as_of(side, digest, replay_at)
            times.append((time.perf_counter() - start) * 1000)
    replay, small = percentile(replay_ms, 50), percentile(views_ms, 50)
    log(f"   as of {replay_at:,}: show by full replay {replay:,.0f} ms, by the as-of "
        f"views {small:.0f} ms")
    store.close()

    every_show = [ms for p in at for ms in show_ms[p]]
    every_lineage = [ms for p in at for ms in lineage_ms[p]]
    where = (f"{head:,} events, N = {', '.join(f'{p:,}' for p in at)}; "
             f"{reps} assets each")
    baseline = (f"full replay as of {replay_at:,}: {replay:,.0f} ms (as-of views there: "
                f"{small:.0f} ms)")
    s50, s99 = percentile(every_show, 50), percentile(every_show, 99)
    l50, l99 = percentile(every_lineage, 50), percentile(every_lineage, 99)
    return [
        Row(f"6a. show --as-of N ({where})", f"p50 {s50:.0f} ms, p99 {s99:.0f} ms", baseline,
            f"{replay / s99:,.0f}x faster (p99)", "p99 ≤ 500 ms", verdict(s99 <= 500)),
        Row("6b. lineage --as-of N (same; the final's 1,000 ancestors among them)",
            f"p50 {l50:.0f} ms, p99 {l99:.0f} ms", baseline,
            f"{replay / l99:,.0f}x faster (p99)", "p99 ≤ 1 s", verdict(l99 <= 1000)),
    ]


def fsync_latency(root: Path, count: int = 50) -> float:
    """Median milliseconds of a 4 KiB write + fsync in the temporary folder."""
    times = []
    fd = os.open(root / "fsync-probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for i in range(count):
            os.pwrite(fd, os.urandom(4096), (i % 16) * 4096)
            start = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        (root / "fsync-probe").unlink()
    return sorted(times)[len(times) // 2] * 1000


def environment(root: Path) -> str:
    import sqlalchemy

    with sqlite3.connect(":memory:") as conn:
        default_sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    conn.close()
    cpus = os.cpu_count()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    return (
        f"python {platform.python_version()} · SQLite {sqlite3.sqlite_version} "
        f"(default synchronous={default_sync}) · SQLAlchemy {sqlalchemy.__version__} · "
        f"eventsourcing {version('eventsourcing')} · {cpus} CPUs ({affinity} usable) · "
        f"{platform.machine()} {platform.system()} {platform.release()} · "
        f"fsync of 4 KiB ≈ {fsync_latency(root):.2f} ms (median) · temporary folder {root}"
    )


def table_markdown(rows: list[Row]) -> str:
    lines = ["| measure | Strata | baseline (same run) | ratio | target | result |",
             "|---|---:|---|---:|---|:---:|"]
    for row in rows:
        lines.append(f"| {row.measure} | {row.strata} | {row.baseline} | {row.ratio} | "
                     f"{row.target} | {row.result} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    parser.add_argument("--events", type=int, default=None,
                        help="assets in the log for rebuild and lineage "
                             "(default 100,000; --quick 20,000)")
    parser.add_argument("--appends", type=int, default=None,
                        help="single-event appends per contender (default 2,000; --quick 800)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to make the temporary folder (its disk is measured)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--mix-assets", type=int, default=None,
                        help="assets in the every-layer log that 3b rebuilds (default 55,000: "
                             "about 100,000 events; --quick 5,000)")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="also rebuild that log on this PostgreSQL database (3c); its "
                             "public schema is emptied afterwards: give a scratch database")
    parser.add_argument("--time-travel", action="store_true",
                        help="run only 6: show and lineage --as-of on a store of a million "
                             "events, built once and kept under --cache")
    parser.add_argument("--time-travel-events", type=int, default=None,
                        help="events in that store (default 1,000,000; --quick 100,000)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "strata-bench",
                        help="where the time-travel store is kept between runs "
                             "(default ~/.cache/strata-bench)")
    args = parser.parse_args(argv)
    if args.time_travel:
        return main_time_travel(args)

    quick = args.quick
    assets = args.events or (20_000 if quick else 100_000)
    if assets < 2 * (CHAIN_DEPTH + 1):
        parser.error(f"--events must be at least {2 * (CHAIN_DEPTH + 1)}")
    appends = args.appends or (800 if quick else 2_000)
    batches = 8 if quick else 20
    reps = 100 if quick else 200
    files, size_mb = (8, 8) if quick else (20, 8)
    png_side = (2048, 1536) if quick else (4000, 3000)

    root = Path(tempfile.mkdtemp(prefix="strata-bench-", dir=args.dir))
    started = time.perf_counter()
    rows: list[Row] = []
    try:
        env = environment(root)
        log(env)
        rows += bench_single(root, appends)
        rows += bench_domain_events(root, appends)
        rows += bench_batch(root, batches)
        rebuild_rows, store, shape = bench_rebuild(root, assets)
        rows += rebuild_rows
        rows += bench_rebuild_mix(root, args.mix_assets or (5_000 if quick else 55_000),
                                  args.postgres)
        rows += bench_lineage(store, shape, reps)
        store.close()
        rows += bench_blobs(root, files, size_mb, png_side)
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    assert "torch" not in sys.modules, "the benchmark must not import torch"

    print_report("ledger", quick, time.perf_counter() - started,
                 env.replace(f" · temporary folder {root}", ""), rows)
    return 0


def main_time_travel(args: argparse.Namespace) -> int:
    quick = args.quick
    events = args.time_travel_events or (100_000 if quick else 1_000_000)
    started = time.perf_counter()
    args.cache.mkdir(parents=True, exist_ok=True)
    env = environment(args.cache).replace(" · temporary folder", " · cache")
    env += f" · load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at the start"
    log(env)
    rows = bench_time_travel(args.cache, events, reps=10 if quick else 25,
                             replay_at=5_000 if quick else 20_000)
    assert "torch" not in sys.modules, "the benchmark must not import torch"
    print_report("ledger (time travel)", quick, time.perf_counter() - started, env, rows)
    return 0


def print_report(name: str, quick: bool, elapsed: float, env: str, rows: list[Row]) -> None:
    """The figures as the README shows them: a title, the environment, the table, and
    which targets passed."""
    print(f"Strata {name} benchmark ({'--quick' if quick else 'full'} run, {elapsed:.0f} s)\n")
    print(f"Environment: {env}\n")
    print(table_markdown(rows))
    passed = sum(r.result == "PASS" for r in rows)
    missed = [r.measure.split(" ")[0] for r in rows if r.result == "MISS"]
    print(f"\nTargets: {passed} passed, {len(missed)} missed"
          + (f" ({', '.join(missed)})" if missed else "") + ".")


if __name__ == "__main__":
    sys.exit(main())
