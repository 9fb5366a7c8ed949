"""The consumer contract: what the worker relies on from a Kafka consumer, checked on the real
broker (librdkafka, configured by connector.source.kafka.consumer_config) and on the in-memory
twin the worker's unit tests use (tests/support/fake_kafka.py). If the twin drifts from
librdkafka, these tests say where."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import TopicPartition

from connector.settings import Settings
from connector.source.kafka import Consumer, consumer_config
from tests.support.fake_kafka import FakeBroker
from tests.support.kafka import create_topic, produce, unique_name


class Cluster(Protocol):
    def topic(self, partitions: int) -> str: ...

    def produce(self, topic: str, partition: int, values: list[bytes]) -> None: ...

    def consumer(self, group: str, **extra: Any) -> Consumer: ...


class RealCluster:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.consumers: list[Any] = []

    def topic(self, partitions: int) -> str:
        return create_topic(self.bootstrap, unique_name("contract"), partitions)

    def produce(self, topic: str, partition: int, values: list[bytes]) -> None:
        produce(self.bootstrap, topic, [(b"k", v, [("h", b"\x01")]) for v in values], partition)

    def consumer(self, group: str, **extra: Any) -> Consumer:
        kafka = {"bootstrap_servers": self.bootstrap, "group_id": group, "session_timeout_ms": 6000}
        consumer = KafkaConsumer(consumer_config(Settings(kafka=kafka)) | extra)
        self.consumers.append(consumer)
        return consumer


class FakeCluster:
    def __init__(self) -> None:
        self.broker = FakeBroker()
        self.consumers: list[Any] = []

    def topic(self, partitions: int) -> str:
        return self.broker.create_topic(unique_name("contract"), partitions)

    def produce(self, topic: str, partition: int, values: list[bytes]) -> None:
        self.broker.produce(topic, values, partition, key=b"k", headers=[("h", b"\x01")])

    def consumer(self, group: str, **extra: Any) -> Consumer:
        settings = Settings(kafka={"group_id": group})
        consumer = self.broker.consumer(consumer_config(settings) | extra)
        self.consumers.append(consumer)
        return consumer


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    made: RealCluster | FakeCluster
    if request.param == "real":
        made = RealCluster(request.getfixturevalue("kafka_bootstrap"))
    else:
        made = FakeCluster()
    yield made
    for consumer in made.consumers:
        with contextlib.suppress(RuntimeError):  # closed by the test already
            consumer.close()


class Member:
    """A consumer in a group, with what its callbacks and consume() calls saw."""

    def __init__(self, cluster: Cluster, group: str, topic: str, on_revoke: Any = None) -> None:
        self.consumer = cluster.consumer(group)
        self.records: list[tuple[int, int, bytes]] = []
        self.assigned: list[list[int]] = []
        self.revoked: list[list[int]] = []
        self._on_revoke = on_revoke
        self.consumer.subscribe(
            [topic], on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke
        )

    def _assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self.assigned.append(sorted(tp.partition for tp in partitions))

    def _revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.revoked.append(sorted(tp.partition for tp in partitions))
        if self._on_revoke is not None:
            self._on_revoke(consumer, partitions)

    def poll(self) -> None:
        for message in self.consumer.consume(100, 0.05):
            if message.error() is None:
                self.records.append((message.partition(), message.offset(), message.value()))

    def owned(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment())

    def offsets(self, partition: int) -> list[int]:
        return [o for p, o, _ in self.records if p == partition]


def poll_until(members: list[Member], condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        for member in members:
            member.poll()


def poll_for(members: list[Member], seconds: float) -> None:
    """Keep polling (a real broker needs wall time to show that nothing arrives)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for member in members:
            member.poll()


def test_records_arrive_per_partition_in_offset_order_with_key_and_headers(
    cluster: Cluster,
) -> None:
    topic = cluster.topic(2)
    cluster.produce(topic, 0, [b"a0", b"a1", b"a2"])
    cluster.produce(topic, 1, [b"b0", b"b1"])
    seen: list[Any] = []
    consumer = cluster.consumer(unique_name("g"))
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while len(seen) < 5:
        assert time.monotonic() < deadline
        seen += [m for m in consumer.consume(100, 0.05) if m.error() is None]
    assert [m.value() for m in seen if m.partition() == 0] == [b"a0", b"a1", b"a2"]
    assert [m.offset() for m in seen if m.partition() == 1] == [0, 1]
    assert {m.key() for m in seen} == {b"k"}
    assert all(list(m.headers()) == [("h", b"\x01")] for m in seen)
    positions = consumer.position([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    assert [tp.offset for tp in positions] == [3, 2]
    _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), cached=True)
    assert high == 3


def test_a_paused_partition_yields_nothing_and_resumes_where_it_stopped(cluster: Cluster) -> None:
    topic = cluster.topic(2)
    cluster.produce(topic, 0, [b"a0", b"a1"])
    cluster.produce(topic, 1, [b"b0"])
    member = Member(cluster, unique_name("g"), topic)
    poll_until([member], lambda: len(member.records) == 3)
    member.consumer.pause([TopicPartition(topic, 0)])
    cluster.produce(topic, 0, [b"a2", b"a3"])
    cluster.produce(topic, 1, [b"b1"])
    poll_until([member], lambda: member.offsets(1) == [0, 1])
    poll_for([member], 1.0)
    assert member.offsets(0) == [0, 1]
    member.consumer.resume([TopicPartition(topic, 0)])
    poll_until([member], lambda: len(member.offsets(0)) == 4)
    assert member.offsets(0) == [0, 1, 2, 3]


def test_the_pause_flag_survives_a_revoke_and_a_new_assignment(cluster: Cluster) -> None:
    """librdkafka keeps the application's pause flag on the partition: a partition revoked
    while paused comes back paused, whoever had it meanwhile."""
    topic = cluster.topic(2)
    group = unique_name("g")
    first = Member(cluster, group, topic)
    poll_until([first], lambda: first.owned() == [0, 1])
    first.consumer.pause(first.consumer.assignment())
    second = Member(cluster, group, topic)
    poll_until([first, second], lambda: len(first.owned()) == 1 and len(second.owned()) == 1)
    (moved,) = second.owned()
    second.consumer.close()
    poll_until([first], lambda: first.owned() == [0, 1])
    cluster.produce(topic, moved, [b"x0", b"x1"])
    poll_for([first], 1.0)
    assert first.offsets(moved) == []  # still paused
    first.consumer.resume([TopicPartition(topic, moved)])
    poll_until([first], lambda: first.offsets(moved) == [0, 1])


def test_seek_delivers_again_from_the_offset(cluster: Cluster) -> None:
    topic = cluster.topic(1)
    cluster.produce(topic, 0, [b"v0", b"v1", b"v2", b"v3"])
    member = Member(cluster, unique_name("g"), topic)
    poll_until([member], lambda: len(member.records) == 4)
    member.consumer.seek(TopicPartition(topic, 0, 1))
    poll_until([member], lambda: len(member.records) == 7)
    assert member.offsets(0) == [0, 1, 2, 3, 1, 2, 3]


def test_commits_are_read_back_and_a_new_member_starts_there(cluster: Cluster) -> None:
    topic = cluster.topic(1)
    group = unique_name("g")
    cluster.produce(topic, 0, [b"v0", b"v1", b"v2", b"v3"])
    member = Member(cluster, group, topic)
    poll_until([member], lambda: len(member.records) == 4)
    committed = member.consumer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    assert [(tp.partition, tp.offset) for tp in committed] == [(0, 3)]
    assert [tp.offset for tp in member.consumer.committed([TopicPartition(topic, 0)])] == [3]
    member.consumer.close()
    successor = Member(cluster, group, topic)
    poll_until([successor], lambda: len(successor.records) == 1)
    assert successor.offsets(0) == [3]


def test_an_asynchronous_commit_is_reported_inside_consume(cluster: Cluster) -> None:
    topic = cluster.topic(1)
    cluster.produce(topic, 0, [b"v0"])
    reports: list[list[tuple[int, int]]] = []

    def on_commit(_error: object, partitions: list[TopicPartition]) -> None:
        reports.append([(tp.partition, tp.offset) for tp in partitions])

    consumer = cluster.consumer(unique_name("g"), on_commit=on_commit)
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while not [m for m in consumer.consume(10, 0.05) if m.error() is None]:
        assert time.monotonic() < deadline
    consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=True)
    assert reports == []  # not before the application polls
    while not reports:
        assert time.monotonic() < deadline
        consumer.consume(10, 0.05)
    assert reports == [[(0, 1)]]


def test_a_commit_in_on_revoke_is_where_the_next_owner_starts(cluster: Cluster) -> None:
    topic = cluster.topic(2)
    group = unique_name("g")
    cluster.produce(topic, 0, [b"a0", b"a1", b"a2"])
    cluster.produce(topic, 1, [b"b0", b"b1", b"b2"])

    def commit_two(consumer: Any, partitions: list[TopicPartition]) -> None:
        offsets = [TopicPartition(tp.topic, tp.partition, 2) for tp in partitions]
        consumer.commit(offsets=offsets, asynchronous=False)

    first = Member(cluster, group, topic, on_revoke=commit_two)
    poll_until([first], lambda: len(first.records) == 6)
    second = Member(cluster, group, topic)
    poll_until([first, second], lambda: len(second.records) == 1)
    (moved,) = second.owned()
    assert first.revoked[0] == [moved]
    assert second.offsets(moved) == [2]
    # No committing from inside close(): the member is leaving the group by then.
    first._on_revoke = None
