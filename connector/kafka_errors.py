"""Kafka client errors that no retry fixes: the worker halts on them instead of logging them.

librdkafka retries a failed connection forever and reports each failure as an error event
(error_cb), not through consume(). A refused SASL login (wrong user or password, unknown
mechanism) or a broker certificate that does not verify is a deployment error: the worker must
stop and say so, as it does for the API's 401/403, rather than log the same line forever.
Broker-down and transport errors stay retried: brokers restart.
"""

from __future__ import annotations

from confluent_kafka import KafkaError


def halt_reason(error: KafkaError) -> str | None:
    """Why the worker must halt on `error`, or None when the client may recover by itself."""
    code = error.code()
    if code == KafkaError._AUTHENTICATION:
        return (
            f"Kafka authentication failed: {error.str()} (check kafka.properties "
            "sasl.mechanism and sasl.username, and sasl.password in kafka.secret_properties)"
        )
    if code == KafkaError._SSL and "certificate" in error.str().lower():
        return (
            f"Kafka TLS certificate failure: {error.str()} (check kafka.properties "
            "ssl.ca.location, ssl.certificate.location and ssl.key.location)"
        )
    if error.fatal():
        return f"fatal Kafka error: {error.str()}"
    return None
