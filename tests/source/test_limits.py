"""The exact depth and value-count check of decoded values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import PoisonError
from connector.source.limits import MAX_DEPTH_LIMIT, DecodeLimits, check_decoded

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=3)  # what JSON can carry
SCALARS = st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | TEXT
#: Values as JSON decodes them (integers in orjson's 64-bit range).
JSON_VALUES = st.recursive(
    SCALARS | st.integers(-(2**63), 2**63 - 1),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=30,
)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def values_in(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(values_in(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(values_in(v) for v in value)
    return 1


def reason(value: Any, limits: DecodeLimits) -> str | None:
    try:
        check_decoded(value, limits)
    except PoisonError as exc:
        return f"{exc.stage}/{exc.reason}"
    return None


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES, max_depth=st.integers(1, 6), max_values=st.integers(1, 40))
def test_refuses_exactly_the_values_beyond_a_limit(
    value: Any, max_depth: int, max_values: int
) -> None:
    limits = DecodeLimits(max_depth=max_depth, max_values=max_values)
    too_deep = depth_of(value) > max_depth
    too_many = values_in(value) > max_values
    got = reason(value, limits)
    assert (got is not None) == (too_deep or too_many)
    if got == "decode/too_deep":
        assert too_deep
    if got == "decode/too_many_values":
        assert too_many


def test_a_value_far_deeper_than_python_recursion() -> None:
    value: Any = []
    for _ in range(100_000):
        value = [value]
    assert reason(value, DecodeLimits()) == "decode/too_deep"


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        DecodeLimits(max_depth=201)
    with pytest.raises(ValueError, match="positive"):
        DecodeLimits(max_values=0)


def test_size() -> None:
    limits = DecodeLimits(max_value_bytes=10)
    limits.check_size(b"x" * 10)
    with pytest.raises(PoisonError) as caught:
        limits.check_size(b"x" * 11)
    assert caught.value.reason == "too_large"
    assert "11 bytes" in str(caught.value)


def test_the_decoding_settings_default_to_the_decoders_defaults() -> None:
    from connector.settings import DecodingSettings
    from connector.source.decode import DEFAULT_UNKNOWN_SCHEMA_TTL_S

    settings = DecodingSettings()
    assert DecodeLimits(settings.max_value_bytes, settings.max_depth, settings.max_values) == (
        DecodeLimits()
    )
    assert settings.unknown_schema_ttl_s == DEFAULT_UNKNOWN_SCHEMA_TTL_S
    assert DecodingSettings.model_fields["max_depth"].metadata[-1].le == MAX_DEPTH_LIMIT
