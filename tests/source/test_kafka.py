"""Kafka client errors no retry fixes halt the worker: which errors, and the two places that
hear of them (the consumer's and the dead-letter producer's error callbacks). The real broker
case (a wrong SASL password) is in tests/security/test_kafka_sasl_ssl.py."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.deadletter import DeadLetterWriter
from connector.errors import HaltError
from connector.metrics import Metrics
from connector.settings import Settings
from connector.source.kafka import consumer_config, halt_reason, producer_config
from tests.test_deadletter import FakeProducer

AUTH_FAILED = KafkaError(  # as librdkafka words it
    KafkaError._AUTHENTICATION,
    "sasl_ssl://b:9093/bootstrap: SASL authentication error: Authentication failed during "
    "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
)
CERTIFICATE = KafkaError(
    KafkaError._SSL,
    "sasl_ssl://b:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
    "certificate verify failed: broker certificate could not be verified",
)


def test_authentication_and_certificate_failures_halt() -> None:
    reason = halt_reason(AUTH_FAILED)
    assert reason is not None
    assert reason.startswith("Kafka authentication failed: ")
    assert "sasl.password in kafka.secret_properties" in reason
    certificate = halt_reason(CERTIFICATE)
    assert certificate is not None
    assert "ssl.ca.location" in certificate


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError._TRANSPORT, "Connection refused"),
        KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"),
        KafkaError(KafkaError._SSL, "SSL handshake failed: Disconnected"),
        KafkaError(KafkaError._TIMED_OUT, "timed out"),
    ],
)
def test_errors_the_client_recovers_from_do_not_halt(error: KafkaError) -> None:
    assert halt_reason(error) is None


def test_fatal_errors_halt() -> None:
    fatal = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    assert halt_reason(fatal) == "fatal Kafka error: fenced"


# ---------------------------------------------------------------------------- dead letters


class ErrorProducer(FakeProducer):
    """A producer whose client reports `errors` (through error_cb, when polled)."""

    def __init__(self, config: dict[str, Any], errors: list[KafkaError]) -> None:
        super().__init__(config)
        self.error_cb = config["error_cb"]
        self.errors = errors

    def poll(self, timeout: float) -> int:
        while self.errors:
            self.error_cb(self.errors.pop(0))
        return super().poll(timeout)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata"))


def writer(errors: list[KafkaError]) -> DeadLetterWriter[str]:
    return DeadLetterWriter({}, "dlq", Metrics(), lambda config: ErrorProducer(config, errors))


def test_dead_letter_producer_halts_on_a_failed_login() -> None:
    dead_letters = writer([AUTH_FAILED])
    with pytest.raises(HaltError, match="dead-letter producer: Kafka authentication failed"):
        dead_letters.poll()


def test_dead_letter_topic_check_halts_on_a_failed_login() -> None:
    """Before consuming, the topic check is where a wrong password shows first."""
    with pytest.raises(HaltError, match="Kafka authentication failed"):
        writer([AUTH_FAILED]).check_topic(timeout_s=0.1)
    # Brokers merely not answering yet are no reason to halt.
    writer([KafkaError(KafkaError._TRANSPORT, "refused")]).check_topic(timeout_s=0.1)


def test_librdkafka_logs_through_the_worker_unless_debug_contexts_are_set() -> None:
    """With `debug`, lines that are not UTF-8 would make consume() raise on their way to a
    Python logger: librdkafka then writes its log to stderr itself."""
    plain = Settings(kafka={"bootstrap_servers": "k:9092", "group_id": "g"})
    assert "logger" in consumer_config(plain)
    assert "logger" in producer_config(plain)
    debugging = Settings(
        kafka={"bootstrap_servers": "k:9092", "group_id": "g", "properties": {"debug": "broker"}}
    )
    for config in (consumer_config(debugging), producer_config(debugging)):
        assert "logger" not in config
        assert config["debug"] == "broker"
