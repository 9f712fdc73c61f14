"""What every command shares: the Typer app, the consoles, opening the store, and the
three ways a read command prints (a table for people, tab-separated lines when standard
output is not a terminal, JSON with --json)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from strata.core.service import Strata

app = typer.Typer(
    name="strata",
    help="Strata: an event-sourced ledger for generative-media pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

AsOf = Annotated[
    int | None, typer.Option("--as-of", help="show the state as it was at this log position")
]
Json = Annotated[bool, typer.Option(
    "--json", help="print JSON for scripts (shapes: docs/cli-json.md)")]

__all__ = ["AsOf", "Json", "app", "console", "err_console", "open_strata", "print_json",
           "print_rows", "short"]


def _version(value: bool) -> None:
    if value:
        from strata.core.config import strata_version

        print(f"strata {strata_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool | None, typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")]
    = None,
) -> None:
    """Strata: an event-sourced ledger for generative-media pipelines."""


# The core is imported when a command first needs it, not with this module: `strata
# --help` and `--version` need none of it, and every command module imports this one.
def open_strata() -> Strata:
    from strata.core.config import Settings
    from strata.core.service import Strata
    from strata.core.store import Store

    return Strata(Store.open(Settings()))


def short(digest: str | None) -> str:
    """The first 12 hex digits of a digest (core's `short`, imported on first use)."""
    from strata.core.ledger.event_types import short as core_short

    return core_short(digest)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, sort_keys=True) + "\n")


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table on a terminal; complete tab-separated lines (no header, nothing cut, like
    git's porcelain) when standard output is a pipe or a file."""
    if not console.is_terminal:
        for row in rows:
            sys.stdout.write("\t".join(_plain(cell) for cell in row) + "\n")
        return
    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(_plain(cell)) for cell in row))
    console.print(table)


def _plain(cell: Any) -> str:
    text = "" if cell is None else str(cell)
    return text.replace("\t", " ").replace("\n", " ")
