"""A PROV document is let go as soon as its text is written: its records and the document
refer to each other, and leaving them to the cyclic garbage collector cost more than
writing them out. PROV-JSON is written as prov's own serializer writes it."""

from __future__ import annotations

import gc
from pathlib import Path

from strata.core.provenance.ancestry import provenance
from strata.core.provenance.prov import PROV_FORMATS, document, serialize
from strata.core.service import Strata
from tests.core.provenance.story import make_story


def test_writing_a_document_leaves_no_cycle_to_collect(tiny: Strata, tmp_path: Path) -> None:
    found = provenance(tiny, make_story(tiny, tmp_path).final)
    gc.disable()
    try:
        for fmt in PROV_FORMATS:
            gc.collect()
            assert serialize(found, fmt)
            assert gc.collect() == 0, fmt  # nothing was left that only the collector frees
    finally:
        gc.enable()


def test_prov_json_is_the_text_of_provs_own_serializer(tiny: Strata, tmp_path: Path) -> None:
    found = provenance(tiny, make_story(tiny, tmp_path).final)
    assert serialize(found, "prov-json") == document(found).serialize(format="json")
