"""Avro schemas checked once and read safely: which reader a datum gets, what each refuses, and
that the pure-Python reader gives fastavro's values."""

from __future__ import annotations

import datetime
import decimal
import io
import subprocess
import sys
import uuid
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import PoisonError
from connector.source.avro import AvroSchema, SchemaError
from connector.source.limits import DecodeLimits

NODE = {
    "type": "record",
    "name": "Node",
    "namespace": "t",
    "fields": [
        {"name": "v", "type": "int"},
        {"name": "next", "type": ["null", "Node"]},
    ],
}
EVENT = {
    "type": "record",
    "name": "Event",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "long", "double"]}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "raw", "type": {"type": "fixed", "name": "Raw", "size": 3}},
        {"name": "ok", "type": "boolean"},
        {"name": "ratio", "type": "float"},
        {"name": "blob", "type": "bytes"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {"name": "again", "type": ["null", "Kind", "Raw"]},
    ],
}
EVENT_DATUM = {
    "id": "e-1",
    "tags": ["a", "é"],
    "attrs": {"x": None, "y": 3, "z": 1.5},
    "kind": "B",
    "raw": b"abc",
    "ok": True,
    "ratio": 0.5,
    "blob": b"\x00\xff",
    "at": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC),
    "day": datetime.date(2024, 5, 1),
    "uid": uuid.UUID(int=7),
    "price": decimal.Decimal("12.34"),
    "again": b"xyz",
}


def encode(schema: Any, datum: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


def fastavro_long(n: int) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema("long"), n)
    return out.getvalue()


def chain(depth: int) -> dict[str, Any]:
    """A Node list `depth` records deep."""
    node: dict[str, Any] | None = None
    for n in range(depth):
        node = {"v": n, "next": node}
    assert node is not None
    return node


def chain_bytes(depth: int) -> bytes:
    """The Avro bytes of chain(depth), built directly (fastavro's writer recurses too)."""
    return b"\x00\x02" * (depth - 1) + b"\x00\x00"  # v=0, branch 1 (Node) ... last: branch 0


def poison(schema: AvroSchema, value: bytes) -> PoisonError:
    with pytest.raises(PoisonError) as caught:
        schema.read(value, 0)
    assert caught.value.stage == "decode"
    return caught.value


# ---------------------------------------------------------------------------- which reader


def test_a_plain_schema_is_read_by_fastavro_a_recursive_one_is_not() -> None:
    event = AvroSchema(EVENT, DecodeLimits())
    assert not event.recursive
    assert event.uses_c_reader(len(encode(EVENT, EVENT_DATUM)))
    node = AvroSchema(NODE, DecodeLimits())
    assert node.recursive
    assert not node.uses_c_reader(4)


def test_a_datum_too_large_to_rule_out_too_many_values_goes_to_the_counting_reader() -> None:
    schema = AvroSchema({"type": "array", "items": "long"}, DecodeLimits(max_values=1000))
    assert schema.uses_c_reader(999)  # at most the array and one long per byte: 1,000 values
    assert not schema.uses_c_reader(1000)


def test_a_schema_deeper_than_the_limit_goes_to_the_counting_reader() -> None:
    schema: Any = "int"
    for _ in range(5):
        schema = {"type": "array", "items": schema}
    assert AvroSchema(schema, DecodeLimits(max_depth=5)).uses_c_reader(10)
    assert not AvroSchema(schema, DecodeLimits(max_depth=4)).uses_c_reader(10)


@pytest.mark.parametrize(
    "items",
    [
        "null",
        {"type": "record", "name": "Empty", "fields": []},
        {"type": "fixed", "name": "F0", "size": 0},
    ],
)
def test_items_that_take_no_bytes_always_go_to_the_counting_reader(items: Any) -> None:
    assert not AvroSchema({"type": "array", "items": items}, DecodeLimits()).uses_c_reader(2)


# ---------------------------------------------------------------------------- unusable schemas


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"type": "array"}, "KeyError"),
        ({"type": "map"}, "KeyError"),
        (42, "TypeError"),
        (None, "TypeError"),
        ("Foo", "UnknownType"),
        ([], "a union with no branches"),
        ({"type": "enum", "name": "E", "symbols": []}, "enum E has no symbols"),
        ({"type": "fixed", "name": "F", "size": -1}, "fixed F has no valid size"),
        ({"type": "fixed", "name": "F", "size": "x"}, "fixed F has no valid size"),
        ({"type": "record", "name": "X", "fields": [{"name": "a", "type": "X"}]}, "requires"),
        (
            {
                "type": "record",
                "name": "A",
                "fields": [
                    {
                        "name": "b",
                        "type": {
                            "type": "record",
                            "name": "B",
                            "fields": [{"name": "a", "type": "A"}],
                        },
                    }
                ],
            },
            "requires",
        ),
        # fastavro takes a schema carrying these keys as already parsed, and checks nothing
        ({"type": "array", "__fastavro_parsed": True, "__named_schemas": {}}, "KeyError"),
        (
            {
                "type": "record",
                "name": "R",
                "fields": "x",
                "__fastavro_parsed": True,
                "__named_schemas": {},
            },
            "TypeError",
        ),
    ],
)
def test_unusable_schemas_are_refused_with_a_reason(schema: Any, why: str) -> None:
    with pytest.raises(SchemaError, match=why):
        AvroSchema(schema, DecodeLimits())


def test_a_schema_nested_absurdly_deep_is_refused() -> None:
    schema: Any = "int"
    for _ in range(400):
        schema = {"type": "array", "items": schema}
    with pytest.raises(SchemaError, match="nested deeper"):
        AvroSchema(schema, DecodeLimits())


def test_mutual_recursion_with_a_way_out_is_usable() -> None:
    """A needs B, B may hold A: finite values exist (a pessimistic single pass would say no)."""
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {
                "name": "a",
                "type": {
                    "type": "record",
                    "name": "A",
                    "fields": [
                        {
                            "name": "u",
                            "type": [
                                "null",
                                {
                                    "type": "record",
                                    "name": "B",
                                    "fields": [{"name": "a", "type": "A"}],
                                },
                            ],
                        }
                    ],
                },
            },
            {"name": "b", "type": "B"},
        ],
    }
    parsed = AvroSchema(schema, DecodeLimits())
    datum = {"a": {"u": {"a": {"u": None}}}, "b": {"a": {"u": None}}}
    assert parsed.read(encode(schema, datum), 0) == datum


# ---------------------------------------------------------------------------- recursive datums


def test_recursive_datum_within_the_limit_reads_like_fastavro() -> None:
    schema = AvroSchema(NODE, DecodeLimits(max_depth=100))
    value = encode(NODE, chain(100))
    assert schema.read(value, 0) == chain(100)
    assert poison(schema, encode(NODE, chain(101))).reason == "too_deep"


def test_a_recursive_datum_5000_deep_is_refused_not_a_crash() -> None:
    """Today's crash: fastavro's C reader overflows the C stack (SIGSEGV) on this 10 KB datum.
    Run in a child process so that a regression fails this test, not the whole session."""
    script = (
        "from connector.source.avro import AvroSchema\n"
        "from connector.source.limits import DecodeLimits\n"
        "from connector.errors import PoisonError\n"
        "from tests.source.test_avro import NODE, chain_bytes\n"
        "try:\n"
        "    AvroSchema(NODE, DecodeLimits()).read(chain_bytes(5000), 0)\n"
        "except PoisonError as exc:\n"
        "    print(exc.reason)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "too_deep"


def test_a_deep_datum_of_a_deep_plain_schema_is_refused() -> None:
    schema: Any = "int"
    for _ in range(6):
        schema = {"type": "array", "items": schema}
    value = encode(schema, [[[[[[1]]]]]])
    assert AvroSchema(schema, DecodeLimits(max_depth=6)).read(value, 0) == [[[[[[1]]]]]]
    assert poison(AvroSchema(schema, DecodeLimits(max_depth=5)), value).reason == "too_deep"


# ---------------------------------------------------------------------------- value counts


def test_a_few_bytes_declaring_a_hundred_million_nulls_are_refused_at_once() -> None:
    """fastavro builds the list: 18 s and 780 MB for these 6 bytes."""
    schema = AvroSchema({"type": "array", "items": "null"}, DecodeLimits())
    declared = fastavro_long(100_000_000)
    assert poison(schema, declared + b"\x00").reason == "too_many_values"
    assert schema.read(fastavro_long(3) + b"\x00", 0) == [None, None, None]


def test_nested_arrays_count_every_item_against_one_budget() -> None:
    schema = AvroSchema(
        {"type": "array", "items": {"type": "array", "items": "null"}}, DecodeLimits(max_values=100)
    )
    inner = fastavro_long(9) + b"\x00"  # nine nulls
    ten_of_them = fastavro_long(10) + inner * 10 + b"\x00"  # 1 + 10 + 90 = 101 values
    assert poison(schema, ten_of_them).reason == "too_many_values"
    nine_of_them = fastavro_long(9) + inner * 9 + b"\x00"  # 1 + 9 + 81 = 91 values
    assert len(schema.read(nine_of_them, 0)) == 9


def test_record_fields_count_as_values() -> None:
    fields = [{"name": f"f{i}", "type": "null"} for i in range(50)]
    schema = {"type": "array", "items": {"type": "record", "name": "R", "fields": fields}}
    parsed = AvroSchema(schema, DecodeLimits(max_values=200))
    four = fastavro_long(4) + b"\x00"  # 1 + 4 * (1 + 50) = 205 values
    assert poison(parsed, four).reason == "too_many_values"
    assert len(parsed.read(fastavro_long(3) + b"\x00", 0)) == 3  # 154 values


def test_the_fast_path_bound_holds_for_large_datums_of_a_plain_schema() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "xs", "type": {"type": "array", "items": "long"}}],
    }
    limits = DecodeLimits(max_values=1000)
    parsed = AvroSchema(schema, limits)
    ok = encode(schema, {"xs": list(range(998))})  # 2 + 998 values
    assert parsed.read(ok, 0) == {"xs": list(range(998))}
    assert poison(parsed, encode(schema, {"xs": list(range(999))})).reason == "too_many_values"


# ---------------------------------------------------------------------------- the Python reader


def test_the_counting_reader_gives_fastavros_values_for_every_type() -> None:
    parsed = AvroSchema(EVENT, DecodeLimits())
    value = encode(EVENT, EVENT_DATUM)
    limited = parsed._limited.read(value, 0)
    assert limited == fastavro.schemaless_reader(io.BytesIO(value), parsed.parsed, None)
    assert limited == EVENT_DATUM


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"", "truncated"),
        (b"\x00", "truncated"),  # v, then no union index
        (b"\x00\x04", "union branch 2 of 2"),
        (b"\x00\x01", "union branch -1 of 2"),
        (b"\xff" * 11, "varint longer than 10 bytes"),
        (b"\x00\x00\x00", "1 bytes after the Avro datum"),
    ],
)
def test_the_counting_reader_refuses_bad_bytes(value: bytes, why: str) -> None:
    error = poison(AvroSchema(NODE, DecodeLimits()), value)
    assert error.reason == "invalid_avro"
    assert why in str(error)


@pytest.mark.parametrize(
    ("schema", "value", "why"),
    [
        ("string", b"\x04\xff\xfe", "truncated or malformed"),  # not UTF-8
        ("string", b"\x0a" + b"ab", "runs past the end"),
        ("bytes", b"\x01", "length -1"),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, b"\x02", "enum index 1 of 1"),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, b"\x01", "enum index -1 of 1"),
        ("double", b"\x00" * 7, "truncated or malformed"),
        ({"type": "int", "logicalType": "date"}, b"\xfe\xff\xff\xff\x7f", "invalid Avro datum"),
    ],
)
def test_the_counting_reader_refuses_bad_scalars(schema: Any, value: bytes, why: str) -> None:
    wrapped = {"type": "record", "name": "W", "fields": [{"name": "x", "type": ["null", schema]}]}
    parsed = AvroSchema(wrapped, DecodeLimits())
    with pytest.raises(PoisonError) as caught:
        parsed._limited.read(b"\x02" + value, 0)  # the counting reader is the one under test
    assert caught.value.reason == "invalid_avro"
    assert why in str(caught.value)


@settings(max_examples=100, deadline=None)
@given(depth=st.integers(1, 60), values=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=60))
def test_recursive_datums_read_the_same_as_fastavro(depth: int, values: list[int]) -> None:
    node: dict[str, Any] | None = None
    for n in range(depth):
        node = {"v": values[n] if n < len(values) else n, "next": node}
    value = encode(NODE, node)
    parsed = AvroSchema(NODE, DecodeLimits())
    assert parsed.read(value, 0) == fastavro.schemaless_reader(
        io.BytesIO(value), parsed.parsed, None
    )
