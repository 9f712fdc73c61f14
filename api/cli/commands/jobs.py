"""Job commands: generate, select auto, iterate, diff, jobs, cancel, worker."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from strata.api.cli.app import (
    Json,
    app,
    console,
    err_console,
    open_strata,
    print_json,
    print_rows,
    short,
)
from strata.core.decisions import branches
from strata.core.errors import InvalidInput
from strata.core.layers import names as layer_names
from strata.core.ledger.event_types import JobRequest
from strata.core.runtime import jobs
from strata.core.runtime.executor import Progress as ProgressCallback
from strata.core.service import Strata

Wait = Annotated[bool, typer.Option("--wait", help="run the job here and show its progress")]
SIZE = re.compile(r"^(\d+)x(\d+)$")


@contextmanager
def progress_bar(label: str) -> Iterator[ProgressCallback]:
    """A progress bar fed by an executor's (job, done, total) reports."""
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def on_progress(job_id: str, done: int, total: int) -> None:
            progress.update(task, description=f"job {job_id[:8]}", completed=done, total=total)

        yield on_progress


def run_here(strata: Strata, job_id: str) -> dict[str, Any]:
    """Run the job in this process (or wait for the worker that has it), with progress."""
    from strata.core.runtime.worker import run_here as run

    with progress_bar(f"job {job_id[:8]}") as on_progress:
        row = run(strata, job_id, on_progress)
    for digest in row["outputs"]:
        console.print(f"  → {short(digest)}")
    return row


def submit(strata: Strata, request: JobRequest, wait: bool) -> dict[str, Any] | None:
    event = jobs.request(strata, request)
    console.print(f"requested {event.type.split('.', 1)[0]} job [bold]{request.job_id}[/]")
    if not wait:
        console.print("a `strata worker` will run it; or use --wait to run it here")
        return None
    return run_here(strata, request.job_id)


@app.command()
def generate(
    prompt: str,
    negative: Annotated[str | None, typer.Option(help="negative prompt")] = None,
    n: Annotated[int | None, typer.Option(
        "--n", help="how many candidates (seeds); default 4 pictures or 1 video")] = None,
    seed: Annotated[int | None, typer.Option(help="first seed (default: random)")] = None,
    steps: Annotated[int, typer.Option(help="denoising steps")] = 20,
    cfg: Annotated[float | None, typer.Option(
        help="classifier-free guidance scale (default: the model's recommended one, "
             "else 7.5)")] = None,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT, multiples of 8")] = "64x64",
    scheduler: Annotated[str, typer.Option(help="ddim, euler, euler_a, dpmpp_2m, …")] = "ddim",
    model: Annotated[str | None, typer.Option(
        help="a registered model name (default: shapes, or STRATA_DEFAULT_MODEL)")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps")] = None,
    branch: Annotated[str | None, typer.Option(help="default: the current branch")] = None,
    video: Annotated[bool, typer.Option(
        "--video", help="a clip per seed (AnimateDiff over the model), as MP4")] = False,
    frames: Annotated[int | None, typer.Option(help="frames per clip (--video; default 16)")]
    = None,
    fps: Annotated[int | None, typer.Option(help="frames per second (--video; default 8)")]
    = None,
    motion_adapter: Annotated[str | None, typer.Option(
        help="a registered motion adapter (--video; default tiny-motion)")] = None,
    wait: Wait = False,
) -> None:
    """Request a batch of images (or, with --video, clips) from a prompt: one per seed."""
    from strata.core.layers.generation import DEFAULT_MOTION_ADAPTER, build_request

    given = [name for name, value in (("--frames", frames), ("--fps", fps),
                                      ("--motion-adapter", motion_adapter)) if value is not None]
    if given and not video:
        raise InvalidInput(f"{', '.join(given)} only apply to clips: add --video")
    match = SIZE.match(size)
    if match is None:
        raise InvalidInput(f"--size {size!r}: expected WIDTHxHEIGHT, e.g. 64x64")
    strata = open_strata()
    request = build_request(
        strata, prompt, model=model, n=n if n is not None else 1 if video else 4, seed=seed,
        negative_prompt=negative, steps=steps, cfg=cfg, width=int(match.group(1)),
        height=int(match.group(2)), scheduler=scheduler,
        branch=branches.resolve(strata, branch), device=device, video=video,
        frames=16 if frames is None else frames, fps=8 if fps is None else fps,
        motion_adapter=motion_adapter or DEFAULT_MOTION_ADAPTER,
    )
    for warning in request.prompt_window_warnings():
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    submit(strata, request, wait)


select_app = typer.Typer(help="Automatic curation.", no_args_is_help=True)
app.add_typer(select_app, name="select")


@select_app.command("auto")
def select_auto(
    refs: Annotated[list[str], typer.Argument(help="a job id, or asset hash prefixes")],
    dedupe_distance: Annotated[int, typer.Option(help="max phash bits apart for duplicates")]
    = 6,
    top: Annotated[int | None, typer.Option(help="keep at most this many")] = None,
    wait: Wait = True,
) -> None:
    """Drop near-duplicates and rank the rest by the documented quality score."""
    from strata.core.layers import selection

    strata = open_strata()
    request = selection.build_request(strata, refs, dedupe_distance, top)
    if submit(strata, request, wait) is None:
        return
    decided = selection.result(strata, request.job_id)
    ordered = sorted(decided.scored.items(),
                     key=lambda item: (item[1].rank is None, item[1].rank or 0, item[0]))
    print_rows(("rank", "asset", "score", "sharpness", "exposure", "contrast", "cluster"), [
        (facts.rank or "-", short(digest), f"{facts.score:.3f}", f"{facts.sharpness:.1f}",
         f"{facts.exposure:.2f}", f"{facts.contrast:.2f}",
         "" if facts.cluster == digest else f"dup of {short(facts.cluster)}")
        for digest, facts in ordered])


@app.command()
def iterate(
    asset: Annotated[str, typer.Argument(help="the asset to iterate on")],
    set_: Annotated[list[str], typer.Option(
        "--set", help="key=value or key+=text, e.g. steps=40, 'prompt+=, golden hour'")] = [],  # noqa: B006
    seed: Annotated[str, typer.Option(help="keep: the asset's seed; new: a fresh one")]
    = "keep",
    branch: Annotated[str | None, typer.Option(
        help="default: the original job's branch, else the current one")] = None,
    model: Annotated[str | None, typer.Option(
        help="for an imported file: the registered model to re-make it on (default: the "
             "default model)")] = None,
    wait: Wait = False,
) -> None:
    """Re-issue the request that produced ASSET with adjusted parameters (for an imported
    file, the recipe read from it, re-made as a Strata generation)."""
    from strata.core.decisions.iteration import iterate as reissue

    if seed not in ("keep", "new"):
        raise InvalidInput(f"--seed is keep or new, not {seed!r}")
    strata = open_strata()
    event = reissue(strata, asset, set_, seed, branch=branch, model=model)  # type: ignore[arg-type]
    iterated = event.data["iterates"]
    what = (f"job {iterated[:8]}" if iterated else
            f"the recipe read from {short(event.data['parent'])} (not verified)")
    console.print(f"iterating {what}: " + ", ".join(
        f"{k} {v['from']!r} → {v['to']!r}" for k, v in event.data["changes"].items()))
    console.print(f"requested {event.type.split('.', 1)[0]} job [bold]{event.data['job_id']}[/]")
    if wait:
        run_here(strata, event.data["job_id"])


@app.command()
def diff(a: str, b: str, as_json: Json = False) -> None:
    """How the recipes of two assets differ."""
    from strata.core.provenance.recipe import diff as recipe_diff

    rows = recipe_diff(open_strata(), a, b)
    if as_json:
        print_json([{"parameter": key, "a": left, "b": right} for key, left, right in rows])
        return
    if not rows:
        console.print("the recipes are identical")
        return
    print_rows(("parameter", a, b), [(key, repr(left), repr(right)) for key, left, right in rows])


@app.command("jobs")
def list_jobs(
    status: Annotated[list[str], typer.Option(help="only these statuses")] = [],  # noqa: B006
    limit: Annotated[int, typer.Option(help="how many of the newest jobs (1 or more)")] = 20,
    as_json: Json = False,
) -> None:
    """The newest jobs and where they stand (abandoned: its worker stopped heartbeating)."""
    from strata.core.projections import views

    if limit < 1:
        raise InvalidInput(f"--limit must be 1 or more, not {limit}")
    strata = open_strata()
    with strata.view() as conn:
        rows = views.jobs(conn, tuple(status), limit)
    if as_json:
        print_json(rows)
        return
    print_rows(("job", "layer", "status", "attempts", "outputs", "note"), [
        (row["job_id"][:12], row["layer"],
         "abandoned" if row["abandoned_since"] else row["status"], row["attempts"],
         len(row["outputs"]), note(row)) for row in rows])


def note(row: dict[str, Any]) -> str:
    if row["abandoned_since"]:
        return (f"worker {row['worker']} stopped heartbeating ({row['abandoned_since']}); "
                f"`strata worker` takes it over, `strata cancel {row['job_id'][:12]}` drops it")
    return (row["error_message"] or "")[:100]


@app.command()
def cancel(job: str, reason: Annotated[str | None, typer.Option(help="why")] = None) -> None:
    """Cancel a job; a worker running it stops at its next step."""
    event = jobs.cancel(open_strata(), job, reason)
    console.print(f"cancelled job {event.data['job_id']}")


@app.command()
def worker(
    layers: Annotated[str | None, typer.Option(
        help="comma-separated layers to serve; default: every registered layer "
             f"({', '.join(layer_names())})")] = None,
    lease: Annotated[float, typer.Option(help="lease seconds (heartbeats every third)")] = 30.0,
    poll: Annotated[float, typer.Option(
        help="seconds between looks for work that no event announces (retries due, expired "
             "leases); new requests wake the worker at once")] = 2.0,
    grace: Annotated[float, typer.Option(
        help="seconds a running job has to finish after SIGTERM or Ctrl-C before it is "
             "handed back to another worker")] = 60.0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps")] = None,
    until_idle: Annotated[bool, typer.Option(help="exit when no job is left")] = False,
) -> None:
    """Serve requests appended by anyone (CLI, HTTP, watchers) until interrupted."""
    from strata.core.layers import build_executors
    from strata.core.runtime.worker import Worker

    strata = open_strata()
    chosen = [name.strip() for name in (layers or "").split(",") if name.strip()]
    executors = build_executors(chosen or None, device)
    runner = Worker(strata, executors, lease_seconds=lease, poll_seconds=poll)
    err_console.print(f"worker {runner.name} serving {', '.join(executors)}")
    done = runner.serve_until_signalled(grace, until_idle=until_idle)
    err_console.print(f"worker {runner.name} stopped after {done} job(s)")
