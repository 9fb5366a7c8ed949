"""An in-memory Kafka twin for fast, deterministic unit tests of the worker.

`FakeBroker` holds topics (partition logs), committed offsets per group, and consumer groups;
`FakeConsumer` implements connector.source.kafka.Consumer. The contract suite
(tests/source/test_consumer_contract.py) runs the same checks against this twin and against
the real broker, so the twin's semantics are librdkafka's where the worker relies on them:

- rebalance and commit callbacks run inside consume() and close(), on the caller's thread;
- cooperative rebalancing: a member joining or leaving moves only the partitions that must
  move, revoked from their old owner (which may commit in on_revoke) before being assigned;
- a new assignment starts at the group's committed offset, else at auto.offset.reset;
- the application's pause flag is per consumer and partition, and survives a revoke and a later
  assignment of the same partition;
- seek() discards what was fetched before it: the next records start at the new offset.

Tests steer what librdkafka would do on its own: `lose()` (partitions lost), `reset()` (an
offset reset after log truncation), `fail_next()` (an error event in the stream).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

Key = tuple[str, int]
OFFSET_INVALID = -1001


class FakeMessage:
    """What confluent_kafka.Message offers the worker."""

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int = 1_700_000_000_000,
        error: KafkaError | None = None,
        control: bool = False,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._headers = key, value, headers
        self._timestamp_ms, self._error = timestamp_ms, error
        self.control = control

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, self._timestamp_ms

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


class FakeBroker:
    def __init__(self) -> None:
        self.logs: dict[str, list[list[FakeMessage]]] = {}
        self.committed: dict[tuple[str, Key], int] = {}
        self.members: dict[str, list[FakeConsumer]] = {}
        self.activity = threading.Condition()

    # ------------------------------------------------------------------ data

    def create_topic(self, name: str, partitions: int = 1) -> str:
        self.logs[name] = [[] for _ in range(partitions)]
        return name

    def produce(
        self,
        topic: str,
        values: Iterable[bytes | None],
        partition: int = 0,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        log = self.logs[topic][partition]
        for value in values:
            log.append(FakeMessage(topic, partition, len(log), key, value, headers))
        with self.activity:
            self.activity.notify_all()

    def commit_marker(self, topic: str, partition: int = 0) -> None:
        """A transaction's commit marker: it takes an offset, and consumers never see it (their
        position moves past it)."""
        log = self.logs[topic][partition]
        log.append(FakeMessage(topic, partition, len(log), None, None, control=True))

    def truncate(self, topic: str, partition: int, offset: int) -> None:
        """The log loses everything from `offset` (an unclean leader election); new records
        take those offsets again."""
        del self.logs[topic][partition][offset:]

    def end_offset(self, topic: str, partition: int) -> int:
        return len(self.logs[topic][partition])

    def committed_offset(self, group: str, topic: str, partition: int) -> int | None:
        return self.committed.get((group, (topic, partition)))

    # ------------------------------------------------------------------ groups

    def consumer(self, config: dict[str, Any]) -> FakeConsumer:
        return FakeConsumer(self, config)

    def _join(self, member: FakeConsumer) -> None:
        self.members.setdefault(member.group, []).append(member)
        self._rebalance(member.group)

    def _leave(self, member: FakeConsumer) -> None:
        members = self.members.get(member.group, [])
        if member not in members:  # closed without ever subscribing, as librdkafka allows
            return
        members.remove(member)
        self._rebalance(member.group)

    def _rebalance(self, group: str) -> None:
        """Cooperative: revoke what must move first; assign what nobody owns."""
        members = sorted(self.members.get(group, []), key=lambda m: m.member_id)
        if not members:
            return
        topics = sorted({t for m in members for t in m.topics if t in self.logs})
        partitions = [(t, p) for t in topics for p in range(len(self.logs[t]))]
        target: dict[Key, FakeConsumer] = {
            key: members[i % len(members)] for i, key in enumerate(partitions)
        }
        owned = {key for m in members for key in m.owned}
        for member in members:
            moving = {k for k in member.owned - member.revoking if target.get(k) is not member}
            if moving:
                member.revoking |= moving
                member.events.append(("revoke", moving))
        for key, member in target.items():
            if key not in owned and key not in member.owned and key not in member.assigning:
                member.assigning.add(key)
                member.events.append(("assign", {key}))

    def _revoked(self, member: FakeConsumer) -> None:
        self._rebalance(member.group)


class FakeConsumer:
    """Implements connector.source.kafka.Consumer over a FakeBroker."""

    _ids = iter(range(1_000_000))

    def __init__(self, broker: FakeBroker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.config = config
        self.group: str = config["group.id"]
        self.member_id = f"member-{next(self._ids):06d}"
        self.reset_to = config.get("auto.offset.reset", "latest")
        self.on_commit: Callable[[KafkaError | None, list[TopicPartition]], None] | None = (
            config.get("on_commit")
        )
        self.error_cb: Callable[[KafkaError], None] | None = config.get("error_cb")
        self.client_errors: list[KafkaError] = []
        self.topics: list[str] = []
        self.callbacks: dict[str, Callable[[Any, list[TopicPartition]], None]] = {}
        self.events: list[tuple[str, set[Key]]] = []
        self.owned: set[Key] = set()  # the assignment
        self.revoking: set[Key] = set()
        self.assigning: set[Key] = set()
        self.paused: set[Key] = set()  # the application's pause flags (kept across revokes)
        self.fetch: dict[Key, int] = {}  # next offset to deliver
        self.consumed: dict[Key, int] = {}  # last delivered + 1 (position())
        self.errors: list[FakeMessage] = []
        self.commit_log: list[dict[Key, int]] = []  # every commit, for assertions
        self._commit_results: list[list[TopicPartition]] = []
        self.closed = False

    # ------------------------------------------------------------------ the Protocol

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[[Any, list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[Any, list[TopicPartition]], None] | None = None,
        on_lost: Callable[[Any, list[TopicPartition]], None] | None = None,
    ) -> None:
        self.topics = topics
        self.callbacks = {
            name: callback
            for name, callback in (
                ("assign", on_assign),
                ("revoke", on_revoke),
                ("lost", on_lost),
            )
            if callback is not None
        }
        self.broker._join(self)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        self._serve_events()
        messages: list[Any] = []
        if self.errors:
            messages.append(self.errors.pop(0))
        messages += self._fetch(num_messages - len(messages))
        if not messages and timeout > 0:
            with self.broker.activity:  # what a real poll blocks for, at most
                self.broker.activity.wait(min(timeout, 0.01))
            self._serve_events()
        return messages

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in sorted(self.owned)]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def seek(self, partition: TopicPartition) -> None:
        key = (partition.topic, partition.partition)
        if key not in self.owned:
            from confluent_kafka import KafkaException

            raise KafkaException(KafkaError(KafkaError._STATE, "partition not assigned"))
        self.fetch[key] = partition.offset

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic, tp.partition, self.consumed.get((tp.topic, tp.partition), OFFSET_INVALID)
            )
            for tp in partitions
        ]

    def commit(
        self, offsets: list[TopicPartition] | None = None, asynchronous: bool = True
    ) -> list[TopicPartition] | None:
        assert offsets is not None
        done = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        for key, offset in done.items():
            self.broker.committed[(self.group, key)] = offset
        self.commit_log.append(done)
        result = [TopicPartition(t, p, o) for (t, p), o in done.items()]
        if asynchronous:
            self.events.append(("commit", set(done)))
            self._commit_results.append(result)
            return None
        return result

    def committed(
        self, partitions: list[TopicPartition], timeout: float = -1
    ) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic,
                tp.partition,
                self.broker.committed.get((self.group, (tp.topic, tp.partition)), OFFSET_INVALID),
            )
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return 0, self.broker.end_offset(partition.topic, partition.partition)

    def close(self) -> None:
        if self.closed:
            return
        self._serve_events()
        if self.owned:
            keys = set(self.owned)
            self.owned.clear()
            self._call("revoke", keys)
        self.closed = True
        self.broker._leave(self)

    # ------------------------------------------------------------------ steering (tests)

    def lose(self, partitions: Iterable[Key]) -> None:
        """librdkafka decided the partitions are lost (session timeout): on_lost at the next
        consume(), and the group moves them."""
        self.events.append(("lost", set(partitions)))

    def reset(self, topic: str, partition: int, offset: int) -> None:
        """An offset reset (after a truncation): fetching goes on from `offset`."""
        self.fetch[(topic, partition)] = offset

    def client_error(self, error: KafkaError) -> None:
        """The client reports an error event (a failed login): error_cb inside consume()."""
        self.client_errors.append(error)

    def fail_next(self, code: int, reason: str = "injected", fatal: bool = False) -> None:
        """The next consume() delivers an error event."""
        error = KafkaError(code, reason, fatal=fatal)
        self.errors.append(FakeMessage("", -1, -1, None, None, error=error))

    def committed_position(self, topic: str, partition: int) -> int | None:
        return self.broker.committed_offset(self.group, topic, partition)

    # ------------------------------------------------------------------ internals

    def _serve_events(self) -> None:
        while self.client_errors:
            error = self.client_errors.pop(0)
            if self.error_cb is not None:
                self.error_cb(error)
        while self.events:
            kind, keys = self.events.pop(0)
            if kind == "commit":
                if self.on_commit is not None:
                    self.on_commit(None, self._commit_results.pop(0))
            elif kind == "revoke":
                self._call("revoke", keys)
                self.owned -= keys
                self.revoking -= keys
                for key in keys:
                    self.fetch.pop(key, None)
                    self.consumed.pop(key, None)
                self.broker._revoked(self)
            elif kind == "lost":
                keys &= self.owned
                self.owned -= keys
                self.revoking -= keys
                for key in keys:
                    self.fetch.pop(key, None)
                    self.consumed.pop(key, None)
                self._call("lost", keys)
                self.broker._revoked(self)
            elif kind == "assign":
                self.assigning -= keys
                self._call("assign", keys)
                self.owned |= keys
                for key in keys:
                    committed = self.broker.committed.get((self.group, key))
                    if committed is None:
                        end = self.broker.end_offset(*key)
                        committed = 0 if self.reset_to == "earliest" else end
                    self.fetch[key] = committed

    def _call(self, kind: str, keys: set[Key]) -> None:
        callback = self.callbacks.get(kind)
        if callback is not None:
            callback(self, [TopicPartition(t, p) for t, p in sorted(keys)])

    def _fetch(self, limit: int) -> list[Any]:
        messages: list[Any] = []
        for key in sorted(self.owned):
            if key in self.paused or key not in self.fetch:
                continue
            log = self.broker.logs[key[0]][key[1]]
            start = self.fetch[key]
            chunk = log[start : start + max(0, limit - len(messages))]
            if chunk:
                messages += [m for m in chunk if not m.control]
                self.fetch[key] = start + len(chunk)
                self.consumed[key] = self.fetch[key]
        return messages
