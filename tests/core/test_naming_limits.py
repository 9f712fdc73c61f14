"""How many names a refused prefix shows and how it words the refusal: at most five, in
order, with "and more" when there may be others; a malformed reference is named in the
error for what it was meant to name; and a name is resolved in the view it is asked in."""

from __future__ import annotations

import pytest

from strata.core.errors import AmbiguousReference, AssetNotFound, InvalidInput, JobNotFound
from strata.core.layers.selection import SelectionRequested
from strata.core.ledger.event_types import AssetImported, AssetInfo, SelectionRated
from strata.core.ledger.events import NewEvent
from strata.core.runtime import jobs
from strata.core.service import Strata, asset_stream

# Recorded in reverse, so that the order shown is the sorted one, not the insertion order.
SIX = [f"abcd{n}" + str(n) * 59 for n in range(5, -1, -1)]
CUT = [name[:16] for name in sorted(SIX)[:5]]  # what a refusal shows of each


def import_asset(strata: Strata, digest: str) -> None:
    info = AssetInfo(digest=f"sha256:{digest}", media_type="image/png", size=1)
    strata.record(asset_stream(info.digest), [AssetImported(asset=info)])


def refusal(kind: str, ref: str, shown: list[str], more: bool) -> str:
    tail = " and more" if more else ""
    return (f"{ref!r} is ambiguous: it matches several {kind}s ({', '.join(shown)}…{tail}); "
            "give more digits")


def test_an_asset_prefix_matching_six_shows_the_first_five_and_more(strata: Strata) -> None:
    for digest in SIX:
        import_asset(strata, digest)
    with pytest.raises(AmbiguousReference) as refused:
        strata.resolve_asset("abcd")
    assert str(refused.value) == refusal("asset", "abcd", CUT, more=True)


def test_a_prefix_matching_two_shows_both_and_no_more(strata: Strata) -> None:
    for digest in SIX[:2]:
        import_asset(strata, digest)
    with pytest.raises(AmbiguousReference) as refused:
        strata.resolve_asset("sha256:abcd")
    shown = sorted(digest[:16] for digest in SIX[:2])
    assert str(refused.value) == refusal("asset", "sha256:abcd", shown, more=False)


def test_an_event_prefix_matching_six_shows_the_first_five_and_more(strata: Strata) -> None:
    ids = [f"beef{n}" + str(n) * 27 for n in range(5, -1, -1)]
    rated = SelectionRated(digest="sha256:" + "a" * 64, rating=3).model_dump(mode="json")
    strata.ledger.append("ratings", [NewEvent(type="selection.rated", data=rated, event_id=i)
                                     for i in ids])
    with pytest.raises(AmbiguousReference) as refused:
        strata.resolve_event("beef")
    assert str(refused.value) == refusal("event", "beef", [i[:16] for i in sorted(ids)[:5]],
                                         more=True)


def test_a_job_prefix_matching_six_shows_five_and_an_unknown_job_is_not_found(
    strata: Strata,
) -> None:
    ids = [f"cafe{n}" + str(n) * 27 for n in range(5, -1, -1)]
    for job_id in ids:
        jobs.request(strata, SelectionRequested(job_id=job_id,
                                                candidates=["sha256:" + "a" * 64]))
    with pytest.raises(AmbiguousReference) as refused:
        strata.resolve_job("cafe")
    assert str(refused.value) == refusal("job", "cafe", [i[:16] for i in sorted(ids)[:5]],
                                         more=True)
    with pytest.raises(JobNotFound, match="no job matches 'cafe9'"):
        strata.resolve_job("cafe9")


@pytest.mark.parametrize(("resolve", "what"), [
    (Strata.resolve_asset, "an asset"), (Strata.resolve_event, "an event"),
    (Strata.resolve_job, "a job"),
])
def test_a_reference_that_is_not_hex_names_what_it_should_name(
    strata: Strata, resolve: object, what: str
) -> None:
    for bad in ("abc", "wxyz"):
        with pytest.raises(InvalidInput) as refused:
            resolve(strata, bad)  # type: ignore[operator]
        assert str(refused.value) == (
            f"{bad!r} does not name {what}: give at least 4 hex digits of its id or hash")


def test_an_asset_is_resolved_in_the_view_it_is_asked_in(strata: Strata) -> None:
    first, later = "1234" + "0" * 60, "5678" + "0" * 60
    import_asset(strata, first)
    import_asset(strata, later)
    with strata.view(as_of=1) as conn:
        assert strata.resolve_asset("1234", conn) == f"sha256:{first}"
        with pytest.raises(AssetNotFound, match="no asset matches '5678'"):
            strata.resolve_asset("5678", conn)  # imported after position 1
    assert strata.resolve_asset("5678") == f"sha256:{later}"
