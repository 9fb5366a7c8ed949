"""Decoding: good bytes become values; bad bytes are poison; a registry outage is not."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import fastavro
import orjson
import pytest

from connector.errors import PoisonError, RetryableError
from connector.source.decode import ConfluentAvroDecoder, FixedAvroDecoder, decode_json

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

    def schema_text(self, schema_id: int) -> str:
        self.calls += 1
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
