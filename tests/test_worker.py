"""The worker's loop with fakes at its edges: an in-memory consumer, a scripted API
(httpx MockTransport) and a dead-letter producer that confirms when told. Fast and
deterministic checks of the delivery rules that the integration tests cannot time exactly:
late results after a revoke, nothing committed on partition loss, halts, backpressure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import TopicPartition

from connector.deadletter import DeadLetterWriter
from connector.mapping import TargetDefaults, load_mapping_file
from connector.metrics import Metrics
from connector.settings import Settings
from connector.worker import EXIT_HALT, EXIT_OK, Worker

TOPIC = "orders"


class FakeMessage:
    def __init__(self, partition: int, offset: int, value: bytes | None) -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_700_000_000_000

    def key(self) -> bytes:
        return f"k{self._offset}".encode()

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> None:
        return None


class Until:
    """A step that holds the consumer (returning nothing, as a real poll that times out)
    until `condition` is true, or fails after `timeout_s`."""

    def __init__(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        self.condition = condition
        self.deadline: float | None = None
        self.timeout_s = timeout_s


Step = list[FakeMessage] | Callable[["FakeConsumer"], None] | Until


class FakeConsumer:
    """Plays `steps`, one per consume() call; then asks the worker to stop."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.worker: Worker | None = None
        self.callbacks: dict[str, Any] = {}
        self.assigned: list[TopicPartition] = []
        self.paused: set[tuple[str, int]] = set()
        self.commits: list[dict[tuple[str, int], int]] = []
        self.consume_calls = 0
        self.positions: dict[tuple[str, int], int] = {}
        self.seeks: list[tuple[str, int, int]] = []
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def assign(self, partitions: list[int]) -> None:
        tps = [TopicPartition(TOPIC, p) for p in partitions]
        self.assigned += tps
        self.callbacks["on_assign"](self, tps)

    def revoke(self, partitions: list[int]) -> None:
        tps = [TopicPartition(TOPIC, p) for p in partitions]
        self.callbacks["on_revoke"](self, tps)
        self.assigned = [tp for tp in self.assigned if tp.partition not in partitions]

    def lose(self, partitions: list[int]) -> None:
        tps = [TopicPartition(TOPIC, p) for p in partitions]
        self.callbacks["on_lost"](self, tps)
        self.assigned = [tp for tp in self.assigned if tp.partition not in partitions]

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.consume_calls += 1
        if not self.steps:
            assert self.worker is not None
            self.worker.stop_requested.set()
            return []
        step = self.steps[0]
        if isinstance(step, Until):
            if step.condition():
                self.steps.pop(0)
                return []
            now = time.monotonic()
            step.deadline = step.deadline or now + step.timeout_s
            assert now < step.deadline, "condition not reached"
            threading.Event().wait(min(timeout, 0.005))  # what a real poll would block for
            return []
        self.steps.pop(0)
        if callable(step):
            step(self)
            return []
        delivered = [m for m in step if (TOPIC, m.partition()) not in self.paused]
        for m in delivered:
            self.positions[(TOPIC, m.partition())] = m.offset() + 1
        return delivered

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Where consumption goes on: one past the last delivered offset (-1001: none yet)."""
        return [
            TopicPartition(
                tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), -1001)
            )
            for tp in partitions
        ]

    def seek(self, partition: TopicPartition) -> None:
        self.seeks.append((partition.topic, partition.partition, partition.offset))

    def assignment(self) -> list[TopicPartition]:
        return list(self.assigned)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})
        if asynchronous:
            assert self.worker is not None
            self.worker._on_commit(None, offsets)
        return offsets

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, 1000

    def close(self) -> None:
        self.closed = True

    def committed_position(self, partition: int) -> int | None:
        positions = [c[(TOPIC, partition)] for c in self.commits if (TOPIC, partition) in c]
        return positions[-1] if positions else None


class FakeProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.pending: list[Callable[[], None]] = []
        self.produced: list[dict[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append(kwargs)
        callback = kwargs["on_delivery"]
        self.pending.append(lambda: callback(None, None))

    def poll(self, _timeout: float) -> int:
        while self.pending:
            self.pending.pop(0)()
        return 0

    def flush(self, timeout: float) -> int:
        return self.poll(timeout)

    def list_topics(self, topic: str, timeout: float) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(topics={topic: SimpleNamespace(error=None)})


def records(partition: int, offsets: range, bad: set[int] = frozenset()) -> list[FakeMessage]:  # type: ignore[assignment]
    return [
        FakeMessage(
            partition,
            o,
            b"{not json" if o in bad else orjson.dumps({"id": f"{partition}-{o}", "n": o}),
        )
        for o in offsets
    ]


def accept_all(request: httpx.Request) -> httpx.Response:
    count = len(orjson.loads(request.content)["messages"])
    return httpx.Response(207, json={"responses": [{"xactionId": f"b:{i}"} for i in range(count)]})


def make_worker(
    tmp_path: Path,
    steps: list[Step],
    handler: Callable[[httpx.Request], httpx.Response] = accept_all,
    kafka: dict[str, Any] | None = None,
    ops: dict[str, Any] | None = None,
    dead_letter: dict[str, Any] | None = None,
    extra_mappings: tuple[str, ...] = (),
    **batching: Any,
) -> tuple[Worker, FakeConsumer, FakeProducer]:
    mapping_file = tmp_path / "orders.yaml"
    mapping_file.write_text(
        "name: orders\n"
        f"source: {{topics: [{TOPIC}], format: json}}\n"
        "target: {datasetId: ds, schemaRef: {id: 'https://ns.adobe.com/acme/schemas/o', "
        "contentType: 'application/vnd.adobe.xed-full+json;version=1'}}\n"
        "mappings:\n  - {source: id, destination: _id}\n"
    )
    mappings = [load_mapping_file(mapping_file, TargetDefaults("conn", "ORG@AdobeOrg"))]
    for number, text in enumerate(extra_mappings):
        extra = tmp_path / f"extra{number}.yaml"
        extra.write_text(text)
        mappings.append(load_mapping_file(extra, TargetDefaults("conn", "ORG@AdobeOrg")))
    settings = Settings(
        batching={"linger_ms": 0, "max_in_flight_requests": 2, **batching},
        kafka={"commit_interval_ms": 100, **(kafka or {})},
        ops={"shutdown_timeout_s": 2.0, **(ops or {})},
        retry={"initial_backoff_ms": 1, "max_backoff_ms": 2},
        dead_letter=dead_letter or {},
    )
    consumer = FakeConsumer(steps)
    producer = FakeProducer({})
    metrics = Metrics()
    worker = Worker(
        settings,
        mappings,
        metrics,
        consumer_factory=lambda _config: consumer,
        dead_letters=DeadLetterWriter({}, "dlq", metrics, lambda _c: producer),
        http=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    consumer.worker = worker
    return worker, consumer, producer


def assign(*partitions: int) -> Step:
    return lambda consumer: consumer.assign(list(partitions))


def idle(turns: int) -> list[Step]:
    return [[] for _ in range(turns)]


def test_everything_accepted_or_dead_lettered_then_committed(tmp_path: Path) -> None:
    steps: list[Step] = [assign(0, 1), records(0, range(0, 50), bad={7}), records(1, range(0, 30))]
    worker, consumer, producer = make_worker(tmp_path, steps, max_records=10)
    assert worker.run() == EXIT_OK
    assert consumer.committed_position(0) == 50
    assert consumer.committed_position(1) == 30
    assert len(producer.produced) == 1
    assert producer.produced[0]["value"] == b"{not json"
    assert consumer.closed


def test_revoke_waits_for_in_flight_and_ignores_late_results(tmp_path: Path) -> None:
    release = threading.Event()
    first_request = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        first_request.set()
        release.wait(5)
        return accept_all(request)

    def revoke_while_in_flight(consumer: FakeConsumer) -> None:
        assert first_request.wait(5)
        # The revoke deadline (the drain bound, 0.05 s here) runs out before the API
        # answers: nothing of partition 0 may be committed.
        consumer.revoke([0])
        release.set()

    steps: list[Step] = [assign(0), records(0, range(0, 5)), revoke_while_in_flight, *idle(5)]
    worker, consumer, _ = make_worker(tmp_path, steps, slow, ops={"shutdown_timeout_s": 0.05})
    assert worker.run() == EXIT_OK
    assert consumer.committed_position(0) is None
    assert worker.tracker.state((TOPIC, 0)) is None


def test_partition_loss_commits_nothing(tmp_path: Path) -> None:
    steps: list[Step] = [assign(0), records(0, range(0, 5)), *idle(3), lambda c: c.lose([0])]
    worker, consumer, _ = make_worker(tmp_path, steps, kafka={"commit_interval_ms": 10_000_000})
    assert worker.run() == EXIT_OK
    assert consumer.committed_position(0) is None


def test_unknown_inlet_halts_and_commits_only_finished(tmp_path: Path) -> None:
    calls = {"n": 0}

    def first_ok_then_404(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return accept_all(request) if calls["n"] == 1 else httpx.Response(404)

    steps: list[Step] = [
        assign(0),
        records(0, range(0, 10)),
        *idle(3),
        records(0, range(10, 20)),
        *idle(20),
    ]
    worker, consumer, producer = make_worker(tmp_path, steps, first_ok_then_404, max_records=10)
    assert worker.run() == EXIT_HALT
    assert "404" in (worker.halt_reason or "")
    assert consumer.committed_position(0) == 10
    assert producer.produced == []
    assert worker.readiness()[0] is False


def test_api_down_pauses_consumption_and_keeps_polling(tmp_path: Path) -> None:
    down = threading.Event()
    down.set()

    def unavailable(request: httpx.Request) -> httpx.Response:
        if down.is_set():
            return httpx.Response(503, headers={"Retry-After": "0"})
        return accept_all(request)

    def recover(consumer: FakeConsumer) -> None:
        assert consumer.paused == {(TOPIC, 0)}
        down.clear()

    steps: list[Step] = [
        assign(0),
        records(0, range(0, 40)),
        records(0, range(40, 80)),  # over max_buffered_records: pauses
        Until(lambda: worker.metrics.retries.labels("503")._value.get() > 0),
        recover,
        Until(lambda: worker.tracker.state((TOPIC, 0)).position == 80),  # type: ignore[union-attr]
        Until(lambda: not consumer.paused),
    ]
    worker, consumer, _ = make_worker(
        tmp_path, steps, unavailable, max_records=10, max_buffered_records=50
    )
    assert worker.run() == EXIT_OK
    assert consumer.paused == set()
    # On resume the worker seeks to where consumption stopped (to restart fetching at once):
    # the same position, so nothing is skipped or read twice.
    assert consumer.seeks == [(TOPIC, 0, 80)]
    assert consumer.committed_position(0) == 80
    assert worker.metrics.retries.labels("503")._value.get() > 0


@pytest.mark.parametrize("ordering", ["partition", "none"])
def test_lanes_follow_the_ordering_setting(tmp_path: Path, ordering: str) -> None:
    bodies: list[list[str]] = []

    def record_batches(request: httpx.Request) -> httpx.Response:
        bodies.append(
            [m["body"]["xdmEntity"]["_id"] for m in orjson.loads(request.content)["messages"]]
        )
        return accept_all(request)

    steps: list[Step] = [assign(0, 1), records(0, range(0, 3)) + records(1, range(0, 3))]
    worker, _, _ = make_worker(tmp_path, steps, record_batches, ordering=ordering)
    assert worker.run() == EXIT_OK
    partitions_per_request = sorted(sorted({i.split("-")[0] for i in body}) for body in bodies)
    if ordering == "partition":
        assert partitions_per_request == [["0"], ["1"]]
    else:
        assert partitions_per_request == [["0", "1"]]


AUDIT_MAPPING = (
    "name: audit\n"
    f"source: {{topics: [{TOPIC}], format: json}}\n"
    "filter: 'n >= 3'\n"
    "target: {connectionId: conn-audit, datasetId: ds2, schemaRef: "
    "{id: 'https://ns.adobe.com/acme/schemas/a', "
    "contentType: 'application/vnd.adobe.xed-full+json;version=1'}}\n"
    "mappings:\n  - {source: id, destination: _id}\n"
)


def test_a_record_finishes_when_every_mapping_is_done_and_filtered_ones_at_once(
    tmp_path: Path,
) -> None:
    audit_gate = threading.Event()
    sent: dict[str, int] = {"conn": 0, "conn-audit": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        connection = request.url.path.rsplit("/", 1)[1]
        if connection == "conn-audit":
            audit_gate.wait(5)
        sent[connection] += len(orjson.loads(request.content)["messages"])
        return accept_all(request)

    def audit_still_pending(_consumer: FakeConsumer) -> None:
        # Every "orders" message is accepted, and records 0-2 were filtered out of "audit":
        # they are finished. Records 3 and 4 wait for their "audit" message.
        assert worker.tracker.state((TOPIC, 0)).position == 3  # type: ignore[union-attr]
        audit_gate.set()

    steps: list[Step] = [
        assign(0),
        records(0, range(0, 5)),
        Until(lambda: sent["conn"] == 5),
        Until(lambda: worker.tracker.state((TOPIC, 0)).position == 3),  # type: ignore[union-attr]
        audit_still_pending,
        Until(lambda: worker.tracker.state((TOPIC, 0)).position == 5),  # type: ignore[union-attr]
    ]
    worker, consumer, _ = make_worker(tmp_path, steps, handler, extra_mappings=(AUDIT_MAPPING,))
    assert worker.run() == EXIT_OK
    assert sent == {"conn": 5, "conn-audit": 2}
    assert consumer.committed_position(0) == 5
    assert worker.metrics.records_skipped.labels("filter")._value.get() == 3


@pytest.mark.parametrize("mode", ["skip", "dead-letter"])
def test_tombstones(tmp_path: Path, mode: str) -> None:
    steps: list[Step] = [
        assign(0),
        [*records(0, range(0, 2)), FakeMessage(0, 2, None), *records(0, range(3, 4))],
    ]
    worker, consumer, producer = make_worker(tmp_path, steps, dead_letter={"tombstones": mode})
    assert worker.run() == EXIT_OK
    assert consumer.committed_position(0) == 4
    if mode == "skip":
        assert producer.produced == []
        assert worker.metrics.records_skipped.labels("tombstone")._value.get() == 1
    else:
        (letter,) = producer.produced
        assert letter["value"] is None
        assert dict(letter["headers"])["aep.dlq.error.class"] == b"tombstone"
