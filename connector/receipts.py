"""Delivery receipts: for every message the API acknowledged, one compact record in a Kafka
topic saying which source record it was (topic, partition, offset, key hash), where it went
(mapping, connection), how the Platform named it (batchId, xactionId) and when the answer came.
Auditors join Kafka offsets with the Platform's ingestion reports through them
(docs/receipts.md).

Two modes (`receipts.required`), one interface: `send` takes the token of what the receipt
finishes, and `poll`/`flush` hand tokens back, as the dead-letter writer does.
- not required: the token comes back at once, so a receipt never holds its record back; a
  receipt that fails is counted (`receipts_failed`) and logged, never a halt.
- required: the token comes back once Kafka confirmed the receipt, so an offset is committed
  only after both the API and the receipts topic have its record. A receipt that cannot be
  delivered halts the worker; its record stays uncommitted and is sent again after a restart
  (the Platform gets it twice; it gets a receipt for each acknowledgement).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer

from connector.delivery.batcher import OutboundMessage
from connector.delivery.outcome import Accepted
from connector.errors import HaltError
from connector.logs import get_logger
from connector.metrics import Metrics
from connector.settings import ReceiptSettings
from connector.source.kafka import halt_reason

log = get_logger("receipts")

T = TypeVar("T")

#: Failures of receipts that are not required are logged at most this often (with a count).
FAILURE_LOG_INTERVAL_S = 60.0


def receipt_value(message: OutboundMessage, accepted: Accepted, hash_keys: bool) -> bytes:
    """The receipt of one acknowledged message, as JSON (field names in docs/receipts.md)."""
    record = message.record
    key = record.key
    return orjson.dumps(
        {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "keySha256": hashlib.sha256(key).hexdigest() if hash_keys and key is not None else None,
            "mapping": message.mapping,
            "connection": message.connection_id,
            "batchId": accepted.batch_id,
            "xactionId": accepted.xaction_id,
            "acknowledgedAtMs": accepted.at_ms,
        }
    )


def receipt_key(message: OutboundMessage) -> bytes:
    """`topic/partition` of the source record: the receipts of one source partition land in
    one partition of the receipts topic, in the order they were acknowledged."""
    record = message.record
    return f"{record.topic}/{record.partition}".encode()


class ReceiptWriter(Generic[T]):
    """Produces receipts and hands back, from poll() and flush(), the tokens of the records
    they finish. Like the dead-letter writer, it never calls into its caller."""

    def __init__(
        self,
        producer_config: dict[str, Any],
        settings: ReceiptSettings,
        metrics: Metrics,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.topic:
            raise ValueError("receipts.topic is not set")
        self.topic = settings.topic
        self.required = settings.required
        self._hash_keys = settings.key_hash == "sha256"
        self._queue_full_timeout_s = settings.delivery_timeout_s
        config = {
            **producer_config,
            "linger.ms": settings.linger_ms,
            "compression.type": settings.compression,
            "message.timeout.ms": int(settings.delivery_timeout_s * 1000),
            # Exactly one receipt per acknowledgement: no duplicates from the producer's retries.
            "enable.idempotence": True,
            "acks": "all",
            "allow.auto.create.topics": False,
            "error_cb": self._on_error,
        }
        if not self.required:
            # Nothing waits for a receipt that is not required: librdkafka reports only the
            # failed ones (a Python call per delivered receipt is a third of its cost);
            # delivered ones are counted from what left the queue (see poll).
            config["delivery.report.only.error"] = True
            config["on_delivery"] = self._delivered_unrequired
        self._producer = producer_factory(config)
        self._produced = metrics.receipts_produced
        self._failed = metrics.receipts_failed
        self._clock = clock
        self._confirmed: list[T] = []
        #: Receipts on their way whose records wait for them (required mode only).
        self.pending = 0
        # Not required: receipts handed to the producer, failed, and counted as delivered.
        self._sent = self._failures = self._delivered = 0
        self.failure: str | None = None  # required mode: why the worker must halt
        self._unlogged_failures = 0
        self._last_failure_log: float | None = None

    def send(
        self, message: OutboundMessage, accepted: Accepted, token: T, stop: threading.Event
    ) -> bool:
        """Queue the receipt of `message`; `token` comes back from poll() at once (not
        required) or once Kafka has the receipt (required). False when, required, `stop` was
        set while the producer's queue was full (the record stays unfinished)."""
        value = receipt_value(message, accepted, self._hash_keys)
        key = receipt_key(message)
        if not self.required:
            self._confirmed.append(token)  # a receipt never holds its record back
            try:
                self._producer.produce(self.topic, value, key)
                self._sent += 1
            except BufferError:
                self._report_failure("queue_full", "the receipt producer's queue is full")
            except KafkaException as exc:
                self._report_failure("delivery", str(exc))
            return True

        def delivered(error: KafkaError | None, _message: object) -> None:
            self.pending -= 1
            if error is not None:
                self._failed.labels("delivery").inc()
                self.failure = self.failure or f"receipt write to {self.topic} failed: {error}"
                return
            self._produced.inc()
            self._confirmed.append(token)

        give_up_at: float | None = None
        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=delivered)
                self.pending += 1
                return True
            except KafkaException as exc:
                self._failed.labels("delivery").inc()
                raise HaltError(f"receipt write to {self.topic} failed: {exc}") from None
            except BufferError:
                # Brokers slow or away: let deliveries drain, but never for ever nor past a stop.
                now = self._clock()
                give_up_at = give_up_at or now + self._queue_full_timeout_s
                if stop.is_set():
                    return False
                if now >= give_up_at:
                    self._failed.labels("queue_full").inc()
                    raise HaltError(
                        f"receipt producer queue for {self.topic} stayed full for "
                        f"{self._queue_full_timeout_s:.0f} s"
                    ) from None
                self._producer.poll(0.05)

    def _delivered_unrequired(self, error: KafkaError | None, _message: object) -> None:
        """Called for failed receipts only (delivery.report.only.error)."""
        if error is not None:
            self._failures += 1
            self._report_failure("delivery", str(error))

    def _count_delivered(self) -> None:
        """Not required: receipts that left the producer's queue without failing were
        delivered (librdkafka reports only failures)."""
        if self.required:
            return
        delivered = self._sent - len(self._producer) - self._failures
        if delivered > self._delivered:
            self._produced.inc(delivered - self._delivered)
            self._delivered = delivered

    def _report_failure(self, reason: str, error: str) -> None:
        """Count a receipt that is not required and failed; log the first at once, then at
        most once a minute with how many failed meanwhile (a topic that is gone would
        otherwise log a line per record)."""
        self._failed.labels(reason).inc()
        self._unlogged_failures += 1
        now = self._clock()
        last = self._last_failure_log
        if last is not None and now - last < FAILURE_LOG_INTERVAL_S:
            return
        log.warning(
            "delivery receipts are failing (not required: records are not held back)",
            extra={
                "fields": {
                    "topic": self.topic,
                    "reason": reason,
                    "error": error,
                    "failed_since_last_report": self._unlogged_failures,
                }
            },
        )
        self._last_failure_log = now
        self._unlogged_failures = 0

    def _on_error(self, error: KafkaError) -> None:
        """Client errors (served by poll): a failed login halts when receipts are required."""
        reason = halt_reason(error)
        if reason is not None and self.required:
            self.failure = self.failure or f"receipt producer: {reason}"
            return
        log.warning("receipt producer error", extra={"fields": {"error": str(error)}})

    def poll(self) -> list[T]:
        """Tokens of the records whose receipts are done since the last call; HaltError once
        a required receipt failed (after handing back those confirmed before)."""
        self._producer.poll(0)
        self._count_delivered()
        return self._take_confirmed()

    def flush(self, timeout_s: float) -> list[T]:
        """Wait up to `timeout_s` for every receipt queued; the tokens confirmed meanwhile."""
        left = self._producer.flush(timeout_s)
        self._count_delivered()
        if left:
            log.warning(
                "receipts not yet delivered", extra={"fields": {"topic": self.topic, "left": left}}
            )
        return self._take_confirmed()

    def _take_confirmed(self) -> list[T]:
        confirmed, self._confirmed = self._confirmed, []
        if self.failure is not None and not confirmed:
            raise HaltError(self.failure)
        return confirmed

    def check_topic(self, timeout_s: float = 10.0) -> None:
        """Refuse to start when the brokers say the receipts topic does not exist (asking for
        every topic's metadata: asking for this one would create it on brokers that create
        topics on demand). Brokers that do not answer yet are not a reason to halt."""
        try:
            metadata = self._producer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            log.warning("could not check the receipts topic", extra={"fields": {"error": str(exc)}})
            return
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            raise HaltError(
                f"receipts topic {self.topic!r} is not available "
                f"({topic.error if topic else 'missing'}); create it before starting"
            )
