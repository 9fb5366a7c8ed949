"""`map --from-topic` without a broker: which offsets it reads, which records it shows, and
what it prints for each thing process() can make of a record. The run on the real broker and
schema registry is tests/test_preview_e2e.py."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError, TopicPartition

from connector.cli import main
from connector.mapping import TargetDefaults, load_mapping_file
from connector.metrics import Metrics
from connector.preview import (
    SourceUnavailable,
    Span,
    describe,
    newest,
    plan_spans,
    run_preview,
)
from connector.process import Route, Routes, process
from connector.records import SourceRecord
from connector.settings import Settings
from tests.support.fake_kafka import FakeMessage

WATERMARKS = {0: (0, 100), 1: (40, 45), 2: (7, 7)}


def test_from_an_offset_of_a_partition() -> None:
    assert plan_spans(WATERMARKS, 10, partition=0, offset=20) == [Span(0, 20, 30)]
    assert plan_spans(WATERMARKS, 10, partition=0, offset=95) == [Span(0, 95, 100)]
    # Below the first retained offset: from there. Past the end: nothing yet.
    assert plan_spans(WATERMARKS, 10, partition=1, offset=0) == [Span(1, 40, 45)]
    assert plan_spans(WATERMARKS, 10, partition=0, offset=100) == []


def test_the_last_records_of_a_partition_or_of_every_partition() -> None:
    assert plan_spans(WATERMARKS, 10, partition=0) == [Span(0, 90, 100)]
    assert plan_spans(WATERMARKS, 10) == [Span(0, 90, 100), Span(1, 40, 45)]  # 2 is empty


def test_a_partition_the_topic_does_not_have() -> None:
    with pytest.raises(SourceUnavailable, match="3 is not a partition of the topic"):
        plan_spans(WATERMARKS, 10, partition=3)


def at(partition: int, offset: int, timestamp: int | None) -> SourceRecord:
    return SourceRecord("t", partition, offset, timestamp, None, b"{}")


def test_the_newest_records_by_timestamp_oldest_first() -> None:
    records = [at(0, 5, 300), at(0, 6, 500), at(1, 9, 400), at(1, 10, None), at(2, 1, 500)]
    assert newest(records, 3) == [at(1, 9, 400), at(0, 6, 500), at(2, 1, 500)]
    assert newest(records, 10)[0] == at(1, 10, None)
    assert newest(records, 0) == []


MAPPING = (
    "name: orders\n"
    "source: {topics: [orders], format: json}\n"
    "filter: 'kind != \"heartbeat\"'\n"
    "strict: false\n"
    "target: {datasetId: ds, schemaRef: {id: 'https://ns.adobe.com/acme/schemas/o', "
    "contentType: 'application/vnd.adobe.xed-full+json;version=1'}}\n"
    "mappings:\n"
    "  - {source: id, destination: _id}\n"
    "  - {sourceType: EXPRESSION, source: 'upper(name)', destination: _acme.name}\n"
)


@pytest.fixture
def route(tmp_path: Path) -> Route:
    path = tmp_path / "orders.yaml"
    path.write_text(MAPPING)
    mapping = load_mapping_file(path, TargetDefaults("(preview)", "ORG@AdobeOrg"))
    return Routes(Settings(), [mapping], Metrics()).get("orders")


def show(
    route: Route, value: bytes | None, entity_only: bool = False
) -> tuple[list[bytes], list[str]]:
    record = SourceRecord("orders", 2, 17, 1, b"k", value)
    return describe(record, process(record, route, 1_700_000_000_000), entity_only)


def test_a_record_to_send_prints_its_envelope_or_its_entity(route: Route) -> None:
    (envelope,), notes = show(route, b'{"id": "o-1", "name": "ann"}')
    assert orjson.loads(envelope)["body"]["xdmEntity"] == {"_id": "o-1", "_acme": {"name": "ANN"}}
    assert orjson.loads(envelope)["header"]["createdAt"] == "1700000000000"
    assert notes == [f"partition 2 offset 17: 1 message(s) to send, {len(envelope):,} bytes"]
    (entity,), _ = show(route, b'{"id": "o-1", "name": "ann"}', entity_only=True)
    assert orjson.loads(entity) == {"_id": "o-1", "_acme": {"name": "ANN"}}


def test_field_warnings_are_printed_with_their_mapping(route: Route) -> None:
    out, notes = show(route, b'{"id": "o-1", "name": {"first": "ann"}}')
    assert len(out) == 1
    assert notes[1].startswith("partition 2 offset 17: warning: orders: _acme.name")


def test_a_dead_letter_prints_its_stage_reason_and_message(route: Route) -> None:
    out, notes = show(route, b'{"id": ')
    assert out == []
    assert notes[0] == "partition 2 offset 17: 1 dead letter(s)"
    assert notes[1].startswith(
        "partition 2 offset 17: dead letter (stage decode, reason invalid_json): "
    )


def test_filtered_records_and_tombstones_are_said_to_be_skipped(route: Route) -> None:
    assert show(route, b'{"id": "h", "kind": "heartbeat"}') == (
        [],
        ["partition 2 offset 17: skipped by the filter"],
    )
    assert show(route, None) == ([], ["partition 2 offset 17: skipped: tombstone (null value)"])


class AssigningConsumer:
    """Serves a topic's records to a consumer that assigns; has no subscribe() nor commit(),
    so a preview that tried either would fail; records every call it gets."""

    def __init__(self, logs: dict[int, list[bytes | None]]) -> None:
        self.logs = logs
        self.calls: list[str] = []
        self.positions: dict[int, int] = {}

    def list_topics(self, topic: str, timeout: float = -1) -> Any:
        self.calls.append("list_topics")
        partitions = {p: None for p in self.logs}
        return SimpleNamespace(
            topics={"orders": SimpleNamespace(error=None, partitions=partitions)}
        )

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = -1) -> tuple[int, int]:
        self.calls.append("get_watermark_offsets")
        return 0, len(self.logs[tp.partition])

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.calls.append("assign")
        self.positions = {tp.partition: tp.offset for tp in partitions}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        self.calls.append("consume")
        messages: list[Any] = []
        for partition, position in self.positions.items():
            log = self.logs[partition]
            for offset in range(position, len(log)):
                messages.append(FakeMessage("orders", partition, offset, b"k", log[offset]))
            eof = KafkaError(KafkaError._PARTITION_EOF)
            messages.append(FakeMessage("orders", partition, len(log), None, None, error=eof))
            self.positions[partition] = len(log)
        return messages

    def unassign(self) -> None:
        self.calls.append("unassign")

    def close(self) -> None:
        self.calls.append("close")


def test_the_preview_assigns_reads_and_closes_and_does_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(MAPPING)
    mapping = load_mapping_file(path, TargetDefaults("(preview)", "ORG@AdobeOrg"))
    consumer = AssigningConsumer({0: [b'{"id": "a", "name": "x"}', b"{"], 1: [b'{"id": "b"}']})
    out, err = io.BytesIO(), io.StringIO()
    status = run_preview(
        Settings(), mapping, "orders", 10, None, None, True, 5.0, consumer, out, err
    )
    assert status == 1
    assert sorted(orjson.loads(line)["_id"] for line in out.getvalue().splitlines()) == ["a", "b"]
    assert "partition 0 offset 1: dead letter (stage decode, reason invalid_json)" in err.getvalue()
    assert set(consumer.calls) == {
        "list_topics",
        "get_watermark_offsets",
        "assign",
        "consume",
        "unassign",
        "close",
    }
    assert consumer.calls[-1] == "close"


@pytest.mark.parametrize(
    ("topics", "options", "expected"),
    [
        ("[orders]", ["--partition", "1"], "--partition go(es) with --from-topic"),
        ("[orders]", ["--from-topic", "--offset", "5"], "--offset needs --partition"),
        ("[orders, returns]", ["--from-topic"], "choose one with --topic"),
        ("[orders]", ["--from-topic", "--topic", "returns"], "does not read returns"),
    ],
)
def test_option_mistakes_exit_2_before_any_connection(
    tmp_path: Path, topics: str, options: list[str], expected: str
) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(MAPPING.replace("[orders]", topics))
    env = {"AEP_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # nothing listens there
    result = CliRunner().invoke(main, ["map", str(path), *options], env=env)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
