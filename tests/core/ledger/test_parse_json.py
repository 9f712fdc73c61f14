"""Events are read back with orjson (core.ledger.canonical.parse_json): it must give the
very values the standard parser gives for anything the log can hold, or a re-encoded
event would hash differently and `verify` would call an intact log broken."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strata.core.errors import InvalidInput
from strata.core.ledger.canonical import canonical_json, parse_json

# What canonical JSON can hold: no NaN or Infinity, integers of any size.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_parse_json_reads_what_the_standard_parser_reads(value: Any) -> None:
    text = canonical_json(value)
    parsed = parse_json(text)
    assert parsed == json.loads(text)
    assert canonical_json(parsed) == text  # and it re-encodes to the same bytes


def test_integers_beyond_64_bits_stay_integers() -> None:
    # orjson alone reads these as floats (equal to the integer only where a float holds
    # it exactly, hence the +1s); the parser must not.
    huge = {"seed": 2**70 + 1, "negative": -(2**63) - 1, "u64": 2**64 - 1, "past": 2**64}
    parsed = parse_json(canonical_json(huge))
    assert parsed == huge
    assert all(type(value) is int for value in parsed.values())


# The standard encoder's canonical form, which every hash in a log was computed over.
STANDARD = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)


@given(json_values | st.recursive(
    st.tuples(st.integers()) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
))
def test_canonical_json_writes_the_standard_encoders_bytes(value: Any) -> None:
    # canonical_json takes orjson where it is exact: any other byte would change a hash.
    assert canonical_json(value) == STANDARD.encode(value)


def test_canonical_json_refuses_what_the_standard_encoder_refuses() -> None:
    for value in ({"x": float("nan")}, {"x": [float("inf")]}, {"x": {1, 2}}, {1: 1, "a": 2}):
        with pytest.raises(InvalidInput):
            canonical_json(value)
