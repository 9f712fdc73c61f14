"""Tamper evidence, shown: an attacker with database and folder access alters the record,
and `strata verify` (run as a user would, as a child process) names the exact position or
blob and exits with the integrity code.

The append-only triggers stop mistakes, not someone who can drop them: each attack drops
(SQLite) or disables (PostgreSQL) them first, as such an attacker would. Deleting the
newest events leaves a chain that holds; only a checkpoint kept outside the store names
it once the attacker has also wound back the projections' record of what they saw.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from strata.api.cli.errors import EXIT_CODES
from strata.core.errors import IntegrityError
from strata.core.ledger.canonical import canonical_json
from strata.core.ledger.log import chain_hash
from strata.core.provenance import keys
from strata.core.provenance.checkpoints import checkpoint_store
from strata.core.service import Strata
from strata.core.storage.local import LocalBlobStore
from tests.conftest import settings_env
from tests.helpers import png_bytes

EVENTS = 6
INTEGRITY = EXIT_CODES[IntegrityError]


@pytest.fixture
def recorded(strata: Strata, tmp_path: Path) -> tuple[Strata, Path, list[str]]:
    """Six imported images (positions 1 to 6, one event each), the store's key, and a
    checkpoint of the log's head kept outside the store."""
    digests = []
    for seed in range(EVENTS):
        image = tmp_path / f"image-{seed}.png"
        image.write_bytes(png_bytes(seed))
        digests.append(strata.add_file(image).data["asset"]["digest"])
    keys.init_keys(strata.store.settings.resolved_home, "strata.example/tamper")
    kept = tmp_path / "kept" / "head.checkpoint"
    kept.parent.mkdir()
    checkpoint_store(strata, kept)
    return strata, kept, digests


def verify(strata: Strata, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from strata.api.cli.main import main; main()", "verify",
         *args],
        env={**settings_env(strata.store.settings), "COLUMNS": "300"},
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def attacker(recorded: tuple[Strata, Path, list[str]]) -> Iterator[Connection]:
    """A transaction on the store's database with the append-only triggers out of the way."""
    strata = recorded[0]
    with strata.store.engine.connect() as conn:
        if strata.store.engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER events_refuse_update"))
            conn.execute(text("DROP TRIGGER events_refuse_delete"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_refuse_change"))
        yield conn


def row(conn: Connection, position: int) -> dict:
    found = conn.execute(text("SELECT * FROM events WHERE position = :p"), {"p": position})
    return dict(found.mappings().one())


def test_an_untouched_store_verifies_against_its_checkpoint(
    recorded: tuple[Strata, Path, list[str]]
) -> None:
    strata, kept, _ = recorded
    result = verify(strata, "--checkpoint", str(kept))
    assert result.returncode == 0, result.stderr
    assert "extends 1 checkpoint" in result.stdout


def test_a_rewritten_event_is_named(
    recorded: tuple[Strata, Path, list[str]], attacker: Connection
) -> None:
    strata, kept, _ = recorded
    data = row(attacker, 3)["data"].replace('"image-2.png"', '"approved-by-client.png"')
    attacker.execute(text("UPDATE events SET data = :d WHERE position = 3"), {"d": data})
    attacker.commit()

    result = verify(strata, "--checkpoint", str(kept), "--quick")
    assert result.returncode == INTEGRITY
    assert "chain broken at position 3: hash does not match the event's contents" in (
        result.stderr)
    assert "first bad position 3" in result.stderr


def test_deleting_the_newest_events_is_named_by_the_checkpoint(
    recorded: tuple[Strata, Path, list[str]], attacker: Connection
) -> None:
    strata, kept, _ = recorded
    attacker.execute(text("DELETE FROM events WHERE position > 4"))
    # A careful attacker also winds back what the projections had seen of the log.
    attacker.execute(text("UPDATE projection_checkpoints SET position = 4 WHERE position > 4"))
    attacker.commit()

    # What is left is a sound chain: without the checkpoint, nothing is wrong with it.
    home = strata.store.settings.resolved_home
    (home / "checkpoint.newest").unlink()  # nor has this store seen a checkpoint
    assert verify(strata, "--quick").returncode == 0

    result = verify(strata, "--checkpoint", str(kept), "--quick")
    assert result.returncode == INTEGRITY
    assert (f"the log was shortened: checkpoint strata.example/tamper at position {EVENTS}"
            in result.stderr)
    assert f"the log now ends at position 4; positions 5 to {EVENTS} were deleted" in (
        result.stderr)


def test_the_newest_checkpoint_seen_warns_of_a_shortened_log(
    recorded: tuple[Strata, Path, list[str]], attacker: Connection
) -> None:
    strata, _, _ = recorded
    attacker.execute(text("DELETE FROM events WHERE position > 4"))
    attacker.execute(text("UPDATE projection_checkpoints SET position = 4 WHERE position > 4"))
    attacker.commit()

    result = verify(strata, "--quick")
    # A warning, not a failure: restoring an older backup on purpose does the same.
    assert result.returncode == 0
    assert "warning:" in result.stderr
    assert f"positions 5 to {EVENTS} were deleted" in result.stderr


def test_a_deleted_and_renumbered_event_is_named(
    recorded: tuple[Strata, Path, list[str]], attacker: Connection
) -> None:
    strata, kept, _ = recorded
    attacker.execute(text("DELETE FROM events WHERE position = 3"))
    for position in range(4, EVENTS + 1):  # one at a time: positions are unique
        attacker.execute(text("UPDATE events SET position = :to WHERE position = :p"),
                         {"to": position - 1, "p": position})
    attacker.execute(text("UPDATE projection_checkpoints SET position = :p"),
                     {"p": EVENTS - 1})
    attacker.commit()

    result = verify(strata, "--checkpoint", str(kept), "--quick")
    assert result.returncode == INTEGRITY
    assert "chain broken at position 3: prev_hash does not match the previous event" in (
        result.stderr)
    assert "the log was rewritten at position 3 and is shorter than checkpoint" in (
        result.stderr)


def test_two_swapped_events_are_named(
    recorded: tuple[Strata, Path, list[str]], attacker: Connection
) -> None:
    strata, kept, _ = recorded
    for source, target in ((2, -1), (5, 2), (-1, 5)):
        attacker.execute(text("UPDATE events SET position = :to WHERE position = :p"),
                         {"to": target, "p": source})
    attacker.commit()

    result = verify(strata, "--checkpoint", str(kept), "--quick")
    assert result.returncode == INTEGRITY
    assert "chain broken at position 2: prev_hash does not match the previous event" in (
        result.stderr)
    # Every position the swap moved is named.
    assert "chain broken at position 5:" in result.stderr


def test_a_forked_history_is_named_by_the_checkpoint(
    recorded: tuple[Strata, Path, list[str]], attacker: Connection
) -> None:
    """The attacker rewrites event 4 and recomputes every hash after it: the chain holds,
    and only the checkpoint shows that this is not the history it attested."""
    strata, kept, _ = recorded
    earlier = [kept.parent / f"at-{position}.checkpoint" for position in (2, 3)]
    for position, path in zip((2, 3), earlier, strict=True):
        path.write_text(_checkpoint_at(strata, position), encoding="utf-8")
    prev_hash = row(attacker, 3)["hash"]
    for position in range(4, EVENTS + 1):
        event = strata.ledger.get(row(attacker, position)["event_id"])
        assert event is not None
        if position == 4:
            source = {**event.data["source"], "name": "forged.png"}
            event = event._replace(data={**event.data, "source": source})
        event = event._replace(prev_hash=prev_hash)
        prev_hash = chain_hash(prev_hash, event)
        attacker.execute(
            text("UPDATE events SET data = :d, prev_hash = :ph, hash = :h WHERE position = :p"),
            {"d": canonical_json(event.data), "ph": event.prev_hash, "h": prev_hash,
             "p": position})
    attacker.commit()

    assert verify(strata, "--quick").returncode == 0  # the chain alone cannot tell
    given = [arg for path in (kept, *earlier) for arg in ("--checkpoint", str(path))]
    result = verify(strata, *given, "--quick")
    assert result.returncode == INTEGRITY
    assert f"the log forked: the event at position {EVENTS} is not the one" in result.stderr
    # The newest checkpoint the log still extends bounds where the fork began.
    assert "the fork is after position 3" in result.stderr


def _checkpoint_at(strata: Strata, position: int) -> str:
    """A checkpoint signed by the store's key as it would have been made at `position`."""
    from strata.core.provenance.checkpoints import Checkpoint

    event = next(strata.ledger.read_all(from_position=position, limit=1))
    signer = keys.load_signer(strata.store.settings.resolved_home)
    return signer.sign(Checkpoint(signer.name, position, event.hash, None).text())


def _blobs(strata: Strata) -> LocalBlobStore:
    assert isinstance(strata.blobs, LocalBlobStore)
    return strata.blobs


def test_an_overwritten_blob_is_named(recorded: tuple[Strata, Path, list[str]]) -> None:
    strata, kept, digests = recorded
    path = _blobs(strata).path_of(digests[2])
    path.chmod(0o644)
    path.write_bytes(png_bytes(99))

    result = verify(strata, "--checkpoint", str(kept))
    assert result.returncode == INTEGRITY
    assert f"corrupt blob {digests[2]}: its bytes no longer hash to it" in result.stderr
    assert result.stderr.count("corrupt blob") == 1


def test_a_deleted_blob_is_named(recorded: tuple[Strata, Path, list[str]]) -> None:
    strata, kept, digests = recorded
    _blobs(strata).path_of(digests[4]).unlink()

    result = verify(strata, "--checkpoint", str(kept), "--quick")
    assert result.returncode == INTEGRITY
    assert f"missing blob {digests[4]} (referenced at position 5)" in result.stderr
