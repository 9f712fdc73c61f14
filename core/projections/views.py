"""Read-side questions over the projections, asked through a connection from
`Strata.view()` (current state, or the state as of an earlier position)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from strata.core.errors import AssetNotFound
from strata.core.ledger.log import utc_iso
from strata.core.projections.base import table
from strata.core.projections.lineage import Edge, walk
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


def asset_details(conn: Connection, digest: str) -> AssetDetails:
    asset = _one(conn, AssetRow, digest=digest)
    if asset is None:
        raise AssetNotFound(f"no asset {digest} at this point of the log")
    branches = table(BranchRow)
    return AssetDetails(
        asset=asset,
        parents=walk(conn, digest, "up", depth=1),
        children=walk(conn, digest, "down", depth=1),
        selection=_one(conn, SelectionRow, digest=digest),
        review=_one(conn, ReviewRow, digest=digest),
        final=_one(conn, FinalRow, digest=digest),
        branches=list(conn.scalars(select(branches.c.name).where(branches.c.head == digest))),
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
