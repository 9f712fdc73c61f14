"""Administration (admin scope): store status, verify, rebuild."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from strata.api.http.deps import AdminDep

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/status")
def status(strata: AdminDep) -> dict[str, Any]:
    """What `strata status --json` prints: events, rows, projections, open jobs."""
    from strata.core.status import store_status

    found: dict[str, Any] = store_status(strata).as_json()
    return found


@router.post("/verify")
def verify(strata: AdminDep, rehash: bool = True) -> dict[str, Any]:
    """Recompute the hash chain and check (with `rehash`, re-hash) every blob. A failed
    verification is a report with `ok: false`, not an error."""
    from strata.core.provenance.verify import verify_store

    report = verify_store(strata, rehash=rehash)
    return {"ok": report.ok, "events": report.events, "blobs_checked": report.blobs_checked,
            "first_bad_position": report.first_bad_position, "problems": report.problems(),
            "warnings": report.warnings}


@router.post("/rebuild")
def rebuild(strata: AdminDep) -> dict[str, int]:
    """Drop every projection and replay the whole log."""
    return {"events": strata.rebuild()}
