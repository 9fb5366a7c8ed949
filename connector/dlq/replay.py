"""Re-producing dead letters, each exactly once per replay group.

A replay reads the dead-letter topic from its group's committed offsets to the end offsets
taken at the start. Each batch is one Kafka transaction holding the replayed records *and* the
group's new offsets on the dead-letter topic (`send_offsets_to_transaction`): the records
become visible and the progress is recorded together, or neither. A replay killed mid-batch
leaves an open transaction that the next replay of the same group aborts when it starts (same
`transactional.id`, which also fences a second replay of the group running at once); the next
replay then resumes from the last committed batch. Consumers of the target topics see
replayed records exactly once if they read committed records only (`isolation.level`
read_committed: librdkafka's default, hence the worker's; Java clients must set it).

The replayed record keeps the original key, value and headers byte for byte and, replayed to
its own topic, its original partition; the worker's `aep.dlq.*` headers are dropped and
`aep.replay.count` is incremented. Its timestamp is the replay's unless `keep_timestamps`: a
broker deletes records whose timestamp is past the topic's retention at its next retention
check, so old records replayed with their own timestamps could vanish before anyone reads them.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from connector.dlq.letter import StoredLetter
from connector.dlq.reader import DeadLetterReader, DeadLetterTopicError, Span, open_reader
from connector.dlq.selection import Selection
from connector.settings import Settings
from connector.source.kafka import producer_config

#: A dead letter carries the original record, which may exceed the API's 1 MB (the worker's
#: dead-letter producer allows the same).
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class ReplayError(Exception):
    """The replay stopped; nothing after the last committed batch was committed."""


class Outcome(enum.Enum):
    REPLAY = "replay"
    SKIP = "skip"  # not selected
    REFUSE_LIMIT = "refuse-limit"  # replayed max_replays times already (or count unreadable)
    REFUSE_NO_TARGET = "refuse-no-target"  # no source.topic header and no --to-topic


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    selection: Selection
    max_replays: int
    to_topic: str | None = None
    batch_size: int = 500
    max_rate: float | None = None  # letters replayed per second
    dry_run: bool = False
    keep_timestamps: bool = False  # the original record's timestamp instead of the replay's


def decide(letter: StoredLetter, options: ReplayOptions) -> tuple[Outcome, str | None]:
    """What happens to one letter, and the topic it goes to when replayed."""
    if not options.selection.matches(letter):
        return Outcome.SKIP, None
    target = options.to_topic or letter.source_topic
    if target is None:
        return Outcome.REFUSE_NO_TARGET, None
    if letter.replay_count is None or letter.replay_count >= options.max_replays:
        return Outcome.REFUSE_LIMIT, None
    return Outcome.REPLAY, target


@dataclass(slots=True)
class ReplayReport:
    """Counts of a replay so far; only committed batches count (all batches in a dry run)."""

    topic: str
    group: str
    dry_run: bool
    spans: list[Span] = field(default_factory=list)
    read: int = 0
    replayed: Counter[str] = field(default_factory=Counter)  # by target topic
    skipped: int = 0
    refused_limit: int = 0
    refused_no_target: int = 0
    interrupted: bool = False

    @property
    def to_read(self) -> int:
        return sum(span.size for span in self.spans)

    @property
    def refused(self) -> int:
        return self.refused_limit + self.refused_no_target

    def count(self, outcome: Outcome, target: str | None) -> None:
        self.read += 1
        if outcome is Outcome.REPLAY:
            assert target is not None
            self.replayed[target] += 1
        elif outcome is Outcome.SKIP:
            self.skipped += 1
        elif outcome is Outcome.REFUSE_LIMIT:
            self.refused_limit += 1
        else:
            self.refused_no_target += 1

    def merge(self, other: ReplayReport) -> None:
        self.read += other.read
        self.replayed.update(other.replayed)
        self.skipped += other.skipped
        self.refused_limit += other.refused_limit
        self.refused_no_target += other.refused_no_target

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "group": self.group,
            "dry_run": self.dry_run,
            "spans": [
                {"partition": s.partition, "start": s.start, "end": s.end} for s in self.spans
            ],
            "to_read": self.to_read,
            "read": self.read,
            "replayed": sum(self.replayed.values()),
            "replayed_by_topic": dict(sorted(self.replayed.items())),
            "skipped": self.skipped,
            "refused_replay_limit": self.refused_limit,
            "refused_no_target": self.refused_no_target,
            "interrupted": self.interrupted,
        }


def transactional_id(group: str, topic: str) -> str:
    """One per replay group and dead-letter topic: a new replay fences an earlier one."""
    return f"{group}:{topic}"


def replay_producer_config(
    settings: Settings, group: str, topic: str, transaction_timeout_ms: int
) -> dict[str, Any]:
    """The worker's Kafka connection properties, for a transactional producer."""
    return {
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "linger.ms": 20,
        # Java's partitioner: a key lands where Java producers put it (other topics only; a
        # record replayed to its own topic keeps its partition).
        "partitioner": "murmur2_random",
        **producer_config(settings, client_suffix="dlq-replay"),
        "enable.idempotence": True,
        "acks": "all",
        "transactional.id": transactional_id(group, topic),
        "transaction.timeout.ms": transaction_timeout_ms,
    }


class Pacer:
    """Spaces calls `1 / rate` seconds apart (no limit when rate is None)."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._interval = 0.0 if rate is None else 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = clock()

    def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        if self._next > now:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


class TransactionalWriter:
    """The producer side: one transaction per batch, offsets committed inside it. Failures
    raise ReplayError; the caller aborts the open transaction."""

    def __init__(self, producer: Any, timeout_s: float = 30.0) -> None:
        self._producer = producer
        self._timeout_s = timeout_s
        self._failure: str | None = None

    def init(self) -> None:
        """Fence any earlier replay with the same transactional id, aborting its open
        transaction, before the committed offsets are read."""
        self._call("starting the transactional producer", self._producer.init_transactions)

    def begin(self) -> None:
        self._failure = None
        self._call("beginning a transaction", lambda _timeout: self._producer.begin_transaction())

    def produce(
        self, topic: str, partition: int | None, letter: StoredLetter, keep_timestamp: bool = False
    ) -> None:
        kwargs: dict[str, Any] = {
            "key": letter.key,
            "value": letter.value,
            "headers": letter.replay_headers(),
            "on_delivery": self._delivered,
        }
        if partition is not None:
            kwargs["partition"] = partition
        if keep_timestamp and letter.source_timestamp_ms is not None:
            kwargs["timestamp"] = letter.source_timestamp_ms
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as exc:
                raise ReplayError(f"producing to {topic}: {exc.args[0].str()}") from None
        self._producer.poll(0)

    def commit(self, topic: str, offsets: dict[int, int], group_metadata: Any) -> None:
        """Commit the batch: its records and the group's `offsets` on `topic`, together."""
        positions = [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
        self._call(
            "adding the offsets to the transaction",
            lambda timeout: self._producer.send_offsets_to_transaction(
                positions, group_metadata, timeout
            ),
        )
        for _attempt in range(10):
            try:
                self._producer.commit_transaction(self._timeout_s)
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.retriable() and not error.txn_requires_abort():
                    continue
                self._raise(f"committing the transaction: {error.str()}", error)
        self._raise("committing the transaction: gave up after 10 retriable failures", None)

    def abort(self) -> None:
        """Abort the open transaction (nothing of it becomes visible)."""
        self._call("aborting the transaction", self._producer.abort_transaction)

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None and self._failure is None:
            self._failure = f"delivery to {message.topic()} failed: {error.str()}"

    def _call(self, what: str, call: Callable[[float], Any]) -> None:
        try:
            call(self._timeout_s)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            self._raise(f"{what}: {error.str()}", error)

    def _raise(self, text: str, error: KafkaError | None) -> None:
        if error is not None and error.code() == KafkaError._FENCED:
            text += " (another replay with the same group started; it carries on from here)"
        if self._failure is not None:
            text += f"; first failure: {self._failure}"
        raise ReplayError(text)

    def abort_quietly(self) -> None:
        """Abort the open transaction if there is one; a failure to abort changes nothing."""
        # If aborting fails too, the transaction times out on the broker; nothing was committed.
        with contextlib.suppress(KafkaException):
            self._producer.abort_transaction(self._timeout_s)


class Replayer:
    """Runs one replay: reads the group's span of the dead-letter topic, replays the chosen
    letters batch by batch, reports progress after each committed batch."""

    def __init__(
        self,
        reader: DeadLetterReader,
        writer: TransactionalWriter | None,  # None for a dry run
        options: ReplayOptions,
        group: str,
        on_progress: Callable[[ReplayReport], None] = lambda _report: None,
        pacer: Pacer | None = None,
    ) -> None:
        assert (writer is None) == options.dry_run
        self.reader = reader
        self.writer = writer
        self.options = options
        self.report = ReplayReport(reader.topic, group, options.dry_run)
        self._on_progress = on_progress
        self._pacer = pacer
        self._partitions: dict[str, int] = {}  # target topic → partition count

    def run(self, stop: threading.Event) -> ReplayReport:
        reader, writer, report = self.reader, self.writer, self.report
        if self._pacer is None:
            # A stop request cuts a pause short, however low the rate.
            self._pacer = Pacer(self.options.max_rate, sleep=stop.wait)
        if writer is not None:
            writer.init()
        report.spans = reader.spans(reader.committed(reader.partitions()))
        self._on_progress(report)
        for batch in reader.read(report.spans, self.options.batch_size):
            if stop.is_set():
                report.interrupted = True
                break
            report.interrupted = self._replay_batch(batch, stop)
            self._on_progress(report)
            if report.interrupted:
                break
        return report

    def _replay_batch(self, batch: list[StoredLetter], stop: threading.Event) -> bool:
        """Replay `batch` in one transaction; True when stopped part-way (what was replayed
        so far is committed)."""
        writer = self.writer
        pending = ReplayReport(self.report.topic, self.report.group, self.options.dry_run)
        offsets: dict[int, int] = {}
        interrupted = False
        if writer is not None:
            writer.begin()
        try:
            for letter in batch:
                if stop.is_set():
                    interrupted = True
                    break
                outcome, target = decide(letter, self.options)
                if outcome is Outcome.REPLAY:
                    assert target is not None
                    partition = self._partition(target, letter)
                    if writer is not None:
                        assert self._pacer is not None
                        self._pacer.wait()
                        if stop.is_set():
                            interrupted = True
                            break
                        writer.produce(target, partition, letter, self.options.keep_timestamps)
                pending.count(outcome, target)
                offsets[letter.partition] = letter.offset + 1
            if writer is not None:
                if offsets:
                    writer.commit(self.reader.topic, offsets, self.reader.group_metadata())
                else:
                    writer.abort()
        except (ReplayError, DeadLetterTopicError):
            if writer is not None:
                writer.abort_quietly()  # the batch's records never become visible
            raise
        self.report.merge(pending)
        return interrupted

    def _partition(self, target: str, letter: StoredLetter) -> int | None:
        """The original partition for a record going back to its own topic (when the topic
        still has it); otherwise None: the key decides."""
        if target not in self._partitions:
            count = self.reader.partition_count(target)
            if count is None:
                raise ReplayError(f"target topic {target} does not exist")
            self._partitions[target] = count
        original = letter.source_partition
        if target != letter.source_topic or original is None:
            return None
        return original if original < self._partitions[target] else None


def open_replayer(
    settings: Settings,
    topic: str,
    group: str,
    options: ReplayOptions,
    on_progress: Callable[[ReplayReport], None],
) -> Replayer:
    """A replayer of `topic` for `group`, on the worker's Kafka connection properties."""
    writer = None
    if not options.dry_run:
        timeout_ms = settings.replay.transaction_timeout_ms
        config = replay_producer_config(settings, group, topic, timeout_ms)
        writer = TransactionalWriter(Producer(config))
    return Replayer(open_reader(settings, topic, group), writer, options, group, on_progress)


def progress_line(report: ReplayReport) -> str:
    verb = "would replay" if report.dry_run else "replayed"
    return (
        f"replay: read {report.read} of {report.to_read}, {verb} "
        f"{sum(report.replayed.values())}, skipped {report.skipped}, refused {report.refused}"
    )


def render_report(report: ReplayReport, selection_text: str, max_replays: int) -> str:
    """The final report for a terminal."""
    spans = ", ".join(f"{s.partition}:{s.start}-{s.end - 1}" for s in report.spans if s.size)
    lines = [
        f"dead-letter topic {report.topic}, replay group {report.group}"
        + (" (dry run: nothing produced, nothing committed)" if report.dry_run else ""),
        f"selected: {selection_text}",
        f"read {report.read} of {report.to_read} letters"
        + (f" (offsets {spans})" if spans else ""),
    ]
    verb = "would replay" if report.dry_run else "replayed"
    total = sum(report.replayed.values())
    by_topic = ", ".join(f"{topic} {n}" for topic, n in sorted(report.replayed.items()))
    lines.append(f"{verb} {total}" + (f": {by_topic}" if by_topic else ""))
    lines.append(f"skipped (not selected): {report.skipped}")
    lines.append(f"refused, replayed {max_replays} times already: {report.refused_limit}")
    lines.append(f"refused, no source topic header (use --to-topic): {report.refused_no_target}")
    if report.refused and not report.dry_run:
        lines.append(
            "refused letters count as done for this group; replay them with another --group"
        )
    if report.interrupted:
        lines.append("interrupted: run the same command again to resume")
    return "\n".join(lines) + "\n"
