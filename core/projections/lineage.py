"""Lineage queries over the derivation DAG, answered by the database in recursive CTEs.

An edge is one derivation row: input asset → output asset, with the input's role and the
event that produced it. Walking up from an asset gives what made it; walking down gives
what was made from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    union,
)

from strata.core.projections.base import table
from strata.core.storage.schema import AssetRow, DerivationRow

derivations = table(DerivationRow)
_d = derivations.c

Direction = Literal["up", "down"]
# Deep enough for any real history; bounds the work if recorded derivations form a cycle.
MAX_DEPTH = 10_000


@dataclass(frozen=True)
class Edge:
    input_digest: str
    output_digest: str
    role: str
    layer: str
    operation: str
    event_id: str
    depth: int


Node = tuple[str | None, str | None, str | None]
"""An asset as a graph shows it: media type, layer and the operation that made it (None
for each where the digest is no asset, or nothing made it)."""


@lru_cache(maxsize=4)
def _walk_query(direction: Direction, with_nodes: bool = False) -> Select:
    """The recursive CTE for one direction, built once and run with bound parameters;
    `with_nodes` adds both ends' `Node` to every edge, so that a graph needs no second
    query (and no list parameter) for its nodes."""
    up = direction == "up"
    start = select(
        _d.input_digest, _d.output_digest, _d.role, _d.layer, _d.operation, _d.event_id,
        literal(1).label("depth"),
    ).where((_d.output_digest if up else _d.input_digest) == bindparam("digest"))
    frontier = start.cte("frontier", recursive=True)
    step = derivations.alias("step")
    step_near = step.c.output_digest if up else step.c.input_digest
    frontier_far = frontier.c.input_digest if up else frontier.c.output_digest
    recursive = select(
        step.c.input_digest, step.c.output_digest, step.c.role, step.c.layer,
        step.c.operation, step.c.event_id, (frontier.c.depth + 1).label("depth"),
    ).where(and_(step_near == frontier_far, frontier.c.depth < bindparam("depth")))
    # UNION (not UNION ALL) keeps a diamond in the DAG from multiplying rows.
    frontier = frontier.union(recursive)
    query = select(frontier)
    if with_nodes:
        query = select(frontier, *_node_columns(frontier.c.input_digest),
                       *_node_columns(frontier.c.output_digest))
    return query.order_by(frontier.c.depth, frontier.c.output_digest,
                          frontier.c.input_digest, frontier.c.role)


def _node_columns(digest: ColumnElement[str]) -> list[ColumnElement[str | None]]:
    """The `Node` of `digest`, one index lookup each."""
    assets, making = table(AssetRow), derivations.alias("making")
    return [
        select(assets.c.media_type).where(assets.c.digest == digest).scalar_subquery(),
        select(assets.c.layer).where(assets.c.digest == digest).scalar_subquery(),
        select(func.min(making.c.operation)).where(making.c.output_digest == digest)
        .scalar_subquery(),
    ]


def walk(
    conn: Connection, digest: str, direction: Direction, depth: int = MAX_DEPTH
) -> list[Edge]:
    """Every edge within `depth` steps above (up) or below (down) `digest`."""
    return walk_with_nodes(conn, digest, direction, depth, with_nodes=False)[0]


def walk_with_nodes(
    conn: Connection, digest: str, direction: Direction, depth: int = MAX_DEPTH, *,
    with_nodes: bool = True,
) -> tuple[list[Edge], dict[str, Node]]:
    """`walk`, and the `Node` of every digest on its edges (empty without edges)."""
    if depth < 1:
        return [], {}
    rows = conn.execute(_walk_query(direction, with_nodes),
                        {"digest": digest, "depth": depth}).all()
    seen: set[tuple[str, str, str]] = set()
    edges: list[Edge] = []
    nodes: dict[str, Node] = {}
    for row in rows:  # keep each edge once, at the depth it is first reached
        key = (row[0], row[1], row[2])
        if key not in seen:
            seen.add(key)
            edges.append(Edge(*row[:7]))
            if with_nodes:
                nodes[row[0]], nodes[row[1]] = row[7:10], row[10:13]
    return edges, nodes


@lru_cache(maxsize=1)
def _neighbours_query() -> Select:
    """Every derivation into or out of one asset (bound `digest`), in `walk`'s order."""
    return (select(_d.input_digest, _d.output_digest, _d.role, _d.layer, _d.operation,
                   _d.event_id, literal(1).label("depth"))
            .where(or_(_d.output_digest == bindparam("digest"),
                       _d.input_digest == bindparam("digest")))
            .order_by(_d.output_digest, _d.input_digest, _d.role))


def neighbours(conn: Connection, digest: str) -> tuple[list[Edge], list[Edge]]:
    """`walk(conn, digest, "up", 1)` and `walk(conn, digest, "down", 1)` in one
    non-recursive query: the parents' edges and the children's edges."""
    parents: dict[tuple[str, str, str], Edge] = {}
    children: dict[tuple[str, str, str], Edge] = {}
    for row in conn.execute(_neighbours_query(), {"digest": digest}):
        edge = Edge(*row)
        key = (edge.input_digest, edge.output_digest, edge.role)
        if edge.output_digest == digest:  # kept once, as walk keeps each edge
            parents.setdefault(key, edge)
        if edge.input_digest == digest:
            children.setdefault(key, edge)
    return list(parents.values()), list(children.values())


def roots(conn: Connection, digest: str) -> list[str]:
    """The ancestors of `digest` that were not derived from anything (itself if parentless)."""
    up = select(_d.input_digest.label("digest")).where(_d.output_digest == digest).cte(
        "up", recursive=True)
    parent = derivations.alias("parent")
    up = up.union(select(parent.c.input_digest).where(parent.c.output_digest == up.c.digest))
    candidates = union(select(up.c.digest), select(literal(digest).label("digest"))).subquery()
    has_parent = exists().where(_d.output_digest == candidates.c.digest)
    return list(conn.scalars(
        select(candidates.c.digest).where(~has_parent).order_by(candidates.c.digest)
    ))


def path(conn: Connection, ancestor: str, descendant: str,
         depth: int = MAX_DEPTH) -> list[str] | None:
    """The shortest chain of assets leading from `ancestor` down to `descendant`, or None.

    One recursive query fetches the ancestry of `descendant` (each edge once per depth, so
    diamonds and repeated roles do not multiply it); the shortest chain is then found in
    that edge set breadth-first, nearest parents first and ties broken by digest, so the
    answer is deterministic.
    """
    if ancestor == descendant:
        return [ancestor]
    parents: dict[str, set[str]] = {}
    for edge in walk(conn, descendant, "up", depth):
        parents.setdefault(edge.output_digest, set()).add(edge.input_digest)
    came_from: dict[str, str] = {}
    frontier = [descendant]
    while frontier and ancestor not in came_from:
        following = []
        for child in frontier:
            for parent in sorted(parents.get(child, ())):
                if parent not in came_from and parent != descendant:
                    came_from[parent] = child
                    following.append(parent)
        frontier = following
    if ancestor not in came_from:
        return None
    chain = [ancestor]
    while chain[-1] != descendant:
        chain.append(came_from[chain[-1]])
    return chain
