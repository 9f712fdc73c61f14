"""find: every term of the query language on SQLite and PostgreSQL, against a store built
through the service (tests/core/find/store.py); rebuilt indexes answer as incremental
ones did; malformed queries are refused with a caret under the term and change nothing."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from sqlalchemy import select, text

from strata.core.errors import AmbiguousReference, AssetNotFound, InvalidInput
from strata.core.find.projection import FindProjection
from strata.core.find.schema import FIND_TABLES
from strata.core.find.search import search
from strata.core.layers.generation import GenerationRequested
from strata.core.ledger.log import events_after
from strata.core.projections.base import Batch, table
from strata.core.runtime import jobs
from strata.core.service import Strata
from tests.core.find.store import TINY, Built, build, complete

# query → the assets it finds (Built's field names), in any order.
EXPECTED: dict[str, set[str]] = {
    "fox": {"imported", "g42", "g43"},
    "FOX": {"imported", "g42", "g43"},
    "fox*": {"imported", "g42", "g43"},
    "fo*": {"imported", "g42", "g43"},
    "golden hour": {"g42", "g43"},
    '"hour golden"': set(),
    '"red fox"': {"imported"},
    'prompt:"golden hour"': {"g42", "g43"},
    "prompt:blurry": set(),
    "negative:blurry": {"imported", "g42", "g43"},
    "oversaturated": {"g42", "g43"},  # bare words search negative prompts too
    "negative:lowres": {"imported"},
    "seed:42": {"g42"},
    "seed:1234567": {"imported"},
    "seed>=43": {"g43", "imported"},
    "seed:40..42": {"g42"},
    "seed:..10": {"wolf"},
    "steps>=30": {"g42", "g43"},
    "steps<30": {"imported", "wolf"},
    "steps=28": {"imported"},
    "cfg:6..8": {"imported", "g42", "g43"},
    "cfg>7": {"wolf"},
    "cfg<=6.5": {"imported"},
    "model:tiny": {"g42", "g43"},
    "model:TINY": {"g42", "g43"},
    "model:sd_xl_base_1.0": {"imported"},
    "model:sd_xl*": {"imported"},
    "model:31e35c": {"imported"},  # the hash A1111 recorded
    "model:abab": {"wolf"},  # a prefix of the registered weights' digest
    "model:old-model": {"wolf"},
    "sampler:dpm*": {"imported"},
    "scheduler.name:ddim": {"g42", "g43", "wolf"},
    "device:cpu": {"g42", "g43", "wolf"},
    "layer:generation": {"g42", "g43", "wolf"},
    "layer:import": {"imported", "unrelated"},
    "layer:external": {"edit", "final"},
    "op:inpaint": {"edit"},
    "op:text-to-image": {"g42", "g43", "wolf"},
    "op:txt2img": {"imported"},
    "branch:look-dev": {"g42", "g43", "edit"},  # made on it, or made its head
    "branch:nowhere": set(),
    "final": {"final"},
    "is:final": {"final"},
    "picked": {"g43"},
    "rejected": {"g42"},
    "rating>=4": {"final"},
    "rating:1..2": {"wolf"},
    "rating=5": {"final"},
    "review:approved": {"final"},
    "review:rejected": {"wolf"},
    "review:changes": set(),
    "actor:ana": {"g42", "g43"},
    "actor:bo": {"wolf"},
    "made:2000-01-01..2999-12-31": {"imported", "g42", "g43", "wolf", "edit", "final",
                                    "unrelated"},
    "made<2000-01-01": set(),
    "made>=2999-01-01": set(),
    "made:..2000-01-01": set(),
    "media:image": {"imported", "g42", "g43", "wolf", "edit", "final", "unrelated"},
    "media:image/png": {"imported", "g42", "g43", "wolf", "edit", "final", "unrelated"},
    "media:video": set(),
    "fox OR wolf": {"imported", "g42", "g43", "wolf"},
    "fox seed:42": {"g42"},
    "fox AND seed:42": {"g42"},
    "-fox": {"wolf", "edit", "final", "unrelated"},
    "-(fox OR wolf) layer:external": {"edit", "final"},
    "fox -negative:oversaturated": {"imported"},
    "(seed:42 OR seed:7) steps>=20": {"g42", "wolf"},
    "root-prompt:fox": {"imported", "g42", "g43", "edit", "final"},
    'root-prompt:"golden hour" final': {"final"},
    "root-prompt:wolf": {"wolf"},
    "": {"imported", "g42", "g43", "wolf", "edit", "final", "unrelated"},
}


def names(built: Built, digests: list[str]) -> set[str]:
    by_digest = {v: k for k, v in vars(built).items() if isinstance(v, str)}
    return {by_digest[d] for d in digests}


def answers(strata: Strata, built: Built, queries: list[str],
            as_of: int | None = None) -> dict[str, set[str]]:
    found = {}
    for query in queries:
        result = search(strata, query, limit=1000, as_of=as_of)
        assert result.total == len(result.rows), query
        found[query] = names(built, [r.digest for r in result.rows])
    return found


def lineage_queries(built: Built) -> dict[str, set[str]]:
    short = {name: getattr(built, name).removeprefix("sha256:")[:10]
             for name in ("g42", "edit", "final", "wolf")}
    return {
        f"from:{short['g42']}": {"edit", "final"},
        f"into:{short['final']}": {"edit", "g42"},
        f"into:{short['edit']} OR from:{short['edit']}": {"g42", "final"},
        f"from:{short['wolf']}": set(),
        f"from:{short['g42']} final": {"final"},
        f"into:{short['final']} layer:generation": {"g42"},
    }


@pytest.fixture
def built(strata: Strata, tmp_path: Path) -> Built:
    return build(strata, tmp_path)


def test_every_term_finds_exactly_its_assets(strata: Strata, built: Built) -> None:
    expected = {**EXPECTED, **lineage_queries(built)}
    assert answers(strata, built, list(expected)) == expected


def test_results_are_newest_first_and_paged(strata: Strata, built: Built) -> None:
    everything = search(strata, "", limit=1000)
    positions = [r.position for r in everything.rows]
    assert positions == sorted(positions, reverse=True)
    page = search(strata, "", limit=2, offset=3)
    assert page.total == 7
    assert [r.digest for r in page.rows] == [r.digest for r in everything.rows[3:5]]
    (row,) = search(strata, "seed:42").rows
    assert (row.layer, row.operation, row.media_type, row.actor) == (
        "generation", "text-to-image", "image/png", "ana")
    assert row.created_at.startswith("20") and row.created_at.endswith("Z")


def _distance(built: Built, a: str, b: str) -> int:
    first, second = built.infos[a].phash, built.infos[b].phash
    assert first and second
    return (int(first, 16) ^ int(second, 16)).bit_count()


def test_similarity_finds_near_duplicates_and_combines_with_terms(
    strata: Strata, built: Built
) -> None:
    everyone = list(built.infos)
    for distance in (0, 4, 8, 16):
        within = {d for d in everyone if _distance(built, built.g42, d) <= distance}
        result = search(strata, "", similar=built.g42[7:19], distance=distance, limit=1000)
        assert {r.digest for r in result.rows} == within
        assert result.similar_to == built.g42
        assert all(r.distance == _distance(built, built.g42, r.digest) for r in result.rows)
        assert [r.distance for r in result.rows] == sorted(r.distance or 0 for r in result.rows)
    # The one-pixel edit is a near-duplicate; the rest are other pictures.
    near = search(strata, "", similar=built.g42[7:19])
    assert names(built, [r.digest for r in near.rows]) == {"g42", "edit"}
    assert near.rows[0].digest == built.g42 and near.rows[0].distance == 0
    # Combined with other terms, and as a term of the query (under OR and negation too).
    assert names(built, [r.digest for r in search(
        strata, "-layer:generation", similar=built.g42[7:19]).rows]) == {"edit"}
    like = f"like:{built.edit[7:19]}"
    assert names(built, [r.digest for r in search(strata, like).rows]) == {"g42", "edit"}
    assert [r.distance for r in search(strata, like).rows] == [0, _distance(
        built, built.edit, built.g42)]
    assert names(built, [r.digest for r in search(strata, f"{like} op:inpaint").rows]) == {
        "edit"}
    assert names(built, [r.digest for r in search(strata, f"{like} OR wolf").rows]) == {
        "g42", "edit", "wolf"}
    assert names(built, [r.digest for r in search(strata, f"-{like} layer:generation").rows]
                 ) == {"g43", "wolf"}


def test_similarity_refuses_what_it_cannot_compare(strata: Strata, built: Built) -> None:
    with pytest.raises(AssetNotFound):
        search(strata, "", similar="ffffffffffff")
    with pytest.raises(InvalidInput, match="between 0 and 16"):
        search(strata, "", similar=built.g42[7:19], distance=17)
    with pytest.raises(InvalidInput, match="hex digits"):
        search(strata, "like:xyz")


def _find_rows(strata: Strata) -> dict[str, list[tuple[object, ...]]]:
    with strata.store.engine.connect() as conn:
        dumped = {}
        for model in FIND_TABLES:
            t = table(model)
            dumped[t.name] = sorted((tuple(r) for r in conn.execute(select(t))), key=repr)
        return dumped


def test_rebuild_answers_as_incremental_indexing_did(strata: Strata, built: Built) -> None:
    expected = {**EXPECTED, **lineage_queries(built)}
    before_rows = _find_rows(strata)
    assert before_rows["find_texts"] and before_rows["find_params"]
    strata.rebuild()
    assert _find_rows(strata) == before_rows
    assert answers(strata, built, list(expected)) == expected


def test_applying_events_again_is_harmless(strata: Strata, built: Built) -> None:
    before = _find_rows(strata)
    projection = FindProjection()
    with strata.store.engine.begin() as conn:
        batch = Batch()
        for event in events_after(conn, 0, None, 10_000):
            if isinstance(event.payload, projection.handles):
                projection.apply(conn, event, event.payload, batch)  # type: ignore[arg-type]
        batch.flush(conn)
    assert _find_rows(strata) == before
    assert answers(strata, built, ["fox", "golden hour"]) == {
        "fox": EXPECTED["fox"], "golden hour": EXPECTED["golden hour"]}


def test_as_of_searches_the_indexes_as_they_were(strata: Strata, built: Built) -> None:
    with strata.store.engine.connect() as conn:
        final_marked = conn.scalar(text(
            "SELECT position FROM events WHERE type = 'final.marked'"))
    assert final_marked is not None
    assert answers(strata, built, ["final", "fox"], as_of=final_marked - 1) == {
        "final": set(), "fox": EXPECTED["fox"]}
    assert answers(strata, built, ["final", 'root-prompt:"golden hour" final',
                                   "golden hour", "seed:42"], as_of=final_marked) == {
        "final": {"final"}, 'root-prompt:"golden hour" final': {"final"},
        "golden hour": {"g42", "g43"}, "seed:42": {"g42"}}
    assert search(strata, "", similar=built.g42[7:19], as_of=final_marked).total == 2


def test_large_seeds_are_told_apart(strata: Strata) -> None:
    big = 2**60
    request = GenerationRequested(job_id=jobs.new_job_id(), prompt="x", seeds=[big, big + 1],
                                  model=TINY)
    digests = [info.digest for info in complete(strata, request, [big, big + 1])]
    assert [r.digest for r in search(strata, f"seed:{big + 1}").rows] == [digests[1]]
    assert search(strata, f"seed>={big}").total == 2


BAD = [
    ('prompt:"golden', 7, "unterminated quote"),
    ("seed:", 0, "needs a value"),
    ("fox (wolf", 4, "never closed"),
    ("fox wolf)", 8, "without a matching"),
    ("()", 0, "empty parentheses"),
    ("OR fox", 0, "OR needs a term before it"),
    ("fox OR", 4, "OR needs a term after it"),
    ("fox OR OR wolf", 4, "OR needs a term after it"),
    ("AND fox", 0, "AND needs a term before it"),
    ("fox - wolf", 4, "must be followed"),
    ("steps>=many", 0, "compares numbers"),
    ("cfg:6..x", 0, "compares numbers"),
    ("seed:..", 0, "at least one end"),
    ("rating>=9", 0, "1 to 5"),
    ("review:maybe", 0, "review takes one of"),
    ("is:lost", 0, "is takes one of"),
    ("made:yesterday", 0, "YYYY-MM-DD"),
    ("fox made:2026-13-01", 4, "YYYY-MM-DD"),
    ("layer>=3", 0, "layer takes ':'"),
    ("prompt>fox", 0, "takes ':'"),
    ("fox ,,,", 4, "no letters or digits"),
    ('fo"x', 2, "unterminated quote"),
]


@pytest.mark.parametrize(("query", "column", "message"), BAD)
def test_malformed_queries_point_at_the_term_and_change_nothing(
    strata: Strata, query: str, column: int, message: str
) -> None:
    head = strata.ledger.head_position()
    with pytest.raises(InvalidInput) as refused:
        search(strata, query)
    error = str(refused.value)
    assert message in error
    assert f"column {column + 1}:" in error
    # The caret line sits under the offending term.
    shown, caret = error.splitlines()[-2:]
    assert shown == f"  {query}" and caret.index("^") == column + 2
    assert strata.ledger.head_position() == head


def test_bad_paging_and_ambiguous_assets_are_refused(strata: Strata, built: Built) -> None:
    with pytest.raises(InvalidInput, match="--limit"):
        search(strata, "fox", limit=0)
    with pytest.raises(InvalidInput, match="--offset"):
        search(strata, "fox", offset=-1)
    with pytest.raises((AssetNotFound, AmbiguousReference)):
        search(strata, "from:0000")


def test_the_total_is_exact_up_to_the_cap_and_pages_match_either_way(
    strata: Strata, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap the count stops (a lower bound, `total_exact` false) and the page is
    read walking the assets newest first; every page is the one the exact plan gives."""
    expected = {**EXPECTED, **lineage_queries(built)}
    exact = {q: search(strata, q, limit=1000) for q in expected}
    find_search = importlib.import_module("strata.core.find.search")
    monkeypatch.setattr(find_search, "TOTAL_CAP", 0)
    for query, whole in exact.items():
        assert whole.total_exact and whole.total == len(whole.rows)
        paged = []
        for offset in range(0, whole.total + 2, 2):
            page = search(strata, query, limit=2, offset=offset)
            paged += page.rows
            more = whole.total > offset + 2
            assert page.total_exact is not more, (query, offset)
            assert page.total == (offset + 3 if more else whole.total), (query, offset)
        assert [r.digest for r in paged] == [r.digest for r in whole.rows], query
        assert paged == whole.rows, query


def test_the_json_and_the_text_say_when_the_total_was_not_counted_to_the_end(
    strata: Strata, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_search = importlib.import_module("strata.core.find.search")
    monkeypatch.setattr(find_search, "TOTAL_CAP", 3)
    capped = search(strata, "", limit=2)
    assert (capped.total, capped.total_exact, capped.total_text) == (4, False, "3+")
    assert capped.to_json()["total_exact"] is False and capped.to_json()["total"] == 4
    # A page past the cap is counted to its end: exact when it reaches the last match.
    deep = search(strata, "", limit=2, offset=5)
    assert (deep.total, deep.total_exact, deep.total_text) == (7, True, "7")
    assert len(deep.rows) == 2
    few = search(strata, "fox", limit=2)
    assert (few.total, few.total_exact, few.total_text) == (3, True, "3")


@pytest.mark.parametrize("ratio", [0, 1_000_000])
def test_every_way_in_finds_the_same_assets(
    strata: Strata, built: Built, monkeypatch: pytest.MonkeyPatch, ratio: int
) -> None:
    """Terms gathered from one driving term (the others checked per asset), or from the
    intersection of every term's list: the same answers."""
    find_search = importlib.import_module("strata.core.find.search")
    monkeypatch.setattr(find_search, "INTERSECT_RATIO", ratio)
    monkeypatch.setattr(find_search, "FEW_LEFT", 0)
    expected = {**EXPECTED, **lineage_queries(built), "golden hour fox seed>=42": {"g42", "g43"},
                'fox "golden hour" -seed:43 layer:generation': {"g42"}}
    assert answers(strata, built, list(expected)) == expected
