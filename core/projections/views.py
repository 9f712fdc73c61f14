"""Read-side questions over the projections, asked through a connection from
`Strata.view()` (current state, or the state as of an earlier position)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, select

from strata.core.errors import AssetNotFound
from strata.core.ledger.log import utc_iso
from strata.core.projections.base import table
from strata.core.projections.lineage import Edge, neighbours
from strata.core.storage.db import db_now
from strata.core.storage.schema import (
    AssetRow,
    BranchMoveRow,
    BranchRow,
    FinalRow,
    JobLease,
    JobRow,
    ProjectionCheckpoint,
    ReviewRow,
    SelectionRow,
)


@dataclass(frozen=True)
class AssetDetails:
    asset: dict[str, Any]
    parents: list[Edge]
    children: list[Edge]
    selection: dict[str, Any] | None
    review: dict[str, Any] | None
    final: dict[str, Any] | None
    branches: list[str]


def _one(conn: Connection, model: type, **where: Any) -> dict[str, Any] | None:
    t = table(model)
    query = select(t)
    for column, value in where.items():
        query = query.where(t.c[column] == value)
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


_DECIDED = (SelectionRow, ReviewRow, FinalRow)  # rows keyed by digest beside the asset's
_HEADS = "branch_heads"


@lru_cache(maxsize=1)
def _asset_and_decisions() -> Select[Any]:
    """The asset's row, its selection, review and final rows (each table's columns
    labelled `<table>__<column>`) and the branches it heads, in one query built once and
    run with a bound digest: `show` and `GET /assets/{ref}` ask it on every call."""
    asset, branches = table(AssetRow), table(BranchRow)
    joined, columns = asset, [c.label(f"{asset.name}__{c.name}") for c in asset.c]
    for model in _DECIDED:
        t = table(model)
        joined = joined.outerjoin(t, t.c.digest == asset.c.digest)
        columns += [c.label(f"{t.name}__{c.name}") for c in t.c]
    # The branches whose head it is, as one string: a branch name has no comma.
    heads = (select(func.aggregate_strings(branches.c.name, ","))
             .where(branches.c.head == asset.c.digest).scalar_subquery())
    return (select(*columns, heads.label(_HEADS)).select_from(joined)
            .where(asset.c.digest == bindparam("digest")))


def asset_details(conn: Connection, digest: str) -> AssetDetails:
    found = conn.execute(_asset_and_decisions(), {"digest": digest}).first()
    if found is None:
        raise AssetNotFound(f"no asset {digest} at this point of the log")
    rows: dict[str, dict[str, Any]] = {}
    for label, value in found._mapping.items():
        if label != _HEADS:
            name, _, column = str(label).partition("__")
            rows.setdefault(name, {})[column] = value
    asset, selection, review, final = (
        rows[table(m).name] for m in (AssetRow, *_DECIDED))
    parents, children = neighbours(conn, digest)
    return AssetDetails(
        asset=asset,
        parents=parents,
        children=children,
        # an outer join's missing row: every column None, its key included
        selection=selection if selection["digest"] is not None else None,
        review=review if review["digest"] is not None else None,
        final=final if final["digest"] is not None else None,
        branches=sorted(found._mapping[_HEADS].split(",")) if found._mapping[_HEADS] else [],
    )


def asset_row(conn: Connection, digest: str) -> dict[str, Any] | None:
    return _one(conn, AssetRow, digest=digest)


def job(conn: Connection, job_id: str) -> dict[str, Any] | None:
    found = jobs(conn, job_id=job_id)
    return found[0] if found else None


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    row["request"] = json.loads(row["request"])
    row["outputs"] = json.loads(row["outputs"]) if row["outputs"] else []
    return row


def jobs(conn: Connection, statuses: tuple[str, ...] = (), limit: int | None = 50,
         job_id: str | None = None) -> list[dict[str, Any]]:
    """The newest jobs first. A running job whose worker stopped heartbeating (its lease
    expired, or was released by an interrupted `--wait`) carries `abandoned_since`: the
    time its lease ran out, or the time of its last event if it has no lease."""
    t, leases = table(JobRow), table(JobLease)
    query = (select(t, leases.c.expires_at.label("lease_expires_at"))
             .select_from(t.outerjoin(leases, leases.c.job_id == t.c.job_id))
             .order_by(t.c.requested_position.desc()).limit(limit))
    if statuses:
        query = query.where(t.c.status.in_(statuses))
    if job_id is not None:
        query = query.where(t.c.job_id == job_id)
    now = db_now(conn)
    found = []
    for row in conn.execute(query):
        job = _decoded(dict(row._mapping))
        expires = job.pop("lease_expires_at")
        job["abandoned_since"] = None
        if job["status"] == "running" and (expires is None or expires < now):
            job["abandoned_since"] = (utc_iso(datetime.fromtimestamp(expires, UTC))
                                      if expires is not None else "lease released")
        found.append(job)
    return found


def branches(conn: Connection) -> list[dict[str, Any]]:
    t = table(BranchRow)
    return [dict(r._mapping) for r in conn.execute(select(t).order_by(t.c.name))]


def branch(conn: Connection, name: str) -> dict[str, Any] | None:
    return _one(conn, BranchRow, name=name)


def branch_moves(conn: Connection, name: str) -> list[dict[str, Any]]:
    t = table(BranchMoveRow)
    query = select(t).where(t.c.branch == name).order_by(t.c.position)
    return [dict(r._mapping) for r in conn.execute(query)]


def counts(conn: Connection) -> dict[str, int]:
    """How many rows each projection holds, and where its checkpoint stands."""
    result: dict[str, int] = {}
    for model in (AssetRow, JobRow, BranchRow, SelectionRow, ReviewRow, FinalRow):
        count = conn.scalar(select(func.count()).select_from(table(model)))
        result[table(model).name] = count or 0
    return result


def checkpoints(conn: Connection) -> dict[str, int]:
    t = table(ProjectionCheckpoint)
    return {r.name: r.position for r in conn.execute(select(t))}


def job_ids_with_prefix(conn: Connection, prefix: str, limit: int = 2) -> list[str]:
    t = table(JobRow)
    return list(conn.scalars(select(t.c.job_id).where(t.c.job_id.startswith(prefix))
                             .order_by(t.c.job_id).limit(limit)))
