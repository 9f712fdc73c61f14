"""Hamming-distance search over 64-bit perceptual hashes by multi-index hashing.

Each hash is stored whole and cut into four 16-bit chunks, each chunk an indexed column.
Two hashes within distance d of each other agree to within floor(d / 4) bits on at least
one chunk (pigeonhole: four chunks cannot each differ in more). So the candidates for a
query are the rows where some chunk equals one of the 16-bit values within that radius of
the query's chunk — a few index lookups — and only those candidates are checked exactly.
bench/find.py measures this against a bit-sliced numpy scan and a BK-tree (both need
every hash in memory first, which a one-shot command pays on every run; the database's
indexes are already there) and against a plain Python scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

from sqlalchemy import ColumnElement, or_

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


def unsigned(signed: int) -> int:
    return signed & 0xFFFF_FFFF_FFFF_FFFF


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


def candidates(query: SplitHash, distance: int) -> ColumnElement[bool]:
    """The rows that may lie within `distance` of `query`: a superset, checked by
    `within` afterwards."""
    masks = _masks(distance // CHUNKS)
    columns = (_assets.c.ph0, _assets.c.ph1, _assets.c.ph2, _assets.c.ph3)
    return or_(*(column.in_(sorted({chunk ^ m for m in masks}))
                 for column, chunk in zip(columns, query.chunks, strict=True)))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
