"""Store commands: init, status, verify, rebuild."""

from __future__ import annotations

from typing import Annotated

import typer

from strata.api.cli.app import app, console, err_console, open_strata
from strata.core.config import Settings
from strata.core.store import Store


@app.command()
def init(
    tiny: Annotated[bool, typer.Option(
        "--tiny/--no-tiny", help="write and register the bundled tiny model (default: yes)",
    )] = True,
) -> None:
    """Create the store (or upgrade its schema) in STRATA_HOME / STRATA_DATABASE_URL."""
    from strata.core.service import Strata

    store = Store.open(Settings(), create=True)
    where = store.settings.database_url and store.engine.url.render_as_string(hide_password=True)
    console.print(f"[green]Strata store ready[/] at {where or store.settings.resolved_home}")
    if tiny:
        from strata.core.models import registry as models

        with console.status("writing the tiny model…"):
            event = models.write_tiny(Strata(store))
        console.print(f"model [bold]{event.data['name']}[/] registered: {event.data['digest']}")


@app.command()
def status() -> None:
    """What the store holds: events, projections and their checkpoints, jobs."""
    from strata.core.decisions import branches
    from strata.core.projections import views

    strata = open_strata()
    head = strata.ledger.head_position()
    with strata.view() as conn:
        counts = views.counts(conn)
        checkpoints = views.checkpoints(conn)
        running = views.jobs(conn, statuses=("requested", "running", "retrying"))
    console.print(f"store: {strata.store.settings.resolved_home}")
    console.print(f"events: {head}")
    for name, count in counts.items():
        console.print(f"{name}: {count}")
    console.print(f"open jobs: {len(running)}")
    console.print(f"current branch: {branches.current(strata) or '-'}")
    lagging = {n: p for n, p in checkpoints.items() if p < head}
    console.print("projections: " + ("up to date" if not lagging else f"behind: {lagging}"))


@app.command()
def verify(
    quick: Annotated[bool, typer.Option("--quick", help="skip re-hashing the blobs")] = False,
) -> None:
    """Recompute the hash chain from the first event and re-hash every blob."""
    from strata.core.provenance.verify import verify as run_verify

    strata = open_strata()
    report = run_verify(strata.ledger, strata.blobs, rehash=not quick)
    for chain_break in report.chain_breaks:
        err_console.print(f"[red]chain broken at position {chain_break.position}:[/] "
                          f"{chain_break.reason}")
    for digest, position in report.missing_blobs.items():
        err_console.print(f"[red]missing blob[/] {digest} (referenced at position {position})")
    for digest in report.corrupt_blobs:
        err_console.print(f"[red]corrupt blob[/] {digest}: its bytes no longer hash to it")
    checked = "" if quick else f", {report.blobs_checked} blobs re-hashed"
    stale = strata.blobs.stale_temporary_files()
    if stale:
        console.print(f"note: {len(stale)} temporary file(s) left by interrupted ingests in "
                      f"{stale[0].parent} (never part of the store; safe to delete)")
    if not report.ok:
        first = report.first_bad_position
        err_console.print(f"[red bold]verify FAILED[/]: {report.events} events{checked}"
                          + (f"; first bad position {first}" if first else ""))
        raise typer.Exit(1)
    console.print(f"[green]verify OK[/]: {report.events} events, chain intact{checked}")


@app.command()
def rebuild() -> None:
    """Drop every projection and replay the whole log."""
    strata = open_strata()
    count = strata.rebuild()
    console.print(f"rebuilt the projections from {count} events")
