"""Session-wide fixtures: the real Kafka broker and schema registry (see tests/support/kafka.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kafka import ServiceUnavailable, kafka_service, registry_service


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker, started once per test session."""
    try:
        with kafka_service(tmp_path_factory.mktemp("services")) as bootstrap:
            yield bootstrap
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Confluent-compatible schema registry, started once per test session."""
    try:
        with registry_service(tmp_path_factory.mktemp("services")) as url:
            yield url
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.support.report import MEASUREMENTS

    if MEASUREMENTS:
        terminalreporter.section("measurements")
        for name, value in MEASUREMENTS:
            terminalreporter.write_line(f"{name}: {value}")
