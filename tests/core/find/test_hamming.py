"""The multi-index hash behind `like:` and `--similar`: the hashes it finds within a
distance are exactly those a plain Hamming comparison of every stored hash finds, on
SQLite and PostgreSQL, at every radius (hashes near the chunk boundaries included)."""

from __future__ import annotations

import random

from sqlalchemy import insert

from strata.core.find import hamming
from strata.core.find.schema import FindAssetRow
from strata.core.projections.base import table
from strata.core.service import Strata


def test_within_finds_exactly_what_a_plain_scan_finds(strata: Strata) -> None:
    rng = random.Random(5)
    reference = rng.getrandbits(64)
    stored = [rng.getrandbits(64) for _ in range(3000)]
    # Near-duplicates at every distance up to 20, their flipped bits spread over the chunks
    # or crowded into one (the case the pigeonhole argument is about).
    for bits in range(21):
        for spread in (range(64), range(16 * (bits % 4), 16 * (bits % 4) + 16)):
            flipped = rng.sample(list(spread), min(bits, len(spread)))
            stored.append(reference ^ sum(1 << b for b in flipped))
    rows = []
    for n, value in enumerate(stored):
        split = hamming.of_unsigned(value)
        rows.append({"digest": f"sha256:{n:064x}", "position": n + 1, "layer": "import",
                     "operation": "import", "media_type": "image/png", "actor": None,
                     "made": "2026-01-01T00:00:00Z", "phash": split.signed,
                     **{f"ph{i}": split.chunks[i] for i in range(4)}})
    with strata.store.engine.begin() as conn:
        conn.execute(insert(table(FindAssetRow)), rows)
    query = hamming.of_unsigned(reference)
    with strata.store.engine.connect() as conn:
        for distance in range(hamming.MAX_DISTANCE + 1):
            expected = sorted({hamming.of_unsigned(v).signed for v in stored
                               if hamming.hamming(v, reference) <= distance})
            assert hamming.within(conn, query, distance) == expected, distance
