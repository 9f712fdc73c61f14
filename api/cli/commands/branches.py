"""Branch commands: branch [create | log], checkout, rollback."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from strata.api.cli.app import app, console, open_strata, short
from strata.core.decisions import branches
from strata.core.errors import InvalidInput
from strata.core.projections import views

branch_app = typer.Typer(help="Named heads over the iterations of a piece of work.",
                         invoke_without_command=True)
app.add_typer(branch_app, name="branch")


@branch_app.callback()
def list_branches(ctx: typer.Context) -> None:
    """List the branches (the current one is starred)."""
    if ctx.invoked_subcommand is not None:
        return
    strata = open_strata()
    current = branches.current(strata)
    with strata.view() as conn:
        rows = views.branches(conn)
    for row in rows:
        star = "*" if row["name"] == current else " "
        console.print(f"{star} {row['name']:<24} {short(row['head'])}")


@branch_app.command("create")
def create_branch(
    name: str,
    from_: Annotated[str | None, typer.Option("--from", help="the asset it starts at")] = None,
) -> None:
    """Create a branch, optionally starting at an asset."""
    event = branches.create(open_strata(), name, from_)
    console.print(f"branch {name} created at {short(event.data['head'])}")


@branch_app.command("advance")
def advance_branch(
    name: str,
    asset: Annotated[str, typer.Argument(help="the new head, e.g. the candidate you picked")],
) -> None:
    """Move a branch's head forward to an asset (recorded as branch.advanced)."""
    strata = open_strata()
    event = branches.advance(strata, name, strata.resolve_asset(asset))
    console.print(f"{name}: {short(event.data['previous_head'])} → {short(event.data['head'])}")


@branch_app.command("log")
def branch_log(name: str) -> None:
    """Every head the branch ever had, oldest first (rollbacks included)."""
    strata = open_strata()
    with strata.view() as conn:
        if views.branch(conn, name) is None:
            raise InvalidInput(f"no branch named {name!r}")
        moves = views.branch_moves(conn, name)
    table = Table(box=None, header_style="bold")
    for column in ("pos", "action", "head", "from", "when", "reason"):
        table.add_column(column)
    for move in moves:
        table.add_row(str(move["position"]), move["action"], short(move["head"]),
                      short(move["previous_head"]), move["recorded_at"][:19],
                      move["reason"] or "")
    console.print(table)


@app.command()
def checkout(name: str) -> None:
    """Make a branch current: new requests are made on it and advance its head."""
    branches.checkout(open_strata(), name)
    console.print(f"on branch {name}")


@app.command()
def rollback(
    branch: Annotated[str | None, typer.Argument(help="default: the current branch")] = None,
    to: Annotated[str, typer.Option("--to", help="an earlier head (asset), or ~N heads back")]
    = "~1",
    reason: Annotated[str | None, typer.Option(help="why")] = None,
) -> None:
    """Point a branch back at an earlier head; nothing is removed."""
    strata = open_strata()
    name = branch or branches.current(strata)
    if name is None:
        raise InvalidInput("no branch given and none is checked out")
    event = branches.rollback(strata, name, to, reason)
    console.print(f"{name}: {short(event.data['previous_head'])} → {short(event.data['head'])}")
