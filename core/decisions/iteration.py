"""Iteration: review → adjust → regenerate.

`strata iterate ASSET --set steps=40 --set 'prompt+=, golden hour'` re-issues the request
that produced ASSET with the adjusted parameters. The new request records the job it
iterates, the parameter diff and the asset it started from (as the `parent` input of its
outputs), so the lineage graph shows every round of iteration.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from strata.core.errors import InvalidInput, JobError
from strata.core.layers.generation import GenerationRequested
from strata.core.ledger.event_types import JobCompleted, JobRequest
from strata.core.ledger.events import explain
from strata.core.provenance.recipe import BOOKKEEPING

if TYPE_CHECKING:
    from strata.core.ledger.events import RecordedEvent
    from strata.core.service import Strata

SeedMode = Literal["keep", "new"]
ALIASES = {"negative": "negative_prompt", "guidance": "cfg", "sampler": "scheduler"}


@dataclass(frozen=True)
class Change:
    key: str
    value: Any
    append: bool = False  # `key+=text`: add to the end of a text parameter


def parse_changes(settings: list[str]) -> list[Change]:
    """`key=value` (JSON if it parses, else text), `key+=text`; `size=WxH` for both sides."""
    changes = []
    for setting in settings:
        append = setting.split("=", 1)[0].endswith("+")
        key, sep, raw = setting.partition("+=" if append else "=")
        key = ALIASES.get(key.strip(), key.strip())
        if not sep or not key:
            raise InvalidInput(f"--set {setting!r}: expected key=value or key+=text")
        if key == "size":
            width, _, height = raw.lower().partition("x")
            if not (width.isdigit() and height.isdigit()):
                raise InvalidInput(f"--set {setting!r}: size is WIDTHxHEIGHT, e.g. 96x64")
            changes += [Change("width", int(width)), Change("height", int(height))]
            continue
        try:
            value = raw if append else json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        changes.append(Change(key, value, append))
    return changes


def _producing_job(
    strata: Strata, digest: str
) -> tuple[JobRequest, dict[str, Any], str]:
    """The request of the job that produced `digest`, that output's own facts, and the
    event that recorded it."""
    from strata.core.projections import views
    from strata.core.runtime import jobs

    with strata.view() as conn:
        asset = views.asset_row(conn, digest)
    if asset is None or asset["job_id"] is None:
        raise JobError(f"{digest[:19]}… was not produced by a Strata job; nothing to re-issue")
    events = strata.ledger.read_stream(jobs.stream(asset["job_id"]))
    request = events[0].payload
    output: dict[str, Any] = {}
    for event in events:
        if isinstance(event.payload, JobCompleted):
            output = next(o.model_dump() for o in event.payload.outputs
                          if o.asset.digest == digest)
    if not isinstance(request, JobRequest):
        raise JobError(f"the request of job {asset['job_id']} is unknown to this version")
    return request, output, asset["created_event_id"]


def iterate(strata: Strata, asset_ref: str, settings: list[str], seed: SeedMode = "keep",
            branch: str | None = None) -> RecordedEvent:
    """Re-issue the request that produced the asset, adjusted; nothing is appended if the
    adjusted request is invalid."""
    from strata.core.runtime import jobs

    digest = strata.resolve_asset(asset_ref)
    original, output, produced_by = _producing_job(strata, digest)
    data = original.model_dump(mode="json")
    changes = parse_changes(settings)
    diff: dict[str, Any] = {}
    seed_keys = ("n", "seed") if isinstance(original, GenerationRequested) else ()
    editable = sorted(set(data) - BOOKKEEPING - {"seeds"}) + list(seed_keys)
    for change in changes:
        if change.key not in editable:
            raise InvalidInput(f"cannot set {change.key!r}; parameters: {', '.join(editable)}")
        if change.key in seed_keys:
            continue
        if change.append and not isinstance(data[change.key], str | None):
            raise InvalidInput(f"{change.key}+= adds text, but {change.key} is not text")
        value = (data[change.key] or "") + str(change.value) if change.append else change.value
        diff[change.key] = {"from": data[change.key], "to": value}
        data[change.key] = value
    if isinstance(original, GenerationRequested):
        data["seeds"] = _seeds(original, output, changes, seed)
        if data["seeds"] != original.seeds:
            diff["seeds"] = {"from": original.seeds, "to": data["seeds"]}
    data.update(job_id=jobs.new_job_id(), iterates=original.job_id, changes=diff,
                branch=branch if branch is not None else original.branch)
    if "parent" in type(original).model_fields:
        data["parent"] = digest
    try:
        request = type(original).model_validate(data)
    except ValidationError as error:
        raise InvalidInput(f"the adjusted request is invalid: {explain(error)}") from error
    return jobs.request(strata, request, causation_id=produced_by)


def _seeds(original: GenerationRequested, output: dict[str, Any], changes: list[Change],
           mode: SeedMode) -> list[int]:
    given = {c.key: c.value for c in changes}
    if "seed" in given:
        base = int(given["seed"])
    elif mode == "keep":
        base = output.get("seed", original.seeds[0])
    else:
        base = secrets.randbelow(2**32)
    count = int(given.get("n", 1 if mode == "keep" and "seed" not in given
                          else len(original.seeds)))
    if not 1 <= count <= 256:
        raise InvalidInput(f"n must be between 1 and 256, not {count}")
    return [base + i for i in range(count)]
