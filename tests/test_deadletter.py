"""Dead letters keep the record byte for byte and say why; the breaker halts floods."""

from __future__ import annotations

from typing import Any

import pytest

from connector.deadletter import CircuitBreaker, DeadLetterWriter, context_headers
from connector.errors import HaltError
from connector.metrics import Metrics
from connector.records import SourceRecord

RECORD = SourceRecord(
    "orders", 3, 42, 1_700_000_000_000, b"\x00key", b"\xff\xfe not json", (("trace", b"\x01"),)
)


class FakeProducer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.produced: list[dict[str, Any]] = []
        self.callbacks: list[Any] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append({"topic": topic, **kwargs})
        self.callbacks.append(kwargs["on_delivery"])

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


def test_context_headers() -> None:
    headers = dict(
        context_headers(RECORD, "api", "api_rejected", "rejected", "web", 400, "bad field", 2)
    )
    assert headers == {
        "aep.dlq.source.topic": b"orders",
        "aep.dlq.source.partition": b"3",
        "aep.dlq.source.offset": b"42",
        "aep.dlq.source.timestamp": b"1700000000000",
        "aep.dlq.stage": b"api",
        "aep.dlq.error.class": b"api_rejected",
        "aep.dlq.error.message": b"rejected",
        "aep.dlq.http.status": b"400",
        "aep.dlq.api.message": b"bad field",
        "aep.dlq.attempts": b"2",
        "aep.dlq.mapping": b"web",
    }


def test_writer_keeps_bytes_and_confirms_only_on_delivery() -> None:
    producers: list[FakeProducer] = []

    def factory(config: dict[str, Any]) -> FakeProducer:
        producers.append(FakeProducer(config))
        return producers[-1]

    metrics = Metrics()
    writer = DeadLetterWriter({"bootstrap.servers": "x"}, "dlq", metrics, factory)
    (producer,) = producers
    assert producer.config["enable.idempotence"] is True
    assert producer.config["acks"] == "all"
    confirmed: list[bool] = []
    extra = context_headers(RECORD, "decode", "invalid_json", "bad", None)
    writer.send(RECORD, extra, ("decode", "invalid_json"), lambda: confirmed.append(True))
    (sent,) = producer.produced
    assert sent["topic"] == "dlq"
    assert sent["key"] == RECORD.key
    assert sent["value"] == RECORD.value
    assert sent["headers"][0] == ("trace", b"\x01")
    assert sent["headers"][1:] == extra
    assert confirmed == []
    assert writer.pending == 1
    producer.callbacks[0](None, None)
    assert confirmed == [True]
    assert writer.pending == 0
    assert metrics.records_dead_lettered.labels("decode", "invalid_json")._value.get() == 1


def test_failed_delivery_halts_and_never_confirms() -> None:
    producer = FakeProducer({})
    writer = DeadLetterWriter({}, "dlq", Metrics(), lambda _c: producer)
    confirmed: list[bool] = []
    writer.send(RECORD, [], ("map", "mapping_failure"), lambda: confirmed.append(True))
    producer.callbacks[0]("broker down", None)
    assert confirmed == []
    with pytest.raises(HaltError, match="dead-letter write to dlq failed"):
        writer.poll()


def test_breaker_trips_on_consecutive_dead_letters() -> None:
    breaker = CircuitBreaker(max_ratio=1.0, window=100, max_consecutive=3)
    for dead in (True, True, False, True, True):
        breaker.record(dead)
    breaker.raise_if_open()
    breaker.record(True)
    with pytest.raises(HaltError, match="3 records in a row"):
        breaker.raise_if_open()


def test_breaker_trips_on_ratio_over_a_full_window() -> None:
    breaker = CircuitBreaker(max_ratio=0.5, window=10, max_consecutive=1000)
    for i in range(9):
        breaker.record(i % 3 != 0)  # 6 of 9 dead, but the window is not full yet
    breaker.raise_if_open()
    breaker.record(False)  # 6 of 10 > 50 %
    with pytest.raises(HaltError, match="6 of the last 10"):
        breaker.raise_if_open()


def test_breaker_window_slides() -> None:
    breaker = CircuitBreaker(max_ratio=0.5, window=4, max_consecutive=1000)
    for dead in (True, True, False, False, False, False, True, True):
        breaker.record(dead)
    breaker.raise_if_open()  # the window holds F F T T: 50 %, not over
