"""`strata demo`: one real piece of work on the shapes model through all seven layers.

Generate a batch → auto-select → pick and rate → iterate twice on a branch → roll back
the second iteration → inpaint a region of the head → composite it with the runner-up →
enhance (upscale, colour, sharpen) → Ken Burns motion → a synthesized bed and a spoken line
mixed under the video → review → mark the MP4 final. Everything goes through the same
service, executors and events as the individual commands; the demo only scripts the
order. Without espeak-ng the spoken line is left out, and the demo says so.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

from strata.core.decisions import branches, curation
from strata.core.decisions.iteration import iterate
from strata.core.errors import JobError
from strata.core.layers import build_executors, compositing, editing, enhancement, motion, sound
from strata.core.layers.generation import build_request
from strata.core.layers.selection import SelectionRequested
from strata.core.ledger.event_types import JobRequest
from strata.core.models import registry as models
from strata.core.models.shapes import NAME as SHAPES
from strata.core.projections import views
from strata.core.runtime import jobs
from strata.core.runtime.executor import Progress
from strata.core.runtime.worker import Worker
from strata.core.service import Strata

# The shapes model (core/models/shapes) draws what these say.
PROMPT = "a large yellow star on a blue background, centre"
ITERATED = "a large yellow star on a purple background, centre"
INPAINTED = "a small white circle"


@dataclass(frozen=True)
class DemoResult:
    branch: str
    final: str
    generation_job: str
    chosen: list[str]


def _free_branch_name(strata: Strata) -> str:
    with strata.view() as conn:
        taken = {row["name"] for row in views.branches(conn)}
    return next(name for n in range(1, 10_000)
                if (name := "demo" if n == 1 else f"demo-{n}") not in taken)


def run_demo(strata: Strata, say: Callable[[str], None],
             on_progress: Progress | None = None) -> DemoResult:
    with strata.view() as conn:
        registered = {row.name for row in models.all_models(conn)}
    if SHAPES not in registered:
        say("installing the bundled shapes model (nothing is downloaded)")
        models.install_shapes(strata)
    worker = Worker(strata, build_executors(), on_progress=on_progress)

    def run(job_id: str) -> dict:
        row = worker.wait_for(job_id)
        if row["status"] != "completed":
            raise JobError(f"demo job {job_id} {row['status']}: {row['error_message']}")
        return row

    name = _free_branch_name(strata)
    branches.create(strata, name)
    branches.checkout(strata, name)
    say(f"branch {name} created and checked out")

    request = build_request(strata, PROMPT, model=SHAPES, n=6, seed=42, steps=8,
                            branch=name)
    jobs.request(strata, request)
    batch = run(request.job_id)["outputs"]
    say(f"generated {len(batch)} candidates (seeds 42 to 47)")

    selection = SelectionRequested(job_id=jobs.new_job_id(), candidates=batch, top=3,
                                   source_job=request.job_id)
    jobs.request(strata, selection)
    run(selection.job_id)
    chosen = strata.ledger.read_stream(jobs.stream(selection.job_id))[-1].data["chosen"]
    say(f"auto-selected {len(chosen)} of {len(batch)} by quality score")
    best = chosen[0]
    curation.pick(strata, best, note="strongest composition")
    curation.rate(strata, best, 4)
    for dropped in (d for d in batch if d not in chosen):
        curation.reject(strata, dropped, note="below the auto-selection cut")

    first = iterate(strata, best, ["steps=20", f"prompt={ITERATED}"], branch=name)
    improved = run(first.data["job_id"])["outputs"][0]
    say("iteration 1: steps 8 → 20, a purple background")
    second = iterate(strata, improved, ["cfg=11"], branch=name)
    run(second.data["job_id"])
    say(f"iteration 2: cfg {first.data['cfg']:g} → 11")

    branches.rollback(strata, name, "~1", reason="cfg 11 overshoots; back to iteration 1")
    say(f"rolled {name} back one head (nothing removed)")
    with strata.view() as conn:
        head = views.branch(conn, name)["head"]  # type: ignore[index]

    def output_of(request: JobRequest) -> str:
        """Request a job with one output, run it here, and name its output."""
        jobs.request(strata, request)
        (output,) = run(request.job_id)["outputs"]
        return output

    inpainted = output_of(editing.build_request(
        strata, "inpaint", head, box=(16, 16, 32, 24), prompt=INPAINTED, model=SHAPES,
        steps=20, seed=7, branch=name))
    say("inpainted a white circle into a 32x24 region (pixels outside the mask untouched)")
    composed = output_of(compositing.build_request(
        strata, [inpainted, f"{chosen[1]}:32,32,0.5,0.8,screen"], branch=name))
    say("composited the runner-up over it (half size, screen, 80% opacity)")
    enhanced = output_of(enhancement.build_request(strata, composed, [
        {"op": "upscale", "factor": 2}, {"op": "auto-contrast"},
        {"op": "saturation", "factor": 1.2}, {"op": "sharpen", "radius": 2, "amount": 120},
    ], branch=name))
    say("enhanced: upscale 2x, auto-contrast, saturation 1.2, sharpen")
    video = output_of(motion.build_request(
        strata, [enhanced], duration=2.0, fps=12, zoom=1.2, pan=(0.1, 0.0), branch=name))
    say("Ken Burns: 2 s at 12 fps, zoom 1.2, pan right (H.264 MP4)")
    # The tracks are material for the video, not steps of the branch's main line.
    tracks = [output_of(sound.build_synth(strata, "pad", 2.0, seed=3))]
    if shutil.which(sound.ESPEAK):
        tracks.append(output_of(sound.build_voice(strata, "A yellow star.")))
        say("sound: a synthesized pad and a spoken line")
    else:
        say("sound: a synthesized pad (espeak-ng is not installed: no spoken line)")
    final = output_of(sound.build_add(strata, video, tracks, offset=[0.0, 0.3][:len(tracks)],
                                      fade_out=[0.5], gain_db=[-6.0], branch=name))
    say("mixed the sound under the video (AAC)")

    curation.review(strata, final, "approve", note="purple-background version approved")
    curation.mark_final(strata, final, note="demo final")
    say("reviewed, approved and marked final")
    return DemoResult(branch=name, final=final, generation_job=request.job_id, chosen=chosen)
