"""Signing commands: keys [init | show], checkpoint. (`verify --checkpoint` is in store.py.)"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from strata.api.cli.app import app, console
from strata.core.config import Settings

keys_app = typer.Typer(help="The store's Ed25519 key, which signs its checkpoints.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("init")
def init_keys(
    origin: Annotated[str | None, typer.Option(
        "--origin", help="the store's name in its checkpoints, a schema-less URL such as "
        "strata.example/studio (default: strata.local/<random>)")] = None,
) -> None:
    """Make the store's key pair: the private key (mode 0600) and the public key, in the
    store folder, never in the database; and beside them a local certificate authority and
    the signing certificate it issues, for Content Credentials (`strata export --c2pa`).
    Refuses to replace an existing key."""
    from strata.api.cli.app import open_strata
    from strata.core.interop.c2pa_credentials import credential_paths
    from strata.core.provenance.keys import init_keys as make_keys
    from strata.core.provenance.keys import key_paths

    # A key belongs to a store: refuse (as every command does) where there is none yet.
    home = open_strata().store.settings.resolved_home
    verifier = make_keys(home, origin)
    private, public = key_paths(home)
    console.print(f"origin: {verifier.name}")
    console.print(f"private key: {private} (keep it secret; back it up)")
    console.print(f"public key: {public}")
    console.print(verifier.encoded(), soft_wrap=True)
    ca, chain, signing_key = credential_paths(home)
    console.print(f"Content Credentials: certificate {chain}, its key {signing_key} (keep it "
                  f"secret); the local authority that issued it: {ca}")


@keys_app.command("show")
def show_key() -> None:
    """Print the store's public key, for whoever will check its checkpoints."""
    from strata.core.provenance.keys import store_verifier

    sys.stdout.write(store_verifier(Settings().resolved_home).encoded() + "\n")


@app.command()
def checkpoint(
    out: Annotated[Path | None, typer.Option(
        "--out", help="write it to this new file (default: standard output)")] = None,
) -> None:
    """Sign a checkpoint of the log's head (C2SP tlog-checkpoint format): keep it anywhere,
    and `strata verify --checkpoint FILE` later proves the log still extends it."""
    from strata.api.cli.app import open_strata
    from strata.core.provenance.checkpoints import checkpoint_store

    made, message = checkpoint_store(open_strata(), out)
    if out is None:
        sys.stdout.write(message)
        return
    console.print(f"{made.describe()} written to {out}")
