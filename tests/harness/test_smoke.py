"""Smoke tests of the test harness itself: the broker and the registry are real and usable."""

from __future__ import annotations

import fastavro
import orjson
import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from tests.support.kafka import (
    committed_offsets,
    create_topic,
    end_offsets,
    produce,
    unique_name,
)
from tests.support.report import measurement

pytestmark = pytest.mark.integration


def test_broker_consume_and_commit(kafka_bootstrap: str) -> None:
    topic = create_topic(kafka_bootstrap, unique_name("smoke"), partitions=4)
    produced = produce(
        kafka_bootstrap,
        topic,
        ((str(i).encode(), orjson.dumps({"n": i})) for i in range(1000)),
    )
    assert produced == 1000
    ends = end_offsets(kafka_bootstrap, topic)
    assert sum(ends.values()) == 1000
    assert all(end > 0 for end in ends.values()), f"keys should spread over partitions: {ends}"

    group = unique_name("smoke-group")
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    seen: set[int] = set()
    try:
        for _ in range(200):
            for message in consumer.consume(num_messages=500, timeout=0.5):
                assert message.error() is None, message.error()
                seen.add(orjson.loads(message.value())["n"])
                consumer.store_offsets(message)
            if len(seen) == 1000:
                break
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    assert seen == set(range(1000))
    assert committed_offsets(kafka_bootstrap, group, topic) == ends
    measurement(
        "harness smoke test (broker)",
        f"1,000 records over 4 partitions consumed and committed on {kafka_bootstrap}",
    )


def test_registry_register_and_read_back(schema_registry_url: str) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    definition = {
        "type": "record",
        "name": "Smoke",
        "namespace": "test.harness",
        "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "long"}],
    }
    subject = unique_name("smoke") + "-value"
    schema_id = client.register_schema(subject, Schema(orjson.dumps(definition).decode(), "AVRO"))
    fetched = client.get_schema(schema_id)
    assert fetched.schema_type == "AVRO"
    parsed = fastavro.parse_schema(orjson.loads(fetched.schema_str))
    assert parsed["name"] == "test.harness.Smoke"
    assert [f["name"] for f in parsed["fields"]] == ["id", "n"]
    measurement(
        "harness smoke test (registry)",
        f"Avro schema registered and read back as id {schema_id} at {schema_registry_url}",
    )
