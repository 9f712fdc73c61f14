"""Branches: list, history, create, advance and roll back (with expected versions: 409
with the expected and actual versions when another writer moved the branch first)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from strata.api.http.deps import StrataDep, WriterDep
from strata.api.http.problems import responses
from strata.core.decisions import branches
from strata.core.errors import BranchNotFound
from strata.core.ledger.events import RecordedEvent
from strata.core.projections import views

router = APIRouter(prefix="/branches", tags=["branches"])


class NewBranch(BaseModel):
    name: str = Field(max_length=100)
    head: str | None = Field(default=None, max_length=71, description="the asset it starts at")


class Move(BaseModel):
    to: str = Field(max_length=71, description="an asset, or ~N heads back (rollback)")
    expected_version: int | None = Field(
        default=None, ge=0, le=2**62, description="the branch's version as the caller saw it")
    reason: str | None = Field(default=None, max_length=2000)


def _moved(event: RecordedEvent) -> dict[str, Any]:
    return {"name": event.data["name"], "head": event.data["head"],
            "previous_head": event.data.get("previous_head"), "version": event.version,
            "event_id": event.event_id, "position": event.position}


@router.get("")
def list_branches(strata: StrataDep) -> list[dict[str, Any]]:
    """Every branch with its head and version (`current`: the checked-out one)."""
    current = branches.current(strata)
    with strata.view() as conn:
        rows = views.branches(conn)
    return [{**row, "current": row["name"] == current} for row in rows]


@router.get("/{name:path}/history")
def history(strata: StrataDep, name: str) -> list[dict[str, Any]]:
    """Every head the branch ever had, oldest first (rollbacks included)."""
    return branches.moves(strata, name)


@router.get("/{name:path}")
def get_branch(strata: StrataDep, name: str) -> dict[str, Any]:
    """A branch and its head history."""
    with strata.view() as conn:
        row = views.branch(conn, name)
    if row is None:
        raise BranchNotFound(f"no branch named {name!r}")
    return {**row, "current": branches.current(strata) == name,
            "moves": branches.moves(strata, name)}


@router.post("", status_code=201, responses=responses(409))
def create_branch(strata: WriterDep, body: NewBranch) -> dict[str, Any]:
    """Create a branch, optionally at an asset."""
    return _moved(branches.create(strata, body.name, body.head))


@router.post("/{name:path}/advance", responses=responses(409))
def advance(strata: WriterDep, name: str, body: Move) -> dict[str, Any]:
    """Move the head forward to an asset; with `expected_version`, only if nobody moved
    the branch since (409 otherwise)."""
    head = strata.resolve_asset(body.to)
    if body.expected_version is None:
        return _moved(branches.advance(strata, name, head))
    stream, payloads, _ = branches.advance_part(strata, name, head)
    return _moved(strata.record_together([(stream, payloads, body.expected_version)])[0])


@router.post("/{name:path}/rollback", responses=responses(409))
def rollback(strata: WriterDep, name: str, body: Move) -> dict[str, Any]:
    """Point the branch back at an earlier head (an asset it had, or ~N); nothing is
    removed. With `expected_version`: 409 if the branch moved meanwhile."""
    return _moved(branches.rollback(strata, name, body.to, body.reason,
                                    body.expected_version))
