"""Delivery receipts: what a receipt says, the writer's two modes, and the worker's loop with
receipts (in-memory Kafka twin, scripted API, a receipt producer the test confirms or fails).

The end-to-end test on the real broker and the emulator is tests/worker/test_receipts_e2e.py.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import KafkaError

from connector.delivery.batcher import OutboundMessage
from connector.delivery.outcome import Accepted
from connector.errors import HaltError
from connector.metrics import Metrics
from connector.offsets import PartitionState
from connector.receipts import ReceiptWriter, receipt_key, receipt_value
from connector.records import SourceRecord
from connector.settings import ReceiptSettings
from connector.worker import EXIT_HALT, EXIT_OK
from tests.test_worker import AUDIT_MAPPING, TOPIC, Script, Step, Until, make_worker, produce

NAMED = Accepted("1714560000:12:3", "1714560000:12:3:7", 1_714_560_000_123)


class ReceiptProducer:
    """A receipt producer whose deliveries the test decides: `auto` confirms each at the next
    poll; otherwise they wait for confirm() or fail(). As librdkafka, it calls the message's
    on_delivery, else the configured one, and with delivery.report.only.error only for
    failures; len() counts the receipts not yet reported."""

    def __init__(self, auto: bool = False, topics: tuple[str, ...] = ("receipts",)) -> None:
        self.auto = auto
        self.topics = topics
        self.config: dict[str, Any] = {}
        self.produced: list[tuple[str, bytes, bytes]] = []
        self.waiting: list[Callable[[KafkaError | None, object], None]] = []
        self.decided: list[tuple[Callable[[KafkaError | None, object], None], KafkaError | None]]
        self.decided = []
        self.queue_full = False

    def __call__(self, config: dict[str, Any]) -> ReceiptProducer:
        self.config = config
        return self

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        on_delivery: Callable[[KafkaError | None, object], None] | None = None,
    ) -> None:
        on_delivery = on_delivery or self.config["on_delivery"]
        if self.queue_full:
            raise BufferError("Local: Queue full")
        self.produced.append((topic, key, value))
        if self.auto:
            self.decided.append((on_delivery, None))
        else:
            self.waiting.append(on_delivery)

    def confirm(self, count: int | None = None) -> None:
        taken = self.waiting[:count] if count is not None else list(self.waiting)
        del self.waiting[: len(taken)]
        self.decided += [(callback, None) for callback in taken]

    def fail(self, code: int = KafkaError._MSG_TIMED_OUT) -> None:
        self.decided += [(callback, KafkaError(code)) for callback in self.waiting]
        self.waiting = []

    def poll(self, _timeout: float = 0) -> int:
        decided, self.decided = self.decided, []
        for callback, error in decided:
            if error is not None or not self.config.get("delivery.report.only.error"):
                callback(error, None)
        return len(decided)

    def __len__(self) -> int:
        return len(self.waiting) + len(self.decided)

    def flush(self, timeout: float = -1) -> int:
        self.poll()
        return len(self.waiting)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return SimpleNamespace(topics={t: SimpleNamespace(error=None) for t in self.topics})

    def receipts(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for _topic, _key, value in self.produced]


def message(offset: int = 42, key: bytes | None = b"customer-17") -> OutboundMessage:
    record = SourceRecord("orders", 3, offset, 1_714_559_999_000, key, b"{}")
    return OutboundMessage(b"{}", record, PartitionState(("orders", 3)), "orders", "inlet-1")


def writer(
    producer: ReceiptProducer, clock: Callable[[], float] = lambda: 0.0, **settings: Any
) -> tuple[ReceiptWriter[str], Metrics]:
    metrics = Metrics()
    config = ReceiptSettings(topic="receipts", **settings)
    return ReceiptWriter({"bootstrap.servers": "b:9092"}, config, metrics, producer, clock), metrics


def count(metric: Any) -> float:
    return float(metric._value.get())


# ---------------------------------------------------------------------------- the receipt


def test_a_receipt_names_the_record_its_target_and_the_platforms_ids() -> None:
    receipt = orjson.loads(receipt_value(message(), NAMED, hash_keys=True))
    assert receipt == {
        "topic": "orders",
        "partition": 3,
        "offset": 42,
        "keySha256": hashlib.sha256(b"customer-17").hexdigest(),
        "mapping": "orders",
        "connection": "inlet-1",
        "batchId": "1714560000:12:3",
        "xactionId": "1714560000:12:3:7",
        "acknowledgedAtMs": 1_714_560_000_123,
    }
    assert receipt_key(message()) == b"orders/3"


def test_the_key_hash_can_be_left_out_and_a_record_without_key_has_none() -> None:
    assert orjson.loads(receipt_value(message(), NAMED, hash_keys=False))["keySha256"] is None
    assert orjson.loads(receipt_value(message(key=None), NAMED, True))["keySha256"] is None


def test_the_producer_is_idempotent_batched_and_never_creates_the_topic() -> None:
    producer = ReceiptProducer()
    writer(producer, linger_ms=250, compression="zstd", delivery_timeout_s=30)
    config = producer.config
    assert config["bootstrap.servers"] == "b:9092"
    assert (config["enable.idempotence"], config["acks"]) == (True, "all")
    assert (config["linger.ms"], config["compression.type"]) == (250, "zstd")
    assert config["message.timeout.ms"] == 30_000
    assert config["allow.auto.create.topics"] is False


# ---------------------------------------------------------------------------- the two modes


def test_not_required_hands_the_token_back_at_once_and_counts_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = ReceiptProducer()
    receipts, metrics = writer(producer)
    stop = threading.Event()
    for offset in range(3):
        assert receipts.send(message(offset), NAMED, f"t{offset}", stop)
    assert receipts.poll() == ["t0", "t1", "t2"]  # nothing confirmed by Kafka yet
    assert receipts.pending == 0  # nothing holds records back
    producer.confirm(1)
    producer.fail()
    with caplog.at_level(logging.WARNING, logger="aep_connector.receipts"):
        assert receipts.poll() == []  # no halt
    assert count(metrics.receipts_produced) == 1
    assert count(metrics.receipts_failed.labels("delivery")) == 2
    # The first failure is logged at once; the next within a minute only counted.
    assert len([r for r in caplog.records if "receipts are failing" in r.getMessage()]) == 1


def test_not_required_a_full_queue_drops_the_receipt_not_the_record() -> None:
    producer = ReceiptProducer()
    producer.queue_full = True
    receipts, metrics = writer(producer)
    assert receipts.send(message(), NAMED, "t", threading.Event())
    assert receipts.poll() == ["t"]
    assert count(metrics.receipts_failed.labels("queue_full")) == 1


def test_required_hands_the_token_back_once_kafka_has_the_receipt() -> None:
    producer = ReceiptProducer()
    receipts, metrics = writer(producer, required=True)
    stop = threading.Event()
    for offset in range(3):
        receipts.send(message(offset), NAMED, f"t{offset}", stop)
    assert receipts.poll() == []
    assert receipts.pending == 3
    producer.confirm(2)
    assert receipts.poll() == ["t0", "t1"]
    assert (receipts.pending, count(metrics.receipts_produced)) == (1, 2)


def test_required_a_failed_receipt_halts_after_handing_back_the_confirmed_ones() -> None:
    producer = ReceiptProducer()
    receipts, metrics = writer(producer, required=True)
    for offset in range(3):
        receipts.send(message(offset), NAMED, f"t{offset}", threading.Event())
    producer.confirm(1)
    producer.fail(KafkaError.UNKNOWN_TOPIC_OR_PART)
    assert receipts.poll() == ["t0"]
    with pytest.raises(HaltError, match="receipt write to receipts failed"):
        receipts.poll()
    assert count(metrics.receipts_failed.labels("delivery")) == 2


def test_required_a_queue_that_stays_full_halts_but_a_stop_leaves_the_record_unfinished() -> None:
    producer = ReceiptProducer()
    producer.queue_full = True
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    receipts, metrics = writer(producer, clock, required=True, delivery_timeout_s=5)
    with pytest.raises(HaltError, match="stayed full for 5 s"):
        receipts.send(message(), NAMED, "t", threading.Event())
    assert count(metrics.receipts_failed.labels("queue_full")) == 1
    stop = threading.Event()
    stop.set()
    assert receipts.send(message(), NAMED, "t", stop) is False
    assert receipts.poll() == []


def test_a_missing_receipts_topic_refuses_to_start() -> None:
    receipts, _ = writer(ReceiptProducer(topics=("other",)))
    with pytest.raises(HaltError, match="receipts topic 'receipts' is not available"):
        receipts.check_topic()
    writer(ReceiptProducer())[0].check_topic()


# ---------------------------------------------------------------------------- in the worker


def named_answers(request: httpx.Request) -> httpx.Response:
    """Accept everything; each request gets its own batchId, each message its xactionId."""
    bodies = orjson.loads(request.content)["messages"]
    batch_id = "batch-" + "-".join(m["body"]["xdmEntity"]["_id"] for m in bodies[:1])
    responses = [{"xactionId": f"{batch_id}:{i}"} for i in range(len(bodies))]
    return httpx.Response(207, json={"batchId": batch_id, "responses": responses})


def test_every_accepted_message_gets_one_receipt_with_its_answers_ids(tmp_path: Path) -> None:
    """Not required: records are committed while the receipts are still unconfirmed."""
    producer = ReceiptProducer()  # confirms nothing
    steps: list[Step | Until] = [
        produce(0, range(0, 10), bad=frozenset({4})),
        produce(1, range(0, 5)),
        Until(lambda: script.committed(0) == 10 and script.committed(1) == 5),
    ]
    worker, script, dead = make_worker(
        tmp_path, steps, named_answers, receipts={"topic": "receipts"}, receipt_producer=producer
    )
    assert worker.run() == EXIT_OK
    receipts = producer.receipts()
    assert len(dead.produced) == 1  # offset 4 of partition 0: no receipt for it
    assert sorted((r["partition"], r["offset"]) for r in receipts) == sorted(
        [(0, o) for o in range(10) if o != 4] + [(1, o) for o in range(5)]
    )
    for receipt in receipts:
        assert receipt["topic"] == TOPIC
        assert (receipt["mapping"], receipt["connection"]) == ("orders", "conn")
        assert receipt["keySha256"] == hashlib.sha256(b"k").hexdigest()
        assert receipt["xactionId"].startswith(receipt["batchId"] + ":")
    assert len({r["xactionId"] for r in receipts}) == len(receipts)
    assert {k for _t, k, _v in producer.produced} == {b"orders/0", b"orders/1"}


def test_each_mapping_of_a_record_gets_its_own_receipt(tmp_path: Path) -> None:
    producer = ReceiptProducer(auto=True)
    steps: list[Step | Until] = [produce(0, range(0, 5)), Until(lambda: script.committed(0) == 5)]
    worker, script, _ = make_worker(
        tmp_path,
        steps,
        named_answers,
        extra_mappings=(AUDIT_MAPPING,),
        receipts={"topic": "receipts"},
        receipt_producer=producer,
    )
    assert worker.run() == EXIT_OK
    targets = sorted((r["offset"], r["mapping"], r["connection"]) for r in producer.receipts())
    # The audit mapping filters out records 0-2: no message, no receipt.
    assert targets == sorted(
        [(o, "orders", "conn") for o in range(5)]
        + [(3, "audit", "conn-audit"), (4, "audit", "conn-audit")]
    )
    assert count(worker.metrics.receipts_produced) == 7


def test_required_receipts_hold_the_commit_until_kafka_has_them(tmp_path: Path) -> None:
    producer = ReceiptProducer()

    def still_uncommitted(_script: Script) -> None:
        # The API accepted all five; without their receipts nothing is finished.
        assert script.position(0) is None
        assert script.worker.receipts is not None
        assert script.worker.receipts.pending == 5
        producer.confirm(3)

    steps: list[Step | Until] = [
        produce(0, range(0, 5)),
        Until(lambda: len(producer.produced) == 5),
        still_uncommitted,
        Until(lambda: script.position(0) == 3),
        lambda s: producer.confirm(),
        Until(lambda: script.committed(0) == 5),
    ]
    worker, script, _ = make_worker(
        tmp_path,
        steps,
        named_answers,
        receipts={"topic": "receipts", "required": True},
        receipt_producer=producer,
    )
    assert worker.run() == EXIT_OK
    assert script.committed(0) == 5


def test_required_a_receipt_that_fails_halts_and_commits_only_receipted_records(
    tmp_path: Path,
) -> None:
    producer = ReceiptProducer()

    def some_receipted_then_the_topic_fails(_script: Script) -> None:
        producer.confirm(4)
        producer.fail(KafkaError.UNKNOWN_TOPIC_OR_PART)

    steps: list[Step | Until] = [
        produce(0, range(0, 10)),
        Until(lambda: len(producer.produced) == 10),
        some_receipted_then_the_topic_fails,
        Until(lambda: False),
    ]
    worker, script, _ = make_worker(
        tmp_path,
        steps,
        named_answers,
        receipts={"topic": "receipts", "required": True},
        receipt_producer=producer,
    )
    assert worker.run() == EXIT_HALT
    assert "receipt write to receipts failed" in (worker.halt_reason or "")
    assert script.committed(0) == 4


def test_not_required_failing_receipts_never_stop_the_worker(tmp_path: Path) -> None:
    producer = ReceiptProducer()

    def fail_all(_script: Script) -> None:
        producer.fail(KafkaError.UNKNOWN_TOPIC_OR_PART)

    steps: list[Step | Until] = [
        produce(0, range(0, 10)),
        Until(lambda: len(producer.produced) == 10),
        fail_all,
        Until(lambda: script.committed(0) == 10),
    ]
    worker, script, _ = make_worker(
        tmp_path, steps, named_answers, receipts={"topic": "receipts"}, receipt_producer=producer
    )
    assert worker.run() == EXIT_OK
    assert count(worker.metrics.receipts_failed.labels("delivery")) == 10
    assert worker.halt_reason is None


def test_a_worker_whose_receipts_topic_is_missing_does_not_start(tmp_path: Path) -> None:
    steps: list[Step | Until] = [produce(0, range(0, 3))]
    worker, script, _ = make_worker(
        tmp_path,
        steps,
        named_answers,
        receipts={"topic": "receipts"},
        receipt_producer=ReceiptProducer(topics=("dlq",)),
    )
    assert worker.run() == EXIT_HALT
    assert "receipts topic 'receipts' is not available" in (worker.halt_reason or "")
    assert script.committed(0) is None
