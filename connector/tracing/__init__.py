"""Optional OpenTelemetry traces (`tracing.enabled`, the `tracing` extra; docs/tracing.md).

Off by default and free when off: this module imports nothing from OpenTelemetry, and the
worker holds None instead of a Tracing, so no record, request or dead letter does any tracing
work. Only `start_tracing` with tracing enabled imports the SDK (connector.tracing.spans).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.errors import ConnectorError

if TYPE_CHECKING:
    from connector.settings import Settings
    from connector.tracing.spans import Tracing

INSTALL_HINT = "pip install 'aep-connector[tracing]'"


class TracingUnavailable(ConnectorError):
    """Tracing is enabled but cannot be set up: the extra is missing, or an OTEL_* variable
    names an exporter or protocol that is not installed."""


def start_tracing(settings: Settings) -> Tracing | None:
    """The worker's Tracing, exporting as the OTEL_* variables say; None when disabled."""
    if not settings.tracing.enabled:
        return None
    try:
        from connector.tracing.spans import Tracing
    except ImportError as exc:
        raise TracingUnavailable(
            f"tracing.enabled is set but OpenTelemetry is not installed ({exc.name}): "
            f"{INSTALL_HINT}"
        ) from None
    return Tracing.from_environment(settings.platform.base_url)


def tracing_problem(settings: Settings) -> str | None:
    """Why tracing could not start (None: it can, or it is off), without exporting anything:
    the exporters are built and shut down again."""
    if not settings.tracing.enabled:
        return None
    try:
        from connector.tracing.provider import span_exporters

        for exporter in span_exporters():
            exporter.shutdown()
    except ImportError as exc:
        return (
            f"tracing.enabled is set but OpenTelemetry is not installed ({exc.name}): "
            f"{INSTALL_HINT}"
        )
    except TracingUnavailable as exc:
        return str(exc)
    return None
