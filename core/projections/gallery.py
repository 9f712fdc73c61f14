"""Reads for a gallery: the asset list (newest first, filtered by layer, branch, rating,
final, media type and a find query, with the facts a gallery card shows) and the lineage
graph of an asset as nodes and edges. `GET /assets` and `GET /assets/{ref}/lineage` are
these; a command line could print them as well.

Reads over the projections only (no event is decoded): one query for the page, one for
the count, and one each for the page's operations and branch heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, Select, Subquery, bindparam, func, or_, select

from strata.core.errors import AssetNotFound, InvalidInput
from strata.core.lookup import WHOLE_DIGEST
from strata.core.projections import lineage
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

if TYPE_CHECKING:
    from strata.core.service import Strata

GraphDirection = Literal["ancestors", "descendants", "graph"]


@dataclass(frozen=True)
class AssetFilter:
    layer: str | None = None
    branch: str | None = None  # made by a job on the branch, or ever its head
    rating_min: int | None = None
    final: bool | None = None
    media: str | None = None  # "image", or a whole media type "image/png"
    query: str | None = None  # a find query (docs/find.md)


@dataclass(frozen=True)
class AssetPage:
    rows: list[dict[str, Any]]
    total: int  # every match, or a lower bound when `total_exact` is False (a search)
    total_exact: bool = True


def list_assets(strata: Strata, where: AssetFilter, limit: int, offset: int) -> AssetPage:
    """A page of gallery cards, newest first, and how many match.

    With a find query the whole filter becomes one find query (every gallery filter is a
    find term), so find pages it from its indexes and counts as it does (exact up to
    1,000, then a lower bound); otherwise one SQL query over the projections does."""
    if where.query is None:
        with strata.view() as conn:
            rows, total = _page(conn, where, None, limit, offset)
        return AssetPage(rows, total)
    from strata.core.find.query import parse
    from strata.core.find.search import search

    parse(where.query)  # a refusal points into the user's own query, not the composed one
    found = search(strata, _as_find_query(where), limit=limit, offset=offset)
    with strata.view() as conn:
        rows, _ = _page(conn, AssetFilter(), frozenset(r.digest for r in found.rows),
                        limit, 0)
    return AssetPage(rows, found.total, found.total_exact)


def _as_find_query(where: AssetFilter) -> str:
    """The gallery's filters as find terms (docs/find.md) beside the user's query."""
    terms = [f"({where.query})"]
    for name, value in (("layer", where.layer), ("branch", where.branch),
                        ("media", where.media)):
        if value is not None:
            if '"' in value:
                raise InvalidInput(f"the {name} filter cannot hold a double quote")
            terms.append(f'{name}:"{value}"')
    if where.rating_min is not None:
        terms.append(f"rating>={where.rating_min}")
    if where.final is not None:
        terms.append("final" if where.final else "-final")
    return " ".join(terms)


def _page(conn: Connection, where: AssetFilter, digests: frozenset[str] | None, limit: int,
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
    if digests is not None:
        query = query.where(a.c.digest.in_(sorted(digests)))
    total = conn.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = [dict(row._mapping) for row in conn.execute(
        query.order_by(a.c.created_position.desc(), a.c.digest).limit(limit).offset(offset))]
    shown = [row["digest"] for row in rows]
    made_by = operations(conn, shown)
    b = table(BranchRow)
    heads: dict[str, list[str]] = {}
    if shown:
        for name, head in conn.execute(select(b.c.name, b.c.head).where(b.c.head.in_(shown))
                                       .order_by(b.c.name)):
            heads.setdefault(head, []).append(name)
    for row in rows:
        row["final"] = row.pop("final_digest") is not None
        row["operation"] = made_by[row["digest"]]
        row["branches"] = heads.get(row["digest"], [])
    return rows, total


IMPORTED = "import"  # the operation of an asset made outside any step


def _made_by() -> Subquery:
    """Each asset of the bound list `digests` that a step made, with its operation."""
    d = table(DerivationRow)
    return (select(d.c.output_digest, func.min(d.c.operation).label("operation"))
            .where(d.c.output_digest.in_(bindparam("digests", expanding=True)))
            .group_by(d.c.output_digest).subquery())


@lru_cache(maxsize=1)
def _operations_query() -> Select[Any]:
    made = _made_by()
    return select(made.c.output_digest, made.c.operation)


@lru_cache(maxsize=1)
def _nodes_query() -> Select[Any]:
    a, d = table(AssetRow), table(DerivationRow)
    # Per asset (an index lookup each): one list parameter instead of two.
    operation = (select(func.min(d.c.operation)).where(d.c.output_digest == a.c.digest)
                 .scalar_subquery())
    return (select(a.c.digest, a.c.media_type, a.c.layer, operation.label("operation"))
            .where(a.c.digest.in_(bindparam("digests", expanding=True))))


def operations(conn: Connection, digests: list[str]) -> dict[str, str]:
    """The operation that made each asset ("import" for one made outside any step)."""
    found: dict[str, str] = dict(
        conn.execute(_operations_query(), {"digests": digests}).all()) if digests else {}
    return {digest: found.get(digest, IMPORTED) for digest in digests}


def nodes(conn: Connection, digests: list[str]) -> list[dict[str, Any]]:
    """Lineage graph nodes: each asset's media type, layer and making operation, in one
    query (built once) whatever the graph's size; a digest that is no asset has None."""
    # Plain tuples: a Row's attribute lookups cost more than the query on a long chain.
    rows = {r[0]: r[1:] for r in conn.execute(_nodes_query(), {"digests": digests})}
    return [_node(digest, rows.get(digest, (None, None, None))) for digest in digests]


def _node(digest: str, node: lineage.Node) -> dict[str, Any]:
    media_type, layer, operation = node
    return {"digest": digest, "media_type": media_type, "layer": layer,
            "operation": operation or IMPORTED}


def lineage_graph(strata: Strata, ref: str, direction: GraphDirection = "ancestors",
                  depth: int = lineage.MAX_DEPTH, as_of: int | None = None) -> dict[str, Any]:
    """The lineage of the asset `ref` names as nodes and edges (from parent to child, with
    the parent's role): what made it, what was made from it, or both."""
    with strata.view(as_of) as conn:
        # A whole digest (what the web page sends) needs no resolving: its node says
        # whether it is an asset.
        whole = WHOLE_DIGEST.fullmatch(ref) is not None
        digest = ref if whole else strata.resolve_asset(ref, conn)
        edges: list[lineage.Edge] = []
        known: dict[str, lineage.Node] = {}
        for wanted, way in (("ancestors", "up"), ("descendants", "down")):
            if direction in (wanted, "graph"):
                more, their_nodes = lineage.walk_with_nodes(conn, digest, way, depth)
                edges += more
                known.update(their_nodes)
        digests = sorted({digest} | known.keys())
        found = (nodes(conn, digests) if digest not in known  # no edges: the asset alone
                 else [_node(d, known[d]) for d in digests])
    # Every asset has a media type: a node without one is no asset.
    if whole and found[digests.index(digest)]["media_type"] is None:
        raise AssetNotFound(f"no asset matches {ref!r}")
    return {
        "asset": digest, "direction": direction, "nodes": found,
        "edges": [{"from": e.input_digest, "to": e.output_digest, "role": e.role,
                   "layer": e.layer, "operation": e.operation}
                  for e in sorted(set(edges), key=lambda e: (e.depth, e.output_digest,
                                                              e.input_digest, e.role))],
    }
