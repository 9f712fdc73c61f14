"""The command line face of Strata (Typer + Rich): `strata …`.

Every command calls the application service in core; nothing here touches the database
or the blob store directly. Errors are mapped to messages and exit codes in one place
(`main`). Commands that touch no model never import torch or diffusers: the command
modules import them only inside the commands that run a model.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from strata.api.cli.app import app, err_console
from strata.api.cli.commands import assets, branches, curation, demo, jobs, models, store
from strata.api.cli.errors import exit_code
from strata.core.errors import StrataError

# Importing a command module registers its commands on `app`; this names them all.
COMMAND_MODULES = (store, assets, models, jobs, curation, branches, demo)


def main() -> None:
    try:
        app()
    except StrataError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(exit_code(exc))
