"""How well the shapes model obeys its prompts, measured through Strata's own jobs.

    python bench/shapes_quality.py [--model DIR] [--prompts 100] [--trials 20] [--seed 0]

Generation: `--prompts` random prompts of the shapes world ("a small red circle on a blue
background, top left"), one 64x64 image each at 20 DDIM steps and the default guidance,
each a generation job run by a worker. Every picture is read the same way
(core/models/shapes/world.py `read`): the background is the commonest palette colour along
the border, the shape is every pixel of another colour, its colour the commonest among
them, its place the nearest of the five positions to their centroid. Targets: shape and
background colour both right in >= 80% of generations, the position in >= 70%.

Inpainting: `--trials` random scenes of the world with no yellow in them, drawn and added
as pictures; the region where each one's shape lies (its silhouette, grown by a pixel) is
inpainted with "a yellow star" at 20 steps. A region the size of a shape, because a shape
never fills more than a third of a larger one (a 32x32 quadrant, say): no picture of
this world could make such a region mostly yellow. Target: yellow is the commonest colour
inside the region in >= 80% of trials, and no pixel outside it changed.

Prints figures only; nothing here is timed against a limit.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

STEPS = 20


def main() -> None:
    from strata.core.models.shapes import SHIPPED

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED, help="a shapes model folder")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--trials", type=int, default=20, help="inpainting trials")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cfg", type=float, default=None,
                        help="guidance (default: the one the model's folder recommends)")
    parser.add_argument("--save", type=Path, help="a folder for a contact sheet of the pictures")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image, ImageFilter

    from strata.core.config import Settings
    from strata.core.layers import build_executors, editing
    from strata.core.layers.generation import build_request
    from strata.core.ledger.event_types import JobRequest
    from strata.core.models import registry as models
    from strata.core.models.shapes import world
    from strata.core.runtime import jobs
    from strata.core.runtime.worker import Worker
    from strata.core.service import Strata
    from strata.core.store import Store

    root = Path(tempfile.mkdtemp(prefix="strata-bench-shapes-"))
    strata = Strata(Store.open(Settings(home=root / "store"), create=True))
    models.register(strata, "shapes", args.model)
    worker = Worker(strata, build_executors())

    def run(request: JobRequest) -> tuple[str, Image.Image]:
        jobs.request(strata, request)
        row = worker.wait_for(request.job_id)
        if row["status"] != "completed":
            sys.exit(f"job {request.job_id} {row['status']}: {row['error_message']}")
        (digest,) = row["outputs"]
        with strata.blobs.open_seekable(digest) as handle, Image.open(handle) as image:
            return digest, image.convert("RGB")

    rng = random.Random(args.seed)
    hits: Counter[str] = Counter()
    by_position: Counter[str] = Counter()
    sheet: list[Image.Image] = []
    started = time.perf_counter()
    for n in range(args.prompts):
        scene = world.random_scene(rng)
        _, image = run(build_request(strata, scene.prompt(), model="shapes", seed=args.seed + n,
                                  steps=STEPS, cfg=args.cfg))
        seen = world.read(image)
        colours = seen.colour == scene.colour and seen.background == scene.background
        hits["shape colour"] += seen.colour == scene.colour
        hits["background colour"] += seen.background == scene.background
        hits["both colours"] += colours
        hits["position"] += seen.position == scene.position
        hits["shape"] += 0  # not measured: reading shapes back needs more than colours
        by_position[scene.position] += seen.position == scene.position
        sheet.append(image)
    generation_seconds = time.perf_counter() - started

    print(f"model: {args.model}; guidance: "
          f"{'as the model recommends' if args.cfg is None else args.cfg}")
    if args.prompts:
        print(f"generation: {args.prompts} prompts, 64x64, {STEPS} steps "
              f"({generation_seconds / args.prompts:.2f} s per job)")
        for name, target in (("shape colour", None), ("background colour", None),
                             ("both colours", 0.80), ("position", 0.70)):
            rate = hits[name] / args.prompts
            verdict = "" if target is None else (
                f"  target >= {target:.0%}: {'met' if rate >= target else 'NOT met'}")
            print(f"  {name:<18} {rate:6.1%}{verdict}")
        per_place = ", ".join(f"{place} {by_position[place]}" for place in world.POSITIONS)
        print(f"  right position by prompt position: {per_place}")

    yellow_first = untouched = 0
    shares = []
    for trial in range(args.trials):
        scene = world.random_scene(rng)
        while "yellow" in (scene.colour, scene.background):
            scene = world.random_scene(rng)
        source = world.render(scene)
        mask = world.silhouette(scene).filter(ImageFilter.MaxFilter(3)).point(
            lambda level: 255 if level >= 128 else 0)
        source.save(root / "source.png")
        mask.save(root / "mask.png")
        digest = strata.add_file(root / "source.png").data["asset"]["digest"]
        _, edited = run(editing.build_request(strata, "inpaint", digest,
                                              mask=str(root / "mask.png"), model="shapes",
                                              prompt="a yellow star", steps=STEPS,
                                              cfg=args.cfg, seed=20_000 + trial))
        inside = np.asarray(mask) >= 128
        classes = world.colour_classes(edited)[inside]
        commonest = world.colour_name(int(np.bincount(classes).argmax()))
        yellow_first += commonest == "yellow"
        shares.append(world.share_of(edited, "yellow", mask))
        untouched += bool((np.asarray(edited)[~inside] == np.asarray(source)[~inside]).all())
        sheet += [source, edited]
    if args.trials:
        rate = yellow_first / args.trials
        print(f"inpainting 'a yellow star' where a shape lies: {args.trials} trials")
        print(f"  yellow commonest in the region {rate:6.1%}  target >= 80%: "
              f"{'met' if rate >= 0.8 else 'NOT met'} (mean yellow share "
              f"{sum(shares) / len(shares):.1%})")
        print(f"  outside the region unchanged   {untouched}/{args.trials}")
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        columns = 10
        rows = (len(sheet) + columns - 1) // columns
        contact = Image.new("RGB", (columns * 64, rows * 64))
        for n, image in enumerate(sheet):
            contact.paste(image, ((n % columns) * 64, (n // columns) * 64))
        contact.save(args.save / "shapes-quality.png")
        print(f"contact sheet: {args.save / 'shapes-quality.png'}")


if __name__ == "__main__":
    main()
