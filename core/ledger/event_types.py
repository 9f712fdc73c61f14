"""The payloads of the events every layer shares: assets, jobs, branches, curation.

Each layer's own request and completion events live in its module in core/layers/.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

from pydantic import Field

from strata.core.ledger.events import Payload, registry

DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
Digest = str


def short(digest: str | None) -> str:
    """The first 12 hex digits of a digest: how assets are shown in one-line summaries."""
    return digest.removeprefix("sha256:")[:12] if digest else "-"


class AssetInfo(Payload):
    """What the bytes alone say about an asset."""

    digest: Digest = Field(pattern=DIGEST_PATTERN)
    media_type: str
    size: int = Field(ge=0)
    width: int | None = None
    height: int | None = None
    duration: float | None = None  # seconds, audio and video
    phash: str | None = None
    dhash: str | None = None
    # Probed from audio and video (None for images and events written before they were).
    fps: float | None = None
    frames: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None


Role = Literal["source", "mask", "layer", "audio", "reference", "parent"]
ROLES: tuple[str, ...] = get_args(Role)


class InputRef(Payload):
    digest: Digest = Field(pattern=DIGEST_PATTERN)
    role: Role = "source"


class ProducedAsset(Payload):
    """One output of a job or derivation, with the inputs it was made from."""

    asset: AssetInfo
    inputs: list[InputRef] = Field(default_factory=list)
    seed: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ImportSource(Payload):
    name: str | None = None
    path: str | None = None


@registry.register("asset.imported", schema=2)
class AssetImported(Payload):
    asset: AssetInfo
    source: ImportSource = ImportSource()
    embedded: dict[str, Any] | None = None  # generation metadata found inside the file

    def summary(self) -> str:
        return f"{short(self.asset.digest)} {self.asset.media_type} {self.source.name or ''}"


@registry.upcaster("asset.imported", from_schema=1)
def _asset_imported_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # Schema 1 kept the byte metadata flat beside the original file name; schema 2
    # separates what the bytes say (asset) from where they came from (source).
    filename = data.pop("filename", None)
    return {"asset": data, "source": {"name": filename}, "embedded": None}


@registry.register("asset.derived")
class AssetDerived(Payload):
    """An asset made from others outside a Strata job (by hand, by an outside tool)."""

    output: ProducedAsset
    operation: str = "external"
    source: ImportSource = ImportSource()

    def summary(self) -> str:
        inputs = ", ".join(f"{i.role} {short(i.digest)}" for i in self.output.inputs)
        return f"{short(self.output.asset.digest)} ← {inputs} ({self.operation})"


# --- jobs ---------------------------------------------------------------------------------


@registry.register("job.started")
class JobStarted(Payload):
    job_id: str
    attempt: int = Field(ge=1)
    worker: str
    lease_seconds: float = Field(gt=0)

    def summary(self) -> str:
        return f"attempt {self.attempt} by {self.worker}"


@registry.register("job.failed")
class JobFailed(Payload):
    job_id: str
    attempt: int = Field(ge=1)
    error_class: str
    message: str
    retryable: bool = False
    retry_at: str | None = None  # ISO time; set while retries remain

    def summary(self) -> str:
        retry = f"; retry at {self.retry_at[:19]}" if self.retry_at else ""
        return f"attempt {self.attempt} {self.error_class}: {self.message[:60]}{retry}"


@registry.register("job.cancelled")
class JobCancelled(Payload):
    job_id: str
    reason: str | None = None

    def summary(self) -> str:
        return f"job {self.job_id[:8]} cancelled" + (f": {self.reason}" if self.reason else "")


# --- branches -----------------------------------------------------------------------------


@registry.register("branch.created")
class BranchCreated(Payload):
    name: str
    head: Digest | None = None

    def summary(self) -> str:
        return f"{self.name} at {short(self.head)}"


@registry.register("branch.advanced")
class BranchAdvanced(Payload):
    name: str
    head: Digest
    previous_head: Digest | None = None
    job_id: str | None = None

    def summary(self) -> str:
        return f"{self.name}: {short(self.previous_head)} → {short(self.head)}"


@registry.register("branch.rolled_back")
class BranchRolledBack(Payload):
    name: str
    head: Digest
    previous_head: Digest | None = None
    reason: str | None = None

    def summary(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.name}: back from {short(self.previous_head)} to {short(self.head)}{why}"


# --- human decisions ----------------------------------------------------------------------


class Decision(Payload):
    """A human decision about one asset (an event without a job)."""

    digest: Digest
    note: str | None = None

    def details(self) -> str:
        return ""

    def summary(self) -> str:
        note = f" — {self.note}" if self.note else ""
        return f"{short(self.digest)}{self.details()}{note}"


@registry.register("selection.picked")
class SelectionPicked(Decision):
    pass


@registry.register("selection.rejected")
class SelectionRejected(Decision):
    pass


@registry.register("selection.rated")
class SelectionRated(Decision):
    rating: int = Field(ge=1, le=5)

    def details(self) -> str:
        return f" rated {self.rating}/5"


@registry.register("review.recorded")
class ReviewRecorded(Decision):
    verdict: Literal["approve", "reject", "changes"]

    def details(self) -> str:
        return f" {self.verdict}"


@registry.register("final.marked")
class FinalMarked(Decision):
    pass


# --- models -------------------------------------------------------------------------------


@registry.register("model.registered")
class ModelRegistered(Payload):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    path: str
    digest: Digest = Field(pattern=DIGEST_PATTERN)
    format: Literal["folder", "single_file"]

    def summary(self) -> str:
        return f"{self.name} {short(self.digest)} ({self.format})"


# --- the shapes every layer's job events share ---------------------------------------------


# Fields of a request that say nothing about how its outputs look: who re-issues what,
# where the result goes. Recipes leave them out and iterations set them themselves.
BOOKKEEPING = frozenset({"job_id", "iterates", "changes", "parent", "branch", "max_attempts"})


class JobRequest(Payload):
    """Base of every `<layer>.requested` payload.

    A layer's request says how it is summarised, which of its fields are the recipe of
    one output, and how an iteration re-issues it: the runtime, recipes and `iterate`
    ask these methods and know nothing else of the layer.
    """

    job_id: str
    branch: str | None = None
    iterates: str | None = None  # the job this one re-issues with adjusted parameters
    changes: dict[str, Any] | None = None  # the parameter diff against `iterates`
    # The asset this job iterates on: every output records it as its `parent` input.
    parent: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    max_attempts: int = Field(default=3, ge=1, le=20)

    # Settings `iterate --set` accepts beyond the request's own fields (e.g. n, seed).
    iteration_settings: ClassVar[tuple[str, ...]] = ()

    def summary(self) -> str:
        again = f", iterating {self.iterates[:8]}" if self.iterates else ""
        return f"job {self.job_id[:8]}{again}"

    def parameters(self, output: ProducedAsset | None = None) -> dict[str, Any]:
        """The request's parameters as they apply to one output (its recipe's part)."""
        data = self.model_dump(mode="json")
        return {k: v for k, v in data.items() if k not in BOOKKEEPING}

    def reissued(self, data: dict[str, Any], settings: dict[str, Any],
                 output: ProducedAsset | None, fresh_seeds: bool) -> dict[str, Any]:
        """Complete the data of an iteration of this request from `iteration_settings`
        (`settings`) and the output iterated on; layers without seeds change nothing."""
        return data


class JobCompleted(Payload):
    """Base of every `<layer>.completed` payload: the outputs and how they were made."""

    job_id: str
    operation: str
    outputs: list[ProducedAsset]

    def summary(self) -> str:
        made = ", ".join(short(o.asset.digest) for o in self.outputs[:3])
        more = f" +{len(self.outputs) - 3}" if len(self.outputs) > 3 else ""
        return f"{self.operation}: {len(self.outputs)} output(s) {made}{more}".rstrip()

    def facts(self) -> dict[str, Any]:
        """What the completion records about how every output was made (model, versions,
        device…): the recipe's part beside the request's parameters."""
        data = self.model_dump(mode="json")
        return {k: v for k, v in data.items() if k not in ("job_id", "operation", "outputs")}

    def with_parent(self, parent: str | None) -> JobCompleted:
        """The same result with `parent` recorded as an input of every output."""
        if parent is None:
            return self
        outputs = [o if any(i.digest == parent for i in o.inputs) else
                   o.model_copy(update={"inputs": [*o.inputs, InputRef(digest=parent,
                                                                       role="parent")]})
                   for o in self.outputs]
        return self.model_copy(update={"outputs": outputs})
