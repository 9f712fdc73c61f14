"""Iteration: review → adjust → regenerate.

`strata iterate ASSET --set steps=40 --set 'prompt+=, golden hour'` re-issues the request
that produced ASSET with the adjusted parameters. The new request records the job it
iterates, the parameter diff and the asset it started from (as the `parent` input of its
outputs), so the lineage graph shows every round of iteration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from strata.core.errors import InvalidInput, JobError
from strata.core.ledger.event_types import BOOKKEEPING, JobCompleted, JobRequest, ProducedAsset
from strata.core.ledger.events import explain

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


def producing_job(
    strata: Strata, digest: str
) -> tuple[JobRequest, ProducedAsset, RecordedEvent]:
    """The request of the job that produced `digest`, that output as its completion
    recorded it, and the completion event."""
    from strata.core.projections import views
    from strata.core.runtime import jobs

    with strata.view() as conn:
        asset = views.asset_row(conn, digest)
    if asset is None or asset["job_id"] is None:
        layer = asset["layer"] if asset else "unknown"
        raise JobError(f"{digest[:19]}… was not produced by a Strata job (it was made by: "
                       f"{layer}); there is no request to re-issue")
    events = strata.ledger.read_stream(jobs.stream(asset["job_id"]))
    request = events[0].payload
    if not isinstance(request, JobRequest):
        raise JobError(f"the request of job {asset['job_id']} ({events[0].type}) is unknown "
                       "to this version of Strata")
    for event in events:
        payload = event.payload
        if isinstance(payload, JobCompleted):
            for output in payload.outputs:
                if output.asset.digest == digest:
                    return request, output, event
    raise JobError(f"job {asset['job_id']} has no completion that produced {digest[:19]}…")


def iterate(strata: Strata, asset_ref: str, settings: list[str], seed: SeedMode = "keep",
            branch: str | None = None) -> RecordedEvent:
    """Re-issue the request that produced the asset, adjusted, on `branch` (default: the
    original job's branch, else the current one); nothing is appended if the adjusted
    request is invalid."""
    from strata.core.decisions import branches
    from strata.core.runtime import jobs

    digest = strata.resolve_asset(asset_ref)
    original, output, completed = producing_job(strata, digest)
    data = original.model_dump(mode="json")
    extra = original.iteration_settings
    editable = sorted(set(data) - BOOKKEEPING) + list(extra)
    diff: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for change in parse_changes(settings):
        if change.key not in editable:
            raise InvalidInput(f"cannot set {change.key!r}; parameters: {', '.join(editable)}")
        if change.key in extra:
            given[change.key] = change.value
            continue
        if change.append and not isinstance(data[change.key], str | None):
            raise InvalidInput(f"{change.key}+= adds text, but {change.key} is not text")
        value = (data[change.key] or "") + str(change.value) if change.append else change.value
        diff[change.key] = {"from": data[change.key], "to": value}
        data[change.key] = value
    before = dict(data)
    data = original.reissued(data, given, output, fresh_seeds=seed == "new")
    for key in sorted(set(data) | set(before)):
        if data.get(key) != before.get(key):
            diff[key] = {"from": before.get(key), "to": data.get(key)}
    data.update(job_id=jobs.new_job_id(), iterates=original.job_id, changes=diff,
                branch=branches.resolve(strata, branch or original.branch), parent=digest)
    try:
        request = type(original).model_validate(data)
    except ValidationError as error:
        raise InvalidInput(f"the adjusted request is invalid: {explain(error)}") from error
    return jobs.request(strata, request, causation_id=completed.event_id)
