"""`strata migrate-store`: copy this store to a shared database (and bucket)."""

from __future__ import annotations

from typing import Annotated

import typer

from strata.api.cli.app import app, console, err_console, open_strata


@app.command("migrate-store")
def migrate_store(
    to: Annotated[str, typer.Option(
        "--to", help="the target database: postgresql+psycopg://user@host/database")],
    blobs: Annotated[str | None, typer.Option(
        "--blobs", help="the target blob store: s3://bucket/prefix or a folder "
                        "(default: the blobs stay where they are)")] = None,
) -> None:
    """Copy this store (events with their hashes unchanged, blobs, the models registry) to
    another database and blob store, verify the copy and rebuild its projections there.
    Interrupted, run it again: it continues where it stopped."""
    from strata.core.transfer import migrate_store as copy_store

    strata = open_strata()

    def progress(kind: str, count: int) -> None:
        if count % 500 == 0 or kind == "events":
            err_console.print(f"{kind}: {count} copied", highlight=False)

    report = copy_store(strata.store, to, blobs, progress=progress)
    say = console.print
    say(f"events: {report.events_copied} copied, {report.events_present} already there")
    say(f"blobs: {report.blobs_copied} copied, {report.blobs_present} already there")
    say(f"[green]verify OK[/]: chain intact, {report.blobs_verified} blobs re-hashed in "
        f"the target; projections rebuilt from {report.projections_rebuilt_from} events")
    say(f"target: {report.target}")
    for path in report.files_to_copy:
        say(f"note: {path} is not in the database; copy it to the machines that need it")
