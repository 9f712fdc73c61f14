"""The names users type: a prefix that matches one thing resolves, one that matches two is
refused and changes nothing, on every backend and through the command line.

Hash prefixes only collide by chance in real stores, so these tests choose the names:
assets by their digests, events by their ids, jobs by the ids in their requests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from strata.core.config import Settings
from strata.core.errors import AmbiguousReference, AssetNotFound, EventNotFound
from strata.core.layers.selection import SelectionRequested
from strata.core.ledger.event_types import AssetImported, AssetInfo, SelectionRated
from strata.core.ledger.events import NewEvent
from strata.core.runtime import jobs
from strata.core.service import Strata, asset_stream
from tests.api.cli.test_cli import Cli

FIRST = "sha256:abcd0000" + "0" * 56
SECOND = "sha256:abcd1111" + "1" * 56
FIRST_EVENT, SECOND_EVENT = "beef0000" + "0" * 24, "beef1111" + "1" * 24
FIRST_JOB, SECOND_JOB = "cafe0000" + "0" * 24, "cafe1111" + "1" * 24


@pytest.fixture
def two_assets(strata: Strata) -> Strata:
    """Two imported assets whose digests share the prefix abcd (no blobs needed)."""
    for digest in (FIRST, SECOND):
        info = AssetInfo(digest=digest, media_type="image/png", size=1)
        strata.record(asset_stream(digest), [AssetImported(asset=info)])
    return strata


@pytest.fixture
def two_events(strata: Strata) -> Strata:
    rated = SelectionRated(digest=FIRST, rating=3).model_dump(mode="json")
    strata.ledger.append("ratings", [NewEvent(type="selection.rated", data=rated, event_id=i)
                                     for i in (FIRST_EVENT, SECOND_EVENT)])
    return strata


@pytest.fixture
def two_jobs(strata: Strata) -> Strata:
    for job_id in (FIRST_JOB, SECOND_JOB):
        jobs.request(strata, SelectionRequested(job_id=job_id, candidates=[FIRST]))
    return strata


def test_an_ambiguous_asset_prefix_is_refused_naming_both(two_assets: Strata) -> None:
    with pytest.raises(AmbiguousReference) as refused:
        two_assets.resolve_asset("abcd")
    assert "abcd00000000" in str(refused.value) and "abcd11111111" in str(refused.value)
    # One more digit, upper case or the sha256: prefix: each names exactly one.
    assert two_assets.resolve_asset("abcd0") == FIRST
    assert two_assets.resolve_asset("sha256:ABCD1") == SECOND
    assert two_assets.resolve_asset(SECOND) == SECOND
    with pytest.raises(AssetNotFound, match="no asset matches 'abcd2'"):
        two_assets.resolve_asset("abcd2")


def test_an_ambiguous_event_prefix_is_refused(two_events: Strata) -> None:
    with pytest.raises(AmbiguousReference, match="'beef' is ambiguous: it matches several events"):
        two_events.resolve_event("beef")
    assert two_events.resolve_event("beef1").event_id == SECOND_EVENT
    assert two_events.resolve_event("BEEF0").event_id == FIRST_EVENT
    with pytest.raises(EventNotFound):
        two_events.resolve_event("beef2")


def test_an_ambiguous_job_prefix_is_refused_and_cancels_nothing(two_jobs: Strata) -> None:
    with pytest.raises(AmbiguousReference, match="'cafe' is ambiguous: it matches several jobs"):
        jobs.get(two_jobs, "cafe")
    with pytest.raises(AmbiguousReference, match="several jobs"):
        jobs.cancel(two_jobs, "cafe")
    assert {jobs.get(two_jobs, j)["status"] for j in (FIRST_JOB, SECOND_JOB)} == {"requested"}
    assert jobs.get(two_jobs, "cafe1")["job_id"] == SECOND_JOB
    assert jobs.cancel(two_jobs, "cafe0").data["job_id"] == FIRST_JOB


def test_ambiguous_event_and_job_prefixes_name_both_candidates(
    two_events: Strata, two_jobs: Strata
) -> None:
    with pytest.raises(AmbiguousReference) as event_refusal:
        two_events.resolve_event("beef")
    with pytest.raises(AmbiguousReference) as job_refusal:
        jobs.get(two_jobs, "cafe")
    for refusal, names in ((event_refusal, (FIRST_EVENT, SECOND_EVENT)),
                           (job_refusal, (FIRST_JOB, SECOND_JOB))):
        assert all(name[:12] in str(refusal.value) for name in names)


# --- through the command line ------------------------------------------------------------


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Cli:
    return Cli(settings, tmp_path)


@pytest.mark.parametrize("command", [
    "show",
    "lineage",
    "pick",
])
def test_the_command_line_refuses_an_ambiguous_asset_prefix(
    two_assets: Strata, cli: Cli, command: str
) -> None:
    head = two_assets.ledger.head_position()
    result = cli(command, "abcd", ok=False)
    assert result.returncode == 2, result.stderr
    assert "ambiguous" in result.stderr
    assert two_assets.ledger.head_position() == head


def test_the_command_line_refuses_an_ambiguous_event_prefix(two_events: Strata, cli: Cli) -> None:
    result = cli("show", "beef", ok=False)
    assert result.returncode == 2, result.stderr
    assert "matches several events" in result.stderr
    assert SECOND_EVENT in cli("show", "beef1").stdout
