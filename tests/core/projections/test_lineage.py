"""Lineage queries (walk, roots, path) over the derivation DAG, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Connection

from strata.core.errors import InvalidInput
from strata.core.ledger.event_types import (
    AssetDerived,
    AssetImported,
    AssetInfo,
    InputRef,
    ProducedAsset,
    Role,
)
from strata.core.projections import views
from strata.core.projections.lineage import Edge, path, roots, walk
from strata.core.service import Strata, asset_stream
from tests.helpers import png_bytes


def fake_digest(n: int, salt: int = 0) -> str:
    return f"sha256:{salt:08x}{n:056x}"


def fake_info(digest: str) -> AssetInfo:
    return AssetInfo(digest=digest, media_type="image/png", size=100, width=8, height=8)


def edge_set(edges: list[Edge]) -> set[tuple[str, str, str, int]]:
    return {(e.input_digest, e.output_digest, e.role, e.depth) for e in edges}


@contextmanager
def time_limited(strata: Strata, seconds: float) -> Iterator[Connection]:
    """A connection whose queries are cancelled after `seconds` (so a runaway CTE fails
    the test instead of hanging it)."""
    with strata.store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            raw = conn.connection.driver_connection
            timer = threading.Timer(seconds, raw.interrupt)  # type: ignore[union-attr]
            timer.start()
            try:
                yield conn
            finally:
                timer.cancel()
        else:
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(seconds * 1000)}")
            yield conn


# --- a small diamond made from real files --------------------------------------------------


@dataclass
class Diamond:
    a: str
    b: str
    c: str
    d: str
    unrelated: str
    events: dict[str, str]  # asset letter → id of the event that made it
    files: dict[str, Path]


def add(strata: Strata, folder: Path, name: str, seed: int,
        parents: Sequence[tuple[str, Role]] = (), operation: str = "external",
        ) -> tuple[str, str, Path]:
    """Write a distinct PNG and add it; returns (digest, event id, file)."""
    source = folder / f"{name}.png"
    source.write_bytes(png_bytes(seed, (12, 12)))
    event = strata.add_file(source, parents=parents, operation=operation)
    digest = (event.data.get("asset") or event.data["output"]["asset"])["digest"]
    return digest, event.event_id, source


@pytest.fixture
def diamond(strata: Strata, tmp_path: Path) -> Diamond:
    """A → B (source), A → C (source), B → D (source), C → D (mask); E stands alone."""
    a, ea, fa = add(strata, tmp_path, "a", 1)
    b, eb, fb = add(strata, tmp_path, "b", 2, [(a, "source")], "img2img")
    c, ec, fc = add(strata, tmp_path, "c", 3, [(a[:12], "source")], "mask-from")
    d, ed, fd = add(strata, tmp_path, "d", 4, [(b, "source"), (c, "mask")], "inpaint")
    e, ee, fe = add(strata, tmp_path, "e", 5)
    return Diamond(a, b, c, d, e, {"a": ea, "b": eb, "c": ec, "d": ed, "e": ee},
                   {"a": fa, "b": fb, "c": fc, "d": fd, "e": fe})


def test_walk_up_from_the_bottom_of_a_diamond(strata: Strata, diamond: Diamond) -> None:
    g = diamond
    with strata.view() as conn:
        near = walk(conn, g.d, "up", depth=1)
        everything = walk(conn, g.d, "up")
        limited = walk(conn, g.d, "up", depth=2)
    assert edge_set(near) == {(g.b, g.d, "source", 1), (g.c, g.d, "mask", 1)}
    expected = {(g.b, g.d, "source", 1), (g.c, g.d, "mask", 1),
                (g.a, g.b, "source", 2), (g.a, g.c, "source", 2)}
    assert edge_set(everything) == expected
    assert len(everything) == 4  # each edge once, although A is reached twice
    assert edge_set(limited) == expected
    assert [e.depth for e in everything] == sorted(e.depth for e in everything)


def test_walk_down_from_the_top_of_a_diamond(strata: Strata, diamond: Diamond) -> None:
    g = diamond
    with strata.view() as conn:
        near = walk(conn, g.a, "down", depth=1)
        everything = walk(conn, g.a, "down")
        from_b = walk(conn, g.b, "down")
    assert edge_set(near) == {(g.a, g.b, "source", 1), (g.a, g.c, "source", 1)}
    assert edge_set(everything) == {(g.a, g.b, "source", 1), (g.a, g.c, "source", 1),
                                    (g.b, g.d, "source", 2), (g.c, g.d, "mask", 2)}
    assert len(everything) == 4
    assert edge_set(from_b) == {(g.b, g.d, "source", 1)}


def test_edges_say_which_event_and_operation_made_them(strata: Strata,
                                                       diamond: Diamond) -> None:
    g = diamond
    with strata.view() as conn:
        edges = {(e.input_digest, e.output_digest): e for e in walk(conn, g.d, "up")}
    assert edges[(g.c, g.d)].operation == "inpaint"
    assert edges[(g.c, g.d)].event_id == g.events["d"]
    assert edges[(g.a, g.c)].operation == "mask-from"
    assert edges[(g.a, g.c)].event_id == g.events["c"]
    assert {e.layer for e in edges.values()} == {"external"}


def test_walk_past_the_ends_and_from_unknown_assets(strata: Strata, diamond: Diamond) -> None:
    g = diamond
    with strata.view() as conn:
        assert walk(conn, g.a, "up") == []
        assert walk(conn, g.d, "down") == []
        assert walk(conn, g.unrelated, "up") == walk(conn, g.unrelated, "down") == []
        assert walk(conn, fake_digest(1), "up") == []


def test_roots(strata: Strata, diamond: Diamond, tmp_path: Path) -> None:
    g = diamond
    with strata.view() as conn:
        assert roots(conn, g.d) == [g.a]
        assert roots(conn, g.b) == [g.a]
        assert roots(conn, g.a) == [g.a]  # a parentless asset is its own root
        assert roots(conn, g.unrelated) == [g.unrelated]
    # Composite D with the unrelated E: now two roots, in digest order.
    f, _, _ = add(strata, tmp_path, "f", 6, [(g.d, "layer"), (g.unrelated, "layer")],
                  "composite")
    with strata.view() as conn:
        assert roots(conn, f) == sorted([g.a, g.unrelated])
        assert roots(conn, g.d) == [g.a]


def test_path_is_a_shortest_chain(strata: Strata, diamond: Diamond) -> None:
    g = diamond
    with strata.view() as conn:
        chain = path(conn, g.a, g.d)
        assert chain in ([g.a, g.b, g.d], [g.a, g.c, g.d])
        assert path(conn, g.a, g.b) == [g.a, g.b]
        assert path(conn, g.c, g.d) == [g.c, g.d]
        assert path(conn, g.d, g.d) == [g.d]


def test_path_between_unrelated_assets_is_none(strata: Strata, diamond: Diamond) -> None:
    g = diamond
    with strata.view() as conn:
        assert path(conn, g.d, g.a) is None  # the edges point down, not up
        assert path(conn, g.b, g.c) is None  # siblings
        assert path(conn, g.unrelated, g.d) is None
        assert path(conn, g.a, g.unrelated) is None
        assert path(conn, fake_digest(9), g.d) is None


def test_a_shortcut_makes_the_shortest_path_direct(strata: Strata, diamond: Diamond) -> None:
    g = diamond
    # D is derived again, this time straight from A (same bytes, so the same asset).
    again = strata.add_file(g.files["d"], parents=[(g.a, "reference")], operation="redo")
    assert again.data["output"]["asset"]["digest"] == g.d
    with strata.view() as conn:
        assert path(conn, g.a, g.d) == [g.a, g.d]
        up = walk(conn, g.d, "up")
    assert edge_set(up) == {(g.b, g.d, "source", 1), (g.c, g.d, "mask", 1),
                            (g.a, g.d, "reference", 1),
                            (g.a, g.b, "source", 2), (g.a, g.c, "source", 2)}


def test_two_roles_from_the_same_parent_are_two_edges(strata: Strata, tmp_path: Path) -> None:
    a, _, _ = add(strata, tmp_path, "a", 1)
    b, _, _ = add(strata, tmp_path, "b", 2, [(a, "source"), (a, "reference")])
    with strata.view() as conn:
        assert edge_set(walk(conn, b, "up")) == {(a, b, "source", 1), (a, b, "reference", 1)}
        assert path(conn, a, b) == [a, b]
        assert roots(conn, b) == [a]


def test_lineage_as_of_an_earlier_position(strata: Strata, diamond: Diamond) -> None:
    g = diamond
    before_d = strata.ledger.get(g.events["d"]).position - 1
    with strata.view(as_of=before_d) as conn:
        assert walk(conn, g.d, "up") == []
        assert edge_set(walk(conn, g.a, "down")) == {(g.a, g.b, "source", 1),
                                                     (g.a, g.c, "source", 1)}
        assert path(conn, g.a, g.d) is None
        assert roots(conn, g.c) == [g.a]


# --- a long chain, recorded directly ------------------------------------------------------


CHAIN = 1000


@pytest.fixture
def chain(strata: Strata) -> list[str]:
    """start → 1 → 2 → … → 1000, each step one `asset.derived` event."""
    digests = [fake_digest(n, salt=0xC0FFEE) for n in range(CHAIN + 1)]
    strata.record("chain", [AssetImported(asset=fake_info(digests[0]))])
    strata.record("chain", [
        AssetDerived(output=ProducedAsset(asset=fake_info(digests[n]),
                                          inputs=[InputRef(digest=digests[n - 1])]),
                     operation=f"step-{n}")
        for n in range(1, CHAIN + 1)
    ])
    return digests


def test_walking_a_long_chain_respects_the_depth_limit(strata: Strata,
                                                       chain: list[str]) -> None:
    tip, start = chain[-1], chain[0]
    with strata.view() as conn:
        full = walk(conn, tip, "up", depth=CHAIN)
        ten = walk(conn, tip, "up", depth=10)
        unlimited = walk(conn, tip, "up")
        down = walk(conn, start, "down", depth=CHAIN)
    assert len(full) == CHAIN
    assert [e.depth for e in full] == list(range(1, CHAIN + 1))
    assert [(e.input_digest, e.output_digest) for e in full] == [
        (chain[n - 1], chain[n]) for n in range(CHAIN, 0, -1)]
    assert len(ten) == 10
    assert ten == full[:10]
    assert unlimited == full
    assert len(down) == CHAIN
    assert down[-1].output_digest == tip


def test_roots_and_path_along_a_long_chain(strata: Strata, chain: list[str]) -> None:
    with strata.view() as conn:
        assert roots(conn, chain[-1]) == [chain[0]]
        assert roots(conn, chain[500]) == [chain[0]]
        assert path(conn, chain[0], chain[-1]) == chain
        assert path(conn, chain[990], chain[-1]) == chain[990:]
        assert path(conn, chain[-1], chain[0]) is None


# --- depth limits, self-derivations, cycles, parallel edges --------------------------------


def test_walk_with_depth_zero_returns_nothing(strata: Strata, diamond: Diamond) -> None:
    with strata.view() as conn:
        assert walk(conn, diamond.d, "up", depth=0) == []
        assert walk(conn, diamond.a, "down", depth=0) == []
        assert path(conn, diamond.a, diamond.d, depth=1) is None
        assert path(conn, diamond.a, diamond.d, depth=2) in ([diamond.a, diamond.b, diamond.d],
                                                             [diamond.a, diamond.c, diamond.d])


def test_an_asset_saved_unchanged_is_not_its_own_parent(strata: Strata, tmp_path: Path) -> None:
    a, _, _ = add(strata, tmp_path, "a", 1)
    b, _, b_file = add(strata, tmp_path, "b", 2, [(a, "source")])
    # A workspace save without changes: the "edit" of B has B's own bytes. Strata refuses
    # to record it; a log that holds one anyway (an older version wrote it) is harmless.
    head = strata.ledger.head_position()
    with pytest.raises(InvalidInput, match="cannot be derived from itself"):
        strata.add_file(b_file, parents=[(b, "source")], operation="save-unchanged")
    assert strata.ledger.head_position() == head
    forge_derivation(strata, b, b, "save-unchanged")
    with time_limited(strata, 5.0) as conn:
        assert edge_set(walk(conn, b, "up")) == {(a, b, "source", 1)}
        assert walk(conn, b, "down") == []
        assert roots(conn, b) == [a]
        assert path(conn, a, b) == [a, b]


def test_a_revert_cycle_keeps_lineage_queries_bounded(strata: Strata, tmp_path: Path) -> None:
    a, _, a_file = add(strata, tmp_path, "a", 1)
    b, _, _ = add(strata, tmp_path, "b", 2, [(a, "source")])
    # Undoing the edit gives A's bytes back, now derived from B: Strata refuses the cycle,
    # but lineage queries must stay bounded on a log that holds one anyway.
    with pytest.raises(InvalidInput, match="its own ancestor"):
        strata.add_file(a_file, parents=[(b, "source")], operation="undo")
    forge_derivation(strata, a, b, "undo")
    e, _, _ = add(strata, tmp_path, "e", 5)
    with time_limited(strata, 10.0) as conn:
        assert edge_set(walk(conn, a, "up", depth=1)) == {(b, a, "source", 1)}
        assert {(x.input_digest, x.output_digest) for x in walk(conn, a, "up")} == {
            (b, a), (a, b)}  # each edge once, however often the cycle is walked
        assert path(conn, a, b) == [a, b]
        assert path(conn, b, a) == [b, a]
        assert path(conn, e, a) is None


def forge_derivation(strata: Strata, output: str, source: str, operation: str) -> None:
    """Record `output` derived from `source` without add_file's checks, as an older
    version of Strata or another tool writing to the log could have."""
    with strata.view() as conn:
        row = views.asset_row(conn, output)
    assert row is not None
    info = AssetInfo(**{k: row[k] for k in AssetInfo.model_fields})
    strata.record(asset_stream(output), [AssetDerived(
        output=ProducedAsset(asset=info, inputs=[InputRef(digest=source, role="source")]),
        operation=operation)])


def test_path_is_not_exponential_in_parallel_edges(strata: Strata) -> None:
    """Each step has two edges from the same parent, so there are 2**26 chains."""
    steps = 26
    digests = [fake_digest(n, salt=0xD1A) for n in range(steps + 1)]
    strata.record("ladder", [AssetImported(asset=fake_info(digests[0]))] + [
        AssetDerived(output=ProducedAsset(
            asset=fake_info(digests[n]),
            inputs=[InputRef(digest=digests[n - 1], role="source"),
                    InputRef(digest=digests[n - 1], role="reference")]))
        for n in range(1, steps + 1)
    ])
    with time_limited(strata, 5.0) as conn:
        assert len(walk(conn, digests[-1], "up")) == 2 * steps
        assert path(conn, digests[0], digests[-1]) == digests
