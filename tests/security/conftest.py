"""The SASL_SSL broker for the security integration tests (started once per session, only
when a test here asks for it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kafka import SaslSslBroker, ServiceUnavailable, sasl_ssl_kafka_service


@pytest.fixture(scope="session")
def sasl_ssl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslSslBroker]:
    """A real broker with a SASL_SSL listener (SCRAM-SHA-512, a CA made on the fly)."""
    try:
        with sasl_ssl_kafka_service(tmp_path_factory.mktemp("sasl-ssl")) as broker:
            yield broker
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
