"""The find projection: what every asset-making event says about its outputs, indexed.

For each output of an import, an outside derivation or a job's completion it writes the
asset's row (first event wins, as in the lineage projection), and, keyed by the event, the
output's recipe flattened into typed parameter rows and its prompts into the full-text
table. Every row is inserted-or-ignored under a key that names the event that made it,
so applying an event twice is harmless and a rebuild gives the same rows.

A job's recipe joins the request (kept by the jobs projection, which runs before this one
and always holds the request: it precedes the completion in the log) with what the
completion recorded, exactly as `strata recipe` does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, select

from strata.core import layers
from strata.core.errors import InvalidInput
from strata.core.find.hamming import split_hash
from strata.core.find.schema import MAX_TEXT_VALUE, FindAssetRow, FindParamRow, FindTextRow
from strata.core.interop.recipe import EmbeddedRecipe
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetImported,
    AssetInfo,
    JobCompleted,
    JobRequest,
)
from strata.core.ledger.events import RECORDED, Payload, RecordedEvent
from strata.core.projections.base import Batch, Projection, table
from strata.core.storage.schema import JobRow

# Recipe entries that say nothing a search asks about, or that are evidence rather than
# parameters: left out of the parameter rows (dotted prefixes).
SKIPPED = ("versions", "timings", "inputs", "scheduler.config", "raw_metadata",
           "raw_truncated", "content_credentials", "encoder", "reconstructed", "changes")
# The recipe keys whose text goes to the full-text index, by the last part of their name.
PROMPT_KEYS = {"prompt": "prompt", "negative_prompt": "negative"}


class FindProjection(Projection):
    name = "find"
    models = (FindAssetRow, FindParamRow, FindTextRow)
    # Requests too: a completion in the same batch takes its request from the batch's memo
    # (decoded already) instead of reading the jobs table and decoding it again. Keyed by
    # stream as well: a job's completion goes to the stream of its request, while a
    # request repeating its job id (refused on that stream) can only sit on another.
    handles = (AssetImported, AssetDerived, JobCompleted, JobRequest)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        if isinstance(payload, JobRequest):
            batch.memo.setdefault((self.name, payload.job_id, event.stream), payload)
        elif isinstance(payload, AssetImported):
            embedded = EmbeddedRecipe.of_record(payload.embedded)
            recipe = embedded.flat() if embedded else {}
            self._index(batch, event, payload.asset, "import",
                        str(recipe.get("operation") or "import"), recipe)
        elif isinstance(payload, AssetDerived):
            for_output = {"operation": payload.operation, **payload.output.params}
            if payload.output.seed is not None:
                for_output["seed"] = payload.output.seed
            self._index(batch, event, payload.output.asset, "external", payload.operation,
                        for_output)
        elif isinstance(payload, JobCompleted):
            request = batch.memo.get((self.name, payload.job_id, event.stream))
            if request is None:
                batch.flush(conn)  # the jobs table must hold what the batch wrote to it
                request = _request(conn, payload.job_id)
            facts = payload.facts()
            for output in payload.outputs:
                recipe = {**(request.parameters(output) if request else {}), **facts,
                          **output.params}
                if output.seed is not None:
                    recipe["seed"] = output.seed
                self._index(batch, event, output.asset, event.type.partition(".")[0],
                            payload.operation,
                            recipe)

    def _index(self, batch: Batch, event: RecordedEvent, asset: AssetInfo, layer: str,
               operation: str, recipe: dict[str, Any]) -> None:
        # Rows as tuples in the tables' column order (see ASSET_COLUMNS and the others):
        # a rebuild writes several per event.
        hashed = split_hash(asset.phash)
        digest, position = asset.digest, event.position
        batch.insert_or_ignore_values(FindAssetRow, ASSET_COLUMNS, (
            digest, position, layer, operation[:80], asset.media_type, _actor(event),
            event.recorded_at, *((hashed.signed, *hashed.chunks) if hashed else NO_HASH),
        ), keys=("digest",))
        texts, params = [], []
        for name, value in flatten(recipe):
            kind = PROMPT_KEYS.get(name.rpartition(".")[2])
            if kind is not None:
                if isinstance(value, str) and value.strip():
                    texts.append((digest, position, name[:200], kind, value))
                continue
            row = typed(value)
            if row is not None:
                params.append((digest, name[:200], position, *row))
        if texts:
            batch.insert_or_ignore_many(FindTextRow, TEXT_COLUMNS, texts,
                                        keys=("digest", "position", "key"))
        if params:
            batch.insert_or_ignore_many(FindParamRow, PARAM_COLUMNS, params,
                                        keys=("digest", "name", "position"))


ASSET_COLUMNS = ("digest", "position", "layer", "operation", "media_type", "actor", "made",
                 "phash", "ph0", "ph1", "ph2", "ph3")
NO_HASH = (None,) * 5
TEXT_COLUMNS = ("digest", "position", "key", "kind", "text")
PARAM_COLUMNS = ("digest", "name", "position", "num", "txt")
_SKIPPED_PREFIXES = tuple(f"{s}." for s in SKIPPED)


def flatten(recipe: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, scalar value) for every entry of a recipe, skipped ones left out."""
    for key, value in recipe.items():
        name = f"{prefix}{key}"
        if name in SKIPPED or name.startswith(_SKIPPED_PREFIXES):
            continue
        if isinstance(value, dict):
            yield from flatten(value, name + ".")
        elif value is not None and not isinstance(value, list):
            yield name, value


def typed(value: Any) -> tuple[float | None, str | None] | None:
    """A parameter's row values: a number (booleans as 0/1; integers with their digits as
    text), or its text lower-cased."""
    kind = type(value)  # the exact JSON types first: most values are one of them
    if kind is str:
        return None, value.lower()[:MAX_TEXT_VALUE]
    if kind is int:
        # Kept as text too: a double cannot tell integers past 2**53 (large seeds) apart.
        return float(value), str(value)
    if isinstance(value, bool):
        return float(value), None
    if isinstance(value, int):
        return float(value), str(value)
    if isinstance(value, float):
        return (value, None) if math.isfinite(value) else None
    if isinstance(value, str):
        return None, value.lower()[:MAX_TEXT_VALUE]
    return None


def _actor(event: RecordedEvent) -> str | None:
    actor = event.meta.get("actor")
    return str(actor)[:200] if actor is not None else None


def _request(conn: Connection, job_id: str) -> JobRequest | None:
    """The job's request as the jobs projection keeps it; None for a job whose request this
    version cannot read (its completion is still indexed)."""
    jobs = table(JobRow)
    row = conn.execute(select(jobs.c.layer, jobs.c.request)
                       .where(jobs.c.job_id == job_id)).first()
    if row is None:
        return None
    try:
        model = layers.get(row.layer).requested
        return model.model_validate(json.loads(row.request), context=RECORDED)
    except (ValidationError, ValueError, InvalidInput):
        return None
