"""The chart's tracing values: the OpenTelemetry SDK's variables, rendered only when the worker
traces, and accepted by the worker's tracing set-up."""

from __future__ import annotations

import pytest

from connector.settings import Settings
from connector.tracing import tracing_problem
from tests.deploy.conftest import Helm, scenario_file

pytestmark = pytest.mark.integration


def otel_env(env: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: entry["value"] for name, entry in env.items() if name.startswith("OTEL_")}


def test_the_full_scenario_sets_the_sdk_variables(chart: Helm) -> None:
    rendered = chart.scenario("full")
    assert rendered.env["AEP_CONNECTOR_TRACING__ENABLED"]["value"] == "true"
    assert otel_env(rendered.env) == {
        "OTEL_SERVICE_NAME": "aep-connector-web",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=production",
    }


def test_the_rendered_variables_start_the_worker_tracing(
    chart: Helm, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in otel_env(chart.scenario("full").env).items():
        monkeypatch.setenv(name, value)
    assert tracing_problem(Settings(tracing={"enabled": True})) is None


def test_without_tracing_no_sdk_variable_is_rendered(chart: Helm) -> None:
    for scenario in ("minimal", "hpa"):
        assert otel_env(chart.scenario(scenario).env) == {}
    # Values under `tracing` alone do not turn it on: config.tracing.enabled does.
    rendered = chart.scenario("minimal", sets=["tracing.otlpEndpoint=http://c:4318"])
    assert otel_env(rendered.env) == {}


def test_the_service_name_defaults_to_the_release(chart: Helm) -> None:
    rendered = chart.scenario("minimal", sets=["config.tracing.enabled=true"])
    assert otel_env(rendered.env) == {"OTEL_SERVICE_NAME": rendered.deployment["metadata"]["name"]}


@pytest.mark.parametrize(
    "assignment",
    [
        "tracing.env.JAVA_TOOL_OPTIONS=-Xmx1g",  # not an SDK variable
        "tracing.env.OTEL_SERVICE_NAME=x",  # has its own value: it would be set twice
        "tracing.sampler=sometimes",
        "tracing.endpoint=http://c:4318",
    ],
)
def test_the_values_schema_refuses(chart: Helm, assignment: str) -> None:
    error = chart.template_error(scenario_file("minimal"), sets=[assignment])
    assert "schema" in error, error


def test_the_image_ships_the_tracing_extra() -> None:
    """The chart can turn tracing on, so the image must hold the SDK (imported only then): the
    lock the image installs from includes the `tracing` extra, and the image installs it whole."""
    from tests.deploy.test_dockerfile import DOCKERFILE, parse

    lock = (DOCKERFILE.parent / "requirements.lock").read_text(encoding="utf-8")
    pinned = {line.split("==")[0] for line in lock.splitlines() if "==" in line}
    assert {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"} <= pinned
    _args, stages = parse(DOCKERFILE.read_text(encoding="utf-8"))
    final = stages[-1]
    assert any("-r /wheels/requirements.lock" in r.args for r in final.all("RUN"))
