"""A store built for the find tests through the real service API: imports (one with an
A1111 recipe in the file), generation jobs requested as `strata generate` requests them
and completed as a worker completes them, outside edits, decisions and a branch."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from strata.core.decisions import branches, curation
from strata.core.layers.generation import GenerationCompleted, GenerationRequested
from strata.core.ledger.event_types import AssetInfo, ProducedAsset
from strata.core.models.diffusion import ModelRef, SchedulerUsed, Timings
from strata.core.runtime import jobs
from strata.core.service import Strata
from tests.core.interop import samples
from tests.helpers import png_bytes

TINY = ModelRef(name="tiny", path="/models/tiny", digest="sha256:" + "7" * 64)
OLD = ModelRef(name="old-model", path="/models/old", digest="sha256:" + "ab" * 32)


@dataclass
class Built:
    imported: str  # an A1111 file: "masterpiece, a red fox in the snow …", seed 1234567
    g42: str  # "a fox at golden hour", seed 42, steps 30, cfg 7, branch look-dev, by ana
    g43: str  # the same job, seed 43
    wolf: str  # "a wolf in the rain", seed 7, steps 20, cfg 9, old-model, by bo
    edit: str  # inpaint of g42 (one pixel changed: a near-duplicate)
    final: str  # upscale of edit: final, rated 5, approved
    unrelated: str  # a plain import with no recipe
    infos: dict[str, AssetInfo]


def _png(seed: int, touch: bool = False) -> bytes:
    image = Image.open(io.BytesIO(png_bytes(seed, (32, 32)))).convert("RGB")
    if touch:
        image.putpixel((3, 3), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _generate(strata: Strata, prompt: str, seeds: list[int], model: ModelRef, actor: str,
              negative: str | None = None, branch: str | None = None, steps: int = 20,
              cfg: float = 7.5) -> list[AssetInfo]:
    request = GenerationRequested(job_id=jobs.new_job_id(), prompt=prompt, seeds=seeds,
                                  negative_prompt=negative, steps=steps, cfg=cfg, model=model,
                                  branch=branch)
    return complete(strata, request, seeds, actor)


def complete(strata: Strata, request: GenerationRequested, seeds: list[int],
             actor: str = "ana") -> list[AssetInfo]:
    """Request a generation as `strata generate` does, and complete it as a worker would
    (with pictures made by Pillow): its outputs."""
    jobs.request(strata, request)
    infos = [strata.blobs.ingest_bytes(_png(seed % 100_000)) for seed in seeds]
    outputs = [ProducedAsset(asset=info, seed=seed, params={"seed": seed})
               for info, seed in zip(infos, seeds, strict=True)]
    strata.record(jobs.stream(request.job_id), [GenerationCompleted(
        job_id=request.job_id, operation="text-to-image", outputs=outputs, model=request.model,
        scheduler=SchedulerUsed(name="ddim", class_name="DDIMScheduler", config={}),
        device="cpu", dtype="float32", versions={"strata": "test"},
        timings=Timings(load_s=0.0, generate_s=0.5, store_s=0.0, total_s=0.5))],
        meta={"actor": actor})
    return infos


def _derive(strata: Strata, tmp: Path, parent: str, data: bytes, operation: str) -> AssetInfo:
    path = tmp / f"{operation}.png"
    path.write_bytes(data)
    event = strata.add_file(path, parents=[(parent, "source")], operation=operation)
    return AssetInfo.model_validate(event.data["output"]["asset"])


def build(strata: Strata, tmp: Path) -> Built:
    imported_path = samples.png(tmp / "a1111.png", {"parameters": samples.A1111}, seed=5)
    imported = AssetInfo.model_validate(strata.add_file(imported_path).data["asset"])
    branches.create(strata, "look-dev")
    g42, g43 = _generate(strata, "a fox at golden hour", [42, 43], TINY, "ana",
                         negative="blurry, oversaturated", branch="look-dev", steps=30, cfg=7.0)
    (wolf,) = _generate(strata, "a wolf in the rain", [7], OLD, "bo", steps=20, cfg=9.0)
    edit = _derive(strata, tmp, g42.digest, _png(42, touch=True), "inpaint")
    final = _derive(strata, tmp, edit.digest, _png(99), "upscale")
    plain_path = tmp / "plain.png"
    plain_path.write_bytes(_png(1000))
    unrelated = AssetInfo.model_validate(strata.add_file(plain_path).data["asset"])
    curation.mark_final(strata, final.digest)
    curation.rate(strata, final.digest, 5)
    curation.rate(strata, wolf.digest, 2)
    curation.review(strata, final.digest, "approve")
    curation.review(strata, wolf.digest, "reject")
    curation.pick(strata, g43.digest)
    curation.reject(strata, g42.digest)
    branches.advance(strata, "look-dev", edit.digest)
    infos = {i.digest: i for i in (imported, g42, g43, wolf, edit, final, unrelated)}
    return Built(imported.digest, g42.digest, g43.digest, wolf.digest, edit.digest,
                 final.digest, unrelated.digest, infos)
