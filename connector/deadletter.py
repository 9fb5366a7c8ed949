"""The dead-letter topic: rejected records, byte for byte, with the reason in headers.

A record sent here counts as finished only when the producer's delivery report confirms it
(idempotent producer, acks=all). A failed delivery halts the worker: the record is neither
delivered nor dead-lettered, so its offset must never be committed. So does a producer queue
that stays full: the loop must never block on the dead-letter path.

The circuit breaker stops a bad deployment (wrong mapping, wrong schema) from pouring the
whole stream into the dead-letter topic: past a ratio or a run of dead letters it halts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import islice, repeat
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer

from connector.errors import DeadLetter, HaltError
from connector.logs import get_logger
from connector.metrics import Metrics
from connector.records import SourceRecord
from connector.source.kafka import halt_reason

if TYPE_CHECKING:
    from connector.tracing.spans import Tracing

log = get_logger("deadletter")

HEADER_PREFIX = "aep.dlq."
MESSAGE_LIMIT = 1000  # characters of an error message kept in a header

T = TypeVar("T")


def context_headers(record: SourceRecord, letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The headers added after the record's own (DESIGN rule 5)."""
    fields: list[tuple[str, str | None]] = [
        ("source.topic", record.topic),
        ("source.partition", str(record.partition)),
        ("source.offset", str(record.offset)),
        ("source.timestamp", None if record.timestamp_ms is None else str(record.timestamp_ms)),
        ("stage", letter.stage),
        ("error.class", letter.error_class),
        ("error.message", letter.message[:MESSAGE_LIMIT]),
        ("http.status", None if letter.status is None else str(letter.status)),
        (
            "api.message",
            None if letter.api_message is None else letter.api_message[:MESSAGE_LIMIT],
        ),
        ("attempts", str(letter.attempts) if letter.attempts else None),
        ("mapping", letter.mapping),
        *letter.details,
    ]
    return [(HEADER_PREFIX + name, value.encode()) for name, value in fields if value is not None]


class DeadLetterWriter(Generic[T]):
    """Produces dead letters and hands back, from poll() and flush(), the token of each one
    Kafka has confirmed. It never calls into its caller: the loop applies confirmations
    together with the API's results."""

    def __init__(
        self,
        producer_config: dict[str, Any],
        topic: str,
        metrics: Metrics,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
        queue_full_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = {
            # A dead letter carries the original record, which may be larger than the API's
            # 1 MB; the topic's max.message.bytes must allow it too.
            "message.max.bytes": 10 * 1024 * 1024,
            "linger.ms": 20,
            **producer_config,
            "enable.idempotence": True,
            "acks": "all",
            # A dead letter must land in the topic the operator created, never in one a
            # misspelt name conjured up.
            "allow.auto.create.topics": False,
            "error_cb": self._on_error,
        }
        self._producer = producer_factory(config)
        self.topic = topic
        self._metrics = metrics
        self._queue_full_timeout_s = queue_full_timeout_s
        self._clock = clock
        self._confirmed: list[T] = []
        self._oversized: list[tuple[SourceRecord, DeadLetter, T]] = []
        self.pending = 0
        self.failure: str | None = None  # set when a delivery failed for good
        self.tracing: Tracing | None = None  # set when tracing is enabled

    def send(
        self,
        record: SourceRecord,
        letter: DeadLetter,
        token: T,
        stop: threading.Event,
        without_value: bool = False,
    ) -> bool:
        """Queue `record` with the context headers of `letter`; `token` comes back from poll()
        once Kafka has it. False when `stop` was set while the producer's queue was full (the
        record stays unfinished); HaltError when the queue stays full too long.

        A record too large for the producer or the topic is sent again without its value,
        with a header giving the value's size: the stream goes on, and the record can still be
        found at its source offset.
        """

        def delivered(error: KafkaError | None, _message: object) -> None:
            self.pending -= 1
            if error is not None:
                if _too_large(error) and not without_value:
                    self._oversized.append((record, letter, token))
                    return
                self.failure = f"dead-letter write to {self.topic} failed: {error}"
                return
            self._metrics.records_dead_lettered.labels(letter.stage, letter.error_class).inc()
            self._confirmed.append(token)

        if not without_value:
            _log_dead_letter(record, letter)
            if self.tracing is not None:
                self.tracing.dead_letter(record, letter, self.topic)
        headers = [*record.headers, *context_headers(record, letter)]
        value = record.value
        if without_value:
            size = 0 if record.value is None else len(record.value)
            headers.append((HEADER_PREFIX + "value.omitted", str(size).encode()))
            value = None
        give_up_at: float | None = None
        while True:
            try:
                self._producer.produce(
                    self.topic, key=record.key, value=value, headers=headers, on_delivery=delivered
                )
                self.pending += 1
                return True
            except KafkaException as exc:
                if not _too_large(exc.args[0]) or without_value:
                    raise HaltError(f"dead-letter write to {self.topic} failed: {exc}") from None
                self._warn_oversized(record)
                return self.send(record, letter, token, stop, without_value=True)
            except BufferError:
                # The local queue is full (the brokers are slow or away): let deliveries drain,
                # but never for ever, and not past a stop.
                now = self._clock()
                give_up_at = give_up_at or now + self._queue_full_timeout_s
                if stop.is_set():
                    return False
                if now >= give_up_at:
                    raise HaltError(
                        f"dead-letter producer queue for {self.topic} stayed full for "
                        f"{self._queue_full_timeout_s:.0f} s"
                    ) from None
                self._producer.poll(0.05)

    def _on_error(self, error: KafkaError) -> None:
        """Client errors (served by poll): a failed login halts, like a failed delivery."""
        reason = halt_reason(error)
        if reason is not None:
            self.failure = self.failure or f"dead-letter producer: {reason}"
            return
        log.warning("dead-letter producer error", extra={"fields": {"error": str(error)}})

    def poll(self) -> list[T]:
        """Tokens of the dead letters confirmed since the last call; HaltError once a
        delivery (or the login) has failed."""
        self._producer.poll(0)
        return self._take_confirmed()

    def flush(self, timeout_s: float) -> list[T]:
        self._producer.flush(timeout_s)
        confirmed = self._take_confirmed()  # sends oversized ones again without their value
        if self.pending:
            self._producer.flush(timeout_s)
            confirmed += self._take_confirmed()
        return confirmed

    def _take_confirmed(self) -> list[T]:
        if self.failure is not None:
            raise HaltError(self.failure)
        oversized, self._oversized = self._oversized, []
        for record, letter, token in oversized:
            self._warn_oversized(record)
            self.send(record, letter, token, _NEVER, without_value=True)
        confirmed, self._confirmed = self._confirmed, []
        return confirmed

    def _warn_oversized(self, record: SourceRecord) -> None:
        log.warning(
            "record too large for the dead-letter topic: dead-lettered without its value",
            extra={
                "fields": {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "bytes": 0 if record.value is None else len(record.value),
                }
            },
        )

    def check_topic(self, timeout_s: float = 10.0) -> None:
        """Refuse to start when the brokers say the dead-letter topic does not exist.

        Asks for the metadata of every topic: asking for this one by name would create it on
        brokers that auto-create topics. Brokers that do not answer yet are not a reason to
        halt: the consumer and the producer wait for them, and readiness stays false meanwhile.
        """
        try:
            metadata = self._producer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            self._producer.poll(0)  # serve the client's errors: a failed login halts here
            if self.failure is not None:
                raise HaltError(self.failure) from None
            log.warning(
                "could not check the dead-letter topic", extra={"fields": {"error": str(exc)}}
            )
            return
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            raise HaltError(
                f"dead-letter topic {self.topic!r} is not available "
                f"({topic.error if topic else 'missing'}); create it before starting"
            )


_NEVER = threading.Event()


def _log_dead_letter(record: SourceRecord, letter: DeadLetter) -> None:
    fields: dict[str, object] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "stage": letter.stage,
        "reason": letter.error_class,
        "status": letter.status,
        "mapping": letter.mapping,
    }
    if log.isEnabledFor(logging.DEBUG):  # error texts can quote field values (a payload)
        fields["error"] = letter.message[:300]
    log.warning("dead-lettering record", extra={"fields": fields})


def _too_large(error: KafkaError) -> bool:
    """Whether the producer (locally) or the broker (the topic's max.message.bytes) refused a
    message for its size."""
    return bool(error.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE))


class _Window:
    """The last `size` outcomes of one kind (True: dead-lettered) and the current run."""

    def __init__(self, size: int) -> None:
        self.recent: deque[bool] = deque(maxlen=size)
        self.dead = 0
        self.consecutive = 0

    def add(self, dead_lettered: bool) -> None:
        recent = self.recent
        if len(recent) == recent.maxlen and recent[0]:
            self.dead -= 1
        recent.append(dead_lettered)
        if dead_lettered:
            self.dead += 1
            self.consecutive += 1
        else:
            self.consecutive = 0

    def add_passed(self, count: int) -> int | None:
        """`count` outcomes that were not dead letters, as `count` calls of add(False) would
        leave the window; returns the dead count at the moment the window filled up on the
        way (its share then is the highest of the run), None when it did not."""
        recent = self.recent
        size = recent.maxlen
        assert size is not None
        before = len(recent)
        filled = self.dead if before < size <= before + count else None
        pushed_out = before + count - size
        if pushed_out >= before:
            self.dead = 0
        elif pushed_out > 0:
            self.dead -= sum(islice(recent, pushed_out))
        recent.extend(repeat(False, min(count, size)))
        self.consecutive = 0
        return filled

    @property
    def full(self) -> bool:
        return len(self.recent) == self.recent.maxlen

    @property
    def share(self) -> float:
        return self.dead / len(self.recent) if self.recent else 0.0


class CircuitBreaker:
    """Opens when dead letters pass a share of recent records, or a run of them gets long.

    Outcomes are counted where they are decided, in two windows of `window` each: at intake
    (decode, map, validate: every part of every record taken, `decided_locally`) and at the API
    (every message it answered, `answered`). One window mixed two paces: catching up on a
    backlog, the worker decides local dead letters as fast as it consumes while acceptances
    come at the API's pace, so 6 % poison filled the window with dead letters and halted the
    worker (found by the chaos suite's broker restart). Each window is in its own order, and
    the share of records dead-lettered is 1 - (1 - local share) * (1 - API share).

    `decided_locally` and `answered` only note the trip; the worker's loop calls
    `raise_if_open` to halt.
    """

    def __init__(self, max_ratio: float, window: int, max_consecutive: int) -> None:
        self.max_ratio = max_ratio
        self.max_consecutive = max_consecutive
        self._local = _Window(window)
        self._api = _Window(window)
        self.tripped: str | None = None  # why it opened; it stays open until restart

    def decided_locally(self, dead_lettered: bool) -> None:
        """One part of a record taken: dead-lettered at decode, map or validate, or on its way
        to the API (a record every mapping filtered out counts as one part, not dead)."""
        self._record(self._local, dead_lettered)

    def answered(self, dead_lettered: bool) -> None:
        """One message the API accepted, or rejected (dead-lettered)."""
        self._record(self._api, dead_lettered)

    def passed_locally(self, count: int) -> None:
        """`count` parts taken on their way to the API (or filtered out), in one: what `count`
        calls of decided_locally(False) do (the intake notes each consumed batch's run)."""
        self._record_passed(self._local, count)

    def accepted(self, count: int) -> None:
        """`count` messages the API accepted, in one: what `count` calls of answered(False) do
        (the loop notes each request's result)."""
        self._record_passed(self._api, count)

    def _record(self, window: _Window, dead_lettered: bool) -> None:
        window.add(dead_lettered)
        if window.consecutive >= self.max_consecutive:
            self._trip(f"{window.consecutive} records in a row were dead-lettered")
        self._check_share()

    def _record_passed(self, window: _Window, count: int) -> None:
        """A run of outcomes that were not dead letters. The shares only fall during the run,
        so the states record() would check were checked already, but for the one where the
        window filled up on the way (the other window's share may count only from then)."""
        if count <= 0:
            return
        filled = window.add_passed(count)
        if filled is None:
            return
        at_fill = (filled, len(window.recent))
        if window is self._local:
            self._check_share(local=at_fill)
        else:
            self._check_share(api=at_fill)

    def _check_share(
        self, local: tuple[int, int] | None = None, api: tuple[int, int] | None = None
    ) -> None:
        """Trip if the share of recent records dead-lettered passes the limit. `local` and
        `api` give a window's (dead, recorded) at an earlier moment instead of its state now."""
        local_dead, local_len = local or (self._local.dead, len(self._local.recent))
        api_dead, api_len = api or (self._api.dead, len(self._api.recent))
        size = self._local.recent.maxlen
        if local_len != size:
            return  # every API answer was a local part first: too few records yet
        api_share = api_dead / api_len if api_len == size else 0.0  # both windows: one size
        share = 1 - (1 - local_dead / local_len) * (1 - api_share)
        if share > self.max_ratio:
            self._trip(
                f"{share:.0%} of recent records were dead-lettered: {local_dead} of the last "
                f"{local_len} at decode, map or validate, {api_dead} of the last "
                f"{api_len} the API answered (limit {self.max_ratio:.0%})"
            )

    def _trip(self, why: str) -> None:
        if self.tripped is None:
            self.tripped = f"dead-letter circuit breaker tripped: {why}"

    def raise_if_open(self) -> None:
        if self.tripped is not None:
            raise HaltError(self.tripped)
