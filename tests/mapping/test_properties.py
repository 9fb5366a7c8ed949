"""Property tests: whatever JSON a record holds, a compiled mapping raises nothing but
MappingFailure and never emits null or an empty object or array; paths round-trip."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.mapping import CompiledMapping, MappingFailure, load_mapping_file
from connector.mapping.entity import build_entity
from connector.mapping.mapping import EntrySpec, compile_field
from connector.mapping.paths import format_path
from tests.mapping.support import DEFAULTS, META, RUNTIME, base_mapping, write_mapping

# Expressions touching every group of functions and operators, fed whatever the record holds.
KITCHEN_SINK = [
    ("ATTRIBUTE", "a", "copy.a"),
    ("ATTRIBUTE", "b.c", "copy.bc"),
    ("ATTRIBUTE", "items[*].x", "list[*].x"),
    ("EXPRESSION", "upper(items[*].y) + a", "list[*].y"),
    ("EXPRESSION", "items[*].x * 2", "list[*].double"),
    ("EXPRESSION", "concat(a, b, items)", "s.concat"),
    ("EXPRESSION", 'explode(a, ",")', "s.explode"),
    ("EXPRESSION", "substr(a, b, 2)", "s.substr"),
    ("EXPRESSION", "lpad(a, b, c)", "s.lpad"),
    ("EXPRESSION", 'split(a, ";")', "s.split"),
    ("EXPRESSION", 'join(",", items)', "s.join"),
    ("EXPRESSION", 'extract_regex(a, "(\\\\w)(\\\\d)?")', "s.regex"),
    ("EXPRESSION", "sha256(a)", "s.sha"),
    ("EXPRESSION", "crc32(b)", "s.crc"),
    ("EXPRESSION", "get_url_query_str(a)", "u.query"),
    ("EXPRESSION", "get_url_port(a)", "u.port"),
    ("EXPRESSION", "date(a)", "d.date"),
    ("EXPRESSION", 'date(a, "yyyy-MM-dd", c)', "d.dateDefault"),
    ("EXPRESSION", "format(b, \"yyyy-MM-dd'T'HH:mm\")", "d.format"),
    ("EXPRESSION", 'dformat(b, "yyyy")', "d.dformat"),
    ("EXPRESSION", 'date_part("dw", a)', "d.part"),
    ("EXPRESSION", "make_date_time(a, b, c)", "d.make"),
    ("EXPRESSION", "json_to_object(a)", "o.json"),
    ("EXPRESSION", "to_object(a, b)", "o.obj"),
    ("EXPRESSION", 'str_to_object(a, "=", "&")', "o.str"),
    ("EXPRESSION", 'arrays_to_object("k", items, "v", b)', "o.arrays"),
    ("EXPRESSION", "add_to_map(b, c)", "o.merged"),
    ("EXPRESSION", 'array_to_map(items, "x")', "o.amap"),
    ("EXPRESSION", "map_get_values(b, a)", "o.mget"),
    ("EXPRESSION", "to_array(true, a, b, null)", "a.arr"),
    ("EXPRESSION", "join_arrays(items, b)", "a.joined"),
    ("EXPRESSION", "size_of(items)", "a.size"),
    ("EXPRESSION", "max(a, b)", "a.max"),
    ("EXPRESSION", "first(items)", "a.first"),
    ("EXPRESSION", 'decode(a, "x", 1, "y", b, c)', "l.decode"),
    ("EXPRESSION", "iif(a > b, a - b, b / a)", "l.iif"),
    ("EXPRESSION", "a mod b", "l.mod"),
    ("EXPRESSION", "-a", "l.neg"),
    ("EXPRESSION", "to_integer(a)", "c.int"),
    ("EXPRESSION", "to_float(b)", "c.float"),
    ("EXPRESSION", "ua_device_class(a)", "ua.cls"),
    ("EXPRESSION", "a.equalsIgnoreCase(b)", "m.eq"),
    ("EXPRESSION", "b.get(a)", "m.get"),
    ("EXPRESSION", "json_to_object(a).k[0]", "m.member"),
    ("EXPRESSION", "contains_key(b.c)", "m.has"),
    ("EXPRESSION", "_kafka.headers.source + a", "k.h"),
    ("EXPRESSION", '"k=" + a + "/" + b + c', "k.chain"),
    ("EXPRESSION", "upper(c)", "list[*].shared"),
]
TYPED = [
    ("ATTRIBUTE", "a", "t.bool", "boolean"),
    ("ATTRIBUTE", "b", "t.int", "integer"),
    ("ATTRIBUTE", "c", "t.num", "number"),
    ("ATTRIBUTE", "a", "t.str", "string"),
    ("ATTRIBUTE", "b", "t.dt", "date-time"),
    ("ATTRIBUTE", "c", "t.d", "date"),
]


def _entries() -> list[dict[str, Any]]:
    entries = [{"sourceType": t, "source": s, "destination": d} for t, s, d in KITCHEN_SINK]
    entries += [
        {"sourceType": t, "source": s, "destination": d, "type": ty} for t, s, d, ty in TYPED
    ]
    return entries


@pytest.fixture(scope="module")
def mappings(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, CompiledMapping]:
    directory = tmp_path_factory.mktemp("props")
    out = {}
    for strict in (False, True):
        data = base_mapping(_entries(), strict=strict, filter='a != "skip"')
        path = write_mapping(directory, data, f"m{strict}.yaml")
        out[strict] = load_mapping_file(path, DEFAULTS, runtime=RUNTIME)
    return out


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "2019-10-23",
            "x",
            "y",
            "skip",
            "1",
            "-3",
            "https://a.b/p?q=1#f",
            '{"k": [1]}',
            "yes",
            "",
            "a=1&b=2",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 5_1_1 like Mac OS X)",
        ]
    )
)
# Values that can be sent as they are (no integer beyond 64 bits), for the round trips.
_sendable = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_keys = st.sampled_from(["a", "b", "c", "x", "y", "k", "items"]) | st.text(max_size=4)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=25,
)
_records = st.dictionaries(_keys, _json, max_size=6) | _json


def _assert_clean(value: object) -> None:
    assert value is not None
    if isinstance(value, dict):
        assert value, "empty object in the output"
        for key, item in value.items():
            assert isinstance(key, str)
            _assert_clean(item)
    elif isinstance(value, list):
        assert value, "empty array in the output"
        for item in value:
            _assert_clean(item)


@settings(
    max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(record=_records)
def test_apply_raises_only_mapping_failure_and_emits_clean_json(
    mappings: dict[bool, CompiledMapping], record: object
) -> None:
    for strict, mapping in mappings.items():
        try:
            result = mapping.apply(record, META)
        except MappingFailure:
            continue
        if result.entity is None:
            assert isinstance(record, dict)
            assert record.get("a") == "skip"
            continue
        _assert_clean(result.entity)
        orjson.loads(mapping.envelope(result.entity, 1))  # always serializable
        if strict:
            assert result.warnings == []


_names = st.text(min_size=1, max_size=6)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(names=st.lists(_names, min_size=1, max_size=4), value=_sendable)
def test_a_path_copied_onto_itself_round_trips(names: list[str], value: object) -> None:
    text = format_path(tuple(names))
    field, problems = compile_field(EntrySpec("e", "ATTRIBUTE", text, text), RUNTIME)
    assert problems == []
    assert field is not None
    build, tree_problems = build_entity([field], strict=True)
    assert tree_problems == []
    record: object = value
    for name in reversed(names):
        record = {name: record}
    assert isinstance(record, dict)
    assert build(record, META, math.inf, []) == record


@settings(max_examples=50, deadline=None, derandomize=True)
@given(values=st.lists(st.none() | _sendable, max_size=5))
def test_star_copies_keep_the_non_null_elements_in_order(values: list[object]) -> None:
    field, problems = compile_field(EntrySpec("e", "ATTRIBUTE", "src[*]", "dst[*]"), RUNTIME)
    assert field is not None
    assert problems == []
    build, _ = build_entity([field], strict=True)
    expected = [v for v in values if v is not None]
    assert build({"src": values}, META, math.inf, []) == ({"dst": expected} if expected else None)


def test_examples_compile_with_the_kitchen_sink(tmp_path: Path) -> None:
    # Guards the fixture itself: every kitchen-sink entry compiles (a problem would hide cases).
    data = base_mapping(_entries())
    load_mapping_file(write_mapping(tmp_path, data), DEFAULTS, runtime=RUNTIME)
