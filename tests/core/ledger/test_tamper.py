"""Someone with raw database access rewrites history: verify must name where it broke.

The append-only triggers stop mistakes, not an attacker who can drop them. These tests
drop (SQLite) or disable (PostgreSQL) them as such an attacker would, rewrite a stored
event, and check that the hash chain names the first position that no longer holds.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from strata.core.ledger.canonical import canonical_json
from strata.core.ledger.event_types import SelectionRated
from strata.core.ledger.events import NewEvent, RecordedEvent
from strata.core.ledger.log import ChainBreak, chain_hash, envelope_json
from strata.core.provenance.verify import verify
from strata.core.store import Store

DIGEST = "sha256:" + "ef" * 32
TAMPERED = 3  # of 5 events: one before it, and the link after it, must be checked


def append_five(store: Store) -> list[RecordedEvent]:
    meta = {"actor": "alice", "host": "studio-1"}
    return store.ledger.append("asset:ef", [
        NewEvent.of(SelectionRated(digest=DIGEST, rating=n), meta) for n in range(1, 6)
    ])


def rewrite(store: Store, position: int, **columns: str) -> None:
    """UPDATE columns of one stored event behind the ledger's back."""
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER events_refuse_update"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_refuse_change"))
        assignments = ", ".join(f"{column} = :{column}" for column in columns)
        changed = conn.execute(
            text(f"UPDATE events SET {assignments} WHERE position = :position"),
            {**columns, "position": position},
        )
        assert changed.rowcount == 1


def forged(event: RecordedEvent, field: str) -> RecordedEvent:
    """The event with its note (data) or its actor (meta) changed."""
    if field == "data":
        return event._replace(data={**event.data, "note": "approved by the client"})
    return event._replace(meta={**event.meta, "actor": "mallory"})


@pytest.mark.parametrize("field", ["data", "meta"])
def test_a_rewritten_event_with_its_hash_recomputed_breaks_the_next_link(
    store: Store, field: str
) -> None:
    original = append_five(store)[TAMPERED - 1]
    fake = forged(original, field)
    rewrite(store, TAMPERED, **{field: canonical_json(getattr(fake, field))},
            hash=chain_hash(fake.prev_hash, fake))

    stored = store.ledger.read_stream("asset:ef")[TAMPERED - 1]
    assert getattr(stored, field) == getattr(fake, field)
    # The forged event hashes correctly on its own; only the next event's link betrays it.
    assert list(store.ledger.verify_chain()) == [
        ChainBreak(TAMPERED + 1, "prev_hash does not match the previous event")]
    assert verify(store.ledger, store.blobs, rehash=False).first_bad_position == TAMPERED + 1


@pytest.mark.parametrize("field", ["data", "meta"])
def test_a_rewritten_event_that_keeps_its_hash_is_named(store: Store, field: str) -> None:
    original = append_five(store)[TAMPERED - 1]
    rewrite(store, TAMPERED, **{field: canonical_json(getattr(forged(original, field), field))})

    assert list(store.ledger.verify_chain()) == [
        ChainBreak(TAMPERED, "hash does not match the event's contents")]
    assert verify(store.ledger, store.blobs, rehash=False).first_bad_position == TAMPERED


# One envelope with every field fixed, and the canonical text and chain hash it must give:
# any change to what the hash covers, or to how it is written, changes these constants
# (and makes every existing log fail verification), so it has to be deliberate.
PINNED = RecordedEvent(
    position=7,
    event_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    stream="job:pinned",
    version=3,
    type="generation.requested",
    schema=2,
    data={
        "prompt": 'Füchse im Schnee, "雪の狐" 🦊\n\\',
        "params": {"z": [1, 2.5, None, True, False], "a": {"ö": "ü", "empty": {}}},
        "seeds": [],
    },
    meta={"actor": "zoë", "host": "studio-1", "causation_id": None},
    recorded_at="2026-11-25T11:29:11.123456Z",
    prev_hash="5e" * 32,
    hash="not covered by the envelope",
)
PINNED_ENVELOPE = (
    '{"data":{"params":{"a":{"empty":{},"ö":"ü"},"z":[1,2.5,null,true,false]},'
    '"prompt":"Füchse im Schnee, \\"雪の狐\\" 🦊\\n\\\\","seeds":[]},'
    '"event_id":"0f1e2d3c4b5a69788796a5b4c3d2e1f0",'
    '"meta":{"actor":"zoë","causation_id":null,"host":"studio-1"},'
    '"position":7,"recorded_at":"2026-11-25T11:29:11.123456Z","schema":2,'
    '"stream":"job:pinned","type":"generation.requested","version":3}'
)
PINNED_HASH = "4736e32033e524420c44b27efbfabaede8e33836fd5dd09338548f340b10f4e7"


def test_the_canonical_envelope_and_its_chain_hash_are_pinned() -> None:
    assert canonical_json(PINNED.envelope()) == PINNED_ENVELOPE
    assert chain_hash(PINNED.prev_hash, PINNED) == PINNED_HASH
    # The append path assembles the same text from already-serialised parts.
    fast = envelope_json(
        PINNED.position, PINNED.event_id, canonical_json(PINNED.stream), PINNED.version,
        canonical_json(PINNED.type), PINNED.schema, canonical_json(PINNED.data),
        canonical_json(PINNED.meta), canonical_json(PINNED.recorded_at),
    )
    assert fast == PINNED_ENVELOPE
