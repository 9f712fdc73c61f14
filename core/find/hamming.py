"""Hamming-distance search over 64-bit perceptual hashes by multi-index hashing.

Each hash is stored whole and cut into four 16-bit chunks, each chunk an indexed column
(the index holding the whole hash too).
Two hashes within distance d of each other agree to within floor(d / 4) bits on at least
one chunk (pigeonhole: four chunks cannot each differ in more). So the candidates for a
query are the rows where some chunk equals one of the 16-bit values within that radius of
the query's chunk — a few hundred index lookups, one statement — and only those candidates are
checked exactly. bench/find.py measures this against a bit-sliced numpy scan and a BK-tree
(both need every hash in memory first, which a one-shot command pays on every run — loading
200,000 hashes costs more than the whole search; the database's indexes are already there)
and against a plain Python scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

from sqlalchemy import Connection

from strata.core.errors import InvalidInput
from strata.core.find.schema import FindAssetRow
from strata.core.projections.base import table

CHUNKS = 4
CHUNK_BITS = 16
# Beyond this two 64-bit perceptual hashes say little about the pictures being alike, and
# the chunk radius (and the lookups) would grow fast: 16 → 2,517 values per chunk.
MAX_DISTANCE = 16

_assets = table(FindAssetRow)


@dataclass(frozen=True)
class SplitHash:
    unsigned: int
    signed: int  # as a BIGINT column holds it
    chunks: tuple[int, int, int, int]


def split_hash(phash: str | None) -> SplitHash | None:
    """A hex perceptual hash (imagehash's text) as stored; None for none or another size."""
    if not phash or len(phash) != 16:
        return None
    try:
        value = int(phash, 16)
    except ValueError:
        return None
    return of_unsigned(value)


def of_unsigned(value: int) -> SplitHash:
    signed = value - (1 << 64) if value >= 1 << 63 else value
    chunks = tuple((value >> (CHUNK_BITS * (CHUNKS - 1 - i))) & 0xFFFF for i in range(CHUNKS))
    return SplitHash(value, signed, chunks)  # type: ignore[arg-type]


_MASK = 0xFFFF_FFFF_FFFF_FFFF


def unsigned(signed: int) -> int:
    return signed & _MASK


def check_distance(distance: int) -> None:
    if not 0 <= distance <= MAX_DISTANCE:
        raise InvalidInput(f"--distance must be between 0 and {MAX_DISTANCE} bits of 64, "
                           f"not {distance}")


@lru_cache(maxsize=MAX_DISTANCE // CHUNKS + 1)
def _masks(radius: int) -> tuple[int, ...]:
    """Every 16-bit mask with at most `radius` bits set."""
    found = [0]
    for bits in range(1, radius + 1):
        for chosen in combinations(range(CHUNK_BITS), bits):
            found.append(sum(1 << b for b in chosen))
    return tuple(found)


def within(conn: Connection, query: SplitHash, distance: int) -> list[int]:
    """The distinct stored hashes (signed, as the column holds them) within `distance`
    bits of `query`: the candidates come from each chunk's index, which carries the whole
    hash (no table row is read), and only they are compared exactly."""
    masks = _masks(distance // CHUNKS)
    # The values are integers made here, so they are written into the statement, and the
    # candidates (a couple of thousand in 200,000 hashes) are read straight from the
    # driver: binding hundreds of parameters and wrapping every row cost SQLAlchemy more
    # than the lookups cost the database.
    lookups = " UNION ALL ".join(
        f"SELECT phash FROM {_assets.name} WHERE ph{i} IN "
        f"({','.join(str(chunk ^ m) for m in masks)})"
        for i, chunk in enumerate(query.chunks))
    cursor = conn.connection.cursor()
    try:
        cursor.execute(lookups)
        candidates = cursor.fetchall()
    finally:
        cursor.close()
    target = query.unsigned
    return sorted({value for (value,) in candidates
                   if ((value & _MASK) ^ target).bit_count() <= distance})


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
