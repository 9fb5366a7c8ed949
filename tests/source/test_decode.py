"""Decoding: good bytes become values; bad bytes, oversized values, values beyond the depth or
value-count limits and unusable schemas are poison; a registry outage is not."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import HaltError, PoisonError, RetryableError
from connector.source.decode import (
    MAX_REFUSED_SCHEMA_IDS,
    ConfluentAvroDecoder,
    FixedAvroDecoder,
    JsonDecoder,
    decode_json,
)
from connector.source.limits import DEFAULT_MAX_VALUE_BYTES, DecodeLimits
from tests.source.test_limits import JSON_VALUES, depth_of, values_in

SCHEMA = {
    "type": "record",
    "name": "Event",
    "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "long"}],
}


def avro_bytes(datum: dict[str, object]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), datum)
    return out.getvalue()


class Schemas:
    def __init__(self, known: dict[int, str], down: bool = False) -> None:
        self.known = known
        self.down = down
        self.calls = 0
        self.asked: list[int] = []

    def schema_text(self, schema_id: int) -> str:
        self.calls += 1
        self.asked.append(schema_id)
        if self.down:
            raise RetryableError("registry unreachable")
        if schema_id not in self.known:
            raise PoisonError("decode", f"unknown schema id {schema_id}", "unknown_schema")
        return self.known[schema_id]


def test_json() -> None:
    assert decode_json(b'{"a": [1, "\xc3\xa9"]}') == {"a": [1, "é"]}
    with pytest.raises(PoisonError) as caught:
        decode_json(b'{"a": ')
    assert caught.value.stage == "decode"
    assert caught.value.reason == "invalid_json"


def test_confluent_wire_format_with_cached_schema() -> None:
    schemas = Schemas({7: orjson.dumps(SCHEMA).decode()})
    decoder = ConfluentAvroDecoder(schemas)
    framed = struct.pack(">bI", 0, 7) + avro_bytes({"id": "x", "n": 5})
    assert decoder(framed) == {"id": "x", "n": 5}
    assert decoder(framed) == {"id": "x", "n": 5}
    assert schemas.calls == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x01\x00\x00\x00\x07abc", "wire_format"),
        (b"\x00\x00", "wire_format"),
        (struct.pack(">bI", 0, 99) + b"\x02x\x0a", "unknown_schema"),
        (struct.pack(">bI", 0, 7) + b"\x09", "invalid_avro"),
        (struct.pack(">bI", 0, 7) + avro_bytes({"id": "x", "n": 5}) + b"extra", "invalid_avro"),
    ],
)
def test_confluent_poison(value: bytes, reason: str) -> None:
    decoder = ConfluentAvroDecoder(Schemas({7: orjson.dumps(SCHEMA).decode()}))
    with pytest.raises(PoisonError) as caught:
        decoder(value)
    assert caught.value.reason == reason


def test_registry_outage_is_retryable_not_poison() -> None:
    decoder = ConfluentAvroDecoder(Schemas({}, down=True))
    with pytest.raises(RetryableError):
        decoder(struct.pack(">bI", 0, 7) + avro_bytes({"id": "x", "n": 5}))


def test_fixed_schema_file(tmp_path: Path) -> None:
    path = tmp_path / "event.avsc"
    path.write_bytes(orjson.dumps(SCHEMA))
    decoder = FixedAvroDecoder(path)
    assert decoder(avro_bytes({"id": "y", "n": -1})) == {"id": "y", "n": -1}
    with pytest.raises(PoisonError):
        decoder(b"\x02")


def framed(schema_id: int, datum: bytes = b"") -> bytes:
    return struct.pack(">bI", 0, schema_id) + datum


def reason_of(decoder: Any, value: bytes) -> str:
    with pytest.raises(PoisonError) as caught:
        decoder(value)
    assert caught.value.stage == "decode"
    return caught.value.reason


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------- size


def test_the_default_size_limit_is_a_little_above_the_apis_message_limit() -> None:
    assert 1_048_576 < DEFAULT_MAX_VALUE_BYTES <= 2 * 1_048_576


def test_a_50_mb_value_is_refused_before_decoding(tmp_path: Path) -> None:
    huge = b"{" * (50 * 1024 * 1024)  # not JSON and not Avro: decoding would say so instead
    assert reason_of(decode_json, huge) == "too_large"
    schemas = Schemas({7: orjson.dumps(SCHEMA).decode()})
    assert reason_of(ConfluentAvroDecoder(schemas), framed(7, huge)) == "too_large"
    assert schemas.calls == 0  # not even the schema was fetched
    path = tmp_path / "event.avsc"
    path.write_bytes(orjson.dumps(SCHEMA))
    assert reason_of(FixedAvroDecoder(path), huge) == "too_large"


def test_the_size_limit_is_the_setting() -> None:
    decoder = JsonDecoder(DecodeLimits(max_value_bytes=20))
    assert decoder(b'{"a": "0123456789a"}') == {"a": "0123456789a"}  # 20 bytes
    assert reason_of(decoder, b'{"a": "0123456789ab"}') == "too_large"


# ---------------------------------------------------------------------------- JSON depth, values


def nested_json(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_json_deeper_than_the_limit_is_refused() -> None:
    assert decode_json(nested_json(100))["a"]["a"]["a"]
    assert reason_of(decode_json, nested_json(101)) == "too_deep"
    assert reason_of(decode_json, b"[" * 5000 + b"]" * 5000) == "too_deep"  # orjson's own limit


def test_json_with_too_many_values_is_refused() -> None:
    decoder = JsonDecoder(DecodeLimits(max_values=1000))
    assert len(decoder(orjson.dumps(list(range(999))))) == 999  # the list and 999 numbers
    assert reason_of(decoder, orjson.dumps(list(range(1000)))) == "too_many_values"


def test_many_shallow_containers_are_fine() -> None:
    """More containers than max_depth makes the walk run; it must not refuse a shallow value."""
    value = [{"a": [1]} for _ in range(500)]
    assert decode_json(orjson.dumps(value)) == value


@settings(max_examples=200, deadline=None)
@given(
    value=JSON_VALUES,
    indent=st.booleans(),
    max_depth=st.integers(1, 5),
    max_values=st.integers(1, 30),
)
def test_json_limits_hold_whatever_the_shortcuts(
    value: Any, indent: bool, max_depth: int, max_values: int
) -> None:
    """The byte-count shortcuts never let through a value the exact walk would refuse."""
    raw = orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0)
    decoder = JsonDecoder(DecodeLimits(max_depth=max_depth, max_values=max_values))
    over = depth_of(value) > max_depth or values_in(value) > max_values
    try:
        assert decoder(raw) == value
        refused = False
    except PoisonError:
        refused = True
    assert refused == over


# ---------------------------------------------------------------------------- registry schemas

NODE = {
    "type": "record",
    "name": "Node",
    "fields": [{"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"]}],
}


def test_recursive_registry_schema_decodes_and_is_depth_limited() -> None:
    decoder = ConfluentAvroDecoder(Schemas({3: orjson.dumps(NODE).decode()}))
    assert decoder(framed(3, b"\x02\x02\x04\x00")) == {"v": 1, "next": {"v": 2, "next": None}}
    assert reason_of(decoder, framed(3, b"\x00\x02" * 101 + b"\x00\x00")) == "too_deep"


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"array"}',
        "42",
        "null",
        '"Foo"',
        "[]",
        '{"type":"record","name":"X","fields":[{"name":"a","type":"X"}]}',
        "not json",
    ],
)
def test_unusable_registry_schema_is_the_records_fault_and_asked_once(text: str) -> None:
    schemas = Schemas({7: text})
    decoder = ConfluentAvroDecoder(schemas)
    assert reason_of(decoder, framed(7, b"\x00")) == "wrong_schema"
    assert reason_of(decoder, framed(7, b"\x00")) == "wrong_schema"
    assert schemas.calls == 1  # a registry never changes the schema of an id


def test_unknown_schema_id_is_not_asked_again_until_the_ttl_passes() -> None:
    clock = Clock()
    schemas = Schemas({})
    decoder = ConfluentAvroDecoder(schemas, unknown_schema_ttl_s=30, clock=clock)
    for _ in range(100):
        assert reason_of(decoder, framed(99, b"\x00")) == "unknown_schema"
    assert schemas.asked == [99]
    clock.now += 29.9
    assert reason_of(decoder, framed(99, b"\x00")) == "unknown_schema"
    assert schemas.asked == [99]
    clock.now += 0.2
    schemas.known[99] = orjson.dumps(SCHEMA).decode()  # registered meanwhile
    assert decoder(framed(99, avro_bytes({"id": "x", "n": 5}))) == {"id": "x", "n": 5}
    assert schemas.asked == [99, 99]


def test_remembered_refusals_are_bounded() -> None:
    schemas = Schemas({})
    decoder = ConfluentAvroDecoder(schemas)
    for schema_id in range(MAX_REFUSED_SCHEMA_IDS + 1):
        reason_of(decoder, framed(schema_id, b"\x00"))
    assert len(decoder._refused) == MAX_REFUSED_SCHEMA_IDS
    reason_of(decoder, framed(0, b"\x00"))  # the oldest was forgotten: asked again
    assert schemas.asked[-1] == 0
    assert schemas.calls == MAX_REFUSED_SCHEMA_IDS + 2


def test_registry_outage_is_not_remembered() -> None:
    schemas = Schemas({7: orjson.dumps(SCHEMA).decode()}, down=True)
    decoder = ConfluentAvroDecoder(schemas)
    with pytest.raises(RetryableError):
        decoder(framed(7, avro_bytes({"id": "x", "n": 5})))
    schemas.down = False
    assert decoder(framed(7, avro_bytes({"id": "x", "n": 5}))) == {"id": "x", "n": 5}


# ---------------------------------------------------------------------------- fixed schema file


def test_fixed_recursive_schema_file(tmp_path: Path) -> None:
    path = tmp_path / "node.avsc"
    path.write_bytes(orjson.dumps(NODE))
    decoder = FixedAvroDecoder(path, DecodeLimits(max_depth=3))
    assert decoder(b"\x02\x02\x04\x02\x06\x00") == {
        "v": 1,
        "next": {"v": 2, "next": {"v": 3, "next": None}},
    }
    assert reason_of(decoder, b"\x02\x02\x04\x02\x06\x02\x08\x00") == "too_deep"


@pytest.mark.parametrize("content", [b'{"type":"array"}', b"{", b"[]"])
def test_an_unusable_schema_file_halts(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.avsc"
    path.write_bytes(content)
    with pytest.raises(HaltError, match=r"bad\.avsc is not usable"):
        FixedAvroDecoder(path)
