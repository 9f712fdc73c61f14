"""The command line face of Strata (Typer + Rich): `strata …`.

Every command calls the application service in core; nothing here touches the database
or the blob store directly. Errors are mapped to messages and exit codes in one place
(`main`). Commands that touch no model never import torch or diffusers: the command
modules import them only inside the commands that run a model.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from rich.markup import escape

from strata.api.cli import commands
from strata.api.cli.app import app, err_console
from strata.api.cli.errors import exit_code
from strata.core.errors import StrataError

# Importing a command module registers its commands on `app`: a new module in
# api/cli/commands/ (a new layer's commands) needs no edit here.
for _module in pkgutil.iter_modules(commands.__path__):
    importlib.import_module(f"{commands.__name__}.{_module.name}")


def main() -> None:
    try:
        app()
    except StrataError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(exit_code(exc))
