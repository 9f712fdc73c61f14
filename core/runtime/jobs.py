"""Jobs: requesting work from a layer, cancelling it, and reading its state.

A job is a stream `job:<id>`: `<layer>.requested` at version 1, then `job.started` for
each attempt, then exactly one of `<layer>.completed`, `job.failed` (final) or
`job.cancelled`. Every append names the version it expects, so a job gets at most one
result however many workers race for it.
"""

from __future__ import annotations

import uuid

from strata.core.errors import BranchNotFound, JobError, JobNotFound
from strata.core.ledger.event_types import JobCancelled, JobRequest
from strata.core.ledger.events import RecordedEvent
from strata.core.ledger.log import retry_on_conflict
from strata.core.projections import views
from strata.core.service import Strata

FINISHED = ("completed", "failed", "cancelled")


def stream(job_id: str) -> str:
    return f"job:{job_id}"


def new_job_id() -> str:
    return uuid.uuid4().hex


def request(strata: Strata, payload: JobRequest, idempotency_key: str | None = None,
            causation_id: str | None = None) -> RecordedEvent:
    """Record a `<layer>.requested` event; any worker serving the layer may take it."""
    if payload.branch is not None:
        with strata.view() as conn:
            if views.branch(conn, payload.branch) is None:
                raise BranchNotFound(
                    f"no branch named {payload.branch!r}; create it with "
                    "`strata branch create` or request the job without one"
                )
    return strata.record(stream(payload.job_id), [payload], expected_version=0,
                         idempotency_key=idempotency_key,
                         meta={"correlation_id": payload.job_id,
                               "causation_id": causation_id})[0]


def get(strata: Strata, job_ref: str) -> dict:
    """A job's row from the projection, by id or unique id prefix."""
    job_id = strata.resolve_job(job_ref)
    with strata.view() as conn:
        row = views.job(conn, job_id)
    if row is None:  # resolved from the same projection a moment ago
        raise JobNotFound(f"no job {job_id}")
    return row


def cancel(strata: Strata, job_ref: str, reason: str | None = None) -> RecordedEvent:
    """Record `job.cancelled`; a worker running the job stops at its next step."""

    def attempt() -> RecordedEvent:
        row = get(strata, job_ref)
        if row["status"] in FINISHED:
            raise JobError(f"job {row['job_id']} is already {row['status']}; nothing to cancel")
        # Appended at the version read: if a worker moved the job on meanwhile, look again.
        return strata.record(stream(row["job_id"]),
                             [JobCancelled(job_id=row["job_id"], reason=reason)],
                             expected_version=row["stream_version"],
                             meta={"correlation_id": row["job_id"]})[0]

    return retry_on_conflict(attempt)
