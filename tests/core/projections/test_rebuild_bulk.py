"""The rebuild's fast paths change nothing it gives: the hash chain is checked over the
stored texts (and still accepts an event stored as equivalent, non-canonical JSON), and
the secondary indexes dropped for the replay on SQLite come back exactly as they were,
or are never dropped when the rebuild fails."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Connection, text

from strata.core.errors import ChainBroken
from strata.core.ledger.event_types import SelectionRated
from strata.core.ledger.events import NewEvent
from strata.core.service import Strata
from strata.core.store import Store

DIGEST = "sha256:" + "ab" * 32


def rate_three(strata: Strata) -> None:
    strata.record("asset:ab", [SelectionRated(digest=DIGEST, rating=n) for n in (1, 2, 3)])


def rewrite_data(store: Store, position: int, data: str) -> None:
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER events_refuse_update"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_refuse_change"))
        conn.execute(text("UPDATE events SET data = :data WHERE position = :position"),
                     {"data": data, "position": position})


def stored_data(store: Store, position: int) -> str:
    with store.engine.connect() as conn:
        return str(conn.scalar(text("SELECT data FROM events WHERE position = :p"),
                               {"p": position}))


def indexes(conn: Connection) -> list[tuple[str, str]]:
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                 "AND sql IS NOT NULL ORDER BY name"))
    else:
        rows = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE "
                                 "schemaname = current_schema() ORDER BY indexname"))
    return [(row[0], row[1]) for row in rows]


def test_rebuild_keeps_every_index_and_the_rows(strata: Strata) -> None:
    rate_three(strata)
    with strata.store.engine.connect() as conn:
        before = indexes(conn)
        rating = conn.scalar(text("SELECT rating FROM selections"))
    assert any(name == "ix_find_params_num" for name, _ in before)
    assert strata.rebuild() == 3
    with strata.store.engine.connect() as conn:
        assert indexes(conn) == before
        assert conn.scalar(text("SELECT rating FROM selections")) == rating == 3


def test_a_forged_event_is_refused_and_the_indexes_stay(strata: Strata) -> None:
    rate_three(strata)
    with strata.store.engine.connect() as conn:
        before = indexes(conn)
    stored = json.loads(stored_data(strata.store, 2))
    rewrite_data(strata.store, 2, json.dumps({**stored, "rating": 5}))
    with pytest.raises(ChainBroken, match="position 2"):
        strata.rebuild()
    with strata.store.engine.connect() as conn:
        assert indexes(conn) == before
        assert conn.scalar(text("SELECT rating FROM selections")) == 3  # the old state


def test_equivalent_non_canonical_text_still_rebuilds(strata: Strata) -> None:
    """Stored text that is not canonical JSON but holds the same values hashes the same
    once decoded and encoded again: the stored-text shortcut must not refuse it."""
    strata.store.ledger.append("asset:ab", [NewEvent.of(SelectionRated(digest=DIGEST,
                                                                       rating=4))])
    stored = stored_data(strata.store, 1)
    spaced = json.dumps(dict(reversed(json.loads(stored).items())), indent=1)
    assert spaced != stored
    rewrite_data(strata.store, 1, spaced)
    assert strata.rebuild() == 1
