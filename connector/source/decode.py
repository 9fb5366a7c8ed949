"""Record value bytes → Python objects: JSON, Avro in the Confluent wire format (schemas from
a registry, cached by id), or Avro with a fixed schema file.

Bad bytes are the record's fault (PoisonError, stage `decode`); a registry that cannot be
reached is not (RetryableError), so it never sends a record to the dead-letter topic.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import fastavro
import orjson

from connector.errors import PoisonError, RetryableError

Decoder = Callable[[bytes], Any]


def decode_json(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise PoisonError("decode", f"invalid JSON: {exc}", "invalid_json") from None


class SchemaSource(Protocol):
    """What the Avro decoder needs from a schema registry: the schema text of an id."""

    def schema_text(self, schema_id: int) -> str: ...


class RegistrySchemas:
    """Schemas from a Confluent-compatible registry (confluent-kafka's client)."""

    def __init__(self, config: dict[str, str]) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self._client = SchemaRegistryClient(config)

    def schema_text(self, schema_id: int) -> str:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code in (404, 422):
                raise PoisonError(
                    "decode", f"unknown schema id {schema_id}: {exc}", "unknown_schema"
                ) from None
            raise RetryableError(f"schema registry error for id {schema_id}: {exc}") from None
        except Exception as exc:  # the client raises transport errors of several libraries
            raise RetryableError(
                f"schema registry unreachable for id {schema_id}: {type(exc).__name__}: {exc}"
            ) from None
        if schema.schema_type not in (None, "AVRO"):
            raise PoisonError(
                "decode", f"schema id {schema_id} is {schema.schema_type}, not Avro", "wrong_schema"
            )
        return str(schema.schema_str)


_HEADER = struct.Struct(">bI")


class ConfluentAvroDecoder:
    """Magic byte 0, 4-byte big-endian schema id, then the Avro binary datum."""

    def __init__(self, schemas: SchemaSource) -> None:
        self._schemas = schemas
        self._parsed: dict[int, Any] = {}

    def __call__(self, value: bytes) -> Any:
        if len(value) < 5:
            raise PoisonError(
                "decode", f"too short for the Confluent wire format ({len(value)} B)", "wire_format"
            )
        magic, schema_id = _HEADER.unpack_from(value)
        if magic != 0:
            raise PoisonError(
                "decode", f"not the Confluent wire format: magic byte {magic}", "wire_format"
            )
        schema = self._parsed.get(schema_id)
        if schema is None:
            text = self._schemas.schema_text(schema_id)
            try:
                schema = fastavro.parse_schema(orjson.loads(text))
            except (orjson.JSONDecodeError, fastavro.schema.SchemaParseException) as exc:
                raise PoisonError(
                    "decode", f"schema id {schema_id} is not usable: {exc}", "wrong_schema"
                ) from None
            self._parsed[schema_id] = schema
        return _read(value, 5, schema)


class FixedAvroDecoder:
    """Raw Avro binary datums (no framing) written with one known schema."""

    def __init__(self, schema_file: Path) -> None:
        self.schema = fastavro.parse_schema(orjson.loads(schema_file.read_bytes()))

    def __call__(self, value: bytes) -> Any:
        return _read(value, 0, self.schema)


def _read(value: bytes, start: int, schema: Any) -> Any:
    stream = io.BytesIO(value)
    stream.seek(start)
    try:
        datum = fastavro.schemaless_reader(stream, schema, None)
    except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ... on bad bytes
        raise PoisonError(
            "decode", f"invalid Avro datum: {type(exc).__name__}: {exc}", "invalid_avro"
        ) from None
    if stream.tell() != len(value):
        raise PoisonError(
            "decode", f"{len(value) - stream.tell()} bytes after the Avro datum", "invalid_avro"
        )
    return datum
