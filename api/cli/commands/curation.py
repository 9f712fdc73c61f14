"""Human decisions: pick, reject, rate, review, final."""

from __future__ import annotations

from typing import Annotated

import typer

from strata.api.cli.app import app, console, open_strata, short
from strata.core.decisions import curation

Note = Annotated[str | None, typer.Option(help="why")]
Asset = Annotated[str, typer.Argument(help="an asset hash prefix")]


@app.command()
def pick(asset: Asset, note: Note = None) -> None:
    """Keep an asset (a human selection decision)."""
    event = curation.pick(open_strata(), asset, note)
    console.print(f"picked {short(event.data['digest'])}")


@app.command()
def reject(asset: Asset, note: Note = None) -> None:
    """Drop an asset (a human selection decision; nothing is deleted)."""
    event = curation.reject(open_strata(), asset, note)
    console.print(f"rejected {short(event.data['digest'])}")


@app.command()
def rate(
    asset: Asset,
    rating: Annotated[int, typer.Argument(help="1 (worst) to 5 (best)")],
    note: Note = None,
) -> None:
    """Rate an asset from 1 to 5."""
    event = curation.rate(open_strata(), asset, rating, note)
    console.print(f"rated {short(event.data['digest'])} {rating}/5")


@app.command()
def review(
    asset: Asset,
    verdict: Annotated[str, typer.Argument(help="approve, reject or changes")],
    note: Note = None,
) -> None:
    """Record a review verdict on an asset."""
    event = curation.review(open_strata(), asset, verdict, note)
    console.print(f"review of {short(event.data['digest'])}: {verdict}")


@app.command()
def final(asset: Asset, note: Note = None) -> None:
    """Mark an asset as a final output."""
    event = curation.mark_final(open_strata(), asset, note)
    console.print(f"final: {event.data['digest']}")
