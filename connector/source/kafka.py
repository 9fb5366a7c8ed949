"""The Kafka edge: librdkafka configuration, the consumer interface the worker relies on,
and consumed messages turned into SourceRecords.

The worker talks to a `Consumer` (this module's Protocol), which confluent-kafka's consumer
satisfies; unit tests use an in-memory twin (tests/support/fake_kafka.py) that passes the same
contract suite as the real broker (tests/source/test_consumer_contract.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, overload

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from connector.errors import HaltError
from connector.logs import get_logger
from connector.records import SourceRecord
from connector.settings import Settings

log = get_logger("source")
_CLIENT_LOG = get_logger("librdkafka")

RebalanceCallback = Callable[[Any, list[TopicPartition]], None]

#: Consumer-only librdkafka properties, left out of the dead-letter producer's configuration.
_CONSUMER_ONLY = {
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "partition.assignment.strategy",
    "auto.offset.reset",
    "session.timeout.ms",
    "max.poll.interval.ms",
    "queued.max.messages.kbytes",
}


def consumer_config(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": kafka.group_id,
        "client.id": kafka.client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": kafka.auto_offset_reset,
        "session.timeout.ms": kafka.session_timeout_ms,
        "max.poll.interval.ms": kafka.max_poll_interval_ms,
        # librdkafka prefetches up to 64 MB per consumer by default; keep memory bounded.
        # 4 MB is 0.15-1 s of what one worker consumes (1 KB records), far longer than a
        # fetch from the brokers takes; 16 MB held ~20 MB more at peak for no gain in CPU or
        # records/s (docs/performance.md). A deployment can set it in kafka.properties.
        "queued.max.messages.kbytes": 4_096,
        # When that queue is full, librdkafka waits this long before fetching again. Its
        # default, 1 s, is longer than the worker takes to empty the queue: the worker sat idle
        # until the next fetch (see the performance notes in docs/).
        "fetch.queue.backoff.ms": 20,
        # librdkafka's own log lines go through the worker's logging (JSON or text, one
        # stream), not raw to stderr; they are served by the consume() and poll() calls.
        "logger": _CLIENT_LOG,
        **kafka.properties,
        **{k: v.get_secret_value() for k, v in kafka.secret_properties.items()},
    }
    if "debug" in config:
        # Debug contexts print protocol details, some of them not UTF-8; confluent-kafka
        # decodes each line strictly before it reaches a Python logger, and a line it cannot
        # decode makes consume() raise (the worker halted at a broker restart with
        # `debug: broker,msg,eos,topic`). librdkafka writes its debug log to stderr itself.
        del config["logger"]
    return config


def producer_config(settings: Settings, client_suffix: str = "dlq") -> dict[str, Any]:
    """The consumer's connection properties (brokers, TLS, SASL) for a producer."""
    return {
        k: v
        for k, v in consumer_config(settings).items()
        if k not in _CONSUMER_ONLY and not k.startswith(("fetch.", "group."))
    } | {"client.id": f"{settings.kafka.client_id}-{client_suffix}"}


class Consumer(Protocol):
    """What the worker uses of a Kafka consumer (confluent_kafka.Consumer's signatures).

    Semantics the worker relies on, checked by the contract suite on the real broker and on
    the in-memory twin:
    - rebalance callbacks run inside consume() (and close()), on the caller's thread;
    - a paused partition yields nothing until resumed; its pause flag survives a revoke and a
      later assignment of the same partition (so the worker sets it on every assignment);
    - after seek(), consume() yields the partition from that offset, nothing fetched before;
    - commit(asynchronous=False) returns the committed offsets; committed() reads them back.
    """

    def subscribe(
        self,
        topics: list[str],
        on_assign: RebalanceCallback = ...,
        on_revoke: RebalanceCallback = ...,
        on_lost: RebalanceCallback = ...,
    ) -> None: ...

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]: ...

    def assignment(self) -> list[TopicPartition]: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition) -> None: ...

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...

    @overload
    def commit(
        self, *, offsets: list[TopicPartition], asynchronous: Literal[True] = ...
    ) -> None: ...

    @overload
    def commit(
        self, *, offsets: list[TopicPartition], asynchronous: Literal[False]
    ) -> list[TopicPartition]: ...

    def committed(
        self, partitions: list[TopicPartition], timeout: float = -1
    ) -> list[TopicPartition]: ...

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...

    def close(self) -> None: ...


def source_record(message: Message) -> SourceRecord | None:
    """The record a consumed message carries, or None for an event that carries none.

    Errors librdkafka reports in a message are translated here: fatal errors and failed
    authentication halt (the deployment is wrong); the others are logged, since the client
    retries them itself.
    """
    error = message.error()
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            return None
        reason = halt_reason(error)
        if reason is not None:
            raise HaltError(reason)
        log.warning("consumer error", extra={"fields": {"error": str(error)}})
        return None
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        return None
    kind, timestamp = message.timestamp()
    headers = message.headers()
    return SourceRecord(
        topic,
        partition,
        offset,
        timestamp if kind else None,
        message.key(),
        message.value(),
        _headers(headers) if headers else (),
    )


def halt_reason(error: KafkaError) -> str | None:
    """Why the worker must halt on a client error, or None when the client recovers by itself.

    librdkafka retries a failed connection for ever and reports each failure as an error event
    (error_cb), or in a message. A refused login or a broker certificate that does not verify
    is a deployment error: the worker stops and says so, as for the API's 401/403, rather than
    log the same line for ever. Brokers that are down stay retried: brokers restart.
    """
    code = error.code()
    if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return (
            f"Kafka authentication failed: {error.str()} (check kafka.properties "
            "sasl.mechanism and sasl.username, and sasl.password in kafka.secret_properties)"
        )
    if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED):
        return f"Kafka refused access: {error.str()} (check the ACLs of the worker's principal)"
    if code == KafkaError._SSL and "certificate" in error.str().lower():
        return (
            f"Kafka TLS certificate failure: {error.str()} (check kafka.properties "
            "ssl.ca.location, ssl.certificate.location and ssl.key.location)"
        )
    if error.fatal():
        return f"fatal Kafka error: {error.str()}"
    return None


def _headers(
    headers: Sequence[tuple[str, str | bytes | None]] | dict[str, str | bytes | None],
) -> tuple[tuple[str, bytes | None], ...]:
    """Kafka headers as (name, bytes) pairs, whatever form the client returned."""
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs)


def restart_fetching(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    """Make the client fetch resumed partitions now.

    librdkafka notices a resumed partition only when its broker thread next wakes up: data
    came back a whole second after the pause, however short. Seeking each partition to where
    the worker left off wakes that thread at once; the position is the same, so no record is
    skipped or read twice.
    """
    for tp in consumer.position(partitions):
        if tp.offset < 0:  # nothing consumed from it yet: its first fetch is on its way
            continue
        try:
            consumer.seek(tp)
        except KafkaException as exc:  # e.g. not being fetched yet; it starts by itself
            log.debug("seek after resume failed", extra={"fields": {"error": str(exc)}})


def anchored(pattern: str) -> str:
    """librdkafka subscribes to a regex only when the name starts with '^'."""
    return pattern if pattern.startswith("^") else "^" + pattern
