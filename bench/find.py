"""Benchmark of `strata find` (core.find.search) on a store of realistic generations, each
query beside a plain baseline measured in the same run.

    python bench/find.py [--quick] [--assets N] [--reps N] [--dir PATH] [--keep]

Run it as a script from the checkout (it shares its table and helpers with
bench/ledger.py, imported from beside it). The store (200,000 assets by default; 20,000
with --quick) is written straight through `Ledger.append_together` in batches, as the
other benchmarks write theirs: generation jobs of 1 to 8 seeds over prompts drawn from a
vocabulary of subjects, settings, light and styles, with negative prompts, steps, cfg,
schedulers, three models and three actors; one output in ten is a near-duplicate of an
earlier one (a few of its perceptual-hash bits flipped); a few finals, ratings and
reviews. The projections (the find indexes among them) then catch up once, timed.

Measured with `search()` — the one function the command line and HTTP call — p50 and p99
over --reps runs each:

Each query returns the first page (50 rows) and the total, exact up to 1,000 ("1,000+"
beyond, as the command line shows it).

1. a prompt word (`fox`), beside `LIKE '%fox%'` over the same prompts (find_texts);
2. a range (`cfg:6.5..7 steps>=40`), beside a scan of the parameter rows' JSON source;
3. a combined query (prompt phrase, model, seed range, steps), beside LIKE and filters;
4. similarity (`--similar ASSET --distance 8`, multi-index hashing over the chunk
   indexes; ASSET a whole digest, as HTTP sends it), beside a Python Hamming scan of every
   hash (the hashes loaded from the database, then `(a ^ b).bit_count()` row by row), and
   for the choice of structure a bit-sliced numpy scan and a BK-tree (their build or load
   time reported apart).

Targets: every query p99 <= 50 ms on SQLite; similarity >= 20x faster than the Python scan.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ledger import Row, environment, fake_digest, log, open_store, percentile, print_report, verdict

from strata.core.find.search import search
from strata.core.layers.generation import GenerationCompleted, GenerationRequested
from strata.core.ledger.event_types import (
    AssetInfo,
    FinalMarked,
    ProducedAsset,
    ReviewRecorded,
    SelectionRated,
)
from strata.core.ledger.events import NewEvent
from strata.core.ledger.log import ANY_VERSION, StreamAppend
from strata.core.models.diffusion import ModelRef, SchedulerUsed, Timings
from strata.core.runtime.jobs import stream as job_stream
from strata.core.service import Strata, asset_stream

SUBJECTS = ("fox", "wolf", "lighthouse", "castle", "robot", "dragon", "owl", "city skyline",
            "forest spirit", "astronaut", "samurai", "cat", "ship", "mountain lake", "desert",
            "cathedral", "knight", "whale", "garden", "train station", "market", "violinist",
            "tiger", "bridge", "waterfall", "portrait of a woman", "old man", "temple",
            "lantern", "cabin", "jellyfish", "racing car", "bonsai", "greenhouse", "library",
            "harbor", "glacier", "phoenix", "scarecrow", "windmill")
SETTINGS = ("in the snow", "at the beach", "in a misty forest", "on a cliff", "in the rain",
            "under the stars", "in a neon city", "in the desert", "by a river",
            "in an abandoned factory", "on the moon", "in a wheat field", "underwater",
            "in a snowy village", "on a rooftop")
LIGHT = ("golden hour", "blue hour", "soft morning light", "dramatic rim light", "overcast",
         "volumetric fog", "candlelight", "harsh noon sun", "moonlight", "studio lighting")
STYLES = ("oil painting", "watercolor", "35mm photo", "cinematic still", "concept art",
          "ukiyo-e", "pencil sketch", "isometric 3d render", "film noir", "pixel art",
          "analog film grain", "matte painting")
NEGATIVES = ("blurry, lowres", "watermark, text", "deformed hands, extra fingers",
             "oversaturated", "jpeg artifacts, noise")
MODELS = tuple(ModelRef(name=n, path=f"/srv/models/{n}", digest=fake_digest(f"model:{n}"))
               for n in ("sdxl", "sd15", "flux-dev"))
ACTORS = ("ana", "bo", "chen")
COMBINED = 'prompt:"golden hour" fox model:sdxl seed>=1000 steps>=30'


def prompt(rng: random.Random) -> str:
    return (f"a {rng.choice(SUBJECTS)} {rng.choice(SETTINGS)}, {rng.choice(LIGHT)}, "
            f"{rng.choice(STYLES)}, highly detailed")


def write_store(strata: Strata, assets: int, seed: int = 7) -> tuple[int, list[str]]:
    """Generation jobs until `assets` outputs exist; returns (events, image digests)."""
    rng = random.Random(seed)
    ledger = strata.ledger
    made: list[tuple[str, int]] = []  # digest, phash
    parts: list[StreamAppend] = []
    events = pending = 0
    timings = Timings(load_s=1.0, generate_s=4.0, store_s=0.1, total_s=5.1)
    scheduler = SchedulerUsed(name="ddim", class_name="DDIMScheduler",
                              config={"num_train_timesteps": 1000, "beta_start": 0.00085})

    def flush() -> None:
        nonlocal parts, pending
        if parts:
            ledger.append_together(parts)
        parts, pending = [], 0

    while len(made) < assets:
        job_id = uuid.uuid4().hex
        n = min(rng.choice((1, 2, 4, 4, 8)), assets - len(made))
        seeds = rng.sample(range(2**32), n)
        model = rng.choice(MODELS)
        meta = {"actor": rng.choice(ACTORS), "host": "bench-host", "strata": "0.1.0"}
        request = GenerationRequested(
            job_id=job_id, prompt=prompt(rng), negative_prompt=rng.choice(NEGATIVES),
            seeds=seeds, steps=rng.choice((20, 25, 30, 40, 50)),
            cfg=rng.choice((5.0, 6.0, 6.5, 7.0, 7.5, 8.0, 9.0)), width=1024, height=1024,
            model=model)
        outputs = []
        for s in seeds:
            if made and rng.random() < 0.1:  # a near-duplicate of earlier work
                _, base = rng.choice(made)
                phash = base
                for bit in rng.sample(range(64), rng.randrange(1, 7)):
                    phash ^= 1 << bit
            else:
                phash = rng.getrandbits(64)
            digest = fake_digest(f"find-asset-{len(made)}")
            made.append((digest, phash))
            info = AssetInfo(digest=digest, media_type="image/png", size=1_500_000,
                             width=1024, height=1024, phash=f"{phash:016x}",
                             dhash=f"{rng.getrandbits(64):016x}")
            outputs.append(ProducedAsset(asset=info, seed=s, params={"seed": s}))
        completed = GenerationCompleted(
            job_id=job_id, operation="text-to-image", outputs=outputs, model=model,
            scheduler=scheduler, device="cuda", dtype="float16",
            versions={"torch": "2.13.0", "diffusers": "0.42.1", "strata": "0.1.0"},
            timings=timings)
        parts.append(StreamAppend(job_stream(job_id), [NewEvent.of(request, meta),
                                                       NewEvent.of(completed, meta)],
                                  ANY_VERSION))
        events += 2
        pending += 2
        if rng.random() < 0.02:  # now and then a decision on one of the outputs
            digest = outputs[0].asset.digest
            decisions = [SelectionRated(digest=digest, rating=rng.randrange(1, 6)),
                         ReviewRecorded(digest=digest, verdict=rng.choice(
                             ("approve", "reject", "changes")))]
            if rng.random() < 0.3:
                decisions.append(FinalMarked(digest=digest))
            parts.append(StreamAppend(asset_stream(digest),
                                      [NewEvent.of(d, meta) for d in decisions], ANY_VERSION))
            events += len(decisions)
            pending += len(decisions)
        if pending >= 1000:
            flush()
    flush()
    return events, [d for d, _ in made]


def timed(run: Callable[[int], object], reps: int) -> list[float]:
    found = []
    for r in range(reps):
        started = time.perf_counter()
        run(r)
        found.append((time.perf_counter() - started) * 1000)
    return found


def ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms"


def bench(strata: Strata, digests: list[str], reps: int) -> list[Row]:
    rows: list[Row] = []
    engine = strata.store.engine
    raw = engine.raw_connection()
    cursor = raw.cursor()
    rng = random.Random(11)
    references = [rng.choice(digests) for _ in range(reps)]

    def query_row(name: str, query: str, baseline_name: str, baseline_sql: str) -> None:
        found = search(strata, query)
        log(f"{name}: {query!r} → {found.total_text} matches")
        ours = timed(lambda _r: search(strata, query), reps)
        theirs = timed(lambda _r: cursor.execute(baseline_sql).fetchall(), reps)
        p99 = percentile(ours, 99)
        rows.append(Row(f"{name} `{query}` ({found.total_text} matches)", ms(ours),
                        f"{baseline_name}: {ms(theirs)}",
                        f"{percentile(theirs, 50) / percentile(ours, 50):.1f}x",
                        "p99 <= 50 ms", verdict(p99 <= 50)))

    query_row("prompt word", "fox", "LIKE '%fox%' over the prompts",
              "SELECT DISTINCT digest FROM find_texts WHERE text LIKE '%fox%'")
    query_row("range", "cfg:6.5..7 steps>=40", "the same ranges over the request JSON",
              "SELECT stream FROM events WHERE type = 'generation.requested' AND "
              "json_extract(data, '$.cfg') BETWEEN 6.5 AND 7 AND "
              "json_extract(data, '$.steps') >= 40")
    query_row("combined", COMBINED, "LIKE and JSON filters over the requests",
              "SELECT stream FROM events WHERE type = 'generation.requested' AND "
              "data LIKE '%golden hour%' AND data LIKE '%fox%' AND "
              "json_extract(data, '$.model.name') = 'sdxl' AND "
              "json_extract(data, '$.steps') >= 30")

    # --- similarity -----------------------------------------------------------------
    found = search(strata, "", similar=references[0], distance=8)
    log(f"similarity: --similar {references[0][7:19]} --distance 8 → {found.total} matches")
    ours = timed(lambda r: search(strata, "", similar=references[r], distance=8), reps)

    def load() -> tuple[list[str], list[int]]:
        cursor.execute("SELECT digest, phash FROM find_assets WHERE phash IS NOT NULL")
        loaded = cursor.fetchall()
        return [d for d, _ in loaded], [p & 0xFFFF_FFFF_FFFF_FFFF for _, p in loaded]

    def python_scan(r: int) -> list[str]:
        names, hashes = load()
        target = hashes[names.index(references[r])]
        return [n for n, h in zip(names, hashes, strict=True) if (h ^ target).bit_count() <= 8]

    scan = timed(python_scan, reps)
    ratio = percentile(scan, 50) / percentile(ours, 50)
    rows.append(Row("similarity `--similar ASSET --distance 8` (multi-index hashing)",
                    ms(ours), f"Python Hamming scan (load + loop): {ms(scan)}", f"{ratio:.0f}x",
                    "p99 <= 50 ms; >= 20x the scan",
                    verdict(percentile(ours, 99) <= 50 and ratio >= 20)))

    names, hashes = load()
    started = time.perf_counter()
    load_ms = timed(lambda _r: load(), max(3, reps // 10))
    sliced = _bit_sliced(hashes)
    targets = [hashes[names.index(d)] for d in references]
    numpy_ms = timed(lambda r: sliced(targets[r], 8), reps)
    started = time.perf_counter()
    tree = _BKTree(hashes)
    build_s = time.perf_counter() - started
    bk_ms = timed(lambda r: tree.within(targets[r], 8), reps)
    rows.append(Row("similarity alternatives (hashes already in memory)",
                    f"numpy bit-sliced scan {ms(numpy_ms)}",
                    f"BK-tree {ms(bk_ms)} (built in {build_s:.1f} s); loading the hashes "
                    f"{percentile(load_ms, 50):.0f} ms", "", "", "info"))
    raw.close()
    return rows


def _bit_sliced(hashes: list[int]) -> Callable[[int, int], list[int]]:
    """A bit-sliced scan: 64 bit planes packed 8 hashes a byte; the distance of every hash
    is summed plane by plane."""
    import numpy as np

    values = np.array(hashes, dtype=np.uint64)
    planes = np.stack([((values >> np.uint64(b)) & np.uint64(1)).astype(bool)
                       for b in range(64)])
    packed = np.packbits(planes, axis=1)
    count = len(hashes)

    def within(target: int, distance: int) -> list[int]:
        total = np.zeros(packed.shape[1] * 8, dtype=np.uint8)
        for b in range(64):
            plane = packed[b] if not (target >> b) & 1 else ~packed[b]
            total += np.unpackbits(plane)
        return list(np.nonzero(total[:count] <= distance)[0])

    return within


class _BKTree:
    """A Burkhard-Keller tree over Hamming distance."""

    def __init__(self, hashes: list[int]) -> None:
        self.root: tuple[int, dict[int, tuple]] | None = None
        for h in hashes:
            self._add(h)

    def _add(self, value: int) -> None:
        if self.root is None:
            self.root = (value, {})
            return
        node = self.root
        while True:
            d = (node[0] ^ value).bit_count()
            child = node[1].get(d)
            if child is None:
                node[1][d] = (value, {})
                return
            node = child

    def within(self, target: int, distance: int) -> list[int]:
        found, stack = [], [self.root] if self.root else []
        while stack:
            value, children = stack.pop()
            d = (value ^ target).bit_count()
            if d <= distance:
                found.append(value)
            stack.extend(c for k, c in children.items() if d - distance <= k <= d + distance)
        return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 assets, fewer reps")
    parser.add_argument("--assets", type=int, help="assets in the store (default 200,000)")
    parser.add_argument("--reps", type=int, help="runs of each query (default 200)")
    parser.add_argument("--dir", help="where the temporary store goes")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    args = parser.parse_args(argv)
    assets = args.assets or (20_000 if args.quick else 200_000)
    reps = args.reps or (50 if args.quick else 200)

    root = Path(tempfile.mkdtemp(prefix="strata-bench-find-", dir=args.dir))
    started = time.perf_counter()
    rows: list[Row] = []
    try:
        env = environment(root)
        log(env)
        store = open_store(root, "store")
        strata = Strata(store)
        t = time.perf_counter()
        events, digests = write_store(strata, assets)
        written = time.perf_counter() - t
        log(f"wrote {events:,} events for {len(digests):,} assets in {written:.0f} s")
        t = time.perf_counter()
        store.projections.catch_up()
        caught = time.perf_counter() - t
        log(f"projections (find indexes included) caught up in {caught:.0f} s")
        rows.append(Row(f"store: {len(digests):,} assets, {events:,} events",
                        f"projections caught up in {caught:.0f} s", f"log written in "
                        f"{written:.0f} s", "", "", "info"))
        load = os.getloadavg()[0]
        rows += bench(strata, digests, reps)
        # The machine may be shared: its load says how much of the figures is waiting.
        rows.append(Row("machine load (1-minute average)",
                        f"{load:.1f} before the queries, {os.getloadavg()[0]:.1f} after",
                        f"{os.cpu_count()} CPUs", "", "", "info"))
        store.close()
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_report("find", args.quick, time.perf_counter() - started,
                 env.replace(f" · temporary folder {root}", ""), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
