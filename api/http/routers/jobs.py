"""Jobs: one request endpoint per registered layer (its body made from the layer's
request model), job status, cancel. The API only records requests; `strata worker`
processes run them."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel

from strata.api.http.deps import StrataDep, WriterDep
from strata.api.http.job_bodies import body_model, make_request
from strata.api.http.problems import responses
from strata.core import layers
from strata.core.decisions import branches
from strata.core.layers import Layer
from strata.core.projections import views
from strata.core.runtime import jobs
from strata.core.service import Strata

router = APIRouter(prefix="/jobs", tags=["jobs"])

STATUSES = ("requested", "running", "retrying", "completed", "failed", "cancelled")


class Accepted(BaseModel):
    job_id: str
    status: str
    event_id: str
    position: int


class CancelBody(BaseModel):
    reason: str | None = None


@router.get("")
def list_jobs(
    strata: StrataDep,
    status: Annotated[list[str] | None, Query(description=", ".join(STATUSES))] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    """The newest jobs first (abandoned ones carry `abandoned_since`)."""
    with strata.view() as conn:
        return views.jobs(conn, tuple(status or ()), limit)


@router.get("/{job_id}")
def get_job(strata: StrataDep, job_id: str) -> dict[str, Any]:
    """A job by id or unique id prefix: status, attempts, outputs, error."""
    return jobs.get(strata, job_id)


@router.post("/{job_id}/cancel", responses=responses(409))
def cancel_job(strata: WriterDep, job_id: str,
               body: Annotated[CancelBody | None, Body()] = None) -> dict[str, Any]:
    """Cancel a job (409 when it has finished); a worker running it stops at its next
    step."""
    event = jobs.cancel(strata, job_id, body.reason if body else None)
    return {"job_id": event.data["job_id"], "status": "cancelled", "event_id": event.event_id,
            "position": event.position}


def _endpoint(layer: Layer) -> Any:
    body_type = body_model(layer.requested)

    def request_job(strata: Strata, body: BaseModel) -> dict[str, Any]:
        request = make_request(strata, layer.requested, body)
        layers.check(strata, request)  # what the layer's CLI command checks, before appending
        if request.branch is None:  # as the CLI: the checked-out branch, if any
            request = request.model_copy(update={"branch": branches.current(strata)})
        event = jobs.request(strata, request)
        return {"job_id": request.job_id, "status": "requested", "event_id": event.event_id,
                "position": event.position}

    # Built at run time for each layer, so its signature is given with real types.
    request_job.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("strata", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=WriterDep),
        inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=Annotated[body_type, Body()]),
    ], return_annotation=dict[str, Any])
    request_job.__name__ = f"request_{layer.name}"
    request_job.__doc__ = f"Request a {layer.name} job: {layer.description}."
    return request_job


for _layer in layers.all_layers():
    router.add_api_route(f"/{_layer.name}", _endpoint(_layer), methods=["POST"],
                         status_code=202, response_model=Accepted,
                         responses=responses(409), summary=f"Request a {_layer.name} job",
                         operation_id=f"request_{_layer.name}_job")
