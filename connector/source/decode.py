"""Record value bytes → Python objects: JSON, Avro in the Confluent wire format (schemas from
a registry, cached by id), or Avro with a fixed schema file.

Any bytes are safe to decode: a value over the size limit is refused before decoding, and a
decoded value stays within the depth and value-count limits (connector.source.limits). Bad
bytes, and a registry schema that cannot be used, are the record's fault (PoisonError, stage
`decode`, a short fixed reason); a registry that cannot be reached is not (RetryableError), so
it never sends a record to the dead-letter topic. Decoders raise nothing else.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson

from connector.errors import HaltError, PoisonError, RetryableError
from connector.source.avro import AvroSchema, SchemaError
from connector.source.limits import DecodeLimits, check_decoded

Decoder = Callable[[bytes], Any]

#: Seconds an unknown schema id is answered from memory before the registry is asked again.
DEFAULT_UNKNOWN_SCHEMA_TTL_S = 60.0
#: Schema ids remembered as unknown or unusable; beyond it the oldest are forgotten, so that
#: records with random ids cannot grow memory.
MAX_REFUSED_SCHEMA_IDS = 10_000


class JsonDecoder:
    """JSON (orjson) within the limits.

    orjson itself refuses nesting beyond 1024. The exact depth and value count are checked by a
    walk of the decoded value only when cheap bounds cannot rule a breach out: a value of n bytes
    is at most n/2 deep and holds at most (n+1)/2 values; the count of `{` and `[` bounds the
    depth, and with the count of `,` the values. Records of ordinary shape pay for two
    `bytes.count` calls, not a walk.
    """

    def __init__(self, limits: DecodeLimits | None = None) -> None:
        self.limits = limits or DecodeLimits()

    def __call__(self, value: bytes) -> Any:
        limits = self.limits
        limits.check_size(value)
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            reason = "too_deep" if "depth limit" in str(exc) else "invalid_json"
            raise PoisonError("decode", f"invalid JSON: {exc}", reason) from None
        size = len(value)
        may_be_deep = size > 2 * limits.max_depth
        may_hold_too_many = size >= 2 * limits.max_values
        if may_be_deep or may_hold_too_many:
            containers = value.count(b"{") + value.count(b"[")
            if containers > limits.max_depth or (
                may_hold_too_many and value.count(b",") + containers >= limits.max_values
            ):
                check_decoded(decoded, limits)
        return decoded


#: Decodes JSON with the default limits (the worker builds a JsonDecoder from the settings).
decode_json = JsonDecoder()


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
    """Magic byte 0, 4-byte big-endian schema id, then the Avro binary datum.

    Schemas are fetched once per id. An id the registry does not know is remembered for
    `unknown_schema_ttl_s` (records carrying it are dead-lettered without asking again); an id
    whose schema cannot be used is remembered for good, since a registry never changes the
    schema of an id.
    """

    def __init__(
        self,
        schemas: SchemaSource,
        limits: DecodeLimits | None = None,
        unknown_schema_ttl_s: float = DEFAULT_UNKNOWN_SCHEMA_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._schemas = schemas
        self.limits = limits or DecodeLimits()
        self._unknown_ttl_s = unknown_schema_ttl_s
        self._clock = clock
        self._parsed: dict[int, AvroSchema] = {}
        self._refused: dict[int, tuple[PoisonError, float]] = {}  # id → (error, until)

    def __call__(self, value: bytes) -> Any:
        self.limits.check_size(value)
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
            schema = self._schema(schema_id)
        return schema.read(value, 5)

    def _schema(self, schema_id: int) -> AvroSchema:
        refused = self._refused.get(schema_id)
        if refused is not None:
            error, until = refused
            if self._clock() < until:
                raise PoisonError("decode", str(error), error.reason)
            del self._refused[schema_id]
        try:
            text = self._schemas.schema_text(schema_id)  # RetryableError passes through
            schema = self._parse(schema_id, text)
        except PoisonError as exc:
            unknown = exc.reason == "unknown_schema"
            self._remember_refusal(schema_id, exc, self._unknown_ttl_s if unknown else None)
            raise
        self._parsed[schema_id] = schema
        return schema

    def _parse(self, schema_id: int, text: str) -> AvroSchema:
        try:
            return AvroSchema(orjson.loads(text), self.limits)
        except (orjson.JSONDecodeError, SchemaError) as exc:
            raise PoisonError(
                "decode", f"schema id {schema_id} is not usable: {exc}", "wrong_schema"
            ) from None

    def _remember_refusal(self, schema_id: int, error: PoisonError, ttl_s: float | None) -> None:
        if len(self._refused) >= MAX_REFUSED_SCHEMA_IDS:
            del self._refused[next(iter(self._refused))]  # the oldest
        until = float("inf") if ttl_s is None else self._clock() + ttl_s
        self._refused[schema_id] = (error, until)


class FixedAvroDecoder:
    """Raw Avro binary datums (no framing) written with one known schema."""

    def __init__(self, schema_file: Path, limits: DecodeLimits | None = None) -> None:
        self.limits = limits or DecodeLimits()
        try:
            self._schema = AvroSchema(orjson.loads(schema_file.read_bytes()), self.limits)
        except (OSError, orjson.JSONDecodeError, SchemaError) as exc:
            # The deployment's fault, not a record's: the mapping names a schema it cannot use.
            raise HaltError(f"Avro schema file {schema_file} is not usable: {exc}") from None
        self.schema = self._schema.parsed

    def __call__(self, value: bytes) -> Any:
        self.limits.check_size(value)
        return self._schema.read(value, 0)
