"""The replay's decisions and its transaction discipline, with fakes for Kafka.

End to end on the real broker: test_dlq_e2e.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.dlq.letter import REPLAY_COUNT_HEADER, StoredLetter
from connector.dlq.reader import Span
from connector.dlq.replay import (
    Outcome,
    Pacer,
    Replayer,
    ReplayError,
    ReplayOptions,
    TransactionalWriter,
    decide,
)
from connector.dlq.selection import Selection
from tests.dlq.letters import Spec


def letter(
    offset: int, replays: int | None = 0, topic: str | None = "orders", **fields: Any
) -> StoredLetter:
    headers: tuple[tuple[str, bytes | None], ...] = ()
    if replays:
        headers = ((REPLAY_COUNT_HEADER, str(replays).encode()),)
    elif replays is None:
        headers = ((REPLAY_COUNT_HEADER, b"?"),)
    spec = Spec(
        source_topic=topic or "",
        source_partition=offset % 2,
        source_offset=100 + offset,
        key=f"k{offset}".encode(),
        value=f"v{offset}".encode(),
        original_headers=headers,
        **fields,
    )
    parsed = spec.letter(0, offset)
    if topic is None:  # a record without the worker's headers
        return StoredLetter.parse(0, offset, None, parsed.key, parsed.value, headers)
    return parsed


# --- decide ---------------------------------------------------------------------------------


def test_decide() -> None:
    options = ReplayOptions(Selection(stages=frozenset({"api"})), max_replays=2)
    assert decide(letter(0), options) == (Outcome.REPLAY, "orders")
    assert decide(letter(0, stage="map"), options) == (Outcome.SKIP, None)
    assert decide(letter(0, replays=1), options) == (Outcome.REPLAY, "orders")
    assert decide(letter(0, replays=2), options) == (Outcome.REFUSE_LIMIT, None)
    assert decide(letter(0, replays=None), options) == (Outcome.REFUSE_LIMIT, None)
    everything = ReplayOptions(Selection(), max_replays=2)
    assert decide(letter(0, topic=None), everything) == (Outcome.REFUSE_NO_TARGET, None)
    elsewhere = ReplayOptions(Selection(), max_replays=2, to_topic="retry")
    assert decide(letter(0, topic=None), elsewhere) == (Outcome.REPLAY, "retry")
    assert decide(letter(0), elsewhere) == (Outcome.REPLAY, "retry")


def test_max_replays_zero_refuses_everything() -> None:
    assert decide(letter(0), ReplayOptions(Selection(), max_replays=0))[0] is Outcome.REFUSE_LIMIT


# --- pacing ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_pacer_spaces_calls_by_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(4.0, clock, clock.sleep)
    for _ in range(3):
        pacer.wait()
    assert clock.slept == [0.25, 0.25]
    clock.now += 10  # idle time is not saved up as a burst
    pacer.wait()
    pacer.wait()
    assert clock.slept == [0.25, 0.25, 0.25]


def test_pacer_without_rate_never_sleeps() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock, clock.sleep)
    for _ in range(5):
        pacer.wait()
    assert clock.slept == []


# --- the replay loop ------------------------------------------------------------------------


class FakeReader:
    """Letters of partition 0 at offsets 0..n-1, group committed at `committed`."""

    topic = "dlq"

    def __init__(self, letters: list[StoredLetter], committed: int | None = None) -> None:
        self.letters = letters
        self._committed = committed
        self.partition_counts = {"orders": 2, "retry": 1}
        self.events: list[str] = []

    def partitions(self) -> list[int]:
        return [0]

    def committed(self, partitions: list[int]) -> dict[int, int]:
        self.events.append("committed")
        return {} if self._committed is None else {0: self._committed}

    def spans(self, starts: dict[int, int]) -> list[Span]:
        return [Span(0, starts.get(0, 0), len(self.letters))]

    def read(self, spans: list[Span], batch_size: int) -> Iterator[list[StoredLetter]]:
        todo = [x for x in self.letters if x.offset >= spans[0].start]
        for start in range(0, len(todo), batch_size):
            yield todo[start : start + batch_size]

    def partition_count(self, topic: str) -> int | None:
        return self.partition_counts.get(topic)

    def group_metadata(self) -> str:
        return "group-metadata"


class FakeWriter:
    def __init__(
        self, reader: FakeReader, stop_after: int | None = None, stop: threading.Event | None = None
    ) -> None:
        self.reader = reader
        self.calls: list[tuple[Any, ...]] = []
        self.stop_after = stop_after
        self.stop = stop

    def init(self) -> None:
        self.reader.events.append("init")
        self.calls.append(("init",))

    def begin(self) -> None:
        self.calls.append(("begin",))

    def produce(
        self, topic: str, partition: int | None, letter: StoredLetter, keep_timestamp: bool
    ) -> None:
        self.calls.append(("produce", topic, partition, letter.offset))
        produced = sum(1 for c in self.calls if c[0] == "produce")
        if self.stop is not None and produced == self.stop_after:
            self.stop.set()

    def commit(self, topic: str, offsets: dict[int, int], metadata: Any) -> None:
        assert metadata == "group-metadata"
        self.calls.append(("commit", topic, dict(offsets)))

    def abort(self) -> None:
        self.calls.append(("abort",))

    def abort_quietly(self) -> None:
        self.calls.append(("abort",))


def replayer(reader: FakeReader, writer: FakeWriter | None, **options: Any) -> Replayer:
    defaults: dict[str, Any] = {"selection": Selection(), "max_replays": 3, "batch_size": 3}
    defaults.update(options)
    return Replayer(reader, writer, ReplayOptions(**defaults), "g")  # type: ignore[arg-type]


def test_each_batch_is_one_transaction_with_its_offsets() -> None:
    reader = FakeReader([letter(n) for n in range(5)])
    writer = FakeWriter(reader)
    report = replayer(reader, writer).run(threading.Event())
    assert reader.events == ["init", "committed"]  # fence earlier replays, then read progress
    assert writer.calls == [
        ("init",),
        ("begin",),
        ("produce", "orders", 0, 0),
        ("produce", "orders", 1, 1),
        ("produce", "orders", 0, 2),
        ("commit", "dlq", {0: 3}),
        ("begin",),
        ("produce", "orders", 1, 3),
        ("produce", "orders", 0, 4),
        ("commit", "dlq", {0: 5}),
    ]
    assert report.replayed == {"orders": 5}
    assert (report.read, report.to_read, report.interrupted) == (5, 5, False)


def test_resumes_from_the_committed_offset() -> None:
    reader = FakeReader([letter(n) for n in range(5)], committed=3)
    writer = FakeWriter(reader)
    report = replayer(reader, writer).run(threading.Event())
    produced = [c[3] for c in writer.calls if c[0] == "produce"]
    assert produced == [3, 4]
    assert (report.read, report.to_read) == (2, 2)


def test_skipped_and_refused_letters_are_committed_but_not_produced() -> None:
    reader = FakeReader(
        [letter(0, stage="map"), letter(1, replays=3), letter(2), letter(3, topic=None)]
    )
    writer = FakeWriter(reader)
    report = replayer(
        reader, writer, selection=Selection(stages=frozenset({"api"})), batch_size=10
    ).run(threading.Event())
    assert [c for c in writer.calls if c[0] in ("produce", "commit")] == [
        ("produce", "orders", 0, 2),
        ("commit", "dlq", {0: 4}),
    ]
    assert (report.skipped, report.refused_limit, report.refused_no_target) == (2, 1, 0)


def test_other_topics_get_the_key_partitioner_and_a_missing_partition_too() -> None:
    reader = FakeReader([letter(1)])
    writer = FakeWriter(reader)
    replayer(reader, writer, to_topic="retry").run(threading.Event())
    assert ("produce", "retry", None, 1) in writer.calls
    reader = FakeReader([letter(1)])
    reader.partition_counts["orders"] = 1  # the original partition 1 is gone
    writer = FakeWriter(reader)
    replayer(reader, writer).run(threading.Event())
    assert ("produce", "orders", None, 1) in writer.calls


def test_a_missing_target_topic_aborts_before_anything_is_committed() -> None:
    reader = FakeReader([letter(0), letter(1)])
    writer = FakeWriter(reader)
    with pytest.raises(ReplayError, match="target topic nowhere does not exist"):
        replayer(reader, writer, to_topic="nowhere").run(threading.Event())
    assert writer.calls == [("init",), ("begin",), ("abort",)]


class FailingWriter(FakeWriter):
    def commit(self, topic: str, offsets: dict[int, int], metadata: Any) -> None:
        raise ReplayError("committing the transaction: broker says no")


def test_a_failed_commit_aborts_the_batch_and_counts_nothing_of_it() -> None:
    reader = FakeReader([letter(n) for n in range(5)])
    writer = FailingWriter(reader)
    run = replayer(reader, writer)
    with pytest.raises(ReplayError, match="broker says no"):
        run.run(threading.Event())
    assert writer.calls[-1] == ("abort",)
    assert run.report.read == 0
    assert run.report.replayed == {}


def test_a_stop_mid_batch_commits_what_was_replayed_and_no_further() -> None:
    stop = threading.Event()
    reader = FakeReader([letter(n) for n in range(6)])
    writer = FakeWriter(reader, stop_after=2, stop=stop)
    report = replayer(reader, writer, batch_size=4).run(stop)
    assert writer.calls[-1] == ("commit", "dlq", {0: 2})
    assert [c[3] for c in writer.calls if c[0] == "produce"] == [0, 1]
    assert report.interrupted
    assert report.read == 2


def test_a_stop_during_a_pause_produces_nothing_more() -> None:
    stop = threading.Event()
    clock = FakeClock()
    reader = FakeReader([letter(n) for n in range(4)])
    writer = FakeWriter(reader)
    pacer = Pacer(1.0, clock, lambda _seconds: stop.set())  # the stop arrives while waiting
    options = ReplayOptions(Selection(), max_replays=3, batch_size=4)
    report = Replayer(reader, writer, options, "g", pacer=pacer).run(stop)  # type: ignore[arg-type]
    assert [c[3] for c in writer.calls if c[0] == "produce"] == [0]
    assert writer.calls[-1] == ("commit", "dlq", {0: 1})
    assert report.interrupted


def test_a_dry_run_produces_and_commits_nothing_and_counts_the_same() -> None:
    letters = [letter(0, stage="map"), letter(1, replays=3), letter(2), letter(3, topic=None)]
    reader = FakeReader(letters)
    dry = replayer(reader, None, dry_run=True).run(threading.Event())
    assert reader.events == ["committed"]
    real_reader = FakeReader(letters)
    real = replayer(real_reader, FakeWriter(real_reader)).run(threading.Event())
    assert dry.as_dict() | {"dry_run": False} == real.as_dict()


# --- the transactional writer ---------------------------------------------------------------


class FakeProducer:
    def __init__(
        self,
        commit_errors: list[KafkaError] | None = None,
        delivery_error: KafkaError | None = None,
    ) -> None:
        self.commit_errors = list(commit_errors or [])
        self.delivery_error = delivery_error
        self.calls: list[str] = []
        self.produced: list[dict[str, Any]] = []

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append({"topic": topic, **kwargs})
        message = type("M", (), {"topic": lambda self: topic})()
        kwargs["on_delivery"](self.delivery_error, message)

    def poll(self, timeout: float) -> int:
        return 0

    def send_offsets_to_transaction(self, positions: Any, metadata: Any, timeout: float) -> None:
        self.calls.append(f"offsets {[(p.partition, p.offset) for p in positions]}")

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")
        if self.commit_errors:
            raise KafkaException(self.commit_errors.pop(0))

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


def test_writer_produces_the_original_record_with_the_replay_headers() -> None:
    producer = FakeProducer()
    writer = TransactionalWriter(producer)
    original = letter(3, replays=1)
    writer.produce("orders", 1, original)
    writer.produce("orders", None, original, keep_timestamp=True)
    sent, kept = producer.produced
    assert sent["key"] == b"k3"
    assert sent["value"] == b"v3"
    assert sent["partition"] == 1
    assert "timestamp" not in sent  # the replay's time: old records outlive retention checks
    assert sent["headers"] == [(REPLAY_COUNT_HEADER, b"2")]
    assert kept["timestamp"] == original.source_timestamp_ms
    assert "partition" not in kept


def test_writer_retries_a_retriable_commit() -> None:
    producer = FakeProducer([KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)])
    TransactionalWriter(producer).commit("dlq", {0: 5}, None)
    assert producer.calls == ["offsets [(0, 5)]", "commit", "commit"]


def test_writer_names_the_failed_delivery() -> None:
    failed = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")
    producer = FakeProducer(
        [KafkaError(KafkaError._STATE, "delivery failed", txn_requires_abort=True)], failed
    )
    writer = TransactionalWriter(producer)
    writer.begin()
    writer.produce("orders", None, letter(0))
    with pytest.raises(ReplayError, match="delivery to orders failed: too large"):
        writer.commit("dlq", {0: 1}, None)


def test_writer_says_when_another_replay_fenced_it() -> None:
    producer = FakeProducer([KafkaError(KafkaError._FENCED, "fenced", fatal=True)])
    with pytest.raises(ReplayError, match="another replay with the same group started"):
        TransactionalWriter(producer).commit("dlq", {0: 1}, None)
