"""The worker's loop with fakes at its edges: the in-memory Kafka twin (tests/support/
fake_kafka.py, held to librdkafka's behaviour by the consumer contract suite), a scripted API
(httpx MockTransport) and a dead-letter producer that confirms when polled.

A test is a script of steps the consumer plays inside consume(), on the worker's own thread,
as librdkafka serves callbacks: produce records, start or stop another group member, lose
partitions, wait until a condition holds. When the script ends the worker is asked to stop.
Each test of an edge names the edge of issue 10 it closes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import KafkaError

from connector.deadletter import DeadLetterWriter
from connector.mapping import TargetDefaults, load_mapping_file
from connector.metrics import Metrics
from connector.receipts import ReceiptWriter
from connector.settings import Settings
from connector.worker import EXIT_CRASH, EXIT_HALT, EXIT_OK, LetterToken, Worker
from tests.support.fake_kafka import FakeBroker, FakeConsumer

TOPIC = "orders"
Step = Callable[["Script"], Any]


class Until:
    """A step that holds the script (consume() returns what the broker has, as usual) until
    `condition` is true, or fails after `timeout_s`."""

    def __init__(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        self.condition = condition
        self.timeout_s = timeout_s
        self.deadline: float | None = None


class ScriptedConsumer(FakeConsumer):
    """The worker's consumer: plays the script's steps, one per consume() call."""

    script: Script

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        self.script.play()
        return super().consume(num_messages, timeout)


class FakeProducer:
    def __init__(self) -> None:
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

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return SimpleNamespace(topics={"dlq": SimpleNamespace(error=None)})


class Script:
    def __init__(self, steps: list[Step | Until]) -> None:
        self.steps = steps
        self.broker = FakeBroker()
        self.broker.create_topic(TOPIC, 2)
        self.worker: Worker
        self.consumer: ScriptedConsumer
        self.others: list[FakeConsumer] = []

    def play(self) -> None:
        if not self.steps:
            self.worker.stop_requested.set()
            return
        step = self.steps[0]
        if isinstance(step, Until):
            if not step.condition():
                now = time.monotonic()
                step.deadline = step.deadline or now + step.timeout_s
                assert now < step.deadline, "condition not reached"
                return
        else:
            step(self)
        self.steps.pop(0)

    # helpers for steps
    def produce(self, partition: int, offsets: range, bad: frozenset[int] = frozenset()) -> None:
        self.broker.produce(
            TOPIC,
            [
                b"{not json" if o in bad else orjson.dumps({"id": f"{partition}-{o}", "n": o})
                for o in offsets
            ],
            partition,
            key=b"k",
        )

    def join(self) -> FakeConsumer:
        """Another member joins the group (it takes partitions as it polls)."""
        other = self.broker.consumer({"group.id": "workers", "auto.offset.reset": "earliest"})
        other.subscribe([TOPIC])
        self.others.append(other)
        return other

    def position(self, partition: int) -> int | None:
        state = self.worker.tracker.state((TOPIC, partition))
        return None if state is None else state.position

    def committed(self, partition: int) -> int | None:
        return self.broker.committed_offset("workers", TOPIC, partition)


def produce(partition: int, offsets: range, bad: frozenset[int] = frozenset()) -> Step:
    return lambda script: script.produce(partition, offsets, bad)


def accept_all(request: httpx.Request) -> httpx.Response:
    count = len(orjson.loads(request.content)["messages"])
    return httpx.Response(207, json={"responses": [{"xactionId": f"b:{i}"} for i in range(count)]})


def ids(request: httpx.Request) -> list[str]:
    return [m["body"]["xdmEntity"]["_id"] for m in orjson.loads(request.content)["messages"]]


def make_worker(
    tmp_path: Path,
    steps: list[Step | Until],
    handler: Callable[[httpx.Request], httpx.Response] = accept_all,
    kafka: dict[str, Any] | None = None,
    ops: dict[str, Any] | None = None,
    dead_letter: dict[str, Any] | None = None,
    platform: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    extra_mappings: tuple[str, ...] = (),
    receipts: dict[str, Any] | None = None,
    receipt_producer: Callable[[dict[str, Any]], Any] | None = None,
    **batching: Any,
) -> tuple[Worker, Script, FakeProducer]:
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
        kafka={"group_id": "workers", "commit_interval_ms": 100, **(kafka or {})},
        ops={"shutdown_timeout_s": 2.0, **(ops or {})},
        retry={"initial_backoff_ms": 1, "max_backoff_ms": 2, **(retry or {})},
        dead_letter=dead_letter or {},
        platform=platform or {},
        receipts=receipts or {},
    )
    script = Script(steps)
    producer = FakeProducer()
    metrics = Metrics()

    def consumer_factory(config: dict[str, Any]) -> ScriptedConsumer:
        consumer = ScriptedConsumer(script.broker, config)
        consumer.script = script
        script.consumer = consumer
        return consumer

    dead_letters: DeadLetterWriter[LetterToken] = DeadLetterWriter(
        {}, "dlq", metrics, lambda _c: producer
    )
    worker = Worker(
        settings,
        mappings,
        metrics,
        consumer_factory=consumer_factory,
        dead_letters=dead_letters,
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        receipts=ReceiptWriter({}, settings.receipts, metrics, receipt_producer)
        if receipts
        else None,
    )
    script.worker = worker
    return worker, script, producer


def value(metric: Any) -> float:
    return float(metric._value.get())


# ---------------------------------------------------------------------------- the basics


def test_everything_accepted_or_dead_lettered_then_committed(tmp_path: Path) -> None:
    steps: list[Step | Until] = [
        produce(0, range(0, 50), bad=frozenset({7})),
        produce(1, range(0, 30)),
        Until(lambda: script.position(0) == 50 and script.position(1) == 30),
    ]
    worker, script, producer = make_worker(tmp_path, steps, max_records=10)
    assert worker.run() == EXIT_OK
    assert script.committed(0) == 50
    assert script.committed(1) == 30
    (letter,) = producer.produced
    assert letter["value"] == b"{not json"
    assert script.consumer.closed


def test_partition_loss_commits_nothing(tmp_path: Path) -> None:
    release = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        release.wait(5)
        return accept_all(request)

    steps: list[Step | Until] = [
        produce(0, range(0, 5)),
        Until(lambda: script.worker.dispatcher.in_flight == 1),
        lambda s: s.consumer.lose([(TOPIC, 0)]),
        Until(lambda: script.worker.tracker.state((TOPIC, 0)) is not None),  # back again
        lambda s: release.set(),
    ]
    worker, script, _ = make_worker(tmp_path, steps, slow, kafka={"commit_interval_ms": 10_000_000})
    assert worker.run() == EXIT_OK
    # Nothing of the first assignment was committed; the records came again afterwards.
    assert script.consumer.commit_log[0] == {(TOPIC, 0): 5}
    assert all((TOPIC, 1) not in c or c[(TOPIC, 1)] == 0 for c in script.consumer.commit_log)


def test_unknown_inlet_halts_and_commits_only_finished(tmp_path: Path) -> None:
    calls = {"n": 0}

    def first_ok_then_404(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return accept_all(request) if calls["n"] == 1 else httpx.Response(404)

    steps: list[Step | Until] = [
        produce(0, range(0, 10)),
        Until(lambda: script.position(0) == 10),
        produce(0, range(10, 20)),
        Until(lambda: False),
    ]
    worker, script, producer = make_worker(tmp_path, steps, first_ok_then_404, max_records=10)
    assert worker.run() == EXIT_HALT
    assert "404" in (worker.halt_reason or "")
    assert script.committed(0) == 10
    assert producer.produced == []
    assert worker.readiness()[0] is False
    assert script.consumer.closed


@pytest.mark.parametrize("ordering", ["partition", "none"])
def test_lanes_follow_the_ordering_setting(tmp_path: Path, ordering: str) -> None:
    bodies: list[list[str]] = []

    def record_batches(request: httpx.Request) -> httpx.Response:
        bodies.append(ids(request))
        return accept_all(request)

    steps: list[Step | Until] = [
        lambda s: (s.produce(0, range(0, 3)), s.produce(1, range(0, 3))),
        Until(lambda: script.position(0) == 3 and script.position(1) == 3),
    ]
    worker, script, _ = make_worker(
        tmp_path, steps, record_batches, ordering=ordering, linger_ms=200
    )
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

    def audit_still_pending(_script: Script) -> None:
        # Every "orders" message is accepted, and records 0-2 were filtered out of "audit":
        # they are finished. Records 3 and 4 wait for their "audit" message.
        assert script.position(0) == 3
        audit_gate.set()

    steps: list[Step | Until] = [
        produce(0, range(0, 5)),
        Until(lambda: sent["conn"] == 5),
        Until(lambda: script.position(0) == 3),
        audit_still_pending,
        Until(lambda: script.position(0) == 5),
    ]
    worker, script, _ = make_worker(tmp_path, steps, handler, extra_mappings=(AUDIT_MAPPING,))
    assert worker.run() == EXIT_OK
    assert sent == {"conn": 5, "conn-audit": 2}
    assert script.committed(0) == 5
    assert value(worker.metrics.records_skipped.labels("filter")) == 3


WARNED_MAPPING = (
    "name: warned\n"
    f"source: {{topics: [{TOPIC}], format: json}}\n"
    "target: {connectionId: conn-warned, datasetId: ds3, schemaRef: "
    "{id: 'https://ns.adobe.com/acme/schemas/w', "
    "contentType: 'application/vnd.adobe.xed-full+json;version=1'}}\n"
    "mappings:\n  - {source: id, destination: _id}\n"
    "  - {sourceType: EXPRESSION, source: 'to_integer(id)', destination: _acme.number}\n"
)


def test_field_warnings_are_counted_by_mapping_and_the_records_still_sent(
    tmp_path: Path,
) -> None:
    sent: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        connection = request.url.path.rsplit("/", 1)[1]
        sent[connection] = sent.get(connection, 0) + len(orjson.loads(request.content)["messages"])
        return accept_all(request)

    steps: list[Step | Until] = [
        produce(0, range(0, 4)),
        Until(lambda: script.position(0) == 4),
        produce(1, range(0, 3)),
        Until(lambda: script.position(1) == 3),
    ]
    worker, script, _ = make_worker(tmp_path, steps, handler, extra_mappings=(WARNED_MAPPING,))
    assert worker.run() == EXIT_OK
    assert sent == {"conn": 7, "conn-warned": 7}  # "0-1" is no integer: _acme.number left out
    assert value(worker.metrics.field_warnings.labels("warned")) == 7
    assert value(worker.metrics.field_warnings.labels("orders")) == 0


@pytest.mark.parametrize("mode", ["skip", "dead-letter"])
def test_tombstones(tmp_path: Path, mode: str) -> None:
    def records(s: Script) -> None:
        s.produce(0, range(0, 2))
        s.broker.produce(TOPIC, [None], 0)
        s.produce(0, range(3, 4))

    steps: list[Step | Until] = [records, Until(lambda: script.position(0) == 4)]
    worker, script, producer = make_worker(tmp_path, steps, dead_letter={"tombstones": mode})
    assert worker.run() == EXIT_OK
    assert script.committed(0) == 4
    if mode == "skip":
        assert producer.produced == []
        assert value(worker.metrics.records_skipped.labels("tombstone")) == 1
    else:
        (letter,) = producer.produced
        assert letter["value"] is None
        assert dict(letter["headers"])["aep.dlq.error.class"] == b"tombstone"


def test_api_down_pauses_consumption_and_keeps_polling(tmp_path: Path) -> None:
    down = threading.Event()
    down.set()

    def unavailable(request: httpx.Request) -> httpx.Response:
        if down.is_set():
            return httpx.Response(503, headers={"Retry-After": "0"})
        return accept_all(request)

    steps: list[Step | Until] = [
        produce(0, range(0, 80)),
        Until(lambda: script.consumer.paused == {(TOPIC, 0), (TOPIC, 1)}),
        lambda s: down.clear(),
        Until(lambda: script.position(0) == 80),
        Until(lambda: not script.consumer.paused),
    ]
    worker, script, _ = make_worker(
        tmp_path, steps, unavailable, max_records=10, max_buffered_records=50
    )
    calls_before = script  # the consumer kept being polled while paused (the script ran)
    assert worker.run() == EXIT_OK
    assert calls_before.consumer.paused == set()
    assert script.committed(0) == 80
    assert value(worker.metrics.retries.labels("503")) > 0
    assert value(worker.metrics.paused_partitions) == 0


def test_an_idle_partition_commits_past_a_transaction_marker(tmp_path: Path) -> None:
    """Records written in a transaction are followed by a marker that takes an offset and is
    never delivered: the committed offset must still reach the end (lag 0)."""
    steps: list[Step | Until] = [
        produce(0, range(0, 3)),
        lambda s: s.broker.commit_marker(TOPIC, 0),
        Until(lambda: script.position(0) == 3),
        Until(lambda: script.committed(0) == 4),
    ]
    worker, script, _ = make_worker(tmp_path, steps)
    assert worker.run() == EXIT_OK
    assert script.committed(0) == 4


def test_a_backlog_with_a_little_poison_does_not_trip_the_breaker(tmp_path: Path) -> None:
    """Catching up on a backlog, the worker decides its undecodable records as fast as it
    consumes, while acceptances come at the API's pace. 10 % poison must not look like 50 %
    (found by the chaos suite: a worker catching up after a broker restart halted with
    "501 of the last 1000 records were dead-lettered" at 6 % poison)."""
    api_open = threading.Event()

    def slow_api(request: httpx.Request) -> httpx.Response:
        api_open.wait(10)
        return accept_all(request)

    bad = frozenset(range(5, 1000, 10))
    steps: list[Step | Until] = [
        produce(0, range(0, 1000), bad=bad),
        Until(lambda: len(producer.produced) == len(bad)),  # every dead letter written
        lambda s: api_open.set(),
        Until(lambda: script.position(0) == 1000),
    ]
    worker, script, producer = make_worker(
        tmp_path, steps, slow_api, dead_letter={"window": 100, "max_ratio": 0.5}
    )
    assert worker.run() == EXIT_OK, worker.halt_reason
    assert script.committed(0) == 1000


def test_the_breaker_still_trips_when_the_api_rejects_every_record(tmp_path: Path) -> None:
    def reject_all(request: httpx.Request) -> httpx.Response:
        count = len(orjson.loads(request.content)["messages"])
        status = {"status": 400, "message": "no"}
        return httpx.Response(207, json={"responses": [status for _ in range(count)]})

    steps: list[Step | Until] = [produce(0, range(0, 300)), Until(lambda: False)]
    worker, _, _ = make_worker(
        tmp_path,
        steps,
        reject_all,
        dead_letter={"window": 100, "max_ratio": 0.5, "max_consecutive": 1000},
    )
    assert worker.run() == EXIT_HALT
    assert "dead-letter circuit breaker tripped" in (worker.halt_reason or "")


# ---------------------------------------------------------------------------- issue 10 edges


def test_edge1_identity_service_failing_while_renewing_is_retried(tmp_path: Path) -> None:
    """A 401, then the token endpoint answers 503 and times out before it issues a token."""
    script_ims: list[int | str] = [200, 503, "timeout", 200]
    api_statuses = [401]
    accepted: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            step = script_ims.pop(0) if script_ims else 200
            if step == "timeout":
                raise httpx.ConnectTimeout("identity service")
            if step != 200:
                return httpx.Response(int(step))
            return httpx.Response(200, json={"access_token": f"t{len(script_ims)}"})
        if api_statuses:
            return httpx.Response(api_statuses.pop(0))
        accepted.extend(ids(request))
        return accept_all(request)

    auth = {"client_id": "c", "client_secret": "s", "token_url": "https://ims.test/ims/token/v3"}
    steps: list[Step | Until] = [produce(0, range(0, 5)), Until(lambda: script.position(0) == 5)]
    worker, script, _ = make_worker(tmp_path, steps, handler, platform={"auth": auth})
    assert worker.run() == EXIT_OK
    assert sorted(accepted) == [f"0-{n}" for n in range(5)]
    assert script.committed(0) == 5


def test_edge1_an_unexpected_error_stops_cleanly_and_commits_what_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connector.intake as worker_module

    real = worker_module.process
    calls = {"n": 0}

    def flaky(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise ZeroDivisionError("a bug")
        return real(*args)

    monkeypatch.setattr(worker_module, "process", flaky)
    steps: list[Step | Until] = [
        produce(0, range(0, 3)),
        Until(lambda: script.position(0) == 3),
        produce(0, range(3, 6)),
        Until(lambda: False),
    ]
    worker, script, _ = make_worker(tmp_path, steps)
    started = time.monotonic()
    assert worker.run() == EXIT_CRASH
    assert time.monotonic() - started < 5
    assert "ZeroDivisionError" in (worker.halt_reason or "")
    assert script.committed(0) == 3
    assert script.consumer.closed


def test_edge2_revoke_cancels_requests_that_outlive_the_drain_bound(tmp_path: Path) -> None:
    """The API is down; partition 0 moves to another member. After the drain bound the
    worker's request for it stops retrying and frees its lane: when the API recovers, each
    record is accepted once, by whoever owns the partition then."""
    down = threading.Event()
    down.set()
    attempts: list[tuple[float, str]] = []
    accepted: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        if down.is_set():
            attempts.append((time.monotonic(), ids(request)[0].split("-")[0]))
            return httpx.Response(503)
        accepted.update(ids(request))
        return accept_all(request)

    revoked_at: dict[str, float] = {}

    def member_joins(s: Script) -> None:
        s.join()

    def take_partitions(s: Script) -> None:
        for other in s.others:
            other.consume(10, 0)

    def moved() -> bool:
        take_partitions(script)
        return script.worker.tracker.state((TOPIC, 0)) is None or (
            script.worker.tracker.state((TOPIC, 1)) is None
        )

    def note_revoke(s: Script) -> None:
        revoked_at["t"] = time.monotonic()
        revoked_at["partition"] = 0 if s.worker.tracker.state((TOPIC, 0)) is None else 1

    def member_leaves(s: Script) -> None:
        s.others.pop().close()

    steps: list[Step | Until] = [
        produce(0, range(0, 5)),
        produce(1, range(0, 5)),
        Until(lambda: script.worker.dispatcher.in_flight == 2),
        member_joins,
        Until(moved),
        note_revoke,
        Until(lambda: time.monotonic() - revoked_at["t"] > 0.3),
        lambda s: down.clear(),
        member_leaves,
        Until(lambda: script.position(0) == 5 and script.position(1) == 5),
    ]
    worker, script, _ = make_worker(
        tmp_path, steps, handler, ops={"shutdown_timeout_s": 0.1}, max_in_flight_requests=2
    )
    assert worker.run() == EXIT_OK
    moved_partition = str(revoked_at["partition"])
    before = [t for t, p in attempts if p == moved_partition and t < revoked_at["t"]]
    after = [t for t, p in attempts if p == moved_partition and t > revoked_at["t"] + 0.02]
    assert before
    assert not after
    assert all(count == 1 for count in accepted.values()), accepted
    assert sorted(accepted) == sorted([f"{p}-{n}" for p in (0, 1) for n in range(5)])


def test_edge3_a_partition_revoked_while_paused_is_fetched_when_it_comes_back(
    tmp_path: Path,
) -> None:
    down = threading.Event()
    down.set()

    def handler(request: httpx.Request) -> httpx.Response:
        if down.is_set():
            return httpx.Response(503)
        return accept_all(request)

    def paused_metric_matches() -> bool:
        return value(script.worker.metrics.paused_partitions) == len(
            script.consumer.paused & set(script.consumer.owned)
        )

    def scale_in(s: Script) -> None:
        s.others.pop().close()

    checks: list[bool] = []
    steps: list[Step | Until] = [
        produce(0, range(0, 40)),
        produce(1, range(0, 40)),
        Until(lambda: script.worker.flow.backpressure),
        lambda s: s.join(),  # scale out during the outage
        Until(
            lambda: (script.others[0].consume(10, 0) or True) and len(script.consumer.owned) == 1
        ),
        lambda s: checks.append(paused_metric_matches()),
        lambda s: down.clear(),  # recovers
        scale_in,
        Until(lambda: len(script.consumer.owned) == 2),
        lambda s: checks.append(paused_metric_matches()),
        Until(lambda: script.position(0) == 40 and script.position(1) == 40),
    ]
    worker, script, _ = make_worker(tmp_path, steps, handler, max_buffered_records=20)
    assert worker.run() == EXIT_OK
    assert checks == [True, True]
    assert script.committed(0) == 40
    assert script.committed(1) == 40


def test_edge4_accepted_halves_of_a_split_batch_are_committed_at_sigterm(tmp_path: Path) -> None:
    sent: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        batch = ids(request)
        if len(batch) > 4:
            return httpx.Response(413)
        if int(batch[0].split("-")[1]) >= 4:
            return httpx.Response(503)  # the later halves fail until the stop
        sent.update(batch)
        return accept_all(request)

    steps: list[Step | Until] = [
        produce(0, range(0, 8)),
        Until(lambda: sent.total() == 4),
        lambda s: s.worker.stop_requested.set(),
    ]
    worker, script, _ = make_worker(tmp_path, steps, handler, ops={"shutdown_timeout_s": 0.3})
    assert worker.run() == EXIT_OK
    assert script.committed(0) == 4
    assert sent == Counter({f"0-{n}": 1 for n in range(4)})


def test_edge5_a_request_slower_than_the_shutdown_bound_is_abandoned(tmp_path: Path) -> None:
    stalled = threading.Event()
    release = threading.Event()

    def stall(request: httpx.Request) -> httpx.Response:
        stalled.set()
        release.wait(30)  # longer than the bound: a POST that does not come back
        return accept_all(request)

    steps: list[Step | Until] = [
        produce(0, range(0, 3)),
        Until(stalled.is_set),
        lambda s: s.worker.stop_requested.set(),
    ]
    worker, script, _ = make_worker(tmp_path, steps, stall, ops={"shutdown_timeout_s": 0.5})
    started = time.monotonic()
    assert worker.run() == EXIT_OK
    took = time.monotonic() - started
    release.set()
    assert took < 0.5 + 2.0 + 1.0  # the bound, the halt grace, slack for a loaded machine
    assert script.committed(0) is None


def test_edge7_and_8_through_the_worker(tmp_path: Path) -> None:
    """A 207 entry with 429 is retried (never dead-lettered); then a proxy answering 200
    without results acknowledges nothing and halts after the bound."""
    phase = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        phase["n"] += 1
        count = len(ids(request))
        if phase["n"] == 1:
            entries = [{"status": 429}] + [{"xactionId": "x"}] * (count - 1)
            return httpx.Response(207, json={"responses": entries})
        if phase["n"] == 2:
            return accept_all(request)
        return httpx.Response(200, text="OK")

    steps: list[Step | Until] = [
        produce(0, range(0, 3)),
        Until(lambda: script.position(0) == 3),
        produce(0, range(3, 6)),
        Until(lambda: False),
    ]
    worker, script, producer = make_worker(
        tmp_path, steps, handler, retry={"max_unacknowledged": 3}
    )
    assert worker.run() == EXIT_HALT
    assert producer.produced == []
    assert script.committed(0) == 3
    assert "base_url" in (worker.halt_reason or "")


def test_edge9_offsets_that_go_backwards_are_processed_again(tmp_path: Path) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.extend(ids(request))
        return accept_all(request)

    def truncate_and_reset(s: Script) -> None:
        s.broker.truncate(TOPIC, 0, 3)  # offsets 3, 4 are gone; new records take them again
        s.broker.produce(TOPIC, [orjson.dumps({"id": "new-3"}), orjson.dumps({"id": "new-4"})])
        s.consumer.reset(TOPIC, 0, 3)

    steps: list[Step | Until] = [
        produce(0, range(0, 5)),
        Until(lambda: script.position(0) == 5),
        truncate_and_reset,
        Until(lambda: "new-4" in sent),
        Until(lambda: script.position(0) == 5),
    ]
    worker, script, _ = make_worker(tmp_path, steps, handler)
    assert worker.run() == EXIT_OK
    assert sent == ["0-0", "0-1", "0-2", "0-3", "0-4", "new-3", "new-4"]
    assert value(worker.metrics.offset_rewinds) == 1
    assert value(worker.metrics.records_skipped.labels("refetched")) == 0


def test_edge9_a_rewind_below_unfinished_records_seeks_back_to_them(tmp_path: Path) -> None:
    gate = threading.Event()
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        batch = ids(request)
        if "0-2" in batch and not gate.is_set():
            gate.wait(5)  # offsets 2..4 are in flight when the log goes backwards
        sent.extend(batch)
        return accept_all(request)

    steps: list[Step | Until] = [
        produce(0, range(0, 2)),
        Until(lambda: script.position(0) == 2),
        produce(0, range(2, 5)),
        Until(lambda: script.worker.dispatcher.in_flight == 1),
        lambda s: s.consumer.reset(TOPIC, 0, 4),  # a reset past the unfinished offsets 2, 3
        Until(lambda: script.worker.metrics.offset_rewinds._value.get() == 1),
        lambda s: gate.set(),
        Until(lambda: script.position(0) == 5),
    ]
    worker, script, _ = make_worker(tmp_path, steps, handler, max_in_flight_requests=1)
    assert worker.run() == EXIT_OK
    # 2 and 3 were unfinished when the reset jumped to 4: they were fetched again.
    assert {"0-2", "0-3", "0-4"} <= set(sent[2:])
    assert script.committed(0) == 5


def test_edge9_records_fetched_again_right_after_a_resume_are_skipped(tmp_path: Path) -> None:
    sent: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        sent.update(ids(request))
        return accept_all(request)

    def pause_resume_and_refetch(s: Script) -> None:
        keys = s.consumer.assignment()
        s.worker.flow._pause(keys)
        s.worker.flow._resume(keys)
        s.consumer.reset(TOPIC, 0, 1)  # the client delivers offsets 1..3 again

    steps: list[Step | Until] = [
        produce(0, range(0, 4)),
        Until(lambda: script.position(0) == 4),
        pause_resume_and_refetch,
        produce(0, range(4, 6)),
        Until(lambda: script.position(0) == 6),
    ]
    worker, script, _ = make_worker(tmp_path, steps, handler)
    assert worker.run() == EXIT_OK
    assert set(sent.values()) == {1}
    assert value(worker.metrics.records_skipped.labels("refetched")) == 3
    assert value(worker.metrics.offset_rewinds) == 0


def test_edge10_a_fatal_or_authentication_error_from_kafka_halts(tmp_path: Path) -> None:
    steps: list[Step | Until] = [
        produce(0, range(0, 2)),
        Until(lambda: script.position(0) == 2),
        lambda s: s.consumer.fail_next(KafkaError.SASL_AUTHENTICATION_FAILED, "wrong password"),
        Until(lambda: False),
    ]
    worker, script, _ = make_worker(tmp_path, steps)
    assert worker.run() == EXIT_HALT
    assert "wrong password" in (worker.halt_reason or "")
    assert script.committed(0) == 2


def test_edge11_ordering_none_keeps_several_requests_of_a_connection_in_flight(
    tmp_path: Path,
) -> None:
    in_flight = {"now": 0, "most": 0}
    lock = threading.Lock()
    all_four = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            in_flight["now"] += 1
            in_flight["most"] = max(in_flight["most"], in_flight["now"])
            if in_flight["now"] == 4:
                all_four.set()
        all_four.wait(2)
        with lock:
            in_flight["now"] -= 1
        return accept_all(request)

    steps: list[Step | Until] = [
        produce(0, range(0, 40)),
        Until(lambda: script.position(0) == 40),
    ]
    worker, script, _ = make_worker(
        tmp_path, steps, handler, ordering="none", max_in_flight_requests=4, max_records=10
    )
    assert worker.run() == EXIT_OK
    assert in_flight["most"] == 4


def test_edge11_an_inlet_that_is_down_leaves_slots_to_the_others(tmp_path: Path) -> None:
    accepted: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/conn-audit"):
            return httpx.Response(503)  # this inlet is down for the whole test
        accepted.update(ids(request))
        return accept_all(request)

    steps: list[Step | Until] = [
        produce(0, range(0, 40)),
        produce(1, range(0, 40)),
        Until(lambda: accepted.total() == 80),
    ]
    worker, _script, _ = make_worker(
        tmp_path,
        steps,
        handler,
        extra_mappings=(AUDIT_MAPPING,),
        ops={"shutdown_timeout_s": 0.2},
        max_in_flight_requests=2,
        max_records=5,
    )
    assert worker.dispatcher.slots_per_connection == 1
    assert worker.run() == EXIT_OK
    assert accepted.total() == 80


def test_edge10_a_failed_kafka_login_halts_and_commits_nothing(tmp_path: Path) -> None:
    """librdkafka reports a refused SASL login through error_cb (inside consume()), not in a
    message (seen on the real SASL_SSL broker: tests/security)."""
    failed = KafkaError(
        KafkaError._AUTHENTICATION,
        "SASL authentication error: Authentication failed due to invalid credentials",
    )
    steps: list[Step | Until] = [
        lambda s: s.consumer.client_error(failed),
        produce(0, range(0, 3)),
        Until(lambda: False),
    ]
    worker, script, _ = make_worker(tmp_path, steps)
    assert worker.run() == EXIT_HALT
    assert (worker.halt_reason or "").startswith("Kafka authentication failed")
    assert script.committed(0) is None
    assert worker.readiness() == (False, f"halted: {worker.halt_reason}")
