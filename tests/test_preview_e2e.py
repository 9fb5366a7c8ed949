"""`aep-connector map FILE --from-topic` on the real broker and schema registry: it shows what
the worker makes of live records (JSON, Avro through the registry, Avro with a fixed schema),
and it leaves the worker's consumer group as it found it."""

from __future__ import annotations

import io
import signal
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from connector.cli import main
from tests.support.emulator import RunningEmulator, start_emulator
from tests.support.kafka import (
    committed_offsets,
    consume_all,
    create_topic,
    produce,
    unique_name,
)
from tests.support.worker import drained, start_worker, wait_until, worker_env, write_mapping

pytestmark = pytest.mark.integration

SCHEMA_REF = {
    "id": "https://ns.adobe.com/acme/schemas/orders",
    "contentType": "application/vnd.adobe.xed-full+json;version=1",
}
AVRO_SCHEMA = {
    "type": "record",
    "name": "Order",
    "namespace": "acme",
    "fields": [{"name": "id", "type": "string"}, {"name": "name", "type": "string"}],
}


def mapping(topic: str, source: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "source": source or {"topics": [topic], "format": "json"},
        "filter": 'name != "heartbeat"',
        "strict": False,
        "target": {"datasetId": "ds-orders", "schemaRef": SCHEMA_REF, "sourceName": "tests"},
        "mappings": [
            {"source": "id", "destination": "_id"},
            {"sourceType": "EXPRESSION", "source": "upper(name)", "destination": "_acme.name"},
            {"sourceType": "EXPRESSION", "source": "_kafka.key", "destination": "_acme.key"},
            {"sourceType": "EXPRESSION", "source": "_kafka.offset", "destination": "_acme.offset"},
        ],
    }


def env_for(bootstrap: str, **extra: str) -> dict[str, str]:
    return {
        "AEP_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "AEP_CONNECTOR_PLATFORM__IMS_ORG_ID": "ACME@AdobeOrg",
        **extra,
    }


def preview(path: Path, *options: str, env: dict[str, str]) -> Result:
    args = ["map", str(path), "--from-topic", "--timeout", "20", *options]
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def lines(text: str) -> list[Any]:
    return [orjson.loads(line) for line in text.splitlines()]


def json_records() -> list[tuple[bytes | None, bytes | None]]:
    """Offsets 0-6 of partition 0: sent, sent with a warning, filtered, undecodable, a
    tombstone, sent, and a value that is not an object (a mapping failure)."""
    return [
        (b"k0", b'{"id": "o-0", "name": "ann"}'),
        (b"k1", b'{"id": "o-1", "name": {"first": "bo"}}'),
        (b"k2", b'{"id": "o-2", "name": "heartbeat"}'),
        (b"k3", b'{"id": "o-3", '),
        (b"k4", None),
        (b"k5", b'{"id": "o-5", "name": "cy"}'),
        (b"k6", b"[1, 2]"),
    ]


# ---------------------------------------------------------------------------- JSON


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    with start_emulator({"ims_org_id": "ACME@AdobeOrg"}, tmp_path) as running:
        yield running


def test_json_preview_shows_what_the_worker_sends_and_dead_letters_and_touches_no_group(
    kafka_bootstrap: str, emulator: RunningEmulator, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, unique_name("orders"), partitions=2)
    produce(kafka_bootstrap, topic, json_records(), partition=0)
    produce(kafka_bootstrap, topic, [(b"p1", b'{"id": "p1-0", "name": "dee"}')], partition=1)
    path = write_mapping(tmp_path / "m", "orders", mapping(topic))

    # The worker's group, with offsets of its own, and every group the broker knows.
    group = unique_name("workers")
    owner = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    owner.commit(
        offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 1)], asynchronous=False
    )
    owner.close()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    groups_before = {g.group_id for g in admin.list_consumer_groups().result().valid}

    env = env_for(kafka_bootstrap, AEP_CONNECTOR_KAFKA__GROUP_ID=group)
    result = preview(path, "--partition", "0", "--offset", "0", "--records", "50", env=env)
    assert result.exit_code == 1, result.stderr  # some records would be dead-lettered
    envelopes = lines(result.stdout)
    entities = [e["body"]["xdmEntity"] for e in envelopes]
    assert [e["_acme"]["offset"] for e in entities] == [0, 1, 5]
    assert entities[0] == {"_id": "o-0", "_acme": {"name": "ANN", "key": "k0", "offset": 0}}
    assert "name" not in entities[1]["_acme"]  # the field whose expression failed is left out
    stderr = result.stderr
    assert "partition 0 offset 1: warning: orders: _acme.name" in stderr
    assert "partition 0 offset 2: skipped by the filter" in stderr
    assert "partition 0 offset 3: dead letter (stage decode, reason invalid_json)" in stderr
    assert "partition 0 offset 4: skipped: tombstone (null value)" in stderr
    assert (
        "partition 0 offset 6: dead letter (stage map, reason mapping_failure, mapping orders)"
        in (stderr)
    )
    assert "read 7 record(s)" in stderr
    assert "nothing was sent" in stderr
    assert emulator.stats()["requests_total"] == 0

    # Nothing joined the worker's group or moved its offsets; no group was made.
    assert committed_offsets(kafka_bootstrap, group, topic) == {0: 2, 1: 1}
    (described,) = admin.describe_consumer_groups([group]).values()
    assert described.result().members == []
    assert {g.group_id for g in admin.list_consumer_groups().result().valid} == groups_before

    # The worker on the same records makes the same messages and the same dead letters.
    dlq = create_topic(kafka_bootstrap, unique_name("dlq"), partitions=1)
    fresh = unique_name("group")
    env = worker_env(kafka_bootstrap, fresh, emulator.url, tmp_path / "m", dlq)
    with start_worker(env, tmp_path / "worker.log") as worker:
        wait_until(drained(kafka_bootstrap, fresh, topic), 60, "drain", worker)
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
    sent = [m["message"] for m in emulator.messages()]
    sent_p0 = sorted(
        (m for m in sent if m["body"]["xdmEntity"]["_acme"]["key"] != "p1"),
        key=lambda m: m["body"]["xdmEntity"]["_acme"]["offset"],
    )
    assert [m["body"] for m in sent_p0] == [e["body"] for e in envelopes]
    for worker_message, previewed in zip(sent_p0, envelopes, strict=True):
        worker_message["header"].pop("createdAt")
        previewed["header"].pop("createdAt")
        assert worker_message["header"] == previewed["header"]
    letters = {
        int(headers["aep.dlq.source.offset"]): headers["aep.dlq.error.class"].decode()
        for headers in (dict(m.headers()) for m in consume_all(kafka_bootstrap, dlq, 2))  # type: ignore[attr-defined]
    }
    assert letters == {3: "invalid_json", 6: "mapping_failure"}


def test_without_partition_the_newest_records_of_the_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, unique_name("orders"), partitions=3)
    for n in range(12):  # one after the other: later records have later timestamps
        value = orjson.dumps({"id": f"o-{n}", "name": f"n{n}"})
        produce(kafka_bootstrap, topic, [(f"k{n}".encode(), value)], partition=n % 3)
    path = write_mapping(tmp_path / "m", "orders", mapping(topic))
    result = preview(path, "--records", "4", "--entity-only", env=env_for(kafka_bootstrap))
    assert result.exit_code == 0, result.stderr
    assert [e["_id"] for e in lines(result.stdout)] == ["o-8", "o-9", "o-10", "o-11"]
    assert "read 4 record(s)" in result.stderr


def test_a_missing_topic_exits_3(kafka_bootstrap: str, tmp_path: Path) -> None:
    path = write_mapping(tmp_path / "m", "orders", mapping(unique_name("missing")))
    result = preview(path, env=env_for(kafka_bootstrap))
    assert result.exit_code == 3
    assert "is not available" in result.stderr


# ---------------------------------------------------------------------------- Avro


def datum(n: int) -> bytes:
    out = io.BytesIO()
    record = {"id": f"a-{n}", "name": f"avro {n}"}
    fastavro.schemaless_writer(out, fastavro.parse_schema(AVRO_SCHEMA), record)
    return out.getvalue()


def test_avro_through_the_registry(
    kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, unique_name("avro"), partitions=1)
    schema_id = SchemaRegistryClient({"url": schema_registry_url}).register_schema(
        f"{topic}-value", Schema(orjson.dumps(AVRO_SCHEMA).decode(), "AVRO")
    )
    framed = [(b"k", struct.pack(">bI", 0, schema_id) + datum(n)) for n in range(4)]
    unknown = (b"k", struct.pack(">bI", 0, 987_654) + datum(9))
    produce(kafka_bootstrap, topic, [*framed[:2], unknown, *framed[2:]])
    path = write_mapping(
        tmp_path / "m", "orders", mapping(topic, {"topics": [topic], "format": "avro"})
    )
    env = env_for(kafka_bootstrap, AEP_CONNECTOR_KAFKA__SCHEMA_REGISTRY_URL=schema_registry_url)
    result = preview(path, "--partition", "0", "--offset", "1", "--entity-only", env=env)
    assert result.exit_code == 1, result.stderr
    assert [e["_id"] for e in lines(result.stdout)] == ["a-1", "a-2", "a-3"]
    assert lines(result.stdout)[0]["_acme"]["name"] == "AVRO 1"
    assert "partition 0 offset 2: dead letter (stage decode, reason unknown_schema)" in (
        result.stderr
    )


def test_avro_without_a_registry_is_refused_like_the_worker_does(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, unique_name("avro"), partitions=1)
    path = write_mapping(
        tmp_path / "m", "orders", mapping(topic, {"topics": [topic], "format": "avro"})
    )
    result = preview(path, env=env_for(kafka_bootstrap))
    assert result.exit_code == 2
    assert "reads Avro but no schema registry is set" in result.stderr


def test_avro_with_a_fixed_schema(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = create_topic(kafka_bootstrap, unique_name("avro"), partitions=1)
    produce(kafka_bootstrap, topic, [(b"k", datum(0)), (b"k", b"\xff\xff"), (b"k", datum(2))])
    schema = tmp_path / "m" / "order.avsc"
    schema.parent.mkdir(parents=True)
    schema.write_bytes(orjson.dumps(AVRO_SCHEMA))
    source = {"topics": [topic], "format": "avro-schema", "schema": "order.avsc"}
    path = write_mapping(tmp_path / "m", "orders", mapping(topic, source))
    result = preview(path, "--partition", "0", env=env_for(kafka_bootstrap))
    assert result.exit_code == 1, result.stderr
    assert [e["body"]["xdmEntity"]["_id"] for e in lines(result.stdout)] == ["a-0", "a-2"]
    assert "partition 0 offset 1: dead letter (stage decode" in result.stderr
