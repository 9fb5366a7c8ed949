"""JSON text for values of any depth: the explicit-stack encoder agrees with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from connector.emulator import jsontext

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=40,
)


@given(JSON_VALUES)
def test_the_stack_encoder_writes_what_orjson_writes(value: Any) -> None:
    assert b"".join(jsontext.iter_chunks(value)) == orjson.dumps(value)


def deep(depth: int) -> Any:
    value: Any = [1, "x"]
    for _ in range(depth):
        value = {"k": value}
    return value


def test_values_too_deep_for_orjson_are_written_all_the_same() -> None:
    depth = 10_000
    text = jsontext.dumps(deep(depth))
    assert text == b'{"k":' * depth + b'[1,"x"]' + b"}" * depth


def test_a_preview_is_short_whatever_the_value() -> None:
    assert jsontext.preview({"a": [1, 2]}) == '{"a":[1,2]}'
    shown = jsontext.preview(deep(100_000), limit=40)
    assert len(shown) == 40
    assert shown == ('{"k":' * 8)[:39] + "…"
    assert jsontext.preview("é" * 200, limit=10) == '"' + "é" * 8 + "…"
