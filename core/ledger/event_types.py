"""The payloads of the events every layer shares: assets, jobs, branches, curation.

Each layer's own request and completion events live in its module in core/layers/.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from strata.core.ledger.events import Payload, registry

DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
Digest = str


class AssetInfo(Payload):
    """What the bytes alone say about an asset."""

    digest: Digest = Field(pattern=DIGEST_PATTERN)
    media_type: str
    size: int = Field(ge=0)
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    phash: str | None = None
    dhash: str | None = None


Role = Literal["source", "mask", "layer", "audio", "reference", "parent"]


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


# --- jobs ---------------------------------------------------------------------------------


@registry.register("job.started")
class JobStarted(Payload):
    job_id: str
    attempt: int = Field(ge=1)
    worker: str
    lease_seconds: float = Field(gt=0)


@registry.register("job.failed")
class JobFailed(Payload):
    job_id: str
    attempt: int = Field(ge=1)
    error_class: str
    message: str
    retryable: bool = False
    retry_at: str | None = None  # ISO time; set while retries remain


@registry.register("job.cancelled")
class JobCancelled(Payload):
    job_id: str
    reason: str | None = None


# --- branches -----------------------------------------------------------------------------


@registry.register("branch.created")
class BranchCreated(Payload):
    name: str
    head: Digest | None = None


@registry.register("branch.advanced")
class BranchAdvanced(Payload):
    name: str
    head: Digest
    previous_head: Digest | None = None
    job_id: str | None = None


@registry.register("branch.rolled_back")
class BranchRolledBack(Payload):
    name: str
    head: Digest
    previous_head: Digest | None = None
    reason: str | None = None


# --- human decisions ----------------------------------------------------------------------


@registry.register("selection.picked")
class SelectionPicked(Payload):
    digest: Digest
    note: str | None = None


@registry.register("selection.rejected")
class SelectionRejected(Payload):
    digest: Digest
    note: str | None = None


@registry.register("selection.rated")
class SelectionRated(Payload):
    digest: Digest
    rating: int = Field(ge=1, le=5)
    note: str | None = None


@registry.register("review.recorded")
class ReviewRecorded(Payload):
    digest: Digest
    verdict: Literal["approve", "reject", "changes"]
    note: str | None = None


@registry.register("final.marked")
class FinalMarked(Payload):
    digest: Digest
    note: str | None = None


# --- models -------------------------------------------------------------------------------


@registry.register("model.registered")
class ModelRegistered(Payload):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    path: str
    digest: Digest = Field(pattern=DIGEST_PATTERN)
    format: Literal["folder", "single_file"]


# --- the shapes every layer's job events share ---------------------------------------------


class JobRequest(Payload):
    """Base of every `<layer>.requested` payload."""

    job_id: str
    branch: str | None = None
    iterates: str | None = None  # the job this one re-issues with adjusted parameters
    changes: dict[str, Any] | None = None  # the parameter diff against `iterates`
    max_attempts: int = Field(default=3, ge=1, le=20)


class JobCompleted(Payload):
    """Base of every `<layer>.completed` payload: the outputs and how they were made."""

    job_id: str
    operation: str
    outputs: list[ProducedAsset]
