"""Iteration: review → adjust → regenerate.

`strata iterate ASSET --set steps=40 --set 'prompt+=, golden hour'` re-issues the request
that produced ASSET with the adjusted parameters. The new request records the job it
iterates, the parameter diff and the asset it started from (as the `parent` input of its
outputs), so the lineage graph shows every round of iteration.

An imported file with a recipe in its metadata (core.interop) is iterated too: its first
pass becomes a Strata generation on a registered model, with every difference from what
the file said listed.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from strata.core.errors import InvalidInput, JobError
from strata.core.ledger.event_types import (
    BOOKKEEPING,
    AssetImported,
    JobCompleted,
    JobRequest,
    ProducedAsset,
)
from strata.core.ledger.events import explain

if TYPE_CHECKING:
    from strata.core.interop.recipe import EmbeddedRecipe
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
            branch: str | None = None, model: str | None = None) -> RecordedEvent:
    """Re-issue the request that produced the asset, adjusted, on `branch` (default: the
    original job's branch, else the current one); nothing is appended if the adjusted
    request is invalid.

    An imported file whose metadata told how it was made (core.interop) is re-issued as a
    Strata generation of its first pass on the registered `model` (default: the default
    model), with every difference from what the file said listed in the request's
    changes: the model, LoRAs and later passes left out, a sampler translated.
    """
    from strata.core import layers
    from strata.core.decisions import branches
    from strata.core.runtime import jobs

    digest = strata.resolve_asset(asset_ref)
    imported = reconstructed(strata, digest)
    output: ProducedAsset | None = None
    if imported is not None:
        original, diff = _reissued_import(strata, digest, imported[0], model)
        causation = imported[1].event_id
    else:
        if model is not None:
            raise InvalidInput("a model is chosen only for an imported file; an asset made "
                               "by Strata is iterated on the model that made it")
        original, output, completed = producing_job(strata, digest)
        diff, causation = {}, completed.event_id
    data, adjusted = _adjusted(original, output, settings, seed)
    for key, change in adjusted.items():  # what the file said stays the `from`
        diff[key] = {**change, "from": diff[key]["from"]} if key in diff else change
    data.update(job_id=jobs.new_job_id(), iterates=None if imported else original.job_id,
                changes=diff, branch=branches.resolve(strata, branch or original.branch),
                parent=digest)
    try:
        request = type(original).model_validate(data)
    except ValidationError as error:
        raise InvalidInput(f"the adjusted request is invalid: {explain(error)}") from error
    layers.check(strata, request)  # what the layer's own command would refuse (a size…)
    return jobs.request(strata, request, causation_id=causation)


def _adjusted(original: JobRequest, output: ProducedAsset | None, settings: list[str],
              seed: SeedMode) -> tuple[dict[str, Any], dict[str, Any]]:
    """The data of `original` with the `--set` settings applied, and the diff."""
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
    return data, diff


def reconstructed(strata: Strata, digest: str) -> tuple[EmbeddedRecipe, RecordedEvent] | None:
    """The recipe read from an imported file and the event that recorded it; None for an
    asset made otherwise, or imported without a recipe that names a pass."""
    from strata.core.interop.recipe import EmbeddedRecipe
    from strata.core.projections import views

    with strata.view() as conn:
        asset = views.asset_row(conn, digest)
    if asset is None or asset["job_id"] is not None:
        return None
    created = strata.ledger.get(asset["created_event_id"])
    payload = created.payload if created is not None else None
    if created is None or not isinstance(payload, AssetImported):
        return None
    recipe = EmbeddedRecipe.of_record(payload.embedded)
    if recipe is not None and not recipe.passes and recipe.step is not None:
        recipe = _with_generation_pass(recipe, recipe.step)
    return (recipe, created) if recipe is not None and recipe.passes else None


def _with_generation_pass(recipe: EmbeddedRecipe, step: dict[str, Any]) -> EmbeddedRecipe:
    """A Strata export from another store: its generation step as the pass to re-make here
    (the other layers' steps name inputs that live in that store, not in this one)."""
    from strata.core.interop.recipe import Pass

    if step.get("layer") != "generation":
        return recipe
    parameters = step.get("parameters") or {}
    model = (step.get("facts") or {}).get("model") or parameters.get("model") or {}
    seeds = [o.get("seed") for o in step.get("outputs") or [] if isinstance(o, dict)]
    first = Pass.model_validate({
        "prompt": parameters.get("prompt"), "negative_prompt": parameters.get("negative_prompt"),
        "seed": seeds[0] if seeds else None, "steps": parameters.get("steps"),
        "sampler": parameters.get("scheduler"), "cfg": parameters.get("cfg"),
        "width": parameters.get("width"), "height": parameters.get("height"),
        "model": model.get("name"), "model_hash": model.get("digest"),
    })
    return recipe.model_copy(update={"passes": [first]})


_LORA_TAG = re.compile(r"\s*<(?:lora|lyco|hypernet):[^>]*>\s*,?", re.IGNORECASE)
# Other tools' sampler names (lower case, without a schedule) → Strata's schedulers.
_SAMPLERS = {"ddim": "ddim", "euler": "euler", "euler a": "euler_a",
             "euler_ancestral": "euler_a", "dpm++ 2m": "dpmpp_2m", "dpmpp_2m": "dpmpp_2m",
             "k_euler": "euler", "k_euler_ancestral": "euler_a", "pndm": "pndm", "plms": "pndm",
             "lms": "lms", "k_lms": "lms", "unipc": "unipc", "uni_pc": "unipc"}


def _reissued_import(strata: Strata, digest: str, recipe: EmbeddedRecipe,
                     model: str | None) -> tuple[JobRequest, dict[str, Any]]:
    """A generation request for the first pass of an imported file's recipe, on a
    registered model, and how it differs from what the file said."""
    from strata.core.layers.generation import MAX_SEED, GenerationRequested
    from strata.core.models import registry as models
    from strata.core.models.diffusion import ModelRef
    from strata.core.models.pipelines import SCHEDULERS
    from strata.core.projections import views
    from strata.core.runtime import jobs

    first = recipe.passes[0]
    with strata.view() as conn:
        registered = models.lookup(conn, model or strata.store.settings.default_model)
        asset = views.asset_row(conn, digest) or {}
    diff: dict[str, Any] = {}

    def chosen(key: str, said: Any, value: Any) -> Any:
        if value != said:
            diff[key] = {"from": said, "to": value}
        return value

    # LoRA tags are the other tool's syntax: Strata's text encoder would read them as words.
    prompt = _LORA_TAG.sub(" ", first.prompt or "").strip()[:4000] or "(no prompt in the file)"
    said_sampler = " ".join(filter(None, (first.sampler, first.scheduler))) or None
    sampler = (first.sampler or first.scheduler or "").lower().removesuffix(" karras")
    # Other tools' names are translated; a Strata export names Strata's own schedulers.
    scheduler = _SAMPLERS.get(sampler) or (sampler if sampler in SCHEDULERS else "ddim")
    sizes = {key: chosen(key, getattr(first, key), _multiple_of_eight(
        getattr(first, key) or asset.get(key) or 64)) for key in ("width", "height")}
    request = GenerationRequested(
        job_id=jobs.new_job_id(), prompt=chosen("prompt", first.prompt, prompt),
        negative_prompt=chosen("negative_prompt", first.negative_prompt,
                               (first.negative_prompt or "")[:4000] or None),
        seeds=[chosen("seed", first.seed, (first.seed if first.seed is not None
                                           else secrets.randbelow(2**32)) % (MAX_SEED + 1))],
        steps=chosen("steps", first.steps, min(max(first.steps or 20, 1), 500)),
        cfg=chosen("cfg", first.cfg, min(max(first.cfg if first.cfg is not None else 7.5,
                                                 0.0), 50.0)),
        scheduler=chosen("scheduler", said_sampler, scheduler),
        model=ModelRef(name=registered.name, path=registered.path, digest=registered.digest),
        **sizes)
    diff["model"] = {"from": first.parameters().get("model"),
                     "to": {"name": registered.name, "digest": registered.digest}}
    if first.loras:
        diff["loras"] = {"from": {lora.name: lora.weight for lora in first.loras}, "to": None}
    if first.kind != "txt2img":
        diff["operation"] = {"from": first.kind, "to": "txt2img"}
    if len(recipe.passes) > 1:
        diff["passes"] = {"from": [p.kind for p in recipe.passes], "to": [first.kind]}
    return request, diff


def _multiple_of_eight(size: int) -> int:
    return min(max(round(size / 8) * 8, 8), 8192)
