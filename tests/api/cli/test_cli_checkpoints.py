"""`strata keys`, `strata checkpoint` and `strata verify --checkpoint` on the real command
line: the files they write, what they refuse, and their exit codes."""

from __future__ import annotations

import stat
from pathlib import Path

from strata.api.cli.errors import EXIT_CODES
from strata.core.config import Settings
from strata.core.errors import IntegrityError, InvalidInput, NotFound, StoreNotInitialised
from strata.core.provenance import keys
from tests.api.cli import test_cli
from tests.api.cli.test_cli import Cli, write_png

cli = test_cli.cli  # the fixture: an initialised store and its command line


def test_keys_checkpoint_and_verify_round_trip(
    cli: Cli, settings: Settings, tmp_path: Path
) -> None:
    home = settings.resolved_home
    made = cli("keys", "init", "--origin", "strata.example/studio").stdout
    private, public = keys.key_paths(home)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    published = public.read_text().strip()
    assert published in made.replace("\n", "")
    assert cli("keys", "show").stdout.strip() == published

    cli("add", str(write_png(tmp_path, "a.png", 1)))
    printed = cli("checkpoint").stdout  # to standard output, for `> file` or a ticket
    assert printed.startswith("strata.example/studio\n1\n")
    assert "\n\n— strata.example/studio " in printed
    kept = tmp_path / "kept.checkpoint"
    assert "written to" in cli("checkpoint", "--out", str(kept)).stdout
    cli("add", str(write_png(tmp_path, "b.png", 2)))

    result = cli("verify", "--checkpoint", str(kept), "--quick")
    assert "verify OK: 2 events, chain intact, extends 1 checkpoint(s)" in result.stdout

    # Anyone with the public key can check it, in a folder that is not the store's.
    elsewhere = tmp_path / "pub"
    elsewhere.write_text(published + "\n")
    assert cli("verify", "--checkpoint", str(kept), "--key", str(elsewhere)).returncode == 0


def test_what_keys_and_checkpoints_refuse(cli: Cli, tmp_path: Path) -> None:
    no_key = cli("checkpoint", ok=False)
    assert no_key.returncode == EXIT_CODES[NotFound]
    assert "strata keys init" in no_key.stderr

    cli("keys", "init")
    again = cli("keys", "init", ok=False)
    assert again.returncode == EXIT_CODES[InvalidInput]
    assert "already has a key" in again.stderr

    kept = tmp_path / "kept"
    cli("checkpoint", "--out", str(kept))
    before = kept.read_text()
    over = cli("checkpoint", "--out", str(kept), ok=False)
    assert over.returncode == EXIT_CODES[InvalidInput]
    assert kept.read_text() == before

    garbage = tmp_path / "garbage"
    garbage.write_text("not a checkpoint\n")
    refused = cli("verify", "--checkpoint", str(garbage), ok=False)
    assert refused.returncode == EXIT_CODES[InvalidInput]
    assert "not a signed note" in refused.stderr


def test_a_checkpoint_signed_by_another_key_fails_verify(cli: Cli, tmp_path: Path) -> None:
    cli("keys", "init", "--origin", "strata.example/studio")
    other = keys.Signer("strata.example/studio", bytes(32))  # same name, another key
    forged = tmp_path / "forged"
    forged.write_text(other.sign("strata.example/studio\n0\n" + "A" * 43 + "=\n"))

    result = cli("verify", "--checkpoint", str(forged), ok=False)
    assert result.returncode == EXIT_CODES[IntegrityError]
    assert f"{forged} is not signed by the key strata.example/studio+" in result.stderr
    assert f"{forged}: {forged}" not in result.stderr


def test_keys_belong_to_a_store(settings: Settings, tmp_path: Path) -> None:
    result = Cli(settings, tmp_path)("keys", "init", ok=False)  # no `strata init` yet
    assert result.returncode == EXIT_CODES[StoreNotInitialised]
    assert not keys.key_paths(settings.resolved_home)[0].exists()
