"""Hostile records end to end: real broker, real schema registry, the emulator and the worker as
processes. Each bad record is in the dead-letter topic with stage `decode` and its reason, the
good ones around it are accepted, the worker keeps consuming and commits to the end.

Before this, the 5,000-deep recursive Avro record alone killed the worker with SIGSEGV on
every restart, and the unusable registry schema made a KeyError escape from it.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from tests.support.emulator import RunningEmulator, start_emulator
from tests.support.kafka import consume_all, create_topic, produce, unique_name
from tests.support.worker import drained, start_worker, wait_until, worker_env, write_mapping

pytestmark = pytest.mark.integration

NODE = {
    "type": "record",
    "name": "Node",
    "namespace": "hostile",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "next", "type": ["null", "Node"], "default": None},
    ],
}
BOMB = {  # an array of items that take no bytes: a few bytes may declare billions of them
    "type": "record",
    "name": "Bomb",
    "namespace": "hostile",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "xs", "type": {"type": "array", "items": "null"}},
    ],
}
REQUIRES_ITSELF = {  # the registry takes it; no datum can have it
    "type": "record",
    "name": "Loop",
    "namespace": "hostile",
    "fields": [{"name": "id", "type": "string"}, {"name": "again", "type": "Loop"}],
}
EMPTY_UNION: list[Any] = []  # the registry takes it too; fastavro parses it, reads nothing


def mapping(topic: str, source_format: str) -> dict[str, Any]:
    return {
        "source": {"topics": [topic], "format": source_format},
        "target": {
            "datasetId": "ds-hostile",
            "schemaRef": {
                "id": "https://ns.adobe.com/acme/schemas/hostile",
                "contentType": "application/vnd.adobe.xed-full+json;version=1",
            },
            "sourceName": "tests",
        },
        "mappings": [
            {"source": "id", "destination": "_id"},
            {"sourceType": "STATIC", "source": "web", "destination": "channel._type"},
        ],
    }


def avro(schema: Any, datum: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


def avro_string(text: str) -> bytes:
    return avro("string", text)


def chain(label: str, depth: int) -> dict[str, Any]:
    node: dict[str, Any] | None = None
    for n in range(depth):
        node = {"id": label if n == depth - 1 else f"{label}.{n}", "next": node}
    assert node is not None
    return node


def deep_chain_bytes(label: str, depth: int) -> bytes:
    """A Node datum `depth` deep, written directly: fastavro's writer would overflow too."""
    inner = avro_string("x") + b"\x02"  # id "x", then the branch holding the next Node
    return avro_string(label) + b"\x02" + inner * (depth - 2) + avro_string("x") + b"\x00"


def framed(schema_id: int, datum: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + datum


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    with start_emulator({"ims_org_id": "ACME@AdobeOrg"}, tmp_path) as running:
        yield running


def test_hostile_records_are_dead_lettered_and_the_worker_keeps_consuming(
    kafka_bootstrap: str, schema_registry_url: str, emulator: RunningEmulator, tmp_path: Path
) -> None:
    avro_topic = create_topic(kafka_bootstrap, unique_name("hostile-avro"), partitions=2)
    json_topic = create_topic(kafka_bootstrap, unique_name("hostile-json"), partitions=2)
    dlq = create_topic(kafka_bootstrap, unique_name("dlq"), partitions=1)
    registry = SchemaRegistryClient({"url": schema_registry_url})

    def register(subject: str, schema: Any) -> int:
        text = orjson.dumps(schema).decode()
        return registry.register_schema(f"{avro_topic}-{subject}", Schema(text, "AVRO"))

    node_id = register("node", NODE)
    bomb_id = register("bomb", BOMB)
    loop_id = register("loop", REQUIRES_ITSELF)
    union_id = register("union", EMPTY_UNION)

    good_avro = [
        (f"a-{n}".encode(), framed(node_id, avro(NODE, chain(f"a-{n}", 1 + n % 20))))
        for n in range(300)
    ]
    bad_avro = {
        b"deep-5000": framed(node_id, deep_chain_bytes("deep-5000", 5000)),
        b"deep-101": framed(node_id, deep_chain_bytes("deep-101", 101)),
        # 100 million nulls declared in 5 bytes
        b"bomb": framed(bomb_id, avro_string("bomb") + avro("long", 100_000_000) + b"\x00"),
        b"loop": framed(loop_id, avro_string("loop")),
        b"empty-union": framed(union_id, b"\x00"),
        b"unknown-id-1": framed(987_654_321, avro(NODE, chain("u", 1))),
        b"unknown-id-2": framed(987_654_321, avro(NODE, chain("u", 2))),
        b"oversized": framed(node_id, avro(NODE, chain("o" * 2_000_000, 1))),
    }
    good_json = [(f"j-{n}".encode(), orjson.dumps({"id": f"j-{n}", "n": n})) for n in range(300)]
    bad_json = {
        b"json-deep-150": b'{"id": "d", "x": ' + b"[" * 150 + b"]" * 150 + b"}",
        b"json-deep-5000": b"[" * 5000 + b"]" * 5000,
        b"json-values": orjson.dumps({"id": "v", "xs": [0] * 600_000}),  # 1.2 MB, 600k values
        b"json-oversized": orjson.dumps({"id": "big", "pad": "y" * 3_000_000}),
    }
    produce(kafka_bootstrap, avro_topic, [*good_avro[:150], *bad_avro.items(), *good_avro[150:]])
    produce(kafka_bootstrap, json_topic, [*good_json[:150], *bad_json.items(), *good_json[150:]])

    mappings_dir = tmp_path / "mappings"
    write_mapping(mappings_dir, "nodes", mapping(avro_topic, "avro"))
    write_mapping(mappings_dir, "events", mapping(json_topic, "json"))
    group = unique_name("group")
    env = worker_env(
        kafka_bootstrap,
        group,
        emulator.url,
        mappings_dir,
        dlq,
        AEP_CONNECTOR_KAFKA__SCHEMA_REGISTRY_URL=schema_registry_url,
    )
    with start_worker(env, tmp_path / "worker.log") as worker:
        wait_until(drained(kafka_bootstrap, group, avro_topic), 120, "avro drain", worker)
        wait_until(drained(kafka_bootstrap, group, json_topic), 60, "json drain", worker)
        assert worker.alive()
        output = worker.output()
    assert "Traceback" not in output

    letters = {m.key(): m for m in consume_all(kafka_bootstrap, dlq, 12, timeout_s=30)}
    expected = {
        b"deep-5000": "too_deep",
        b"deep-101": "too_deep",
        b"bomb": "too_many_values",
        b"loop": "wrong_schema",
        b"empty-union": "wrong_schema",
        b"unknown-id-1": "unknown_schema",
        b"unknown-id-2": "unknown_schema",
        b"oversized": "too_large",
        b"json-deep-150": "too_deep",
        b"json-deep-5000": "too_deep",
        b"json-values": "too_many_values",
        b"json-oversized": "too_large",
    }
    assert set(letters) == set(expected)
    originals = {**bad_avro, **bad_json}
    for key, reason in expected.items():
        headers = dict(letters[key].headers())
        assert headers["aep.dlq.stage"] == b"decode", key
        assert headers["aep.dlq.error.class"] == reason.encode(), key
        assert headers["aep.dlq.error.message"], key
        assert letters[key].value() == originals[key], key  # byte for byte

    accepted = [m["message"]["body"]["xdmEntity"]["_id"] for m in emulator.messages()]
    assert sorted(accepted) == sorted(
        [f"a-{n}" for n in range(300)] + [f"j-{n}" for n in range(300)]
    )
