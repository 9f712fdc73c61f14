"""Signed checkpoints: the signed-note format byte for byte, the store's key files, and the
log held to a checkpoint (extends, shortened, rewritten, forked) on both backends."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from strata.core.errors import InvalidInput, NotFound, VerificationFailed
from strata.core.ledger.event_types import SelectionRated
from strata.core.ledger.events import GENESIS_HASH, NewEvent
from strata.core.ledger.log import Ledger
from strata.core.provenance import keys
from strata.core.provenance.checkpoints import (
    Checkpoint,
    checkpoint_store,
    hold_to,
    hold_to_files,
    make_checkpoint,
    newest_seen,
    open_checkpoint,
    remember,
    seen_warning,
)
from strata.core.service import Strata

# The example of golang.org/x/mod/sumdb/note's documentation: a signer key, its verifier
# key, a text, and the signed note Go makes of them. Ed25519 is deterministic, so ours
# must be the same bytes.
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = GO_TEXT + (
    "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n")
ORIGIN = "strata.example/studio"


def test_notes_are_signed_and_opened_exactly_as_go_does() -> None:
    signer = keys.Signer.parse(GO_SIGNER)
    assert signer.encoded() == GO_SIGNER
    assert signer.verifier.encoded() == GO_VERIFIER
    assert signer.sign(GO_TEXT) == GO_NOTE
    assert keys.open_note(GO_NOTE, keys.Verifier.parse(GO_VERIFIER), "go") == GO_TEXT


def test_the_key_id_is_the_spec_hash_of_name_type_and_key() -> None:
    verifier = keys.Verifier.parse(GO_VERIFIER)
    expected = hashlib.sha256(b"PeterNeumann\n\x01" + verifier.public_key).digest()[:4]
    assert verifier.id == expected == bytes.fromhex("c74f20a3")


def test_a_note_changed_after_signing_or_signed_by_another_key_is_refused() -> None:
    verifier = keys.Verifier.parse(GO_VERIFIER)
    with pytest.raises(VerificationFailed, match="does not verify"):
        keys.open_note(GO_NOTE.replace("problem,", "problem;"), verifier, "go")
    other = keys.Signer("PeterNeumann", bytes(range(32)))
    with pytest.raises(VerificationFailed, match="not signed by the key PeterNeumann"):
        keys.open_note(other.sign(GO_TEXT), verifier, "go")
    # A signature by an unknown key beside a good one is ignored, as the spec says.
    both = GO_NOTE + other.sign(GO_TEXT).splitlines(keepends=True)[-1]
    assert keys.open_note(both, verifier, "go") == GO_TEXT


@pytest.mark.parametrize("message", [
    "no blank line\n— a AAAA\n",
    "text\n\nnot a signature line\n",
    "text\n\n— name not-base64!\n",
    "text\n\n",
    "a\tcontrol character\n\n— a AAAAAAAA\n",
])
def test_malformed_notes_are_refused(message: str) -> None:
    with pytest.raises(InvalidInput):
        keys.open_note(message, keys.Verifier.parse(GO_VERIFIER), "file")


def test_keys_init_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    home = tmp_path / "store"
    verifier = keys.init_keys(home, ORIGIN)
    private, public = keys.key_paths(home)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert private.read_text().startswith(f"PRIVATE+KEY+{ORIGIN}+{verifier.id.hex()}+")
    assert keys.store_verifier(home) == verifier == keys.load_signer(home).verifier

    with pytest.raises(InvalidInput, match="already has a key"):
        keys.init_keys(home, "strata.example/other")
    assert keys.store_verifier(home) == verifier  # untouched

    private.chmod(0o644)
    with pytest.raises(InvalidInput, match="can be read by other users"):
        keys.load_signer(home)


def test_keys_have_a_unique_default_name_and_refuse_bad_ones(tmp_path: Path) -> None:
    first = keys.init_keys(tmp_path / "a")
    second = keys.init_keys(tmp_path / "b")
    assert first.name.startswith("strata.local/") and first.name != second.name
    for bad in ("with space", "a+b", ""):
        with pytest.raises(InvalidInput, match="invalid key name"):
            keys.init_keys(tmp_path / "c", bad or " ")
    with pytest.raises(NotFound, match="strata keys init"):
        keys.load_signer(tmp_path / "c")


# --- checkpoints of a real log -------------------------------------------------------------


def rate(ledger: Ledger, count: int) -> None:
    digest = "sha256:" + "ab" * 32
    ledger.append("asset:ab", [NewEvent.of(SelectionRated(digest=digest, rating=1 + n % 5),
                                           {"actor": "alice"}) for n in range(count)])


@pytest.fixture
def signer(strata: Strata) -> keys.Signer:
    home = strata.store.settings.resolved_home
    keys.init_keys(home, ORIGIN)
    return keys.load_signer(home)


def test_a_checkpoint_is_a_tlog_checkpoint_of_the_head(
    strata: Strata, signer: keys.Signer
) -> None:
    rate(strata.ledger, 4)
    head = strata.ledger.read_last(1)[0]
    checkpoint, message = make_checkpoint(strata.ledger, signer)

    origin, size, root, time, blank, signature, end = message.split("\n")
    assert (origin, size, blank, end) == (ORIGIN, "4", "", "")
    assert base64.b64decode(root) == bytes.fromhex(head.hash)
    assert time == f"time {checkpoint.time}" and time.endswith("Z")
    assert signature.startswith(f"— {ORIGIN} ")
    raw = base64.b64decode(signature.split(" ")[-1])
    assert raw[:4] == signer.verifier.id and len(raw) == 4 + 64
    assert open_checkpoint(message, signer.verifier, "c") == checkpoint
    assert checkpoint == Checkpoint(ORIGIN, 4, head.hash, checkpoint.time)


def test_a_checkpoint_of_another_log_is_refused(strata: Strata, signer: keys.Signer) -> None:
    other = keys.Signer("strata.example/other", signer.seed)
    message = other.sign(Checkpoint(ORIGIN, 0, GENESIS_HASH, None).text())
    with pytest.raises(InvalidInput, match="a log's checkpoints carry its own name"):
        open_checkpoint(message, other.verifier, "c")


@pytest.mark.parametrize("body", [
    f"{ORIGIN}\n007\nAAAA\n", f"{ORIGIN}\n7\n", f"{ORIGIN}\n7\nAAAA\n",
    f"{ORIGIN}\nseven\n{base64.b64encode(bytes(32)).decode()}\n",
])
def test_malformed_checkpoints_are_refused(body: str) -> None:
    with pytest.raises(InvalidInput):
        Checkpoint.parse(body, "c")


def test_the_log_extends_its_checkpoints_as_it_grows(
    strata: Strata, signer: keys.Signer
) -> None:
    empty, _ = make_checkpoint(strata.ledger, signer)
    assert (empty.size, empty.hash) == (0, GENESIS_HASH)
    rate(strata.ledger, 3)
    middle, _ = make_checkpoint(strata.ledger, signer)
    rate(strata.ledger, 2)
    for checkpoint in (empty, middle, make_checkpoint(strata.ledger, signer)[0]):
        verdict = hold_to(strata.ledger, checkpoint, "c")
        assert (verdict.ok, verdict.kind) == (True, "extends")
        assert "now at position 5" in verdict.detail


def test_a_log_shorter_than_a_checkpoint_is_named(strata: Strata, signer: keys.Signer) -> None:
    rate(strata.ledger, 3)
    head = strata.ledger.read_last(1)[0]
    beyond = Checkpoint(ORIGIN, 5, "ab" * 32, None)

    verdict = hold_to(strata.ledger, beyond, "c")
    assert (verdict.kind, verdict.position) == ("shortened", 4)
    assert "positions 4 to 5 were deleted" in verdict.detail
    # A checkpoint whose hash the log never had, at a position it has: another history.
    forked = hold_to(strata.ledger, Checkpoint(ORIGIN, 3, "cd" * 32, None), "c")
    assert (forked.kind, forked.position) == ("forked", 3)
    assert hold_to(strata.ledger, Checkpoint(ORIGIN, 3, head.hash, None), "c").ok


def _drop_update_trigger(strata: Strata) -> None:
    with strata.store.engine.begin() as conn:
        if strata.store.engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER events_refuse_update"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_refuse_change"))


def test_an_event_rewritten_in_place_is_named_wherever_it_is(
    strata: Strata, signer: keys.Signer
) -> None:
    rate(strata.ledger, 3)
    at_three, _ = make_checkpoint(strata.ledger, signer)
    rate(strata.ledger, 3)
    at_six, _ = make_checkpoint(strata.ledger, signer)
    _drop_update_trigger(strata)

    def forge(position: int) -> None:  # new contents, the old hash kept
        with strata.store.engine.begin() as conn:
            conn.execute(text("UPDATE events SET meta = :m WHERE position = :p"),
                         {"m": '{"actor":"mallory"}', "p": position})

    forge(5)
    after = hold_to(strata.ledger, at_three, "c")
    assert (after.kind, after.position) == ("rewritten", 5)
    assert "after checkpoint" in after.detail
    # The event a checkpoint names, and the chain from it, still hold: the rewrite before
    # it is the whole-chain walk's to find (`strata verify` does both).
    assert hold_to(strata.ledger, at_six, "c").ok

    forge(6)  # the event the checkpoint names: its contents no longer give its hash
    verdict = hold_to(strata.ledger, at_six, "c")
    assert (verdict.kind, verdict.position) == ("rewritten", 5)
    assert "at or before checkpoint" in verdict.detail


def test_checkpoint_files_are_held_and_the_newest_is_kept(
    strata: Strata, signer: keys.Signer, tmp_path: Path
) -> None:
    home = strata.store.settings.resolved_home
    rate(strata.ledger, 2)
    first = tmp_path / "first"
    checkpoint_store(strata, first)
    rate(strata.ledger, 2)
    second = tmp_path / "second"
    made, message = checkpoint_store(strata, second)
    assert second.read_text() == message
    seen = newest_seen(home)
    assert seen is not None and seen[0] == made
    remember(home, open_checkpoint(first.read_text(), signer.verifier, "f"), first.read_text())
    seen = newest_seen(home)
    assert seen is not None and seen[0].size == 4  # an older one never replaces it

    with pytest.raises(InvalidInput, match="never over an earlier one"):
        checkpoint_store(strata, second)
    forged = tmp_path / "forged"
    forged.write_text(first.read_text().replace(f"{ORIGIN}\n2\n", f"{ORIGIN}\n1\n"))
    verdicts = hold_to_files(strata.ledger, [first, second, forged], signer.verifier)
    assert [v.kind for v in verdicts] == ["extends", "extends", "unverified"]
    assert "does not verify" in verdicts[2].detail


def test_the_newest_checkpoint_seen_warns_when_the_log_is_shorter(
    strata: Strata, signer: keys.Signer
) -> None:
    home = strata.store.settings.resolved_home
    rate(strata.ledger, 2)
    assert seen_warning(strata.ledger, home) is None  # none seen yet
    checkpoint_store(strata)
    assert seen_warning(strata.ledger, home) is None
    made, _ = make_checkpoint(strata.ledger, signer)
    remember(home, Checkpoint(ORIGIN, 9, made.hash, made.time),
             signer.sign(Checkpoint(ORIGIN, 9, made.hash, made.time).text()))
    warning = seen_warning(strata.ledger, home)
    assert warning is not None
    assert "positions 3 to 9 were deleted" in warning and "verify --checkpoint" in warning
