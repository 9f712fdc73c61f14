"""`neighbours` (what `show` and `GET /assets/{ref}` read) is the one-step walk up and
down, in one query: the same edges, in the same order, each kept once; and the asset's
details come with every branch it heads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from strata.core.decisions import branches
from strata.core.projections.lineage import neighbours, walk
from strata.core.projections.views import asset_details
from strata.core.service import Strata
from tests.helpers import png_bytes


def _add(strata: Strata, folder: Path, seed: int,
         parents: Sequence[tuple[str, str]] = ()) -> str:
    path = folder / f"{seed}.png"
    path.write_bytes(png_bytes(seed))
    data = strata.add_file(path, parents).data
    digest: str = (data.get("asset") or data["output"]["asset"])["digest"]
    return digest


def test_neighbours_are_the_one_step_walks(strata: Strata, tmp_path: Path) -> None:
    a, b = _add(strata, tmp_path, 1), _add(strata, tmp_path, 2)
    # c has two parents (one of them in two roles) and two children, one of them with
    # another parent: a diamond around c.
    c = _add(strata, tmp_path, 3, [(a, "source"), (b, "mask"), (a, "reference")])
    d = _add(strata, tmp_path, 4, [(c, "source")])
    _add(strata, tmp_path, 5, [(c, "layer"), (d, "layer")])
    for name in ("zeta/v1", "alpha.2"):  # the branches c heads come in the same query
        branches.create(strata, name, c)
    with strata.view() as conn:
        for digest in (a, c, d):
            assert neighbours(conn, digest) == (walk(conn, digest, "up", 1),
                                                walk(conn, digest, "down", 1))
        parents, children = neighbours(conn, c)
        details = asset_details(conn, c)
    assert sorted((e.input_digest, e.role) for e in parents) == sorted(
        [(a, "source"), (b, "mask"), (a, "reference")])
    assert len(children) == 2 and all(e.input_digest == c for e in children)
    assert (details.parents, details.children) == (parents, children)
    assert (details.selection, details.review, details.final) == (None, None, None)
    assert details.branches == ["alpha.2", "zeta/v1"]
    with strata.view() as conn:
        assert asset_details(conn, d).branches == []
