"""Store commands: init, status, verify, rebuild."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from strata.api.cli.app import Json, app, console, err_console, open_strata, print_json
from strata.core.config import Settings
from strata.core.store import Store


@app.command()
def init(
    tiny: Annotated[bool, typer.Option(
        "--tiny/--no-tiny", help="write and register the bundled models: tiny (random "
        "weights, the fastest) and shapes (trained on a world of flat shapes) (default: yes)",
    )] = True,
) -> None:
    """Create the store (or upgrade its schema) in STRATA_HOME / STRATA_DATABASE_URL."""
    from strata.core.service import Strata

    store = Store.open(Settings(), create=True)
    where = store.settings.database_url and store.engine.url.render_as_string(hide_password=True)
    console.print(f"[green]Strata store ready[/] at {where or store.settings.resolved_home}")
    if tiny:
        from strata.core.models import registry as models

        with console.status("writing the bundled models…"):
            strata = Strata(store)
            events = [models.write_tiny(strata), models.install_shapes(strata)]
        for event in events:
            console.print(f"model [bold]{event.data['name']}[/] registered: "
                          f"{event.data['digest']}")


@app.command()
def status(as_json: Json = False) -> None:
    """What the store holds: events, projections and their checkpoints, jobs."""
    from strata.core.status import store_status

    report = store_status(open_strata())
    if as_json:
        print_json(report.as_json())
        return
    state = report.projections
    say = console.print
    say(f"store: {report.location}")
    say(f"events: {report.head}")
    for name, count in report.rows.items():
        say(f"{name}: {count}")
    abandoned = report.abandoned_jobs
    say(f"open jobs: {len(report.open_jobs)}"
        + (f" ({len(abandoned)} abandoned by their worker)" if abandoned else ""))
    for job in abandoned:
        say(f"  abandoned: {job['layer']} job {job['job_id']} (attempt {job['attempts']}, "
            f"since {job['abandoned_since']}): run `strata worker` to take it over, or "
            f"`strata cancel {job['job_id'][:12]}`")
    say(f"current branch: {report.current_branch or '-'}")
    if state.problem:
        err_console.print(f"[red]projections:[/] {escape(state.problem)}")
    else:
        say("projections: " + ("up to date" if not state.lagging
                               else f"behind: {state.lagging}"))


@app.command()
def verify(
    quick: Annotated[bool, typer.Option("--quick", help="skip re-hashing the blobs")] = False,
    checkpoint: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", help="a signed checkpoint the log must still extend (repeatable)",
    )] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", help="the public key that signed the checkpoints (default: the store's)",
    )] = None,
) -> None:
    """Recompute the hash chain from the first event and re-hash every blob; with
    --checkpoint, prove that nothing was removed or replaced since each checkpoint."""
    from strata.core.provenance.verify import verify_store

    strata = open_strata()
    report = verify_store(strata, rehash=not quick, checkpoint_files=checkpoint or (),
                          key_file=key)
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    for problem in report.problems():
        err_console.print(f"[red]{escape(problem)}[/]")
    stale = strata.blobs.stale_temporary_files()
    if stale:
        console.print(f"note: {len(stale)} temporary file(s) left by interrupted ingests in "
                      f"{stale[0].parent} (never part of the store; safe to delete)")
    report.raise_if_failed()
    checked = "" if quick else f", {report.blobs_checked} blobs re-hashed"
    held = f", extends {len(report.checkpoints)} checkpoint(s)" if report.checkpoints else ""
    console.print(f"[green]verify OK[/]: {report.events} events, chain intact{checked}{held}")


@app.command()
def rebuild() -> None:
    """Drop every projection and replay the whole log."""
    strata = open_strata()
    count = strata.rebuild()
    console.print(f"rebuilt the projections from {count} events")
