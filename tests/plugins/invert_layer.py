"""A layer defined entirely outside Strata's code base: invert an image's colours.

It is the plug-in contract's acceptance test: the worker, `strata log`, recipes, lineage,
`iterate` and `strata diff` must serve it with no edit to core/ or api/. Loaded through
STRATA_PLUGINS=tests.plugins.invert_layer, as any third-party layer would be.
"""

from __future__ import annotations

import io
from typing import ClassVar

from pydantic import Field

from strata.core import layers
from strata.core.ledger.event_types import (
    DIGEST_PATTERN,
    InputRef,
    JobCompleted,
    JobRequest,
    ProducedAsset,
    short,
)
from strata.core.ledger.events import registry
from strata.core.runtime import jobs
from strata.core.runtime.executor import Executor, JobContext
from strata.core.service import Strata


@registry.register("invert.requested")
class InvertRequested(JobRequest):
    source: str = Field(pattern=DIGEST_PATTERN)
    strength: float = Field(default=1.0, ge=0, le=1)  # 1: fully inverted; 0: unchanged

    def summary(self) -> str:
        return f"invert {short(self.source)} at strength {self.strength}"


@registry.register("invert.completed")
class InvertCompleted(JobCompleted):
    pillow: str


class InvertExecutor(Executor):
    layer: ClassVar[str] = "invert"
    version: ClassVar[str] = "1"

    def run(self, ctx: JobContext) -> InvertCompleted:
        import PIL
        from PIL import Image, ImageOps

        request = ctx.request_as(InvertRequested)
        with ctx.strata.blobs.open(request.source) as handle, Image.open(handle) as image:
            source = image.convert("RGB")
        inverted = Image.blend(source, ImageOps.invert(source), request.strength)
        buffer = io.BytesIO()
        inverted.save(buffer, format="PNG")
        info = ctx.strata.blobs.ingest_bytes(buffer.getvalue())
        ctx.progress(1, 1)
        return InvertCompleted(
            job_id=ctx.job_id, operation="invert", pillow=PIL.__version__,
            outputs=[ProducedAsset(asset=info,
                                   inputs=[InputRef(digest=request.source, role="source")])],
        )


def request(strata: Strata, source: str, strength: float = 1.0) -> str:
    payload = InvertRequested(job_id=jobs.new_job_id(), source=strata.resolve_asset(source),
                              strength=strength)
    jobs.request(strata, payload)
    return payload.job_id


LAYER = layers.register(layers.Layer(
    name="invert",
    description="invert an image's colours (a plug-in defined in the test suite)",
    requested=InvertRequested,
    completed=InvertCompleted,
    executor=lambda _resources: InvertExecutor(),
))
