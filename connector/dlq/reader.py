"""Reading a bounded span of the dead-letter topic.

Partitions are assigned, never subscribed: neither `inspect` nor `replay` joins a consumer
group, so neither can take partitions away from anyone, and `inspect` never commits. Reading
stops at the end offsets taken when it started, so letters dead-lettered meanwhile (a replayed
record failing again, say) wait for the next run instead of feeding a loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from connector.dlq.letter import StoredLetter
from connector.settings import Settings
from connector.source.kafka import consumer_config


class DeadLetterTopicError(Exception):
    """The topic is missing, or the brokers did not answer in time."""


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets `start` (inclusive) to `end` (exclusive) of one partition."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def reader_config(settings: Settings, group_id: str) -> dict[str, Any]:
    """The worker's Kafka connection properties, for a consumer that only assigns."""
    return consumer_config(settings) | {
        "group.id": group_id,
        "client.id": f"{settings.kafka.client_id}-dlq",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,  # how a read knows it reached a partition's end
    }


def open_reader(settings: Settings, topic: str, group_id: str) -> DeadLetterReader:
    return DeadLetterReader(Consumer(reader_config(settings, group_id)), topic)


class DeadLetterReader:
    """Reads dead letters from assigned partitions between given offsets."""

    def __init__(
        self,
        consumer: Any,
        topic: str,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.timeout_s = timeout_s  # for each broker request, and for a read making no progress
        self._clock = clock

    def partitions(self) -> list[int]:
        """The topic's partitions; DeadLetterTopicError when it does not exist."""
        try:
            metadata = self.consumer.list_topics(self.topic, timeout=self.timeout_s)
        except KafkaException as exc:
            raise DeadLetterTopicError(
                f"could not read the metadata of {self.topic}: {exc}"
            ) from None
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            why = topic.error.str() if topic is not None and topic.error is not None else "missing"
            raise DeadLetterTopicError(f"topic {self.topic} is not available ({why})")
        return sorted(topic.partitions)

    def partition_count(self, topic: str) -> int | None:
        """How many partitions `topic` has; None when it does not exist (never creates it)."""
        try:
            metadata = self.consumer.list_topics(topic, timeout=self.timeout_s)
        except KafkaException as exc:
            raise DeadLetterTopicError(f"could not read the metadata of {topic}: {exc}") from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return None
        return len(found.partitions)

    def committed(self, partitions: list[int]) -> dict[int, int]:
        """The consumer group's committed offsets; partitions without one are left out."""
        wanted = [TopicPartition(self.topic, p) for p in partitions]
        try:
            result = self.consumer.committed(wanted, timeout=self.timeout_s)
        except KafkaException as exc:
            raise DeadLetterTopicError(f"could not read the committed offsets: {exc}") from None
        return {tp.partition: tp.offset for tp in result if tp.offset != OFFSET_INVALID}

    def spans(self, starts: dict[int, int] | None = None) -> list[Span]:
        """Every partition from `starts` (else its first retained offset) to its end now."""
        spans = []
        for partition in self.partitions():
            try:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=self.timeout_s
                )
            except KafkaException as exc:
                raise DeadLetterTopicError(
                    f"could not read the offsets of {self.topic} [{partition}]: {exc}"
                ) from None
            start = max(low, (starts or {}).get(partition, low))
            spans.append(Span(partition, start, high))
        return spans

    def read(self, spans: list[Span], batch_size: int) -> Iterator[list[StoredLetter]]:
        """The letters of `spans` in batches of at most `batch_size`, in offset order within
        each partition. DeadLetterTopicError when no progress is made for `timeout_s`."""
        ends = {s.partition: s.end for s in spans if s.size}
        if not ends:
            return
        consumer = self.consumer
        consumer.assign([TopicPartition(self.topic, s.partition, s.start) for s in spans if s.size])
        last_progress = self._clock()
        try:
            while ends:
                batch: list[StoredLetter] = []
                for message in consumer.consume(num_messages=batch_size, timeout=0.2):
                    partition = message.partition()
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            # Everything readable is read (the end may be short of the
                            # snapshot only behind another producer's open transaction).
                            self._finish(ends, partition)
                            last_progress = self._clock()
                            continue
                        if error.fatal() or error.code() in _TOPIC_GONE:
                            raise DeadLetterTopicError(f"reading {self.topic}: {error.str()}")
                        continue  # transient: librdkafka retries
                    end = ends.get(partition)
                    if end is None:
                        continue  # this partition is done
                    offset = message.offset()
                    if offset >= end:
                        self._finish(ends, partition)
                        continue
                    batch.append(_letter(message))
                    last_progress = self._clock()
                    if offset == end - 1:
                        self._finish(ends, partition)
                if batch:
                    yield batch
                elif self._clock() - last_progress > self.timeout_s:
                    raise DeadLetterTopicError(
                        f"no progress reading {self.topic} for {self.timeout_s:.0f} s "
                        f"(partitions {sorted(ends)} unfinished): are the brokers reachable?"
                    )
        finally:
            consumer.unassign()

    def _finish(self, ends: dict[int, int], partition: int) -> None:
        if ends.pop(partition, None) is not None:
            self.consumer.pause([TopicPartition(self.topic, partition)])

    def group_metadata(self) -> Any:
        return self.consumer.consumer_group_metadata()

    def close(self) -> None:
        self.consumer.close()


_TOPIC_GONE = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION)


def _letter(message: Any) -> StoredLetter:
    timestamp_type, timestamp = message.timestamp()
    return StoredLetter.parse(
        message.partition(),
        message.offset(),
        None if timestamp_type == TIMESTAMP_NOT_AVAILABLE else timestamp,
        message.key(),
        message.value(),
        tuple(message.headers() or ()),
    )
