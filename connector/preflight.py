"""Checks before the worker starts that the settings model alone cannot make.

The clients the worker will use are built once, without connecting: librdkafka's consumer and
dead-letter producer (with no bootstrap servers, so no connection is attempted), the
schema-registry client and the API's HTTP client. A misspelt property (`security.protcol`), an
invalid value or an unreadable certificate then is a configuration error that `check` and
`run` report with exit status 2, not a traceback once the worker runs.

And the settings that turn certificate verification off, which are logged loudly at start.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from connector.settings import Settings

#: What `security_warnings` starts each warning with, so that it stands out in any log.
INSECURE = "INSECURE"


def client_problems(settings: Settings) -> list[str]:
    """Every problem building the clients would hit, one line each, secrets never quoted."""
    from connector.source.kafka import consumer_config, producer_config

    secrets = _secret_values(settings)
    problems: list[str] = []
    for client, config, factory in (
        ("consumer", consumer_config(settings), Consumer),
        ("dead-letter producer", producer_config(settings), Producer),
    ):
        problem = _librdkafka_problem(config, factory)
        if problem is not None:
            problems.append(
                f"kafka.properties / kafka.secret_properties: librdkafka refuses the {client} "
                f"configuration: {_redacted(problem, secrets)}"
            )
            break  # the same properties go to both clients: one report is enough
    registry = _registry_problem(settings)
    if registry is not None:
        problems.append(
            "kafka.schema_registry_properties / schema_registry_secret_properties: the "
            f"schema-registry client refuses them: {_redacted(registry, secrets)}"
        )
    transport = _http_problem(settings)
    if transport is not None:
        problems.append(
            f"platform.transport: the API client cannot be built: {_redacted(transport, secrets)}"
        )
    from connector.tracing import tracing_problem  # imports OpenTelemetry only when enabled

    tracing = tracing_problem(settings)
    if tracing is not None:
        problems.append(f"tracing: {tracing}")
    return problems


def security_warnings(settings: Settings) -> list[str]:
    """One line per setting that turns certificate verification off."""
    warnings = [
        f"{INSECURE}: kafka.properties {setting}: the brokers' certificates are not verified; "
        "anyone on the network path can impersonate them and read the records and the SASL "
        "credentials. Remove it outside tests."
        for setting in settings.kafka.insecure_tls()
    ]
    if not settings.platform.transport.verify_certificates:
        warnings.append(
            f"{INSECURE}: platform.transport.verify_certificates is false: the API's and the "
            "token endpoint's certificates are not verified; anyone on the network path can "
            "read the client secret, the tokens and every record sent. Remove it outside tests."
        )
    return warnings


def _librdkafka_problem(
    config: dict[str, Any], factory: Callable[[dict[str, Any]], Any]
) -> str | None:
    """librdkafka's complaint about `config`, or None. librdkafka checks every property when
    the client is made (names, values, and files such as ssl.ca.location); without
    bootstrap servers the client starts no connection."""
    probe = {
        k: v for k, v in config.items() if k not in ("bootstrap.servers", "metadata.broker.list")
    }
    probe["log_level"] = 0  # "no bootstrap.servers configured" is expected here
    try:
        client = factory(probe)
    except KafkaException as exc:
        return str(exc.args[0].str()) if exc.args else str(exc)
    except (TypeError, ValueError) as exc:
        return str(exc)
    close = getattr(client, "close", None)
    if close is not None:
        close()
    return None


def _registry_problem(settings: Settings) -> str | None:
    kafka = settings.kafka
    if not kafka.schema_registry_url:
        return None
    from confluent_kafka.schema_registry import SchemaRegistryClient

    config = {
        "url": kafka.schema_registry_url,
        **kafka.schema_registry_properties,
        **{k: v.get_secret_value() for k, v in kafka.schema_registry_secret_properties.items()},
    }
    try:
        SchemaRegistryClient(config)  # checks its properties and loads its TLS files
    except (OSError, ssl.SSLError, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _http_problem(settings: Settings) -> str | None:
    from connector.delivery.transport import build_http_client

    transport = settings.platform.transport
    for name in ("ca_bundle", "client_certificate", "client_key"):
        path = getattr(transport, name)
        if path is not None and not path.is_file():
            return f"{name} {path} is not a readable file"  # ssl's own error names no file
    try:
        build_http_client(settings.platform, 1).close()  # loads the CA bundle and the key
    except (OSError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _secret_values(settings: Settings) -> list[str]:
    kafka, transport = settings.kafka, settings.platform.transport
    found = [
        *kafka.secret_properties.values(),
        *kafka.schema_registry_secret_properties.values(),
        settings.platform.auth.client_secret,
        transport.client_key_password,
        transport.proxy_credentials,
    ]
    return [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]


def _redacted(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced: library messages may quote a value."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "**********")
    return text
