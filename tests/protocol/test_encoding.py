"""Canonical JSON: one encoding per value, stable across decode/encode."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.encoding import canonical_json, decode_json, is_canonical
from protocol.errors import MessageError
from protocol.messages import decode_message, encode_message
from tests.protocol.factories import advert

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**256), max_value=2**256)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=6)


@given(json_objects)
def test_decode_then_encode_is_identity(value: dict) -> None:
    data = canonical_json(value)
    assert decode_json(data) == value
    assert canonical_json(decode_json(data)) == data
    assert is_canonical(data)


@given(json_objects)
def test_key_order_does_not_change_the_encoding(value: dict) -> None:
    reordered = dict(reversed(list(value.items())))
    assert canonical_json(reordered) == canonical_json(value)


@given(json_objects)
def test_whitespace_is_never_canonical(value: dict) -> None:
    spaced = json.dumps(value, indent=1, ensure_ascii=False).encode()
    assert is_canonical(spaced) == (spaced == canonical_json(value))


@given(st.integers(min_value=0, max_value=2**63 - 1), st.floats(0, 1))
def test_advert_encoding_is_stable(seq: int, utilization: float) -> None:
    message = advert(seq=seq, utilization=utilization)
    data = encode_message(message)
    assert decode_message(data) == message
    assert encode_message(decode_message(data)) == data


def test_encoding_is_compact_sorted_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", 2.5, True, None]}) == (
        '{"a":["é",2.5,true,null],"b":1}'.encode()
    )


@pytest.mark.parametrize(
    "value",
    [{"x": float("nan")}, {"x": float("inf")}, {1: "int key"}, {"x": b"raw bytes"}, {"x": {1}}],
)
def test_values_without_a_canonical_form_are_refused(value: dict) -> None:
    with pytest.raises(MessageError):
        canonical_json(value)


def test_depth_is_bounded_both_ways() -> None:
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(MessageError, match="deeper"):
        canonical_json({"x": deep})
    with pytest.raises(MessageError, match="deeper"):
        decode_json(b'{"x":' + b"[" * 40 + b"]" * 40 + b"}")
    # Brackets inside strings do not count.
    assert decode_json(b'{"x":"' + b"[" * 100 + b'"}') == {"x": "[" * 100}


def test_the_recursion_limit_is_restored_after_web3_raised_it() -> None:
    import sys

    import web3  # noqa: F401  (py_ecc, imported through web3, raises the limit to 100,000)

    from protocol.encoding import SAFE_RECURSION_LIMIT, restore_recursion_limit

    previous = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(100_000)
        assert restore_recursion_limit() == SAFE_RECURSION_LIMIT
        with pytest.raises(RecursionError):
            json.loads("[" * 100_000 + "]" * 100_000)
    finally:
        sys.setrecursionlimit(previous)
