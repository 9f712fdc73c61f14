"""Selection (automatic curation): drop near-duplicates and rank what is left.

`selection.requested` names the candidate assets; the executor scores each image with
the documented quality score (core.quality: sharpness as variance of the Laplacian,
exposure, contrast), groups near-duplicates by perceptual-hash Hamming distance, keeps
the best of each group and ranks them. `selection.completed` records every score, every
cluster and the choices, so `strata show` can explain why an image was kept or dropped.
Human picks, rejections and ratings are separate events without a job (core.curation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import Field, ValidationError
from sqlalchemy import Connection, select

from strata.core import layers
from strata.core.errors import (
    AmbiguousReference,
    AssetNotFound,
    InvalidInput,
    JobError,
    JobNotFound,
)
from strata.core.ledger.event_types import DIGEST_PATTERN, JobCompleted, JobRequest, short
from strata.core.ledger.events import Payload, RecordedEvent, explain, registry
from strata.core.projections.base import Batch, Projection, table
from strata.core.runtime.executor import Executor, JobContext
from strata.core.storage.schema import AssetRow, SelectionRow, SelectionScoreRow

if TYPE_CHECKING:
    from strata.core.service import Strata


@registry.register("selection.requested")
class SelectionRequested(JobRequest):
    candidates: list[Annotated[str, Field(pattern=DIGEST_PATTERN)]] = Field(
        min_length=1, max_length=10_000
    )
    dedupe_distance: int = Field(default=6, ge=0, le=64)
    top: int | None = Field(default=None, ge=1)
    source_job: str | None = None  # the job whose outputs are the candidates, if any

    def summary(self) -> str:
        source = f" from job {self.source_job[:8]}" if self.source_job else ""
        return f"{len(self.candidates)} candidates{source}, dedupe ≤ {self.dedupe_distance} bits"


class Scored(Payload):
    sharpness: float
    exposure: float
    contrast: float
    score: float
    cluster: str  # the representative (best member) of the asset's near-duplicate cluster
    rank: int | None = None  # 1 = best among the chosen; None if not chosen


@registry.register("selection.completed")
class SelectionCompleted(JobCompleted):
    scored: dict[str, Scored]
    clusters: list[list[str]]
    chosen: list[str]
    dedupe_distance: int
    top: int | None

    def summary(self) -> str:
        best = f", best {short(self.chosen[0])}" if self.chosen else ""
        return f"kept {len(self.chosen)} of {len(self.scored)}{best}"


class SelectionExecutor(Executor):
    layer: ClassVar[str] = "selection"
    version: ClassVar[str] = "1"

    def run(self, ctx: JobContext) -> SelectionCompleted:
        from PIL import Image

        from strata.core.decisions.quality import (
            choose_representatives,
            cluster_near_duplicates,
            score_image,
        )

        request = ctx.request_as(SelectionRequested)
        scores, hashes = {}, {}
        for done, digest in enumerate(request.candidates, start=1):
            with ctx.strata.blobs.open(digest) as handle, Image.open(handle) as image:
                image.load()
                scores[digest] = score_image(image)
                hashes[digest] = phash_of(image)
            ctx.progress(done, len(request.candidates))
        clusters = cluster_near_duplicates(hashes, request.dedupe_distance)
        plain_scores = {d: s.score for d, s in scores.items()}
        chosen = choose_representatives(clusters, plain_scores, request.top)
        representative = {}
        for cluster in clusters:
            (best,) = choose_representatives([cluster], plain_scores, top=1)
            for member in cluster:
                representative[member] = best
        rank = {digest: position for position, digest in enumerate(chosen, start=1)}
        scored = {
            digest: Scored(sharpness=round(s.sharpness, 4), exposure=round(s.exposure, 4),
                           contrast=round(s.contrast, 4), score=round(s.score, 4),
                           cluster=representative[digest], rank=rank.get(digest))
            for digest, s in scores.items()
        }
        return SelectionCompleted(
            job_id=ctx.job_id, operation="auto-select", outputs=[], scored=scored,
            clusters=clusters, chosen=chosen, dedupe_distance=request.dedupe_distance,
            top=request.top,
        )


def build_request(strata: Strata, refs: list[str], dedupe_distance: int = 6,
                  top: int | None = None) -> SelectionRequested:
    """A selection over the outputs of one job (given its id), or over assets (given hash
    prefixes). Everything is checked before anything is appended."""
    from strata.core.runtime import jobs

    source_job, candidates = None, []
    if len(refs) == 1:
        try:
            row = jobs.get(strata, refs[0])
        except AmbiguousReference:
            raise
        except (JobNotFound, InvalidInput):  # not a job's id: asset prefixes
            row = None
        if row is not None:
            if not row["outputs"]:
                raise JobError(f"job {row['job_id']} ({row['layer']}, {row['status']}) has no "
                               "outputs to select from")
            source_job, candidates = row["job_id"], row["outputs"]
    if source_job is None:
        candidates = [strata.resolve_asset(ref) for ref in refs]
    try:
        request = SelectionRequested(job_id=jobs.new_job_id(), candidates=candidates,
                                     dedupe_distance=dedupe_distance, top=top,
                                     source_job=source_job)
    except ValidationError as error:
        raise InvalidInput(f"invalid selection request: {explain(error)}") from error
    check(strata, request)
    return request


def check(strata: Strata, request: JobRequest) -> None:
    """The layer's store checks (`Layer.check`): every candidate is an asset, and the
    source job, when named, is a job."""
    from strata.core.runtime import jobs

    assert isinstance(request, SelectionRequested)
    a = table(AssetRow)
    with strata.view() as conn:
        known = set(conn.scalars(select(a.c.digest).where(
            a.c.digest.in_(sorted(set(request.candidates))))))
    missing = sorted(set(request.candidates) - known)
    if missing:
        raise AssetNotFound(f"no asset {missing[0]}" + (
            f" (and {len(missing) - 1} more candidates)" if len(missing) > 1 else ""))
    if request.source_job is not None:
        jobs.get(strata, request.source_job)


def result(strata: Strata, job_id: str) -> SelectionCompleted:
    """What a completed selection job decided."""
    from strata.core.runtime import jobs

    for event in strata.ledger.read_stream(jobs.stream(job_id)):
        if isinstance(event.payload, SelectionCompleted):
            return event.payload
    raise JobError(f"selection job {job_id} has not completed")


def phash_of(image: object) -> str:
    import imagehash

    return str(imagehash.phash(image.convert("RGB")))  # type: ignore[attr-defined]


class SelectionScoresProjection(Projection):
    """Every candidate's latest automatic score, cluster and rank, beside the human
    decisions in the same rows (each projection guards its own position column); and
    every selection that ever scored an asset (`strata provenance` reads just those)."""

    name = "selection-scores"
    models = (SelectionRow, SelectionScoreRow)
    handles = (SelectionCompleted,)

    def apply(
        self, conn: Connection, event: RecordedEvent, payload: Payload, batch: Batch
    ) -> None:
        if not isinstance(payload, SelectionCompleted):
            return
        for digest in payload.scored:
            batch.insert_or_ignore(SelectionScoreRow, {
                "digest": digest, "position": event.position, "stream": event.stream,
            }, keys=("digest", "position"))
        for digest, facts in payload.scored.items():
            batch.upsert(SelectionRow, {
                "digest": digest, "quality": facts.score, "cluster": facts.cluster,
                "rank": facts.rank, "scored_position": event.position, "updated_position": 0,
            }, keys=("digest",), update_columns=("quality", "cluster", "rank", "scored_position"),
                newer="scored_position")


LAYER = layers.register(layers.Layer(
    name="selection",
    description="drop near-duplicates and rank candidates by the documented quality score",
    requested=SelectionRequested,
    completed=SelectionCompleted,
    executor=lambda _resources: SelectionExecutor(),
    projections=(SelectionScoresProjection(),),
    check=check,
))
