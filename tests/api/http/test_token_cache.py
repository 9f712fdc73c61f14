"""The server's token cache (core.auth.tokens.TokenCache): a token created or revoked in
the server's process counts at once; one revoked by another process is accepted until the
cached answer expires, and not after."""

from __future__ import annotations

from sqlalchemy import delete

from strata.core.auth import tokens
from strata.core.projections.base import table
from strata.core.service import Strata


def test_answers_are_kept_until_they_expire_or_tokens_change_here(strata: Strata) -> None:
    engine = strata.store.engine
    kept = tokens.TokenCache(engine, ttl=3600)
    assert not kept.holds(None)
    assert kept.any_token() is False and kept.holds(None)
    _, secret = tokens.create(engine, ["write"], "bot")  # in this process: seen at once
    assert not kept.holds(None) and kept.any_token() is True
    found = kept.authenticate(secret)
    assert found is not None and found.name == "bot" and found.allows("read")
    assert kept.holds(secret) and not kept.holds(secret + "x")

    # Another process revokes it: the row goes, this process hears nothing.
    with engine.begin() as conn:
        conn.execute(delete(table(tokens.ApiToken)))
    assert kept.authenticate(secret) is not None  # until the answer expires
    assert tokens.TokenCache(engine, ttl=0).authenticate(secret) is None  # expired at once

    tokens.create(engine, ["read"], "other")  # a change here forgets every answer
    assert kept.authenticate(secret) is None
