"""Branches, rollbacks, human decisions and finals."""

from __future__ import annotations

import pytest

from strata.core.decisions import branches, curation
from strata.core.errors import AssetNotFound, BranchNotFound, ConcurrencyError, InvalidInput
from strata.core.projections import views
from strata.core.runtime import jobs
from strata.core.service import Strata
from tests.helpers import png_bytes


def add_assets(strata: Strata, tmp_path, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    digests = []
    for n in range(count):
        path = tmp_path / f"{n}.png"
        path.write_bytes(png_bytes(100 + n))
        digests.append(strata.add_file(path).data["asset"]["digest"])
    return digests


def head_of(strata: Strata, name: str) -> str | None:
    with strata.view() as conn:
        row = views.branch(conn, name)
    assert row is not None
    return row["head"]


def test_branch_moves_are_events_and_nothing_is_removed(strata: Strata, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b, c = add_assets(strata, tmp_path, 3)
    branches.create(strata, "main", a[:14])
    branches.advance(strata, "main", b)
    branches.advance(strata, "main", c)
    assert head_of(strata, "main") == c
    branches.rollback(strata, "main", "~2", reason="too dark")
    assert head_of(strata, "main") == a
    branches.rollback(strata, "main", c[:16])  # forward again to an earlier head
    with strata.view() as conn:
        moves = views.branch_moves(conn, "main")
    assert [m["action"] for m in moves] == [
        "created", "advanced", "advanced", "rolled_back", "rolled_back"]
    assert [m["head"] for m in moves] == [a, b, c, a, c]
    assert moves[3]["reason"] == "too dark" and moves[3]["previous_head"] == c
    # Time travel: before the rollback the head was c, after it a.
    with strata.view(as_of=moves[3]["position"] - 1) as conn:
        assert views.branch(conn, "main")["head"] == c  # type: ignore[index]
    with strata.view(as_of=moves[3]["position"]) as conn:
        assert views.branch(conn, "main")["head"] == a  # type: ignore[index]


def test_branch_errors_are_clear_and_change_nothing(strata: Strata, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = add_assets(strata, tmp_path, 2)
    branches.create(strata, "main", a)
    head = strata.ledger.head_position()
    with pytest.raises(InvalidInput, match="already exists"):
        branches.create(strata, "main")
    with pytest.raises(InvalidInput, match="invalid branch name"):
        branches.create(strata, "../evil")
    with pytest.raises(BranchNotFound):
        branches.rollback(strata, "nope", "~1")
    with pytest.raises(InvalidInput, match="cannot go back 1"):
        branches.rollback(strata, "main", "~1")
    with pytest.raises(InvalidInput, match="never a head"):
        branches.rollback(strata, "main", b)
    with pytest.raises(AssetNotFound):
        branches.create(strata, "other", "ffff0000")
    assert strata.ledger.head_position() == head


def test_concurrent_head_moves_fail_clearly(strata: Strata, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b, c = add_assets(strata, tmp_path, 3)
    branches.create(strata, "main", a)
    branches.advance(strata, "main", b)
    with strata.view() as conn:
        seen = views.branch(conn, "main")["version"]  # type: ignore[index]
    branches.advance(strata, "main", c)  # someone else moves the head meanwhile
    with pytest.raises(ConcurrencyError, match="'branch:main' was expected at version 2"):
        branches.rollback(strata, "main", a, expected_version=seen)
    assert head_of(strata, "main") == c


def test_checkout_sets_the_current_branch(strata: Strata) -> None:
    assert branches.current(strata) is None
    branches.create(strata, "look-dev")
    branches.checkout(strata, "look-dev")
    assert branches.current(strata) == "look-dev"
    with pytest.raises(BranchNotFound):
        branches.checkout(strata, "missing")


def test_pick_reject_rate_review_final(strata: Strata, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = add_assets(strata, tmp_path, 2)
    curation.pick(strata, a, note="best")
    curation.rate(strata, a, 5)
    curation.reject(strata, b)
    curation.review(strata, a, "changes", note="warmer")
    curation.review(strata, a, "approve")
    curation.mark_final(strata, a)
    with strata.view() as conn:
        details = views.asset_details(conn, a)
        other = views.asset_details(conn, b)
    assert details.selection is not None
    assert (details.selection["decision"], details.selection["rating"]) == ("picked", 5)
    assert details.review is not None and details.review["verdict"] == "approve"
    assert details.final is not None
    assert other.selection is not None and other.selection["decision"] == "rejected"
    with pytest.raises(InvalidInput):
        curation.rate(strata, a, 6)
    with pytest.raises(InvalidInput):
        curation.review(strata, a, "meh")
    reviews = [e for e in strata.ledger.read_all(types=["review.recorded"])]
    assert [e.data["verdict"] for e in reviews] == ["changes", "approve"]  # history kept


def test_cancel_a_waiting_job(tiny: Strata) -> None:
    from strata.core.layers.generation import build_request

    request = build_request(tiny, "fox", model="tiny", n=1, steps=2)
    jobs.request(tiny, request)
    jobs.cancel(tiny, request.job_id[:10], reason="wrong prompt")
    assert jobs.get(tiny, request.job_id)["status"] == "cancelled"
