"""Read commands start fast: each imports only the command module it runs (the others and
the core modules behind them stay unloaded), checking the schema at start needs no
alembic, the tables are SQLAlchemy Core tables (no SQLModel, no ORM), and neither the
PostgreSQL dialect on a SQLite store nor the signing code's cryptography is imported, and
the event types recorded by the replay and the export are registered without importing the
replay, the export or the provenance code behind them, nor the search behind the find
indexes (issue "Faster where users wait", item 4). The speed itself is measured by
bench/startup.py, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from strata.api.cli import main as cli
from strata.core.service import Strata
from strata.core.storage import migrate
from tests.conftest import settings_env

# Run in a fresh interpreter per command: what a command imports is only visible there.
PROBE = """
import json, sys
sys.argv = ["strata", *json.loads(sys.argv[1])]
from strata.api.cli.main import main
try:
    main()
    code = 0
except SystemExit as exit:
    code = exit.code or 0
print("REPORT " + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


# Core modules a read command does not need although every process that opens a store
# decodes the events they record or reads the indexes they search.
UNNEEDED = ("strata.core.provenance.reproduce", "strata.core.provenance.ancestry",
            "strata.core.interop.export", "strata.core.find.search")


def _run(args: list[str], env: dict[str, str]) -> tuple[int, set[str], str]:
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], env=env,
                            capture_output=True, text=True, timeout=120)
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("REPORT ")]
    report = json.loads(line.removeprefix("REPORT "))
    return report["code"], set(report["modules"]), result.stdout + result.stderr


# The app as importing every command module builds it, in a fresh interpreter: in this
# process other tests may have imported command modules in another order already.
BUILT = """
import json
import typer.core, typer.main
from strata.api.cli import main as cli
cli._load_everything()
built = typer.main.get_command(cli.app)
print("BUILT " + json.dumps([[name, isinstance(built.commands[name], typer.core.TyperGroup),
                              built.commands[name].help]
                             for name in built.list_commands(None)]))
"""


def test_the_command_index_is_what_typer_builds_from_every_module() -> None:
    """`strata --help` lists commands from the modules' source text: the same names, in
    the same order, with the same help as the app built by importing them all."""
    result = subprocess.run([sys.executable, "-c", BUILT], capture_output=True, text=True,
                            timeout=120, check=True)
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("BUILT ")]
    built = json.loads(line.removeprefix("BUILT "))
    assert [[name, entry.group, entry.help] for name, entry in cli.command_index().items()] \
        == built


def test_the_head_read_from_the_version_files_is_alembics() -> None:
    assert migrate._head_from_sources() == migrate.head_revision()


@pytest.mark.parametrize("args", [
    ["log"], ["status"], ["show", "ASSET"], ["lineage", "ASSET"], ["--help"], ["--version"],
])
def test_a_read_command_imports_neither_alembic_nor_other_commands(
    strata: Strata, tmp_path: Path, args: list[str]
) -> None:
    picture = tmp_path / "a.png"
    picture.write_bytes(_png())
    (event,) = strata.add_files([picture], [], "external")
    digest = event.data["asset"]["digest"]
    args = [digest[7:19] if a == "ASSET" else a for a in args]
    code, modules, output = _run(args, settings_env(strata.store.settings))
    assert code == 0, output
    assert not {m for m in modules if m.split(".")[0] in ("alembic", "mako")}
    assert not {m for m in modules
                if m.split(".")[0] in ("sqlmodel", "cryptography") or m == "sqlalchemy.orm"
                or m.startswith("sqlalchemy.orm.")}
    assert not modules & set(UNNEEDED)
    if strata.store.engine.dialect.name == "sqlite":
        assert "sqlalchemy.dialects.postgresql" not in modules
    loaded = {m for m in modules if m.startswith("strata.api.cli.commands.")}
    listing = args[0].startswith("-")
    assert loaded == (set() if listing else
                      {f"strata.api.cli.commands.{cli.command_index()[args[0]].module}"})


def test_an_unknown_command_is_refused_with_the_full_listing_behind_it(strata: Strata) -> None:
    code, modules, output = _run(["lgo"], settings_env(strata.store.settings))
    assert code == 2
    assert "No such command 'lgo'" in output
    assert not {m for m in modules if m.startswith("strata.api.cli.commands.")}


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()
