"""The normalised form of a recipe read from another tool's file.

Every format's parser gives the same shape: the tool and its version, and one `Pass` per
generation pass the file describes (a base pass, then a hires pass, a refiner, a face
fix…), with what the file said of each. The parsers hand over values as the file holds
them; a value that is not what its field needs (a seed of "abc", a NaN scale) is dropped
here rather than failing the whole recipe. Nothing of it is verified: Strata did not run
these steps and cannot know that the file tells the truth.

A Strata export (format `strata`) needs no reconstruction: it carries the step that made
the asset in the store it was exported from, kept whole, with that asset's digest. That
store's word is taken for it, not checked here. A file with a C2PA manifest keeps what
c2pa-python's Reader said of it (`ContentCredentials`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

RECONSTRUCTED: Final = "reconstructed from the file, not verified"
FROM_ANOTHER_STORE: Final = "recorded by another Strata store, not verified here"
Scalar = str | int | float | bool | None

_INTEGERS = ("seed", "steps", "width", "height")
_NUMBERS = ("cfg", "denoise")
_TEXTS = ("prompt", "negative_prompt", "sampler", "scheduler", "model", "model_hash")


def integer(value: Any) -> int | None:
    """A whole number from a file's value (a number or its text), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def number(value: Any) -> float | None:
    """A finite number from a file's value (a number or its text), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        found = float(value)
    except ValueError:
        return None
    return found if math.isfinite(found) else None


def text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def scalar(value: Any) -> Scalar:
    """A value for `extra`: scalars as they are, anything else as its JSON text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def clean(value: Any) -> Any:
    """`value` storable in the log: no NUL characters or lone surrogates in text (which
    PostgreSQL's JSON refuses) and no NaN or infinity (which canonical JSON refuses)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    return value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Lora(_Model):
    name: str
    weight: float | None = None
    clip_weight: float | None = None  # a separate text-encoder strength (ComfyUI)
    hash: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {**data, "name": text(data.get("name")) or "?",
                    "weight": number(data.get("weight")),
                    "clip_weight": number(data.get("clip_weight")),
                    "hash": text(data.get("hash"))}
        return data


class Pass(_Model):
    """One generation pass as the file describes it."""

    kind: str = "txt2img"  # txt2img, img2img, inpaint, hires, refiner, adetailer, …
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    sampler: str | None = None
    scheduler: str | None = None
    cfg: float | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    model_hash: str | None = None
    loras: list[Lora] = Field(default_factory=list)
    denoise: float | None = None
    source_images: list[str] = Field(default_factory=list)  # names the file gives
    extra: dict[str, Scalar] = Field(default_factory=dict)  # the tool's other settings

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in _INTEGERS:
            data[key] = integer(data.get(key))
        for key in _NUMBERS:
            data[key] = number(data.get(key))
        for key in _TEXTS:
            data[key] = text(data.get(key))
        data["source_images"] = [t for t in map(text, data.get("source_images") or [])
                                 if t]
        data["extra"] = {str(k): scalar(v) for k, v in (data.get("extra") or {}).items()
                         if v is not None}
        return data

    def parameters(self) -> dict[str, Any]:
        """The pass as recipe entries: set values only, the model with its hash, LoRAs
        by name."""
        data = self.model_dump(exclude={"model", "model_hash", "loras", "extra"},
                               exclude_none=True)
        if self.model or self.model_hash:
            data["model"] = {k: v for k, v in (("name", self.model),
                                                ("hash", self.model_hash)) if v}
        if self.loras:
            data["loras"] = {lora.name: lora.model_dump(exclude={"name"}, exclude_none=True)
                             for lora in self.loras}
        if self.extra:
            data["extra"] = dict(self.extra)
        return {k: v for k, v in data.items() if v not in ([], {})}


@dataclass(frozen=True)
class Parsed:
    """What a format's parser found."""

    tool: str | None
    tool_version: str | None
    passes: list[Pass] = field(default_factory=list)
    original_digest: str | None = None  # a Strata export's: see EmbeddedRecipe
    step: dict[str, Any] | None = None


class ContentCredentials(_Model):
    """A file's C2PA manifest store and its validation state, as c2pa-python's Reader
    reported them at import, with no trust anchor (`Valid`: the signatures and bindings
    hold; `Trusted` needs the signer's authority anchored; `Invalid`)."""

    checked: bool  # False: c2pa-python could not look at it (not installed, a media type
    state: str | None = None  # it cannot read); `error` says why
    active_manifest: str | None = None
    failures: list[dict[str, Any]] = Field(default_factory=list)  # the first MAX_FAILURES
    manifest_store: dict[str, Any] | None = None  # as the Reader reports it, when in bound
    manifest_store_size: int | None = None  # characters of its JSON
    manifest_store_truncated: str | None = None  # its JSON's beginning, when over the bound
    error: str | None = None


class EmbeddedRecipe(_Model):
    """What an imported file said about how it was made, as `asset.imported` records it."""

    note: Literal["reconstructed from the file, not verified",
                  "recorded by another Strata store, not verified here"] = RECONSTRUCTED
    verified: Literal[False] = False
    format: str  # a1111, comfyui, invokeai, fooocus, swarmui, novelai, strata; c2pa: only
    tool: str | None = None
    tool_version: str | None = None
    passes: list[Pass] = Field(default_factory=list)
    raw: dict[str, str] = Field(default_factory=dict)  # chunk name → its text, verbatim
    truncated: dict[str, int] = Field(default_factory=dict)  # chunk name → declared size
    error: str | None = None  # why the metadata could not be (fully) read
    # A Strata export: the asset it was exported from (its digest differs from the file's
    # when the export added metadata) and the step that made it there, as that store's
    # provenance JSON gives it (docs/provenance.schema.json), with that asset's output only.
    original_digest: str | None = None
    step: dict[str, Any] | None = None
    content_credentials: ContentCredentials | None = None

    def record(self) -> dict[str, Any]:
        """The recipe as the event's `embedded` field."""
        return clean(self.model_dump(mode="json"))  # type: ignore[no-any-return]

    @classmethod
    def of_record(cls, data: Any) -> EmbeddedRecipe | None:
        """The recipe an event recorded; None for none, or one this version cannot read."""
        if not isinstance(data, dict):
            return None
        try:
            return cls.model_validate(data)
        except ValidationError:
            return None

    def flat(self) -> dict[str, Any]:
        """The recipe entries of an imported asset: the first pass's parameters at the top
        (as a Strata generation's are), later passes under `passes`, the raw metadata."""
        flat: dict[str, Any] = {"reconstructed": self.note, "tool": self.tool,
                                "tool_version": self.tool_version,
                                "metadata_format": self.format}
        if self.passes:
            first = self.passes[0].parameters()
            flat.update(operation=first.pop("kind"), **first)
        if len(self.passes) > 1:
            flat["passes"] = {str(n): p.parameters()
                              for n, p in enumerate(self.passes[1:], start=2)}
        if self.content_credentials is not None:  # what the Reader said; the store: --json
            flat["content_credentials"] = self.content_credentials.model_dump(
                exclude={"manifest_store", "manifest_store_truncated"}, exclude_none=True)
        flat.update(original_digest=self.original_digest, metadata_error=self.error,
                    raw_metadata=self.raw, raw_truncated=self.truncated)
        kept = {k: v for k, v in flat.items() if v not in (None, {}, [])}
        # Another store's recipe as it gave it (an empty list of inputs included); what this
        # store says of it (its note, format, evidence) wins over the same names there.
        return {**original_recipe(self.step), **kept} if self.step is not None else kept


def original_recipe(step: dict[str, Any]) -> dict[str, Any]:
    """The recipe of an exported asset as its own store's `strata recipe` gives it, from
    the step of its provenance: the request's parameters and this output's own (its
    seed), what the completion recorded, the inputs with their roles, who and when. The
    layer that made it is `original_layer`: here the asset was imported."""
    outputs = step.get("outputs")
    output = outputs[0] if isinstance(outputs, list) and outputs else {}
    own = output.get("parameters") if isinstance(output, dict) else None
    parameters, facts = step.get("parameters"), step.get("facts")
    return {
        **(parameters if isinstance(parameters, dict) else {}),
        **(facts if isinstance(facts, dict) else {}),
        "operation": step.get("operation"), **(own if isinstance(own, dict) else {}),
        "inputs": output.get("inputs") if isinstance(output, dict) else None,
        "actor": step.get("actor"), "host": step.get("host"), "made_at": step.get("time"),
        "job_id": step.get("job_id"), "original_layer": step.get("layer"),
    }
