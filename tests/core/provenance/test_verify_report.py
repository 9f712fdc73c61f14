"""What `verify` finds beyond the chain: every blob an event references (imports,
derivations and job outputs with their inputs) that is missing, every stored blob that no
longer hashes to its name, a log shorter than its projections have seen; and how the
report counts and words them."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from strata.core.errors import VerificationFailed
from strata.core.layers.selection import SelectionCompleted
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetImported,
    AssetInfo,
    InputRef,
    ProducedAsset,
    SelectionRated,
)
from strata.core.ledger.events import NewEvent
from strata.core.provenance.verify import verify, verify_store
from strata.core.service import Strata
from strata.core.storage.local import LocalBlobStore
from strata.core.store import Store


def absent(n: int) -> AssetInfo:
    """An asset whose bytes were never stored."""
    return AssetInfo(digest=f"sha256:{n:064x}", media_type="image/png", size=1)


def test_every_referenced_blob_that_is_missing_is_named_at_its_first_position(
    store: Store,
) -> None:
    stored = store.blobs.ingest_bytes(b"stored bytes")
    ledger = store.ledger
    ledger.append("i", [NewEvent.of(AssetImported(asset=stored)),
                        NewEvent.of(AssetImported(asset=absent(1)))])  # positions 1, 2
    derived = ProducedAsset(asset=absent(2), inputs=[InputRef(digest=stored.digest),
                                                     InputRef(digest=absent(3).digest)])
    ledger.append("d", [NewEvent.of(AssetDerived(output=derived))])  # position 3
    job_output = ProducedAsset(asset=absent(4), inputs=[InputRef(digest=absent(5).digest),
                                                        InputRef(digest=absent(1).digest)])
    completed = SelectionCompleted(job_id="j", operation="select", outputs=[job_output],
                                   scored={}, clusters=[], chosen=[], dedupe_distance=0,
                                   top=None)
    ledger.append("j", [NewEvent.of(completed)])  # position 4
    ledger.append("r", [NewEvent.of(SelectionRated(digest=absent(6).digest, rating=1))])

    report = verify(ledger, store.blobs)
    assert report.missing_blobs == {
        absent(1).digest: 2, absent(2).digest: 3, absent(3).digest: 3,
        absent(4).digest: 4, absent(5).digest: 4,
    }
    assert report.events == 5 and report.chain_breaks == [] and not report.ok
    assert report.blobs_checked == 1 and report.corrupt_blobs == []


def test_a_blob_whose_bytes_changed_is_found_by_the_default_rehash(store: Store) -> None:
    blobs = store.blobs
    if not isinstance(blobs, LocalBlobStore):
        pytest.skip("rewrites a blob's file behind the store's back")
    intact, damaged = blobs.ingest_bytes(b"intact"), blobs.ingest_bytes(b"damaged")
    store.ledger.append("i", [NewEvent.of(AssetImported(asset=info))
                              for info in (intact, damaged)])
    path = blobs.path_of(damaged.digest)
    path.chmod(0o644)
    path.write_bytes(b"bit rot")

    report = verify(store.ledger, blobs)
    assert (report.blobs_checked, report.corrupt_blobs) == (2, [damaged.digest])
    assert report.missing_blobs == {} and not report.ok
    skipped = verify(store.ledger, blobs, rehash=False)
    assert (skipped.blobs_checked, skipped.corrupt_blobs) == (0, [])


def test_the_report_words_every_problem_and_names_the_first_bad_position(
    store: Store,
) -> None:
    store.ledger.append("i", [NewEvent.of(AssetImported(asset=absent(1)))])
    store.ledger.append("i", [NewEvent.of(AssetImported(asset=absent(1)))])
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER events_refuse_update"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_refuse_change"))
        conn.execute(text("UPDATE events SET stream = 'x' WHERE position = 2"))

    report = verify(store.ledger, store.blobs)
    assert report.problems() == [
        "chain broken at position 2: hash does not match the event's contents",
        f"missing blob {absent(1).digest} (referenced at position 1)",
    ]
    with pytest.raises(VerificationFailed) as failed:
        report.raise_if_failed()
    assert str(failed.value) == "verify FAILED: 2 problem(s) in 2 events; first bad position 2"


def test_a_report_without_chain_breaks_names_no_position(store: Store) -> None:
    store.ledger.append("i", [NewEvent.of(AssetImported(asset=absent(1)))])
    report = verify(store.ledger, store.blobs)
    with pytest.raises(VerificationFailed) as failed:
        report.raise_if_failed()
    assert str(failed.value) == "verify FAILED: 1 problem(s) in 1 events"


def test_verify_store_passes_a_sound_store_and_notices_a_shortened_log(strata: Strata) -> None:
    info = strata.blobs.ingest_bytes(b"kept")
    strata.record("i", [AssetImported(asset=info)])
    report = verify_store(strata)
    assert report.ok and report.problems() == [] and report.events == 1
    report.raise_if_failed()

    # The projections claim to have seen position 5 of a one-event log: events deleted.
    with strata.store.engine.begin() as conn:
        conn.execute(text("UPDATE projection_checkpoints SET position = 5"))
    report = verify_store(strata)
    assert report.shortened is not None and not report.ok
    assert report.problems() == [str(report.shortened)]
    assert "the log ends at position 1, but the projections have seen position 5" in str(
        report.shortened)
    assert verify(strata.ledger, strata.blobs).ok  # the log alone cannot tell


def test_verify_store_rehashes_every_blob_unless_told_not_to(strata: Strata) -> None:
    blobs = strata.blobs
    if not isinstance(blobs, LocalBlobStore):
        pytest.skip("rewrites a blob's file behind the store's back")
    info = blobs.ingest_bytes(b"original")
    strata.record("i", [AssetImported(asset=info)])
    path = blobs.path_of(info.digest)
    path.chmod(0o644)
    path.write_bytes(b"bit rot")

    assert verify_store(strata).corrupt_blobs == [info.digest]  # `strata verify`'s default
    quick = verify_store(strata, rehash=False)
    assert (quick.blobs_checked, quick.corrupt_blobs, quick.ok) == (0, [], True)
