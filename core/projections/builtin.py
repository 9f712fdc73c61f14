"""The projections every store has: lineage, jobs, branches, curation, models.

Layers add their own through the layer registry (`Layer.projections`). Each `apply` is
idempotent (see core.projections.base): re-applying an event leaves the rows as they are.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from strata.core.find.projection import FindProjection
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetImported,
    AssetInfo,
    BranchAdvanced,
    BranchCreated,
    BranchRolledBack,
    FinalMarked,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobRequest,
    JobStarted,
    ModelRegistered,
    ProducedAsset,
    ReviewRecorded,
    SelectionPicked,
    SelectionRated,
    SelectionRejected,
)
from strata.core.ledger.events import Payload, RecordedEvent
from strata.core.projections.base import Batch, Projection
from strata.core.storage.schema import (
    AssetRow,
    BranchMoveRow,
    BranchRow,
    DerivationRow,
    FinalRow,
    JobRow,
    ModelRow,
    ReviewRow,
    SelectionRow,
)


def layer_of(event: RecordedEvent) -> str:
    return event.type.split(".", 1)[0]


class LineageProjection(Projection):
    """Assets and the derivation edges between them."""

    name = "lineage"
    models = (AssetRow, DerivationRow)
    handles = (AssetImported, AssetDerived, JobCompleted)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        if isinstance(payload, AssetImported):
            self._asset(batch, event, payload.asset, "import", None, payload.source.name)
        elif isinstance(payload, AssetDerived):
            self._produced(batch, event, payload.output, "external", payload.operation, None,
                           payload.source.name)
        elif isinstance(payload, JobCompleted):
            for output in payload.outputs:
                self._produced(batch, event, output, layer_of(event), payload.operation,
                               payload.job_id)

    def _produced(
        self, batch: Batch, event: RecordedEvent, output: ProducedAsset, layer: str,
        operation: str, job_id: str | None, label: str | None = None,
    ) -> None:
        self._asset(batch, event, output.asset, layer, job_id, label)
        for source in output.inputs:
            if source.digest == output.asset.digest:
                continue  # saved unchanged: an asset is not its own ancestor
            batch.insert_or_ignore(DerivationRow, {
                "output_digest": output.asset.digest,
                "input_digest": source.digest,
                "role": source.role,
                "event_position": event.position,
                "event_id": event.event_id,
                "layer": layer,
                "operation": operation,
            }, keys=("output_digest", "input_digest", "role"))

    def _asset(
        self, batch: Batch, event: RecordedEvent, asset: AssetInfo, layer: str,
        job_id: str | None, label: str | None,
    ) -> None:
        # The first event that mentions an asset is the one that made it; later imports
        # of the same bytes add nothing to the asset itself.
        batch.insert_or_ignore(AssetRow, {
            **asset.model_dump(),
            "label": label,
            "layer": layer,
            "job_id": job_id,
            "created_position": event.position,
            "created_event_id": event.event_id,
        }, keys=("digest",))


class JobsProjection(Projection):
    name = "jobs"
    models = (JobRow,)
    handles = (JobRequest, JobStarted, JobCompleted, JobFailed, JobCancelled)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        changes: dict[str, Any]
        if isinstance(payload, JobRequest):
            # A job id requested twice (on another stream) cannot be undone in the log;
            # the first request stands and the projection must not wedge on the second.
            batch.insert_or_ignore(JobRow, dict(
                job_id=payload.job_id,
                layer=layer_of(event),
                status="requested",
                stream_version=event.version,
                request=json.dumps(event.data, sort_keys=True),
                branch=payload.branch,
                iterates_job=payload.iterates,
                attempts=0,
                requested_position=event.position,
                updated_position=event.position,
            ), keys=("job_id",))
            return
        if isinstance(payload, JobStarted):
            changes = {"status": "running", "attempts": payload.attempt,
                       "worker": payload.worker, "retry_at": None}
        elif isinstance(payload, JobCompleted):
            changes = {"status": "completed", "worker": None, "outputs": json.dumps(
                [o.asset.digest for o in payload.outputs])}
        elif isinstance(payload, JobFailed):
            changes = {
                "status": "retrying" if payload.retry_at else "failed",
                "retry_at": payload.retry_at,
                "error_class": payload.error_class,
                "error_message": payload.message,
                "worker": None,
            }
        elif isinstance(payload, JobCancelled):
            changes = {"status": "cancelled", "worker": None, "retry_at": None}
        else:
            return
        batch.update(JobRow, {"stream_version": event.version,
                              "updated_position": event.position, **changes},
                     "job_id", payload.job_id, newer="updated_position",
                     position=event.position)


class BranchesProjection(Projection):
    name = "branches"
    models = (BranchRow, BranchMoveRow)
    handles = (BranchCreated, BranchAdvanced, BranchRolledBack)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        if isinstance(payload, BranchCreated):
            # Created again outside its stream: the first creation stands.
            batch.insert_or_ignore(BranchRow, dict(
                name=payload.name, head=payload.head, version=event.version,
                created_position=event.position, updated_position=event.position,
            ), keys=("name",))
            self._move(batch, event, payload.name, "created", payload.head, None, None)
        elif isinstance(payload, BranchAdvanced | BranchRolledBack):
            batch.update(BranchRow, {"head": payload.head, "version": event.version,
                                     "updated_position": event.position},
                         "name", payload.name, newer="updated_position",
                         position=event.position)
            action = "advanced" if isinstance(payload, BranchAdvanced) else "rolled_back"
            reason = payload.reason if isinstance(payload, BranchRolledBack) else None
            self._move(batch, event, payload.name, action, payload.head,
                       payload.previous_head, reason)

    def _move(
        self, batch: Batch, event: RecordedEvent, branch: str, action: str,
        head: str | None, previous: str | None, reason: str | None,
    ) -> None:
        batch.insert_or_ignore(BranchMoveRow, dict(
            branch=branch, position=event.position, action=action, head=head,
            previous_head=previous, reason=reason, recorded_at=event.recorded_at,
        ), keys=("branch", "position"))


class CurationProjection(Projection):
    """Human decisions: picks, rejections, ratings, reviews, finals."""

    name = "curation"
    models = (SelectionRow, ReviewRow, FinalRow)
    handles = (SelectionPicked, SelectionRejected, SelectionRated, ReviewRecorded, FinalMarked)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        if isinstance(payload, SelectionPicked | SelectionRejected):
            decision = "picked" if isinstance(payload, SelectionPicked) else "rejected"
            record_selection(batch, event, payload.digest, decision=decision,
                             note=payload.note)
        elif isinstance(payload, SelectionRated):
            record_selection(batch, event, payload.digest, rating=payload.rating,
                             note=payload.note)
        elif isinstance(payload, ReviewRecorded):
            batch.upsert(ReviewRow, {"digest": payload.digest, "verdict": payload.verdict,
                                     "note": payload.note, "position": event.position},
                         keys=("digest",), update_columns=("verdict", "note", "position"),
                         newer="position")
        elif isinstance(payload, FinalMarked):
            batch.upsert(FinalRow, {"digest": payload.digest, "note": payload.note,
                                    "position": event.position},
                         keys=("digest",), update_columns=("note", "position"),
                         newer="position")


def record_selection(batch: Batch, event: RecordedEvent, digest: str, **changes: Any) -> None:
    """Set some facts of an asset's selection row (decision, rating, score, …), unless a
    newer event already set them."""
    values = {"digest": digest, "updated_position": event.position, **changes}
    batch.upsert(SelectionRow, values, keys=("digest",),
                 update_columns=[k for k in values if k != "digest"], newer="updated_position")


class ModelsProjection(Projection):
    name = "models"
    models = (ModelRow,)
    handles = (ModelRegistered,)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        if isinstance(payload, ModelRegistered):
            # Registering a name again points it at new files; the old event stays.
            batch.upsert(ModelRow, {**payload.model_dump(), "position": event.position},
                         keys=("name",), update_columns=("path", "digest", "format",
                                                         "position"),
                         newer="position")


BUILTIN_PROJECTIONS: tuple[Projection, ...] = (
    LineageProjection(),
    JobsProjection(),
    BranchesProjection(),
    CurationProjection(),
    ModelsProjection(),
    FindProjection(),  # after JobsProjection: it reads the request of a completed job
)
