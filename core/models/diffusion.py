"""What every diffusion layer records and shares: the model it named and the weights it
ran, the scheduler's full configuration, device, dtype, library versions and timings,
and PNG outputs that carry their own recipe.

Generation and the editing layers (inpaint, img2img) complete with a `DiffusionCompleted`
payload, so provenance reads one shape for all of them. Nothing here imports torch.
"""

from __future__ import annotations

import io
import json
import platform
from typing import TYPE_CHECKING, Any

from pydantic import Field

from strata.core.config import strata_version
from strata.core.ledger.event_types import DIGEST_PATTERN, JobCompleted, short
from strata.core.ledger.events import Payload
from strata.core.models.pipelines import SCHEDULERS, library_versions

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from PIL import Image


class ModelRef(Payload):
    """A registered model: its name, where its files are, what its weights hash to."""

    name: str
    path: str
    digest: str = Field(pattern=DIGEST_PATTERN)


class SchedulerUsed(Payload):
    name: str
    class_name: str
    config: dict[str, Any]


class Timings(Payload):
    load_s: float
    generate_s: float
    store_s: float
    total_s: float


class DiffusionCompleted(JobCompleted):
    """Base of the completion payloads of layers that run a diffusers pipeline."""

    model: ModelRef  # the digest of the weights actually loaded
    scheduler: SchedulerUsed
    device: str
    dtype: str
    versions: dict[str, str]
    timings: Timings

    def summary(self) -> str:
        return f"{super().summary()} on {self.model.name} {short(self.model.digest)}"


def scheduler_used(pipeline: DiffusionPipeline, name: str) -> SchedulerUsed:
    """The scheduler a pipeline ran with, its whole configuration made JSON-safe."""
    config = dict(pipeline.scheduler.config)  # type: ignore[attr-defined]
    return SchedulerUsed(name=name, class_name=SCHEDULERS[name],
                         config=json.loads(json.dumps(config, default=str)))


def run_versions() -> dict[str, str]:
    """The versions of everything that shaped an output: libraries, Python, Strata."""
    return {**library_versions(), "python": platform.python_version(),
            "strata": strata_version()}


def encode_png(image: Image.Image, recipe: dict[str, Any]) -> bytes:
    """A PNG with the recipe in a `strata` text chunk, so the file explains itself.

    The recipe must be deterministic (no times, no job ids): the same request gives the
    same bytes, which reproduction relies on.
    """
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("strata", json.dumps(recipe, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()
