"""Fuzzing the decoders with a fixed budget: random bytes, mutated valid datums and random
schemas. A decoder may refuse a value only with the project's own errors (ConnectorError);
any other exception, a crash or a hang fails the test.

Each target runs `FUZZ_EXAMPLES` examples (a few seconds); failures are replayed first on the
next run from hypothesis's local database (.hypothesis/, not in git).
"""

from __future__ import annotations

import contextlib
import io
import struct
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import ConnectorError, PoisonError
from connector.source.avro import AvroSchema, SchemaError
from connector.source.decode import ConfluentAvroDecoder, FixedAvroDecoder, JsonDecoder
from connector.source.limits import DecodeLimits
from tests.source.test_avro import EVENT, EVENT_DATUM, NODE
from tests.source.test_limits import JSON_VALUES

FUZZ_EXAMPLES = 200
fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Small limits, so that the fuzzer reaches them with small inputs.
LIMITS = DecodeLimits(max_value_bytes=4096, max_depth=8, max_values=500)

ARRAY_OF_NULLS = {"type": "array", "items": "null"}
TREE = {
    "type": "record",
    "name": "Tree",
    "fields": [
        {"name": "label", "type": "string"},
        {"name": "children", "type": {"type": "array", "items": "Tree"}},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "Tree", "double"]}},
    ],
}
#: What the fuzzed registry holds: usable schemas (plain, recursive, zero-size items) and
#: unusable ones; any other id is unknown.
REGISTRY = {
    1: orjson.dumps(EVENT).decode(),
    2: orjson.dumps(NODE).decode(),
    3: orjson.dumps(TREE).decode(),
    4: orjson.dumps(ARRAY_OF_NULLS).decode(),
    5: '{"type":"array"}',
    6: "42",
    7: "[]",
    8: '{"type":"record","name":"X","fields":[{"name":"a","type":"X"}]}',
    9: "{not json",
}


class Registry:
    def schema_text(self, schema_id: int) -> str:
        if schema_id not in REGISTRY:
            raise PoisonError("decode", f"unknown schema id {schema_id}", "unknown_schema")
        return REGISTRY[schema_id]


def decodes_or_refuses(decoder: Any, value: bytes) -> None:
    """The contract under test: a value, or one of the connector's own errors."""
    with contextlib.suppress(ConnectorError):
        decoder(value)


def encode(schema: Any, datum: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid value with a few bytes flipped, inserted, deleted or duplicated, or cut short."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 4))]
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


def chain(depth: int) -> dict[str, Any]:
    node: dict[str, Any] | None = None
    for n in range(depth):
        node = {"v": n, "next": node}
    return node or {"v": 0, "next": None}


TREES = st.recursive(
    st.builds(lambda label: {"label": label, "children": [], "attrs": {}}, st.text(max_size=3)),
    lambda inner: st.builds(
        lambda label, children, attrs: {"label": label, "children": children, "attrs": attrs},
        st.text(max_size=3),
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=2), st.none() | inner | st.floats(), max_size=2),
    ),
    max_leaves=12,
)
VALID_DATUMS = st.one_of(
    st.just((1, encode(EVENT, EVENT_DATUM))),
    st.integers(1, 12).map(lambda depth: (2, encode(NODE, chain(depth)))),
    TREES.map(lambda tree: (3, encode(TREE, tree))),
    st.integers(0, 600).map(lambda n: (4, encode(ARRAY_OF_NULLS, [None] * n))),
)


# ---------------------------------------------------------------------------- JSON


@fuzz
@given(value=st.binary(max_size=2000))
def test_json_on_random_bytes(value: bytes) -> None:
    decodes_or_refuses(JsonDecoder(LIMITS), value)


@fuzz
@given(value=mutated(JSON_VALUES.map(orjson.dumps)))
def test_json_on_mutated_documents(value: bytes) -> None:
    decodes_or_refuses(JsonDecoder(LIMITS), value)


# ---------------------------------------------------------------------------- Confluent wire format


@fuzz
@given(schema_id=st.integers(0, 12) | st.integers(0, 2**32 - 1), datum=st.binary(max_size=2000))
def test_confluent_on_random_ids_and_bytes(schema_id: int, datum: bytes) -> None:
    decoder = ConfluentAvroDecoder(Registry(), LIMITS)
    decodes_or_refuses(decoder, struct.pack(">bI", 0, schema_id) + datum)


@fuzz
@given(value=st.binary(max_size=40))
def test_confluent_on_random_frames(value: bytes) -> None:
    decodes_or_refuses(ConfluentAvroDecoder(Registry(), LIMITS), value)


@fuzz
@given(value=mutated(VALID_DATUMS.map(lambda d: struct.pack(">bI", 0, d[0]) + d[1])))
def test_confluent_on_mutated_datums(value: bytes) -> None:
    decodes_or_refuses(ConfluentAvroDecoder(Registry(), LIMITS), value)


# ---------------------------------------------------------------------------- fixed schema


@pytest.fixture(scope="module")
def fixed_decoders(tmp_path_factory: pytest.TempPathFactory) -> dict[int, FixedAvroDecoder]:
    directory = tmp_path_factory.mktemp("schemas")
    decoders = {}
    for schema_id in (1, 2, 3, 4):
        path = directory / f"{schema_id}.avsc"
        path.write_text(REGISTRY[schema_id])
        decoders[schema_id] = FixedAvroDecoder(path, LIMITS)
    return decoders


@fuzz
@given(schema_id=st.sampled_from([1, 2, 3, 4]), value=st.binary(max_size=2000))
def test_fixed_schema_on_random_bytes(
    fixed_decoders: dict[int, FixedAvroDecoder], schema_id: int, value: bytes
) -> None:
    decodes_or_refuses(fixed_decoders[schema_id], value)


@fuzz
@given(datum=VALID_DATUMS, data=st.data())
def test_fixed_schema_on_mutated_datums(
    fixed_decoders: dict[int, FixedAvroDecoder], datum: tuple[int, bytes], data: st.DataObject
) -> None:
    schema_id, valid = datum
    value = data.draw(mutated(st.just(valid)))
    decodes_or_refuses(fixed_decoders[schema_id], value)


# ---------------------------------------------------------------------------- random schemas

NAMES = st.sampled_from(["A", "B", "C"])
PRIMITIVES = st.sampled_from(
    ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
)
ANYTHING = st.none() | st.booleans() | st.integers(-3, 40) | st.text(max_size=4)


def schemas() -> st.SearchStrategy[Any]:
    """Schema-like JSON: mostly well formed, with named references (often recursive), logical
    types, and now and then a missing or wrong key."""

    def compound(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        field = st.fixed_dictionaries({"name": st.sampled_from(["a", "b", "c"]), "type": inner})
        return st.one_of(
            st.lists(inner, max_size=3),  # a union
            st.fixed_dictionaries({"type": st.just("array"), "items": inner}),
            st.fixed_dictionaries({"type": st.just("map"), "values": inner}),
            st.fixed_dictionaries(
                {
                    "type": st.just("record"),
                    "name": NAMES,
                    "fields": st.lists(field, max_size=3, unique_by=lambda f: f["name"]),
                }
            ),
            st.fixed_dictionaries(
                {"type": st.just("enum"), "name": NAMES, "symbols": st.lists(NAMES, unique=True)}
            ),
            st.fixed_dictionaries({"type": st.just("fixed"), "name": NAMES, "size": ANYTHING}),
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["int", "long", "bytes", "string"]),
                    "logicalType": st.sampled_from(
                        ["date", "timestamp-millis", "uuid", "decimal", "time-micros"]
                    ),
                },
                optional={"precision": ANYTHING, "scale": ANYTHING},
            ),
            st.dictionaries(st.sampled_from(["type", "items", "name", "fields"]), ANYTHING),
        )

    return st.recursive(PRIMITIVES | NAMES | ANYTHING, compound, max_leaves=10)


@fuzz
@given(schema=schemas(), values=st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_random_schemas_are_usable_or_refused_and_read_any_bytes(
    schema: Any, values: list[bytes]
) -> None:
    try:
        parsed = AvroSchema(schema, LIMITS)
    except SchemaError:
        return
    for value in values:
        with contextlib.suppress(ConnectorError):
            parsed.read(value, 0)


@fuzz
@given(text=st.text(max_size=200) | schemas().map(lambda s: orjson.dumps(s).decode()))
def test_random_registry_schemas_are_the_records_fault(text: str) -> None:
    class One:
        def schema_text(self, schema_id: int) -> str:
            return text

    decodes_or_refuses(ConfluentAvroDecoder(One(), LIMITS), b"\x00\x00\x00\x00\x01\x02\x00")


def test_the_datums_mutated_above_decode() -> None:
    """So that mutations start from values the decoders accept, not from refusals."""
    decoder = ConfluentAvroDecoder(Registry(), LIMITS)
    for schema_id, valid in [(1, encode(EVENT, EVENT_DATUM)), (2, encode(NODE, chain(8)))]:
        assert decoder(struct.pack(">bI", 0, schema_id) + valid)
    assert JsonDecoder(LIMITS)(b'{"a": [1, 2]}') == {"a": [1, 2]}
