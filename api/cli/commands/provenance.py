"""Provenance commands: provenance (the whole ancestry, in several formats) and audit."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from strata.api.cli.app import AsOf, Json, app, open_strata, print_json, print_rows
from strata.core.provenance.report import FORMATS


@app.command()
def provenance(
    ref: Annotated[str, typer.Argument(help="an asset hash prefix")],
    fmt: Annotated[str, typer.Option(
        "--format", help=f"one of: {', '.join(FORMATS)} (json: docs/provenance.schema.json)")]
    = "tree",
    as_of: AsOf = None,
) -> None:
    """The whole ancestry of an asset: every step that made it (parameters, seeds, model
    digests, versions, device, executor, who, when, inputs with roles) and every decision
    on the way (selections with the candidates that lost, reviews, branch moves)."""
    from strata.core.provenance.report import render

    text = render(open_strata(), ref, fmt, as_of)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
def audit(
    ref: Annotated[str, typer.Argument(help="an asset hash prefix")],
    as_of: AsOf = None,
    as_json: Json = False,
) -> None:
    """Every event that ever touched an asset or its ancestry, in log order, with who
    recorded it and when."""
    from strata.core.provenance.audit import audit as read_audit

    found = read_audit(open_strata(), ref, as_of)
    if as_json:
        print_json(found.to_json())
        return
    print_rows(("pos", "when", "type", "actor", "worker", "summary"), [
        (e.position, e.time[:19], e.type, e.actor, e.worker or "", e.summary)
        for e in found.events])
