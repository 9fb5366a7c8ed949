"""Dead letters keep the record byte for byte and say why; the breaker halts floods."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.deadletter import CircuitBreaker, DeadLetterWriter, context_headers
from connector.errors import DeadLetter, HaltError
from connector.metrics import Metrics
from connector.records import SourceRecord

RECORD = SourceRecord(
    "orders", 3, 42, 1_700_000_000_000, b"\x00key", b"\xff\xfe not json", (("trace", b"\x01"),)
)


class FakeProducer:
    def __init__(self, config: dict[str, Any], queue_full: bool = False) -> None:
        self.config = config
        self.queue_full = queue_full
        self.produced: list[dict[str, Any]] = []
        self.callbacks: list[Any] = []
        self.metadata_requests: list[str | None] = []
        self.topics = {"dlq"}

    def produce(self, topic: str, **kwargs: Any) -> None:
        if self.queue_full:
            raise BufferError("Local: Queue full")
        self.produced.append({"topic": topic, **kwargs})
        self.callbacks.append(kwargs["on_delivery"])

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self.metadata_requests.append(topic)
        return SimpleNamespace(topics={name: SimpleNamespace(error=None) for name in self.topics})


LETTER = DeadLetter("api", "api_rejected", "rejected", 400, "bad field", "web", 2)
NEVER = threading.Event()


def test_context_headers() -> None:
    headers = dict(context_headers(RECORD, LETTER))
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


def test_writer_keeps_bytes_and_hands_back_confirmations_only_after_delivery() -> None:
    producers: list[FakeProducer] = []

    def factory(config: dict[str, Any]) -> FakeProducer:
        producers.append(FakeProducer(config))
        return producers[-1]

    metrics = Metrics()
    writer: DeadLetterWriter[str] = DeadLetterWriter(
        {"bootstrap.servers": "x"}, "dlq", metrics, factory
    )
    (producer,) = producers
    assert producer.config["enable.idempotence"] is True
    assert producer.config["acks"] == "all"
    assert producer.config["allow.auto.create.topics"] is False
    letter = DeadLetter("decode", "invalid_json", "bad")
    assert writer.send(RECORD, letter, "token-42", NEVER)
    (sent,) = producer.produced
    assert sent["topic"] == "dlq"
    assert sent["key"] == RECORD.key
    assert sent["value"] == RECORD.value
    assert sent["headers"][0] == ("trace", b"\x01")
    assert sent["headers"][1:] == context_headers(RECORD, letter)
    assert writer.poll() == []
    assert writer.pending == 1
    producer.callbacks[0](None, None)
    assert writer.pending == 0
    assert writer.poll() == ["token-42"]
    assert writer.poll() == []
    assert metrics.records_dead_lettered.labels("decode", "invalid_json")._value.get() == 1


def test_failed_delivery_halts_and_never_confirms() -> None:
    producer = FakeProducer({})
    writer: DeadLetterWriter[str] = DeadLetterWriter({}, "dlq", Metrics(), lambda _c: producer)
    writer.send(RECORD, DeadLetter("map", "mapping_failure", "x"), "token", NEVER)
    producer.callbacks[0](KafkaError(KafkaError._MSG_TIMED_OUT, "broker down"), None)
    with pytest.raises(HaltError, match="dead-letter write to dlq failed"):
        writer.poll()


class Clock:
    def __init__(self, producer: FakeProducer) -> None:
        self.now = 0.0
        self.producer = producer
        producer.poll = self.tick  # type: ignore[method-assign]

    def __call__(self) -> float:
        return self.now

    def tick(self, timeout: float) -> int:
        self.now += timeout
        return 0


def test_a_queue_that_stays_full_halts_instead_of_blocking_the_loop() -> None:
    producer = FakeProducer({}, queue_full=True)
    clock = Clock(producer)
    writer: DeadLetterWriter[str] = DeadLetterWriter(
        {}, "dlq", Metrics(), lambda _c: producer, queue_full_timeout_s=3.0, clock=clock
    )
    with pytest.raises(HaltError, match="queue for dlq stayed full for 3 s"):
        writer.send(RECORD, LETTER, "token", NEVER)
    assert 3.0 <= clock.now < 3.2


def test_a_stop_ends_the_wait_for_a_full_queue() -> None:
    producer = FakeProducer({}, queue_full=True)
    Clock(producer)
    writer: DeadLetterWriter[str] = DeadLetterWriter({}, "dlq", Metrics(), lambda _c: producer)
    stop = threading.Event()
    stop.set()
    assert writer.send(RECORD, LETTER, "token", stop) is False
    assert writer.pending == 0


def test_the_topic_check_never_names_the_topic_to_the_brokers() -> None:
    """A metadata request naming a topic creates it on brokers that auto-create topics."""
    producer = FakeProducer({})
    writer: DeadLetterWriter[str] = DeadLetterWriter({}, "dlq", Metrics(), lambda _c: producer)
    writer.check_topic()
    assert producer.metadata_requests == [None]
    producer.topics = {"other"}
    with pytest.raises(HaltError, match="dead-letter topic 'dlq' is not available"):
        writer.check_topic()


def test_breaker_trips_on_consecutive_dead_letters() -> None:
    breaker = CircuitBreaker(max_ratio=1.0, window=100, max_consecutive=3)
    for dead in (True, True, False, True, True):
        breaker.decided_locally(dead)
    breaker.raise_if_open()
    breaker.decided_locally(True)
    with pytest.raises(HaltError, match="3 records in a row"):
        breaker.raise_if_open()


def test_breaker_trips_on_consecutive_api_rejections() -> None:
    breaker = CircuitBreaker(max_ratio=1.0, window=100, max_consecutive=3)
    for _ in range(3):
        breaker.decided_locally(False)
        breaker.answered(True)
    with pytest.raises(HaltError, match="3 records in a row"):
        breaker.raise_if_open()


def test_breaker_trips_on_ratio_over_a_full_window() -> None:
    breaker = CircuitBreaker(max_ratio=0.5, window=10, max_consecutive=1000)
    for i in range(9):
        breaker.decided_locally(i % 3 != 0)  # 6 of 9 dead, but the window is not full yet
    breaker.raise_if_open()
    breaker.decided_locally(False)  # 6 of 10 > 50 %
    with pytest.raises(HaltError, match=r"60% of recent records.*6 of the last 10"):
        breaker.raise_if_open()


def test_breaker_window_slides() -> None:
    breaker = CircuitBreaker(max_ratio=0.5, window=4, max_consecutive=1000)
    for dead in (True, True, False, False, False, False, True, True):
        breaker.decided_locally(dead)
    breaker.raise_if_open()  # the window holds F F T T: 50 %, not over


def test_breaker_does_not_count_local_dead_letters_against_answers_still_to_come() -> None:
    """A backlog: 10 % of records are dead-lettered as they are taken, and the API has not
    answered any of the others yet. The share is 10 %, not 100 %."""
    breaker = CircuitBreaker(max_ratio=0.5, window=100, max_consecutive=1000)
    for n in range(1000):
        breaker.decided_locally(n % 10 == 0)
    breaker.raise_if_open()
    for _ in range(900):
        breaker.answered(False)
    breaker.raise_if_open()


def test_breaker_combines_local_and_api_dead_letters() -> None:
    """30 % dead-lettered at decode and 30 % of the rest rejected by the API: 51 % of records."""
    breaker = CircuitBreaker(max_ratio=0.5, window=10, max_consecutive=1000)
    for n in range(10):
        breaker.decided_locally(n < 3)
    for n in range(9):
        breaker.answered(n < 3)
    breaker.raise_if_open()  # the API's window is not full yet: 30 % so far
    breaker.answered(False)
    with pytest.raises(HaltError, match="51% of recent records"):
        breaker.raise_if_open()


class RefusingProducer(FakeProducer):
    """Refuses values over `limit` bytes: locally at produce(), or in the delivery report as
    a broker does for a topic's max.message.bytes."""

    def __init__(self, limit: int, where: str) -> None:
        super().__init__({})
        self.limit, self.where = limit, where

    def produce(self, topic: str, **kwargs: Any) -> None:
        value = kwargs["value"]
        too_large = value is not None and len(value) > self.limit
        if too_large and self.where == "local":
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        super().produce(topic, **kwargs)
        if too_large:
            callback = self.callbacks[-1]
            self.callbacks[-1] = lambda *_: callback(
                KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None
            )

    def poll(self, _timeout: float) -> int:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback(None, None)
        return 0


@pytest.mark.parametrize("where", ["local", "broker"])
def test_a_record_too_large_for_the_topic_is_dead_lettered_without_its_value(where: str) -> None:
    producer = RefusingProducer(limit=100, where=where)
    writer: DeadLetterWriter[str] = DeadLetterWriter({}, "dlq", Metrics(), lambda _c: producer)
    big = SourceRecord("orders", 0, 5, None, b"key", b"x" * 500, (("trace", b"\x01"),))
    assert writer.send(big, LETTER, "token", NEVER)
    confirmed = writer.poll() + writer.poll()
    assert confirmed == ["token"]
    last = producer.produced[-1]
    assert last["value"] is None
    assert last["key"] == b"key"
    headers = dict(last["headers"])
    assert headers["aep.dlq.value.omitted"] == b"500"
    assert headers["trace"] == b"\x01"
    assert headers["aep.dlq.source.offset"] == b"5"


_STEPS = st.lists(
    st.tuples(st.sampled_from(["local", "api"]), st.one_of(st.booleans(), st.integers(0, 30))),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(
    window=st.integers(min_value=1, max_value=12),
    max_ratio=st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]),
    max_consecutive=st.integers(min_value=1, max_value=6),
    steps=_STEPS,
)
def test_runs_noted_at_once_are_the_same_as_one_by_one(
    window: int, max_ratio: float, max_consecutive: int, steps: list[tuple[str, bool | int]]
) -> None:
    """A step is one outcome (dead-lettered or not) or a run of outcomes that were not, on
    either window; one breaker notes runs at once (passed_locally, accepted), the other one by
    one: the windows, the runs and the trip (its reason included) must never differ."""
    at_once = CircuitBreaker(max_ratio, window, max_consecutive)
    one_by_one = CircuitBreaker(max_ratio, window, max_consecutive)
    for where, step in steps:
        single = one_by_one.decided_locally if where == "local" else one_by_one.answered
        if isinstance(step, bool):
            (at_once.decided_locally if where == "local" else at_once.answered)(step)
            single(step)
        else:
            (at_once.passed_locally if where == "local" else at_once.accepted)(step)
            for _ in range(step):
                single(False)
        for mine, theirs in ((at_once._local, one_by_one._local), (at_once._api, one_by_one._api)):
            assert list(mine.recent) == list(theirs.recent)
            assert mine.dead == theirs.dead == sum(theirs.recent)
            assert mine.consecutive == theirs.consecutive
        assert at_once.tripped == one_by_one.tripped
