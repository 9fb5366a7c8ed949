"""The dead-letter topic: rejected records, byte for byte, with the reason in headers.

A record sent here counts as finished only when the producer's delivery report confirms it
(idempotent producer, acks=all). A failed delivery halts the worker: the record is neither
delivered nor dead-lettered, so its offset must never be committed.

The circuit breaker stops a bad deployment (wrong mapping, wrong schema) from pouring the
whole stream into the dead-letter topic: past a ratio or a run of dead letters it halts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from connector.errors import HaltError, Stage
from connector.kafka_errors import halt_reason
from connector.logs import get_logger
from connector.metrics import Metrics
from connector.records import SourceRecord

log = get_logger("deadletter")

HEADER_PREFIX = "aep.dlq."
MESSAGE_LIMIT = 1000  # characters of an error message kept in a header


def context_headers(
    record: SourceRecord,
    stage: Stage,
    error_class: str,
    message: str,
    mapping: str | None,
    status: int | None = None,
    api_message: str | None = None,
    attempts: int = 0,
) -> list[tuple[str, bytes]]:
    """The headers added after the record's own (DESIGN rule 5)."""
    fields: list[tuple[str, str | None]] = [
        ("source.topic", record.topic),
        ("source.partition", str(record.partition)),
        ("source.offset", str(record.offset)),
        ("source.timestamp", None if record.timestamp_ms is None else str(record.timestamp_ms)),
        ("stage", stage),
        ("error.class", error_class),
        ("error.message", message[:MESSAGE_LIMIT]),
        ("http.status", None if status is None else str(status)),
        ("api.message", None if api_message is None else api_message[:MESSAGE_LIMIT]),
        ("attempts", str(attempts) if attempts else None),
        ("mapping", mapping),
    ]
    return [(HEADER_PREFIX + name, value.encode()) for name, value in fields if value is not None]


class DeadLetterWriter:
    """Produces dead letters and calls back when each one is confirmed."""

    def __init__(
        self,
        producer_config: dict[str, Any],
        topic: str,
        metrics: Metrics,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        config = {
            # A dead letter carries the original record, which may be larger than the API's
            # 1 MB; the topic's max.message.bytes must allow it too.
            "message.max.bytes": 10 * 1024 * 1024,
            "linger.ms": 20,
            **producer_config,
            "enable.idempotence": True,
            "acks": "all",
            "error_cb": self._on_error,
        }
        self._producer = producer_factory(config)
        self.topic = topic
        self._metrics = metrics
        self.pending = 0
        self.failure: str | None = None  # set when a delivery failed for good

    def send(
        self,
        record: SourceRecord,
        headers: list[tuple[str, bytes]],
        reason: tuple[str, str],
        on_confirmed: Callable[[], None],
    ) -> None:
        """Queue `record` with `headers` appended; `on_confirmed` runs once Kafka has it."""
        stage, error_class = reason

        def delivered(error: KafkaError | None, _message: object) -> None:
            self.pending -= 1
            if error is not None:
                self.failure = f"dead-letter write to {self.topic} failed: {error}"
                return
            self._metrics.records_dead_lettered.labels(stage, error_class).inc()
            on_confirmed()

        all_headers = [*((k, v) for k, v in record.headers), *headers]
        self.pending += 1
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    key=record.key,
                    value=record.value,
                    headers=all_headers,
                    on_delivery=delivered,
                )
                return
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain

    def _on_error(self, error: KafkaError) -> None:
        """Client errors (served by poll): a failed login halts, like a failed delivery."""
        reason = halt_reason(error)
        if reason is not None:
            self.failure = self.failure or f"dead-letter producer: {reason}"
            return
        log.warning("dead-letter producer error", extra={"fields": {"error": str(error)}})

    def poll(self) -> None:
        """Serve delivery reports; raises HaltError once a delivery has failed."""
        self._producer.poll(0)
        self.raise_if_failed()

    def flush(self, timeout_s: float) -> None:
        self._producer.flush(timeout_s)
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self.failure is not None:
            raise HaltError(self.failure)

    def check_topic(self, timeout_s: float = 10.0) -> None:
        """Refuse to start when the brokers say the dead-letter topic does not exist.

        Brokers that do not answer yet are not a reason to halt: the consumer and the
        producer wait for them, and readiness stays false meanwhile.
        """
        try:
            metadata = self._producer.list_topics(self.topic, timeout=timeout_s)
        except KafkaException as exc:
            self._producer.poll(0)  # serve the client's errors: a failed login halts here
            self.raise_if_failed()
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


class CircuitBreaker:
    """Opens when dead letters pass a share of recent records, or a run of them gets long.

    `record` only notes the trip (it runs inside Kafka callbacks); the worker's loop calls
    `raise_if_open` to halt.
    """

    def __init__(self, max_ratio: float, window: int, max_consecutive: int) -> None:
        self.max_ratio = max_ratio
        self.max_consecutive = max_consecutive
        self._recent: deque[bool] = deque(maxlen=window)
        self._dead_in_window = 0
        self._consecutive = 0
        self.tripped: str | None = None  # why it opened; it stays open until restart

    def record(self, dead_lettered: bool) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0]:
            self._dead_in_window -= 1
        recent.append(dead_lettered)
        if dead_lettered:
            self._dead_in_window += 1
            self._consecutive += 1
        else:
            self._consecutive = 0
        if self._consecutive >= self.max_consecutive:
            self._trip(f"{self._consecutive} records in a row were dead-lettered")
        full = len(recent) == recent.maxlen
        if full and self._dead_in_window / len(recent) > self.max_ratio:
            self._trip(
                f"{self._dead_in_window} of the last {len(recent)} records were dead-lettered "
                f"(limit {self.max_ratio:.0%})"
            )

    def _trip(self, why: str) -> None:
        if self.tripped is None:
            self.tripped = f"dead-letter circuit breaker tripped: {why}"

    def raise_if_open(self) -> None:
        if self.tripped is not None:
            raise HaltError(self.tripped)
