"""`strata token create | list | revoke`: bearer tokens of the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from strata.api.cli.app import Json, app, console, err_console, open_strata, print_json, print_rows
from strata.core.auth import tokens

token_app = typer.Typer(help="Bearer tokens of the HTTP API (stored only as hashes).",
                        no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def create(
    scope: Annotated[list[str], typer.Option(
        help="read, write or admin (admin includes write, write includes read)")],
    name: Annotated[str | None, typer.Option(
        help="recorded as the actor of the events made with it")] = None,
) -> None:
    """Create a token and print it, once: only its hash is kept."""
    strata = open_strata()
    made, secret = tokens.create(strata.store.engine, scope, name)
    err_console.print(f"token {made} ({', '.join(scope)}); it is shown only now:")
    console.print(secret, soft_wrap=True)


@token_app.command("list")
def list_tokens(as_json: Json = False) -> None:
    """The tokens: names, scopes and when they were made (never the secrets)."""
    found = tokens.list_tokens(open_strata().store.engine)
    if as_json:
        print_json([{"name": t.name, "scopes": t.scopes, "created_at": t.created_at}
                    for t in found])
        return
    print_rows(("name", "scopes", "created"), [(t.name, ",".join(t.scopes), t.created_at[:19])
                                               for t in found])


@token_app.command("revoke")
def revoke(name: str) -> None:
    """Revoke a token: requests bearing it are refused from now on."""
    tokens.revoke(open_strata().store.engine, name)
    console.print(f"revoked token {name}")
