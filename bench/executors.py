"""Per-job overhead of the executor runtime against calling the pipeline directly.

    python bench/executors.py [--jobs N]

Both sides use the very same loaded pipeline (one PipelineCache): the tiny model, 64x64,
4 steps, a batch of 4 seeded images. The runtime side is a whole job: the request is
appended, a worker claims it (job.started + lease), runs it, stores the four PNGs as
blobs (hash, fsync, rename; decode + perceptual hashes), appends generation.completed,
and the projections catch up after each append. Runs alternate between the two sides so
that machine noise hits both alike; the figures are medians. Target: overhead <= 5%.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a lighthouse on a cliff at dusk"
STEPS, SIZE, BATCH = 4, 64, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30, help="timed runs per side")
    args = parser.parse_args()

    import torch

    from strata.core.config import Settings
    from strata.core.layers.generation import GenerationExecutor, build_request
    from strata.core.models import registry as models
    from strata.core.models.pipelines import PipelineCache, set_scheduler
    from strata.core.runtime import jobs
    from strata.core.runtime.worker import Worker
    from strata.core.service import Strata
    from strata.core.store import Store

    root = Path(tempfile.mkdtemp(prefix="strata-bench-executors-"))
    strata = Strata(Store.open(Settings(home=root / "store"), create=True))
    model = models.write_tiny(strata)
    pipelines = PipelineCache()
    worker = Worker(strata, {"generation": GenerationExecutor(pipelines)})
    pipeline = pipelines.get(Path(model.data["path"]), "cpu", "float32")
    set_scheduler(pipeline, "ddim")

    def direct(seed: int, save: bool) -> None:
        generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(BATCH)]
        images = pipeline(prompt=[PROMPT] * BATCH, num_inference_steps=STEPS,
                          guidance_scale=7.5, width=SIZE, height=SIZE,
                          generator=generators).images
        if save:  # what a script would do with the images: write PNG files
            for n, image in enumerate(images):
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                (root / f"direct-{n}.png").write_bytes(buffer.getvalue())

    def through_runtime(seed: int) -> None:
        request = build_request(strata, PROMPT, model="tiny", n=BATCH, seed=seed,
                                steps=STEPS, width=SIZE, height=SIZE)
        jobs.request(strata, request)
        assert worker.work_once(request.job_id)

    for seed in range(3):  # warm up both paths (first calls allocate and compile kernels)
        direct(seed, save=True)
        through_runtime(seed)

    timings: dict[str, list[float]] = {"direct": [], "direct+png": [], "runtime": []}
    for run in range(args.jobs):
        seed = 1000 + run * BATCH
        for name in timings:
            began = time.perf_counter()
            if name == "runtime":
                through_runtime(seed)
            else:
                direct(seed, save=name == "direct+png")
            timings[name].append(time.perf_counter() - began)

    median = {name: statistics.median(values) for name, values in timings.items()}
    overhead = median["runtime"] / median["direct"] - 1
    overhead_png = median["runtime"] / median["direct+png"] - 1
    print(f"Strata executor benchmark: tiny model, {SIZE}x{SIZE}, {STEPS} steps, batch of "
          f"{BATCH}, {args.jobs} runs per side, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print("| measure | median per job | overhead vs direct | target | result |")
    print("|---|---:|---:|---|:---:|")
    print(f"| pipeline called directly | {median['direct'] * 1000:.1f} ms | — | — | baseline |")
    print(f"| pipeline + PNG files written | {median['direct+png'] * 1000:.1f} ms | "
          f"{(median['direct+png'] / median['direct'] - 1) * 100:+.1f}% | — | info |")
    verdict = "PASS" if overhead <= 0.05 else "MISS"
    print(f"| whole job through the runtime | {median['runtime'] * 1000:.1f} ms | "
          f"{overhead * 100:+.1f}% | ≤ +5% | {verdict} |")
    print(f"| (runtime vs pipeline + PNG files) | | {overhead_png * 100:+.1f}% | — | info |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
