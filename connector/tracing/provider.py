"""The tracer provider, configured by the OpenTelemetry SDK's standard environment variables.

What the SDK reads itself: the sampler (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG), span
limits (OTEL_SPAN_LINK_COUNT_LIMIT, ...), the batch processor (OTEL_BSP_*), the resource
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES), OTEL_SDK_DISABLED, and each exporter its own
settings (OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _TIMEOUT, ...). What is read here, as the
SDK's auto-configuration reads it (whose functions are private): which exporters, from
OTEL_TRACES_EXPORTER (default `otlp`; comma-separated; `none`), each name an entry point of
the `opentelemetry_traces_exporter` group; `otlp` picks the protocol from
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL, `http/protobuf` by default
as the specification says (the `tracing` extra ships that exporter).

The provider is the worker's own, not the process-global one, and is not flushed at
interpreter exit: the worker shuts it down within a bound (a collector that does not answer
must not hold the process past its shutdown bound).
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from connector import __version__
from connector.tracing import TracingUnavailable

DEFAULT_SERVICE_NAME = "aep-connector"
EXPORTER_GROUP = "opentelemetry_traces_exporter"
#: OTLP protocol → the exporter entry point that speaks it.
OTLP_EXPORTERS = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}


def exporter_names() -> list[str]:
    """The entry-point names of the exporters OTEL_TRACES_EXPORTER asks for."""
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip()
    if not names or names.lower() == "none":
        return []
    resolved = []
    for name in (n.strip() for n in names.split(",")):
        if name == "otlp":
            protocol = (
                os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            ).strip()
            if protocol not in OTLP_EXPORTERS:
                raise TracingUnavailable(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported OTLP protocol {protocol!r} "
                    f"(use {' or '.join(OTLP_EXPORTERS)})"
                )
            name = OTLP_EXPORTERS[protocol]
        if name and name != "none":
            resolved.append(name)
    return resolved


def span_exporters() -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names, built (they connect only when exporting)."""
    installed = {ep.name: ep for ep in entry_points(group=EXPORTER_GROUP)}
    exporters: list[SpanExporter] = []
    for name in exporter_names():
        entry = installed.get(name)
        if entry is None:
            hint = " (pip install opentelemetry-exporter-otlp-proto-grpc)" if "grpc" in name else ""
            raise TracingUnavailable(
                f"OTEL_TRACES_EXPORTER: no trace exporter {name!r} is installed{hint}; "
                f"installed: {', '.join(sorted(installed)) or 'none'}"
            )
        exporter_class = entry.load()
        if not (isinstance(exporter_class, type) and issubclass(exporter_class, SpanExporter)):
            raise TracingUnavailable(f"OTEL_TRACES_EXPORTER: {name!r} is not a span exporter")
        exporters.append(exporter_class())
    return exporters


def resource() -> Resource:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, with the connector's name and version
    where they say nothing."""
    detected = Resource.create()
    defaults: dict[str, str] = {}
    if str(detected.attributes.get(SERVICE_NAME, "unknown_service")).startswith("unknown_service"):
        defaults[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    if SERVICE_VERSION not in detected.attributes:
        defaults[SERVICE_VERSION] = __version__
    return detected.merge(Resource(defaults)) if defaults else detected


def provider_from_environment() -> TracerProvider:
    provider = TracerProvider(resource=resource(), shutdown_on_exit=False)
    for exporter in span_exporters():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
