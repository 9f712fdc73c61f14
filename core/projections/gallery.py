"""The asset list behind `GET /assets` and the web gallery: newest first, filtered by
layer, branch, rating, final and media type, with the facts a gallery card shows.

A read over the projections only (no event is decoded): one query for the page, one for
the count, and one each for the page's operations and branch heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, or_, select

from strata.core.projections.base import table
from strata.core.storage.schema import (
    AssetRow,
    BranchMoveRow,
    BranchRow,
    DerivationRow,
    EventRow,
    FinalRow,
    JobRow,
    ReviewRow,
    SelectionRow,
)


@dataclass(frozen=True)
class AssetFilter:
    layer: str | None = None
    branch: str | None = None  # made by a job on the branch, or ever its head
    rating_min: int | None = None
    final: bool | None = None
    media: str | None = None  # "image", or a whole media type "image/png"
    digests: frozenset[str] | None = None  # a search's matches (None: no search)


def list_assets(conn: Connection, where: AssetFilter, limit: int,
                offset: int) -> tuple[list[dict[str, Any]], int]:
    a, s, f, r = table(AssetRow), table(SelectionRow), table(FinalRow), table(ReviewRow)
    e = table(EventRow)
    query = (select(a.c.digest, a.c.media_type, a.c.size, a.c.width, a.c.height,
                    a.c.duration, a.c.layer, a.c.job_id, a.c.created_position,
                    e.c.recorded_at.label("created_at"), s.c.rating, s.c.decision,
                    r.c.verdict.label("review"), f.c.digest.label("final_digest"))
             .select_from(a.join(e, e.c.position == a.c.created_position)
                          .outerjoin(s, s.c.digest == a.c.digest)
                          .outerjoin(f, f.c.digest == a.c.digest)
                          .outerjoin(r, r.c.digest == a.c.digest)))
    if where.layer:
        query = query.where(a.c.layer == where.layer)
    if where.media:
        query = query.where(a.c.media_type == where.media if "/" in where.media
                            else a.c.media_type.startswith(where.media + "/"))
    if where.rating_min is not None:
        query = query.where(s.c.rating >= where.rating_min)
    if where.final is not None:
        query = query.where(f.c.digest.isnot(None) if where.final else f.c.digest.is_(None))
    if where.branch:
        jobs, moves = table(JobRow), table(BranchMoveRow)
        query = query.where(or_(
            a.c.job_id.in_(select(jobs.c.job_id).where(jobs.c.branch == where.branch)),
            a.c.digest.in_(select(moves.c.head).where(moves.c.branch == where.branch))))
    if where.digests is not None:
        query = query.where(a.c.digest.in_(sorted(where.digests)))
    total = conn.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = [dict(row._mapping) for row in conn.execute(
        query.order_by(a.c.created_position.desc(), a.c.digest).limit(limit).offset(offset))]
    digests = [row["digest"] for row in rows]
    made_by = operations(conn, digests)
    b = table(BranchRow)
    heads: dict[str, list[str]] = {}
    if digests:
        for name, head in conn.execute(select(b.c.name, b.c.head).where(b.c.head.in_(digests))
                                       .order_by(b.c.name)):
            heads.setdefault(head, []).append(name)
    for row in rows:
        row["final"] = row.pop("final_digest") is not None
        row["operation"] = made_by[row["digest"]]
        row["branches"] = heads.get(row["digest"], [])
    return rows, total


def operations(conn: Connection, digests: list[str]) -> dict[str, str]:
    """The operation that made each asset ("import" for one made outside any step)."""
    d = table(DerivationRow)
    found: dict[str, str] = dict(conn.execute(select(d.c.output_digest, func.min(d.c.operation))
                              .where(d.c.output_digest.in_(digests))
                              .group_by(d.c.output_digest)).all()) if digests else {}
    return {digest: found.get(digest, "import") for digest in digests}


def nodes(conn: Connection, digests: list[str]) -> list[dict[str, Any]]:
    """Lineage graph nodes: each asset's media type, layer and making operation, in two
    queries whatever the graph's size."""
    a = table(AssetRow)
    rows = {r.digest: r for r in conn.execute(
        select(a.c.digest, a.c.media_type, a.c.layer).where(a.c.digest.in_(digests)))}
    made_by = operations(conn, digests)
    return [{"digest": d, "media_type": rows[d].media_type if d in rows else None,
             "layer": rows[d].layer if d in rows else None, "operation": made_by[d]}
            for d in digests]
