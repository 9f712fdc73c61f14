"""What every command shares: the Typer app, the consoles, opening the store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from strata.core.config import Settings
from strata.core.service import Strata
from strata.core.store import Store

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


def open_strata() -> Strata:
    return Strata(Store.open(Settings()))


def short(digest: str | None) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "-"
