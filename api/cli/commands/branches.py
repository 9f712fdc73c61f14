"""Branch commands: branch [create | log], checkout, rollback."""

from __future__ import annotations

from typing import Annotated

import typer

from strata.api.cli.app import Json, app, console, open_strata, print_json, print_rows, short
from strata.core.decisions import branches
from strata.core.projections import views

branch_app = typer.Typer(help="Named heads over the iterations of a piece of work.",
                         invoke_without_command=True)
app.add_typer(branch_app, name="branch")


@branch_app.callback()
def list_branches(ctx: typer.Context, as_json: Json = False) -> None:
    """List the branches (the current one is starred)."""
    if ctx.invoked_subcommand is not None:
        return
    strata = open_strata()
    current = branches.current(strata)
    with strata.view() as conn:
        rows = views.branches(conn)
    if as_json:
        print_json([{**row, "current": row["name"] == current} for row in rows])
        return
    print_rows(("", "branch", "head"), [("*" if row["name"] == current else " ", row["name"],
                                         short(row["head"])) for row in rows])


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
def branch_log(name: str, as_json: Json = False) -> None:
    """Every head the branch ever had, oldest first (rollbacks included)."""
    moves = branches.moves(open_strata(), name)
    if as_json:
        print_json(moves)
        return
    print_rows(("pos", "action", "head", "from", "when", "reason"), [
        (move["position"], move["action"], short(move["head"]), short(move["previous_head"]),
         move["recorded_at"][:19], move["reason"] or "") for move in moves])


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
    event = branches.rollback(open_strata(), branch, to, reason)
    console.print(f"{event.data['name']}: {short(event.data['previous_head'])} → "
                  f"{short(event.data['head'])}")
