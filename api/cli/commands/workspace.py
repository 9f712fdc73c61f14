"""Workspace commands: workspace checkout ASSET… DIR, workspace watch DIR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strata.api.cli.app import app, err_console, open_strata, print_rows, short
from strata.api.cli.commands.inbox import Settle, print_notice

workspace_app = typer.Typer(
    help="A folder of checked-out assets; each save by an outside tool is an editing step.",
    no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")


@workspace_app.command("checkout")
def checkout(
    items: Annotated[list[str], typer.Argument(help="asset hash prefixes, then the folder",
                                               metavar="ASSET... DIR")],
    branch: Annotated[str | None, typer.Option(
        help="the branch the edits advance (default: the checked-out branch, for an asset "
             "that is its head)")] = None,
) -> None:
    """Write assets into a folder, with a manifest of which asset each file is."""
    from strata.core.errors import InvalidInput
    from strata.watchers.workspace import checkout as write_out

    if len(items) < 2:
        raise InvalidInput("give one or more assets and then the folder: "
                           "strata workspace checkout ASSET... DIR")
    *refs, folder = items
    entries = write_out(open_strata(), refs, Path(folder), branch)
    print_rows(("file", "asset", "branch"), [
        (name, short(entry.asset), entry.branch or "") for name, entry in entries.items()])


@workspace_app.command("watch")
def watch(
    folder: Annotated[Path, typer.Argument(help="the workspace folder")],
    settle: Settle = 0.3,
) -> None:
    """Record every saved change to a checked-out file as an editing step (operation
    `external`), and import new files, until Ctrl-C or SIGTERM."""
    from strata.watchers.settle import Timing, until_signalled
    from strata.watchers.workspace import Workspace

    workspace = Workspace(open_strata(), folder, print_notice, timing=Timing(interval=settle))
    err_console.print(f"watching {folder}; Ctrl-C stops", markup=False)
    until_signalled(workspace.run)
    err_console.print("stopped", markup=False)
