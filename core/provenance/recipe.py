"""Provenance: what made an asset, answered from the log.

`recipe` flattens everything that produced an asset (the layer's request parameters, the
output's own seed, the model's weight digest, scheduler, library versions, device, inputs
with roles, who and when) into one mapping; `diff` compares two recipes key by key.
"""

from __future__ import annotations

from typing import Any

from strata.core.ledger.event_types import AssetDerived, AssetImported, JobCompleted
from strata.core.projections import views
from strata.core.runtime import jobs
from strata.core.service import Strata

# Bookkeeping of a request that says nothing about how the output looks; an iteration
# sets these itself.
BOOKKEEPING = {"job_id", "iterates", "changes", "parent", "branch", "max_attempts"}
# Who made an asset and when: part of its provenance, never a difference in its recipe.
CIRCUMSTANCES = {"actor", "host", "made_at", "job_id"}


def recipe(strata: Strata, asset_ref: str) -> dict[str, Any]:
    """Everything that made an asset, flattened: layer parameters, seed, model, scheduler."""
    digest = strata.resolve_asset(asset_ref)
    with strata.view() as conn:
        asset = views.asset_row(conn, digest)
    assert asset is not None
    flat: dict[str, Any] = {"layer": asset["layer"]}
    if asset["job_id"] is None:
        created = strata.ledger.get(asset["created_event_id"])
        assert created is not None
        flat.update(actor=created.meta.get("actor"), host=created.meta.get("host"),
                    made_at=created.recorded_at)
        payload = created.payload
        if isinstance(payload, AssetDerived):
            flat.update(operation=payload.operation, **payload.output.params,
                        inputs=[i.model_dump() for i in payload.output.inputs])
        elif isinstance(payload, AssetImported):
            flat.update(source=payload.source.name, embedded=payload.embedded)
        return flat
    events = strata.ledger.read_stream(jobs.stream(asset["job_id"]))
    flat.update({k: v for k, v in events[0].data.items() if k not in BOOKKEEPING})
    for event in events:
        if isinstance(event.payload, JobCompleted):
            data = event.data
            flat.update(actor=event.meta.get("actor"), host=event.meta.get("host"),
                        made_at=event.recorded_at, job_id=asset["job_id"])
            flat["operation"] = data["operation"]
            for output in data["outputs"]:
                if output["asset"]["digest"] == digest:
                    flat.update(output["params"])
                    flat["inputs"] = output["inputs"]
            for key in ("model", "scheduler", "device", "dtype", "versions"):
                if key in data:
                    flat[key] = data[key]
    flat.pop("seeds", None)  # the output's own seed stands in for the batch's
    return flat


def diff(strata: Strata, a_ref: str, b_ref: str) -> list[tuple[str, Any, Any]]:
    """The recipe keys whose values differ between two assets (nested keys flattened)."""
    a, b = _flatten(recipe(strata, a_ref)), _flatten(recipe(strata, b_ref))
    keys = sorted((set(a) | set(b)) - CIRCUMSTANCES)
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict) and item:
            flat.update(_flatten(item, name + "."))
        else:
            flat[name] = item
    return flat
