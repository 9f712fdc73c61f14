"""`status`: what a store holds and whether its projections and jobs are healthy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strata.core.decisions import branches
from strata.core.projections import views
from strata.core.projections.runner import ProjectionState
from strata.core.service import Strata

OPEN = ("requested", "running", "retrying")


@dataclass(frozen=True)
class StoreStatus:
    location: str  # the store folder, or the database URL without its password
    head: int  # the log's last position
    rows: dict[str, int]  # rows per projection table
    projections: ProjectionState
    open_jobs: list[dict[str, Any]]  # requested, running or retrying — abandoned included
    current_branch: str | None

    @property
    def abandoned_jobs(self) -> list[dict[str, Any]]:
        return [job for job in self.open_jobs if job["abandoned_since"] is not None]

    def as_json(self) -> dict[str, Any]:
        state = self.projections
        return {
            "location": self.location,
            "events": self.head,
            "rows": self.rows,
            "projections": {"checkpoints": state.checkpoints, "lagging": state.lagging,
                            "problem": state.problem},
            "open_jobs": len(self.open_jobs),
            "abandoned_jobs": [job["job_id"] for job in self.abandoned_jobs],
            "current_branch": self.current_branch,
        }


def store_status(strata: Strata) -> StoreStatus:
    settings = strata.store.settings
    location = (strata.store.engine.url.render_as_string(hide_password=True)
                if settings.database_url else str(settings.resolved_home))
    with strata.view() as conn:
        rows = views.counts(conn)
        open_jobs = views.jobs(conn, statuses=OPEN, limit=None)
    return StoreStatus(location, strata.ledger.head_position(), rows,
                       strata.store.projections.state(), open_jobs, branches.current(strata))
