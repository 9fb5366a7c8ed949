"""Reading stops at the end offsets taken at the start, and says so when the brokers are gone.

On the real broker: test_dlq_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, TopicPartition

from connector.dlq.reader import DeadLetterReader, DeadLetterTopicError, Span


class FakeMessage:
    def __init__(self, partition: int, offset: int, error: KafkaError | None = None) -> None:
        self._partition, self._offset, self._error = partition, offset, error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, 1000 + self._offset

    def key(self) -> bytes:
        return b"k%d" % self._offset

    def value(self) -> bytes:
        return b"v"

    def headers(self) -> list[tuple[str, bytes]]:
        return [("aep.dlq.stage", b"api")]


def eof(partition: int, offset: int) -> FakeMessage:
    return FakeMessage(partition, offset, KafkaError(KafkaError._PARTITION_EOF))


class FakeConsumer:
    """Hands out the prepared consume() results in turn, then empty lists."""

    def __init__(self, results: list[list[FakeMessage]]) -> None:
        self.results = results
        self.assigned: list[tuple[int, int]] = []
        self.paused: list[int] = []
        self.unassigned = False

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = [(tp.partition, tp.offset) for tp in partitions]

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        return self.results.pop(0) if self.results else []

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused += [tp.partition for tp in partitions]

    def unassign(self) -> None:
        self.unassigned = True


def read(
    consumer: FakeConsumer, spans: list[Span], clock: Any = None
) -> list[list[tuple[int, int]]]:
    reader = DeadLetterReader(consumer, "dlq", timeout_s=5, clock=clock or (lambda: 0.0))
    return [[(x.partition, x.offset) for x in batch] for batch in reader.read(spans, 100)]


def test_reads_each_span_and_stops_at_its_end() -> None:
    consumer = FakeConsumer(
        [
            [FakeMessage(0, 5), FakeMessage(1, 0), FakeMessage(0, 6)],
            [
                FakeMessage(0, 7),
                FakeMessage(1, 1),
                FakeMessage(1, 2),
            ],  # 0:7 and 1:2 are past the end
        ]
    )
    batches = read(consumer, [Span(0, 5, 7), Span(1, 0, 2), Span(2, 4, 4)])
    assert batches == [[(0, 5), (1, 0), (0, 6)], [(1, 1)]]
    assert consumer.assigned == [(0, 5), (1, 0)]  # an empty span is not even assigned
    assert sorted(consumer.paused) == [0, 1]
    assert consumer.unassigned


def test_the_end_of_a_partition_finishes_it_short_of_the_snapshot() -> None:
    consumer = FakeConsumer([[FakeMessage(0, 0), eof(0, 1)]])
    assert read(consumer, [Span(0, 0, 3)]) == [[(0, 0)]]


def test_nothing_to_read_returns_at_once() -> None:
    consumer = FakeConsumer([])
    assert read(consumer, [Span(0, 3, 3)]) == []
    assert consumer.assigned == []


def test_no_progress_for_the_timeout_is_an_error() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0  # a second per consume() round
        return now[0]

    consumer = FakeConsumer([[FakeMessage(0, 0)]])
    with pytest.raises(
        DeadLetterTopicError, match=r"no progress reading dlq for 5 s \(partitions \[0\]"
    ):
        read(consumer, [Span(0, 0, 2)], clock)


def test_a_deleted_topic_is_an_error() -> None:
    gone = FakeMessage(0, 0, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    with pytest.raises(DeadLetterTopicError, match="reading dlq"):
        read(FakeConsumer([[gone]]), [Span(0, 0, 2)])


def test_letters_carry_their_timestamp_and_headers() -> None:
    reader = DeadLetterReader(FakeConsumer([[FakeMessage(0, 4)]]), "dlq")
    (batch,) = list(reader.read([Span(0, 4, 5)], 10))
    assert batch[0].timestamp_ms == 1004
    assert batch[0].key == b"k4"
    assert batch[0].stage == "api"
