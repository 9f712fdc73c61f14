"""The command line face of Strata (Typer + Rich): `strata …`.

Every command calls the application service in core; nothing here touches the database
or the blob store directly. Errors are mapped to messages and exit codes in one place
(`main`). Commands that touch no model never import torch or diffusers: the command
modules import them only inside the commands that run a model.

A command starts fast because only the module that defines it is imported: importing all
of api/cli/commands/ (and the core modules each one needs) and letting Typer build every
command cost more than the command itself. Which module defines which command, and the
one-line help of each for `strata --help`, is read from the modules' source text by
`command_index`, so a new module (a new layer's commands) still needs no edit here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rich.markup import escape

from strata.api.cli import commands
from strata.api.cli.app import app, err_console
from strata.api.cli.errors import exit_code
from strata.core.errors import StrataError

_PACKAGE = Path(commands.__file__).parent

# The forms the command modules register with (tests/api/cli/test_startup.py checks that
# this index and the app Typer builds from every module agree, name for name).
_COMMAND = re.compile(
    r'^@app\.command\((?:"(?P<name>[^"]+)")?\)\s*\ndef (?P<func>\w+)\(.*?\) -> [\w ]+:'
    r'\s*\n\s*(?P<doc>"""(?:[^"\\]|\\.|"(?!""))*""")?', re.M | re.S)
_GROUP = re.compile(r'^app\.add_typer\((?P<var>\w+), name="(?P<name>[^"]+)"\)', re.M)
_GROUP_HELP = r'^{var} = typer\.Typer\(\s*help=(?P<help>(?:\s*"(?:[^"\\]|\\.)*")+)'
_SIBLING = re.compile(r"^from strata\.api\.cli\.commands\.(?P<module>\w+) import", re.M)


@dataclass(frozen=True)
class Entry:
    """A top-level command or group: where it is defined and its help text."""

    name: str
    module: str
    help: str
    group: bool


@cache
def command_index() -> dict[str, Entry]:
    """Every top-level command and group in the order Typer lists them: commands before
    groups, each in the order the modules register them (a module's sibling imports
    first, as importing it runs them first)."""
    found: list[Entry] = []
    done: set[str] = set()

    def scan(module: str) -> None:
        if module in done:
            return
        done.add(module)
        source = (_PACKAGE / f"{module}.py").read_text(encoding="utf-8")
        for sibling in _SIBLING.finditer(source):
            scan(sibling["module"])
        for match in _COMMAND.finditer(source):
            name = match["name"] or match["func"].replace("_", "-")
            doc = _literal(match["doc"]) if match["doc"] else ""
            found.append(Entry(name, module, doc, group=False))
        for match in _GROUP.finditer(source):
            helped = re.search(_GROUP_HELP.format(var=match["var"]), source, re.M)
            text = _literal(f"({helped['help']})") if helped else ""
            found.append(Entry(match["name"], module, text, group=True))

    for path in sorted(_PACKAGE.glob("[!_]*.py")):
        scan(path.stem)
    return {e.name: e for e in sorted(found, key=lambda e: e.group)}


def _literal(source: str) -> str:
    return inspect.cleandoc(ast.literal_eval(source))


def _load_everything() -> None:
    for entry in command_index().values():
        importlib.import_module(f"{commands.__name__}.{entry.module}")


def _invoked(args: list[str]) -> str | None:
    """The command named on the line: the global options take no value, so the first
    word that is not an option."""
    return next((a for a in args if not a.startswith("-")), None)


def _run_listing() -> None:
    """`strata`, `strata --help`, `--version` or an unknown command: the app with each
    command standing in by its name and help, so that nothing behind them is imported."""
    import typer.core
    import typer.main

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    for entry in command_index().values():
        stand_in = typer.core.TyperGroup if entry.group else typer.core.TyperCommand
        group.add_command(stand_in(name=entry.name, help=entry.help))
    group()


def main() -> None:
    try:
        name = _invoked(sys.argv[1:])
        entry = command_index().get(name) if name else None
        if any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):
            _load_everything()  # shell completion reads every command's options
            app()
        elif entry is not None:
            importlib.import_module(f"{commands.__name__}.{entry.module}")
            app()
        else:
            _run_listing()
    except StrataError as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(exit_code(exc))


if __name__ == "__main__":
    main()
