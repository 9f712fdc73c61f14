"""Inbox command: inbox watch DIR (and what the watch commands share: the settle option
and one printed line per notice)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from strata.api.cli.app import app, err_console, open_strata, short

if TYPE_CHECKING:
    from strata.watchers.files import Notice

Settle = Annotated[float, typer.Option(
    "--settle", min=0.01, help="seconds a file's size and time must stay unchanged when "
                               "no close is reported")]


def print_notice(notice: Notice) -> None:
    """One line per thing done: what, the asset, the file, and why when refused."""
    if notice.kind in ("refused", "skipped"):
        err_console.print(f"{notice.kind}\t{notice.path}\t{notice.message}", markup=False)
        return
    sys.stdout.write("\t".join((notice.kind, short(notice.digest), str(notice.path),
                                notice.message)).rstrip("\t") + "\n")
    sys.stdout.flush()


inbox_app = typer.Typer(help="A folder whose new image, video and audio files become assets.",
                        no_args_is_help=True)
app.add_typer(inbox_app, name="inbox")


@inbox_app.command("watch")
def watch(
    folder: Annotated[Path, typer.Argument(help="the inbox folder")],
    move_to: Annotated[Path | None, typer.Option(
        "--move-to", help="move each imported file into this folder")] = None,
    settle: Settle = 0.3,
) -> None:
    """Import every image, video or audio file that lands in FOLDER (and those already
    there), until Ctrl-C or SIGTERM. Each file is imported once its writer is done; a
    corrupt file is reported and left in place."""
    from strata.watchers.inbox import Inbox
    from strata.watchers.settle import Timing, until_signalled

    inbox = Inbox(open_strata(), folder, print_notice, move_to=move_to,
                  timing=Timing(interval=settle))
    err_console.print(f"watching {folder}; Ctrl-C stops", markup=False)
    until_signalled(inbox.run)
    err_console.print("stopped", markup=False)
