"""Tracing set up from the SDK's standard OTEL_* variables, and the problems `check` reports."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from connector.preflight import client_problems
from connector.settings import Settings
from connector.tracing import TracingUnavailable, start_tracing, tracing_problem
from connector.tracing.provider import exporter_names, resource, span_exporters
from connector.tracing.spans import Tracing

ON = Settings(tracing={"enabled": True})


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, ["otlp_proto_http"]),  # the specification's default protocol
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp_proto_http", "console"]),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ["otlp_proto_grpc"]),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            ["otlp_proto_http"],
        ),
    ],
)
def test_exporter_names_follow_the_sdk_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], names: list[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert exporter_names() == names


def test_exporters_are_built_from_their_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector.test:4318/v1/traces")
    otlp, console = span_exporters()
    assert isinstance(otlp, OTLPSpanExporter)
    assert otlp._endpoint == "http://collector.test:4318/v1/traces"  # the exporter read it
    assert isinstance(console, ConsoleSpanExporter)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin_json"}, "no trace exporter 'zipkin_json' is installed"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "opentelemetry-exporter-otlp-proto-grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "unsupported OTLP protocol 'http/json'"),
    ],
)
def test_what_cannot_be_set_up_is_a_configuration_problem(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], complaint: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(TracingUnavailable, match=complaint):
        span_exporters()
    problem = tracing_problem(ON)
    assert problem is not None
    assert complaint in problem
    assert any(p.startswith("tracing: ") and complaint in p for p in client_problems(ON))
    assert tracing_problem(Settings()) is None  # off: nothing is even looked at


def test_a_missing_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the `tracing` extra were not installed: the SDK's modules cannot be imported.
    monkeypatch.setitem(sys.modules, "connector.tracing.spans", None)
    monkeypatch.setitem(sys.modules, "connector.tracing.provider", None)
    with pytest.raises(TracingUnavailable, match=r"pip install 'aep-connector\[tracing\]'"):
        start_tracing(ON)
    assert "pip install 'aep-connector[tracing]'" in (tracing_problem(ON) or "")
    assert start_tracing(Settings()) is None


def test_the_resource_names_the_connector_unless_the_environment_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attributes = resource().attributes
    assert attributes["service.name"] == "aep-connector"
    assert attributes["service.version"]
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-to-aep")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.version=9,deployment.environment=prod")
    attributes = resource().attributes
    assert attributes["service.name"] == "orders-to-aep"
    assert attributes["service.version"] == "9"
    assert attributes["deployment.environment"] == "prod"


def test_start_tracing_builds_the_worker_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    tracing = start_tracing(ON)
    assert isinstance(tracing, Tracing)
    tracing.shutdown()


class StuckExporter(SpanExporter):
    """A collector that never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.wait(30)


def test_shutdown_gives_up_on_a_collector_that_does_not_answer() -> None:
    exporter = StuckExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    tracing.shutdown(timeout_s=0.05)  # returns: the worker's exit bound is kept
    stuck = [t for t in threading.enumerate() if t.name == "tracing-shutdown"]
    assert stuck, "the shutdown should still be waiting for the exporter"
    exporter.release.set()
    for thread in stuck:
        thread.join(5)
