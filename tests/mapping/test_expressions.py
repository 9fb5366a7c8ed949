"""Operators, methods, field access and Kafka metadata inside expressions."""

from __future__ import annotations

import pytest

from connector.records import SourceRecord
from tests.mapping.support import error_of, evaluate


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('"a" + "b"', "ab"),
        ('"n=" + 1', "n=1"),
        ('"v" + 1.5 + true', "v1.5true"),
        ("1 + 2.5", 3.5),
        ('"3" - 1', 2),
        ('"2" * "4"', 8),
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("7.0 / 2", 3.5),
        ("-7 mod 3", -1),
        ("7.5 mod 2", 1.5),
        ("x + 1", None),
        ("x * 2", None),
        ('x + "a"', None),
        ("-x", None),
        ('1 == "1"', True),
        ('1 == "1.0"', True),
        ("1 == 1.0", True),
        ("true == 1", False),
        ('"a" == "A"', False),
        ("x == null", True),
        ("x != null", False),
        ('x == ""', False),
        ("[1, 2] == [1, 2]", True),
        ('"b" > "a"', True),
        ('2 < "10"', True),
        ("x < 1", False),
        ("x >= 1", False),
        ("not x", True),
        ('!""', True),
        ("![]", True),
        ("!0", True),
        ('"x" && 1', True),
        ("x || 0", False),
        ('iif(x, "t", "f")', "f"),
    ],
)
def test_operator_semantics(source: str, expected: object) -> None:
    assert evaluate(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("1 / 0", "division by zero"),
        ("1 mod 0", "division by zero"),
        ('"a" * 2', "not a number"),
        ("[1] < 2", "cannot compare"),
        ("true - 1", "expected a number"),
    ],
)
def test_operator_errors(source: str, message: str) -> None:
    assert message in error_of(source)


def test_mod_of_an_infinite_number_is_a_field_error() -> None:
    # Avro doubles can be infinite; Java's answer (NaN) is no JSON value, Python's fmod raises.
    for record in ({"a": float("inf"), "b": 2.0}, {"a": float("inf"), "b": float("inf")}):
        assert "has no number as its result" in error_of("a mod b", record)
    assert evaluate("a mod b", {"a": 5.5, "b": float("inf")}) == 5.5


def test_and_or_short_circuit() -> None:
    assert evaluate("false and to_integer(s) == 1", {"s": "x"}) is False
    assert evaluate("true or to_integer(s) == 1", {"s": "x"}) is True


def test_methods() -> None:
    record = {"s": "Hello", "o": {"k": 1, "7": "seven"}, "a": [10, 20]}
    assert evaluate('s.equals("Hello")', record) is True
    assert evaluate('s.equals("hello")', record) is False
    assert evaluate('s.equalsIgnoreCase("hELLO")', record) is True
    assert evaluate('missing.equals("x")', record) is None
    assert evaluate("s.equals(missing)", record) is False
    assert evaluate('o.get("k")', record) == 1
    assert evaluate("o.get(7)", record) == "seven"
    assert evaluate("a.get(1)", record) == 20
    assert evaluate("a.get(5)", record) is None
    assert "cannot read a field" in error_of('s.get("x")', record)


def test_field_access_on_values() -> None:
    record = {"j": '{"a": {"b": [1, 2]}}', "list": [[1, 2], [3]]}
    assert evaluate("json_to_object(j).a.b[1]", record) == 2
    assert evaluate("json_to_object(j).z.b", record) is None
    assert evaluate("list[1][0]", record) == 3
    assert evaluate("list[9][0]", record) is None
    assert evaluate("list.x", record) is None


def test_star_without_a_bound_destination_collects() -> None:
    record = {
        "items": [{"sku": "a", "tags": ["x", "y"]}, {"sku": "b", "tags": []}, {"tags": ["z"]}],
    }
    assert evaluate("items[*].sku", record) == ["a", "b", None]
    assert evaluate("items[*].tags[*]", record) == [["x", "y"], [], ["z"]]
    assert evaluate('join(",", items[*].sku)', record) == "a,b"
    assert evaluate("size_of(items[*])", record) == 3
    assert evaluate("missing[*].sku", record) is None


def test_kafka_metadata() -> None:
    meta = SourceRecord(
        "orders", 2, 17, 1571829875000, b"key-1", None, (("trace", b"t-9"), ("empty", None))
    )
    assert evaluate("_kafka.topic", meta=meta) == "orders"
    assert evaluate("_kafka.partition", meta=meta) == 2
    assert evaluate("_kafka.offset", meta=meta) == 17
    assert evaluate("_kafka.timestamp", meta=meta) == 1571829875000
    assert evaluate("_kafka.key", meta=meta) == "key-1"
    assert evaluate("_kafka.headers.trace", meta=meta) == "t-9"
    assert evaluate("_kafka.headers.absent", meta=meta) is None
    assert evaluate('_kafka.headers.get("trace")', meta=meta) == "t-9"
    assert evaluate("_kafka", meta=meta) == {
        "topic": "orders",
        "partition": 2,
        "offset": 17,
        "timestamp": 1571829875000,
        "key": "key-1",
        "headers": {"trace": "t-9", "empty": None},
    }
    assert evaluate('dformat(_kafka.timestamp, "yyyy-MM-dd")', meta=meta) == "2019-10-23"
    assert evaluate("${_kafka}.topic", {"_kafka": {"topic": "a field"}}, meta=meta) == "a field"


def test_kafka_key_and_headers_are_text_decoded_where_read() -> None:
    """The record keeps the key's and headers' bytes; an expression sees UTF-8 text with
    undecodable bytes replaced, and a header name given twice has its last value."""
    meta = SourceRecord(
        "orders", 0, 1, None, b"k\xff", None, (("h", b"first"), ("h", b"last"), ("bad", b"\xfe"))
    )
    assert evaluate("_kafka.key", meta=meta) == "k\ufffd"
    assert evaluate("_kafka.headers.h", meta=meta) == "last"
    assert evaluate("_kafka.headers.bad", meta=meta) == "\ufffd"
    assert evaluate("_kafka.headers", meta=meta) == {"h": "last", "bad": "\ufffd"}
    assert evaluate("_kafka.key", meta=meta._replace(key=None)) is None
    assert evaluate("_kafka.headers.h", meta=meta._replace(headers=())) is None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('a + "/" + n + "/" + f', "x/3/1.5"),
        ('"[" + a + "]" + t', "[x]true"),
        ('1 + "a" + 2', "1a2"),
        ('1 + 2 + "a"', "3a"),
        ('a + "/" + missing + "/"', None),
        ('"a" + null + "b"', None),
        ('"d=" + date("2019-10-23") + ";" + o', 'd=2019-10-23T00:00:00Z;{"k":1}'),
    ],
)
def test_string_plus_chains(source: str, expected: object) -> None:
    record = {"a": "x", "n": 3, "f": 1.5, "t": True, "o": {"k": 1, "z": None}}
    assert evaluate(source, record) == expected
