"""Provenance: what made an asset, answered from the log.

`recipe` flattens everything that produced an asset (the layer's request parameters, the
output's own seed, the model's weight digest, scheduler, library versions, device, inputs
with roles, who and when) into one mapping; `diff` compares two recipes key by key. An
imported file's recipe is the one read from its metadata (core.interop), marked as
reconstructed from the file and not verified.
"""

from __future__ import annotations

from typing import Any

from strata.core.decisions.iteration import producing_job
from strata.core.errors import EventNotFound
from strata.core.interop.recipe import EmbeddedRecipe
from strata.core.ledger.event_types import AssetDerived, AssetImported, JobCompleted
from strata.core.ledger.events import RecordedEvent
from strata.core.projections import views
from strata.core.service import Strata

# Who made an asset, when, and how long it took: part of its provenance, never a
# difference in its recipe.
CIRCUMSTANCES = {"actor", "host", "made_at", "job_id", "timings"}
# The metadata an imported file's recipe was read from: evidence, not parameters (what it
# says is compared as the parameters read from it).
EVIDENCE = {"raw_metadata", "raw_truncated"}


def recipe(strata: Strata, asset_ref: str) -> dict[str, Any]:
    """Everything that made an asset, flattened: the layer's request parameters as they
    apply to this output, the output's own parameters (its seed), what the completion
    recorded (model digest, scheduler, versions, device…), inputs with roles, who, when.
    Works for every registered layer, and for steps made outside Strata."""
    digest = strata.resolve_asset(asset_ref)
    with strata.view() as conn:
        asset = views.asset_row(conn, digest)
    if asset is None:  # resolved a moment ago; the projections cannot lose it
        raise EventNotFound(f"no asset {digest} in the projections")
    return recipe_of(strata, asset)


def recipe_of(strata: Strata, asset: dict[str, Any],
              created: RecordedEvent | None = None) -> dict[str, Any]:
    """`recipe` of an asset's projection row, for a caller that has read the row (and
    perhaps `created`, the event that recorded the asset) already."""
    digest = asset["digest"]
    flat: dict[str, Any] = {"layer": asset["layer"]}
    if asset["job_id"] is None:
        if created is None:
            created = strata.ledger.get(asset["created_event_id"])
        if created is None:
            raise EventNotFound(f"the event that recorded {digest} is not in the log")
        flat.update(actor=created.meta.get("actor"), host=created.meta.get("host"),
                    made_at=created.recorded_at)
        payload = created.payload
        if isinstance(payload, AssetDerived):
            flat.update(operation=payload.operation, **payload.output.params,
                        inputs=[i.model_dump() for i in payload.output.inputs])
        elif isinstance(payload, AssetImported):
            flat.update(source=payload.source.name)
            # A recipe read from the file: its parameters as a generation's are, marked
            # as reconstructed and not verified, with the raw metadata it was read from.
            embedded = EmbeddedRecipe.of_record(payload.embedded)
            flat.update(embedded.flat() if embedded else {"embedded": payload.embedded})
        return flat
    request, output, completed = producing_job(strata, digest)
    flat.update(request.parameters(output))
    payload = completed.payload
    if isinstance(payload, JobCompleted):
        flat.update(payload.facts())
    flat.update(operation=completed.data["operation"], **output.params,
                inputs=[i.model_dump() for i in output.inputs],
                actor=completed.meta.get("actor"), host=completed.meta.get("host"),
                made_at=completed.recorded_at, job_id=asset["job_id"])
    return flat


def diff(strata: Strata, a_ref: str, b_ref: str) -> list[tuple[str, Any, Any]]:
    """The recipe keys whose values differ between two assets (nested keys flattened)."""
    a, b = _flatten(recipe(strata, a_ref)), _flatten(recipe(strata, b_ref))
    ignored = CIRCUMSTANCES | EVIDENCE
    keys = sorted(k for k in set(a) | set(b) if k.split(".", 1)[0] not in ignored)
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
