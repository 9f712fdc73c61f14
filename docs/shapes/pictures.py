"""Draw the README's pictures of the shapes model again, from the shipped weights:

    python docs/shapes/pictures.py

- prompts.png: PROMPTS (seeds 0 to 3, 20 steps), each a generation job, side by side at
  twice their size;
- demo-frame.png: the middle frame of the final MP4 of `strata demo`.

Everything runs in a temporary store, through Strata's own jobs, so the pictures are what
a user gets.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPTS = ("a large red circle on a blue background, top left",
           "a large yellow star on a green background, centre",
           "a large white square on a black background, bottom right",
           "a small orange ring on a purple background, top right")
STEPS = 20
SCALE = 2  # the pictures are 64x64; shown at twice that


def main() -> None:
    import av
    from PIL import Image

    from strata.core.config import Settings
    from strata.core.demo import run_demo
    from strata.core.layers import build_executors
    from strata.core.layers.generation import build_request
    from strata.core.models import registry as models
    from strata.core.runtime import jobs
    from strata.core.runtime.worker import Worker
    from strata.core.service import Strata
    from strata.core.store import Store

    with tempfile.TemporaryDirectory(prefix="strata-pictures-") as root:
        strata = Strata(Store.open(Settings(home=Path(root) / "store"), create=True))
        models.install_shapes(strata)
        worker = Worker(strata, build_executors())
        sheet = Image.new("RGB", (64 * SCALE * len(PROMPTS), 64 * SCALE))
        for seed, prompt in enumerate(PROMPTS):
            request = build_request(strata, prompt, model="shapes", seed=seed, steps=STEPS)
            jobs.request(strata, request)
            (digest,) = worker.wait_for(request.job_id)["outputs"]
            with strata.blobs.open_seekable(digest) as handle, Image.open(handle) as image:
                sheet.paste(image.convert("RGB").resize((64 * SCALE, 64 * SCALE),
                                                        Image.Resampling.NEAREST),
                            (64 * SCALE * seed, 0))
        sheet.save(HERE / "prompts.png")

        final = run_demo(strata, say=print).final
        with strata.blobs.open_seekable(final) as handle, av.open(handle) as video:
            frames = [frame.to_image() for frame in video.decode(video=0)]
        frames[len(frames) // 2].save(HERE / "demo-frame.png")
    print(f"wrote {HERE / 'prompts.png'} and {HERE / 'demo-frame.png'}")


if __name__ == "__main__":
    main()
