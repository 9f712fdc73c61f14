"""Reading and writing out an ancestry runs with Python's cyclic garbage collector held
off (its collections walked every object of the process again and again), and leaves the
collector as it found it."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.core.provenance import report
from strata.core.provenance.ancestry import collection_paused
from strata.core.provenance.report import FORMATS, render
from strata.core.service import Strata
from tests.core.provenance.story import make_story


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations of the collections that start while an ancestry is rendered (the
    ones its allocations leave due start at the caller's next allocation, after it)."""
    started: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        frame = sys._getframe(1)
        while frame is not None and frame.f_code is not report._render.__code__:
            frame = frame.f_back
        if phase == "start" and frame is not None:
            started.append(info["generation"])

    gc.callbacks.append(seen)
    yield started
    gc.callbacks.remove(seen)


def test_rendering_an_ancestry_starts_no_collection_and_restores_the_collector(
    tiny: Strata, tmp_path: Path, collections: list[int]
) -> None:
    story = make_story(tiny, tmp_path)
    for fmt in FORMATS:
        assert render(tiny, story.final, fmt)
        assert gc.isenabled()
    assert collections == []


def test_a_collector_paused_further_out_stays_paused() -> None:
    gc.disable()
    try:
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
