"""Job commands: generate, select auto, iterate, diff, jobs, cancel, worker."""

from __future__ import annotations

import json
import re
import signal
import threading
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from strata.api.cli.app import app, console, err_console, open_strata, short
from strata.core.decisions import branches
from strata.core.errors import InvalidInput, JobError
from strata.core.layers import names as layer_names
from strata.core.ledger.event_types import JobRequest
from strata.core.runtime import jobs
from strata.core.service import Strata

Wait = Annotated[bool, typer.Option("--wait", help="run the job here and show its progress")]
SIZE = re.compile(r"^(\d+)x(\d+)$")


def run_inline(strata: Strata, job_id: str, layer: str) -> dict[str, Any]:
    """Run the job in this process (or wait for the worker that has it), with progress."""
    from strata.core.layers import build_executors
    from strata.core.runtime.worker import Worker

    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task: TaskID = progress.add_task(f"{layer} {job_id[:8]}", total=None)

        def on_progress(_job: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        worker = Worker(strata, build_executors((layer,)), on_progress=on_progress)
        row = worker.wait_for(job_id)
    if row["status"] == "failed":
        raise JobError(f"job {job_id} failed: {row['error_class']}: {row['error_message']}")
    return row


def submit(strata: Strata, request: JobRequest, layer: str, wait: bool) -> dict[str, Any]:
    jobs.request(strata, request)
    console.print(f"requested {layer} job [bold]{request.job_id}[/]")
    if not wait:
        console.print("a `strata worker` will run it; or use --wait to run it here")
        return {}
    row = run_inline(strata, request.job_id, layer)
    for digest in row["outputs"]:
        console.print(f"  → {short(digest)}")
    return row


@app.command()
def generate(
    prompt: str,
    negative: Annotated[str | None, typer.Option(help="negative prompt")] = None,
    n: Annotated[int, typer.Option("--n", help="how many candidates (seeds)")] = 4,
    seed: Annotated[int | None, typer.Option(help="first seed (default: random)")] = None,
    steps: Annotated[int, typer.Option(help="denoising steps")] = 20,
    cfg: Annotated[float, typer.Option(help="classifier-free guidance scale")] = 7.5,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT, multiples of 8")] = "64x64",
    scheduler: Annotated[str, typer.Option(help="ddim, euler, euler_a, dpmpp_2m, …")] = "ddim",
    model: Annotated[str, typer.Option(help="a registered model name")] = "tiny",
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps")] = None,
    branch: Annotated[str | None, typer.Option(help="default: the current branch")] = None,
    wait: Wait = False,
) -> None:
    """Request a batch of images from a prompt: one output per seed."""
    from strata.core.layers.generation import build_request

    match = SIZE.match(size)
    if match is None:
        raise InvalidInput(f"--size {size!r}: expected WIDTHxHEIGHT, e.g. 64x64")
    strata = open_strata()
    request = build_request(
        strata, prompt, model=model, n=n, seed=seed, negative_prompt=negative, steps=steps,
        cfg=cfg, width=int(match.group(1)), height=int(match.group(2)), scheduler=scheduler,
        branch=branch or branches.current(strata), device=device,
    )
    submit(strata, request, "generation", wait)


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
    from strata.core.layers.selection import SelectionRequested

    strata = open_strata()
    source_job, candidates = None, []
    if len(refs) == 1:
        try:
            row = jobs.get(strata, refs[0])
            source_job, candidates = row["job_id"], row["outputs"]
        except JobError:
            pass
    if not candidates:
        candidates = [strata.resolve_asset(ref) for ref in refs]
    request = SelectionRequested(job_id=jobs.new_job_id(), candidates=candidates,
                                 dedupe_distance=dedupe_distance, top=top,
                                 source_job=source_job)
    row = submit(strata, request, "selection", wait)
    if row:
        event = strata.ledger.read_stream(jobs.stream(request.job_id))[-1]
        show_selection(event.data)


def show_selection(data: dict[str, Any]) -> None:
    table = Table(box=None, header_style="bold")
    for column in ("rank", "asset", "score", "sharpness", "exposure", "contrast", "cluster"):
        table.add_column(column)
    ordered = sorted(data["scored"].items(),
                     key=lambda item: (item[1]["rank"] is None, item[1]["rank"] or 0, item[0]))
    for digest, facts in ordered:
        table.add_row(str(facts["rank"] or "-"), short(digest), f"{facts['score']:.3f}",
                      f"{facts['sharpness']:.1f}", f"{facts['exposure']:.2f}",
                      f"{facts['contrast']:.2f}",
                      "" if facts["cluster"] == digest else f"dup of {short(facts['cluster'])}")
    console.print(table)


@app.command()
def iterate(
    asset: Annotated[str, typer.Argument(help="the asset to iterate on")],
    set_: Annotated[list[str], typer.Option(
        "--set", help="key=value or key+=text, e.g. steps=40, 'prompt+=, golden hour'")] = [],  # noqa: B006
    seed: Annotated[str, typer.Option(help="keep: the asset's seed; new: a fresh one")]
    = "keep",
    wait: Wait = False,
) -> None:
    """Re-issue the request that produced ASSET with adjusted parameters."""
    from strata.core.decisions.iteration import iterate as reissue

    if seed not in ("keep", "new"):
        raise InvalidInput(f"--seed is keep or new, not {seed!r}")
    strata = open_strata()
    event = reissue(strata, asset, set_, seed, branch=branches.current(strata))  # type: ignore[arg-type]
    layer = event.type.split(".", 1)[0]
    console.print(f"iterating job {event.data['iterates'][:8]}: "
                  + ", ".join(f"{k} {v['from']!r} → {v['to']!r}"
                              for k, v in event.data["changes"].items()))
    console.print(f"requested {layer} job [bold]{event.data['job_id']}[/]")
    if wait:
        row = run_inline(strata, event.data["job_id"], layer)
        for digest in row["outputs"]:
            console.print(f"  → {short(digest)}")


@app.command()
def diff(a: str, b: str) -> None:
    """How the recipes of two assets differ."""
    from strata.core.provenance.recipe import diff as recipe_diff

    rows = recipe_diff(open_strata(), a, b)
    if not rows:
        console.print("the recipes are identical")
        return
    table = Table(box=None, header_style="bold")
    for column in ("parameter", a, b):
        table.add_column(column)
    for key, left, right in rows:
        table.add_row(key, repr(left), repr(right))
    console.print(table)


@app.command("jobs")
def list_jobs(
    status: Annotated[list[str], typer.Option(help="only these statuses")] = [],  # noqa: B006
    limit: int = 20,
) -> None:
    """The newest jobs and where they stand."""
    from strata.core.projections import views

    strata = open_strata()
    with strata.view() as conn:
        rows = views.jobs(conn, tuple(status), limit)
    table = Table(box=None, header_style="bold")
    for column in ("job", "layer", "status", "attempts", "outputs", "error"):
        table.add_column(column)
    for row in rows:
        outputs = len(json.loads(row["outputs"])) if row["outputs"] else 0
        table.add_row(row["job_id"][:12], row["layer"], row["status"], str(row["attempts"]),
                      str(outputs), (row["error_message"] or "")[:60])
    console.print(table)


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
    poll: Annotated[float, typer.Option(help="seconds between looks for work")] = 0.5,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, mps")] = None,
    until_idle: Annotated[bool, typer.Option(help="exit when no job is left")] = False,
) -> None:
    """Serve requests appended by anyone (CLI, HTTP, watchers) until interrupted."""
    from strata.core.layers import build_executors
    from strata.core.runtime.worker import Worker

    strata = open_strata()
    chosen = tuple(n.strip() for n in (layers or "").split(",") if n.strip()) or tuple(
        layer_names())
    runner = Worker(strata, build_executors(chosen, device), lease_seconds=lease,
                    poll_seconds=poll)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    err_console.print(f"worker {runner.name} serving {', '.join(chosen)}")
    done = runner.serve(stop, until_idle=until_idle)
    err_console.print(f"worker {runner.name} stopped after {done} job(s)")
