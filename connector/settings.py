"""The whole configuration of the worker, as one pydantic-settings model tree.

Values come from, highest priority first: environment variables with the prefix
``AEP_CONNECTOR_`` (nested fields joined with ``__``, e.g.
``AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES``), an optional YAML file (``--config``), then the
defaults below. Dictionaries and lists in environment variables are written as JSON.

Settings are validated once at start-up; the hot path reads plain attributes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from connector.errors import InvalidInput

if TYPE_CHECKING:
    from connector.mapping.limits import MappingLimits

ENV_PREFIX = "AEP_CONNECTOR_"
ENV_NESTED_DELIMITER = "__"

#: The API refuses a request body over 1 MB (1,048,576 bytes), framing included.
API_MAX_REQUEST_BYTES = 1_048_576

#: Scopes Adobe's own connector requests for server-to-server OAuth.
DEFAULT_SCOPES = [
    "openid",
    "AdobeID",
    "read_organizations",
    "additional_info.projectedProductContext",
    "session",
]


#: Client properties whose values are secrets, matched on the lower-cased key: librdkafka's
#: (CONFIGURATION.md: sasl.password, ssl.key.password, ssl.key.pem, ssl.keystore.password,
#: sasl.oauthbearer.client.secret and its alias, sasl.oauthbearer.assertion.private.key.pem and
#: .passphrase, sasl.oauthbearer.config, which may carry credentials) and the schema-registry
#: client's (basic.auth.user.info, bearer.auth.token, ...). They belong in the
#: `secret_properties` settings, which are never printed. The Helm chart's values schema uses
#: the same pattern (RE2 and Python syntax alike).
SECRET_PROPERTY_PATTERN = (
    r"password|secret|passphrase|key\.pem$|^sasl\.oauthbearer\.config$"  # noqa: S105 - key names
    r"|^basic\.auth\.user\.info$|^bearer\.auth\.token$"
)
_SECRET_PROPERTY = re.compile(SECRET_PROPERTY_PATTERN)


def is_secret_property(key: str) -> bool:
    """True for a client property whose value is a credential (see SECRET_PROPERTY_PATTERN)."""
    return _SECRET_PROPERTY.search(key.lower()) is not None


def _plain_properties(
    properties: dict[str, str], secret_setting: str, secret_field: str
) -> dict[str, str]:
    """Refuse secret keys in a plain properties dict, naming the keys (never the values)."""
    secret = sorted(key for key in properties if is_secret_property(key))
    if secret:
        raise ValueError(
            f"{', '.join(secret)} hold{'s' if len(secret) == 1 else ''} a secret: set "
            f"{'it' if len(secret) == 1 else 'them'} in {secret_setting} "
            f"({env_var_name(('kafka', secret_field))}), which is never printed or logged"
        )
    return properties


def _plain_properties_schema() -> dict[str, Any]:
    """The chart's values schema refuses secret keys in plain properties as the worker does."""
    return {"propertyNames": {"not": {"pattern": SECRET_PROPERTY_PATTERN}}}


def is_loopback_url(url: str) -> bool:
    """True when `url`'s host is this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _has_userinfo(url: str) -> bool:
    """True when `url` carries user:password@ (a credential that would be printed with it)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.username is not None or parts.password is not None


class _Section(BaseModel):
    """A settings section: unknown keys are errors, so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """The consumer group the worker joins, and the client properties it passes through."""

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list of brokers."
    )
    group_id: str = Field(default="aep-connector", description="Consumer group id.")
    client_id: str = Field(default="aep-connector", description="Client id sent to the brokers.")
    properties: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "librdkafka properties passed to the consumer and the dead-letter producer as they "
            "are (TLS, SASL mechanism, fetch sizes); JSON object in the environment. Secret "
            "keys (*password*, *secret*, ssl.key.pem, ...) are refused here: use "
            "secret_properties. With `debug` set, librdkafka writes its log to stderr as plain "
            "text instead of through the worker's logging."
        ),
        json_schema_extra=_plain_properties_schema(),
    )
    secret_properties: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "librdkafka properties whose values are secret (sasl.password, ssl.key.password); "
            "never printed or logged."
        ),
    )
    consume_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Records fetched per consume() call."
    )
    consume_timeout_ms: int = Field(
        default=100, ge=1, le=10_000, description="How long one consume() call may wait."
    )
    session_timeout_ms: int = Field(
        default=45_000, ge=6_000, description="Group session timeout (librdkafka)."
    )
    max_poll_interval_ms: int = Field(
        default=300_000, ge=10_000, description="Maximum time between polls (librdkafka)."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a group with no committed offset starts."
    )
    commit_interval_ms: int = Field(
        default=5_000, ge=100, description="How often finished offsets are committed."
    )
    schema_registry_url: str | None = Field(
        default=None, description="Schema registry for Avro in the Confluent wire format."
    )
    schema_registry_properties: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra schema-registry client settings (e.g. ssl.ca.location, timeout); secret "
            "keys are refused here: use schema_registry_secret_properties."
        ),
        json_schema_extra=_plain_properties_schema(),
    )
    schema_registry_secret_properties: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Secret schema-registry client settings (e.g. basic.auth.user.info).",
    )

    @field_validator("properties")
    @classmethod
    def _no_secret_properties(cls, value: dict[str, str]) -> dict[str, str]:
        return _plain_properties(value, "kafka.secret_properties", "secret_properties")

    @field_validator("schema_registry_properties")
    @classmethod
    def _no_secret_registry_properties(cls, value: dict[str, str]) -> dict[str, str]:
        return _plain_properties(
            value,
            "kafka.schema_registry_secret_properties",
            "schema_registry_secret_properties",
        )

    @field_validator("schema_registry_url")
    @classmethod
    def _no_credentials_in_registry_url(cls, value: str | None) -> str | None:
        if value is not None and _has_userinfo(value):
            raise ValueError(
                "credentials in the URL would be printed with it: set them as "
                "basic.auth.user.info in schema_registry_secret_properties"
            )
        return value

    def insecure_tls(self) -> list[str]:
        """The properties that turn off librdkafka's checks of the brokers' certificates."""
        found = []
        verify = self.properties.get("enable.ssl.certificate.verification", "true")
        if verify.strip().lower() in ("false", "f", "0"):
            found.append(f"enable.ssl.certificate.verification={verify}")
        identify = self.properties.get("ssl.endpoint.identification.algorithm", "https")
        if identify.strip().lower() == "none":
            found.append(f"ssl.endpoint.identification.algorithm={identify}")
        return found


class DecodingSettings(_Section):
    """Bounds on decoding record values, so that no record's bytes can crash or exhaust the
    worker; a record beyond one is dead-lettered (stage `decode`) with the bound as reason."""

    max_value_bytes: int = Field(
        default=1_572_864,
        ge=1024,
        description=(
            "Record values larger than this are dead-lettered (too_large) without being "
            "decoded. The API takes at most 1 MB per message; the default is 1.5 MiB."
        ),
    )
    max_depth: int = Field(
        default=100,
        ge=1,
        le=200,
        description=(
            "Deepest nesting of objects, arrays, maps and Avro records in a decoded value; "
            "deeper values are dead-lettered (too_deep)."
        ),
    )
    max_values: int = Field(
        default=250_000,
        ge=1,
        description=(
            "Most values in one decoded record, each scalar, object, array and map and each "
            "of their items counting one; more are dead-lettered (too_many_values)."
        ),
    )
    unknown_schema_ttl_s: float = Field(
        default=60.0,
        ge=0,
        description=(
            "How long a schema id the registry does not know is remembered; records carrying "
            "it meanwhile are dead-lettered (unknown_schema) without asking again."
        ),
    )


class AuthSettings(_Section):
    """Server-to-server OAuth (client credentials) for inlets created with authentication."""

    client_id: str | None = Field(default=None, description="OAuth client id; unset: no token.")
    client_secret: SecretStr | None = Field(default=None, description="OAuth client secret.")
    scopes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES), description="Scopes requested."
    )
    token_url: str = Field(
        default="https://ims-na1.adobelogin.com/ims/token/v3", description="IMS token endpoint."
    )
    refresh_margin_s: float = Field(
        default=300.0, ge=0, description="Renew the token this long before it expires."
    )

    @model_validator(mode="after")
    def _secret_with_id(self) -> AuthSettings:
        if (self.client_id is None) != (self.client_secret is None):
            raise ValueError("client_id and client_secret must be set together")
        return self

    @property
    def enabled(self) -> bool:
        return self.client_id is not None


class TransportSettings(_Section):
    """TLS and proxy of the connections to the API and to the token endpoint."""

    ca_bundle: Path | None = Field(
        default=None,
        description=(
            "PEM file of the CA certificates that verify the API's and the token endpoint's "
            "certificates, instead of the default bundle (e.g. a TLS-inspecting proxy's CA)."
        ),
    )
    client_certificate: Path | None = Field(
        default=None,
        description="PEM client certificate (and chain), for a gateway that asks for one.",
    )
    client_key: Path | None = Field(
        default=None,
        description="PEM private key of client_certificate; unset: it is in that file.",
    )
    client_key_password: SecretStr | None = Field(
        default=None, description="Passphrase of an encrypted client_key."
    )
    verify_certificates: bool = Field(
        default=True,
        description=(
            "false turns off verification of the API's certificates: for tests only, anyone "
            "on the path can then read the credentials (a warning is logged at start)."
        ),
    )
    proxy_url: str | None = Field(
        default=None,
        description=(
            "HTTP(S) proxy for the API and the token endpoint, http(s)://host:port; unset: "
            "HTTPS_PROXY and NO_PROXY from the environment apply."
        ),
    )
    proxy_credentials: SecretStr | None = Field(
        default=None, description="user:password for the proxy, if it asks for one."
    )

    @field_validator("proxy_url")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _has_userinfo(value):
            raise ValueError(
                "credentials in the URL would be printed with it: set them in "
                "platform.transport.proxy_credentials"
            )
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http://host:port or https://host:port")
        return value

    @field_validator("proxy_credentials")
    @classmethod
    def _user_and_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and ":" not in value.get_secret_value():
            raise ValueError("must be user:password")
        return value

    @model_validator(mode="after")
    def _key_with_certificate(self) -> TransportSettings:
        if self.client_certificate is None and (
            self.client_key is not None or self.client_key_password is not None
        ):
            raise ValueError("client_key and client_key_password need client_certificate")
        if self.proxy_credentials is not None and self.proxy_url is None:
            raise ValueError("proxy_credentials needs proxy_url")
        return self


class PlatformSettings(_Section):
    """Where and how envelopes are sent: the streaming ingestion API."""

    base_url: str = Field(
        default="https://dcs.adobedc.net", description="Streaming ingestion API base URL."
    )
    connection_id: str | None = Field(
        default=None,
        description="Default connection (inlet) id, for mappings that do not name one.",
    )
    sandbox_name: str = Field(default="prod", description="Sent as the x-sandbox-name header.")
    ims_org_id: str | None = Field(
        default=None, description="Default IMS org id (…@AdobeOrg) for the envelope header."
    )
    auth: AuthSettings = Field(default_factory=AuthSettings)
    extra_headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers, e.g. x-adobe-flow-id."
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="TCP/TLS connect timeout.")
    request_timeout_s: float = Field(default=30.0, gt=0, description="Whole-request timeout.")
    transport: TransportSettings = Field(default_factory=TransportSettings)

    @model_validator(mode="after")
    def _no_credentials_in_clear(self) -> PlatformSettings:
        """Client credentials and tokens never cross the network unencrypted; plain http is
        for the emulator on this machine."""
        credentials = self.auth.enabled or any(
            name.lower() in ("authorization", "proxy-authorization") for name in self.extra_headers
        )
        if not credentials:
            return self
        for name, url in (("base_url", self.base_url), ("auth.token_url", self.auth.token_url)):
            if name == "auth.token_url" and not self.auth.enabled:
                continue
            if urlsplit(url).scheme == "http" and not is_loopback_url(url):
                raise ValueError(
                    f"{name} is plain http:// to another host while credentials are "
                    "configured: they would cross the network unencrypted; use https:// "
                    "(plain http is accepted for loopback hosts only, e.g. the emulator)"
                )
        return self


class BatchingSettings(_Section):
    """How envelopes are grouped into requests."""

    max_request_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description=(
            'Largest request body, counting the {"messages":[…]} framing. The API\'s limit is '
            "1,048,576 bytes; the default leaves room for proxies that re-encode."
        ),
    )
    max_records: int = Field(default=1000, ge=1, description="Most messages in one request.")
    linger_ms: int = Field(
        default=50, ge=0, description="How long a non-full batch waits for more records."
    )
    max_in_flight_requests: int = Field(
        default=4, ge=1, le=256, description="Requests awaiting an answer at once."
    )
    max_in_flight_per_connection: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description=(
            "Request slots one connection may hold, so that an inlet that is down (its "
            "requests retrying) leaves slots to the others. Unset: max_in_flight_requests "
            "divided by the number of connections, rounded up."
        ),
    )
    adaptive_concurrency: bool = Field(
        default=False,
        description=(
            "Adapt each connection's requests in flight between 1 and its slots (an AIMD loop: "
            "up by one while round trips stay near their mean, down on 429, 408, 5xx, timeouts "
            "or a round-trip spike). See docs/flow-control.md."
        ),
    )
    max_messages_per_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Messages per second one connection may send (every attempt counts); requests "
            "wait, and consumption pauses, when it binds. Unset: no limit. The Platform's "
            "guidance is about 10,000 per connection."
        ),
    )
    max_requests_per_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Requests per second one connection may send (retries count). Unset: no limit. "
            "The Platform's guidance is about 1,000 per connection."
        ),
    )
    rate_limit_burst_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description=(
            "How far ahead of its rates a connection may get: each rate limit's bucket holds "
            "this many seconds of its rate (at least one request or message)."
        ),
    )
    ordering: Literal["partition", "none"] = Field(
        default="partition",
        description=(
            "partition: records of a partition reach the API in offset order (one request per "
            "partition in flight); none: any order, fuller batches across partitions, several "
            "requests per connection in flight."
        ),
    )
    max_buffered_records: int = Field(
        default=50_000,
        ge=1,
        description="Pause consuming when this many messages are buffered or in flight.",
    )
    # 16 MiB covers the requests in flight and a full batch per busy lane; more only holds
    # records longer (each buffered message also keeps its source record for the dead-letter
    # topic, so memory is about twice this). See docs/performance.md.
    max_buffered_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Pause consuming when this many message bytes are buffered or in flight.",
    )


class RetrySettings(_Section):
    """Backoff for transient failures (timeouts, 408, 429, 5xx but 501)."""

    initial_backoff_ms: int = Field(default=200, ge=1, description="First backoff ceiling.")
    max_backoff_ms: int = Field(default=30_000, ge=1, description="Backoff ceiling cap.")
    max_retry_after_s: float = Field(
        default=300.0, gt=0, description="Largest Retry-After honoured; longer ones are capped."
    )
    max_unacknowledged: int = Field(
        default=5,
        ge=1,
        description=(
            "Halt after this many success answers in a row without one result per message "
            "(a proxy or a wrong base URL answering): such answers acknowledge nothing."
        ),
    )


class DeadLetterSettings(_Section):
    """Where rejected records go, and when rejections mean the deployment is wrong."""

    topic: str = Field(default="aep-connector.dlq", description="Dead-letter topic.")
    max_ratio: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Halt when more than this share of the last `window` records is dead-lettered.",
    )
    window: int = Field(default=1000, ge=1, description="Records the ratio is measured over.")
    max_consecutive: int = Field(
        default=1000, ge=1, description="Halt after this many dead letters in a row."
    )
    tombstones: Literal["skip", "dead-letter"] = Field(
        default="skip", description="What to do with records whose value is null."
    )
    queue_full_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Halt when the dead-letter producer's local queue stays full this long "
            "(brokers away): the loop never blocks on the dead-letter path."
        ),
    )


class ReceiptSettings(_Section):
    """Delivery receipts: one compact record per acknowledged message, for audits that join
    Kafka offsets with the Platform's batchId and xactionId (docs/receipts.md)."""

    topic: str | None = Field(
        default=None,
        description=(
            "Topic the receipts are produced to; it must exist (the worker does not start "
            "otherwise). Unset: no receipts."
        ),
    )
    required: bool = Field(
        default=False,
        description=(
            "true: a record counts as finished (its offset may be committed) only once its "
            "receipts are confirmed by Kafka, and a receipt that cannot be delivered halts the "
            "worker. false: receipts never hold records back; failed ones are counted "
            "(receipts_failed) and logged."
        ),
    )
    key_hash: Literal["sha256", "none"] = Field(
        default="sha256",
        description=(
            "How a receipt names the record's key: sha256 (hex SHA-256 of the key bytes, "
            "unsalted) or none (left out)."
        ),
    )
    linger_ms: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="How long the receipt producer waits to fill a batch (librdkafka linger.ms).",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="lz4", description="Compression of receipt batches (librdkafka compression.type)."
    )
    delivery_timeout_s: float = Field(
        default=120.0,
        ge=1,
        le=3600,
        description=(
            "How long one receipt may take to be delivered, retries included (librdkafka "
            "message.timeout.ms); past it the receipt failed. With required: true, also how "
            "long the producer's queue may stay full before the worker halts."
        ),
    )


class ReplaySettings(_Section):
    """`aep-connector dlq replay`: its progress on the dead-letter topic and its limits."""

    group_id: str | None = Field(
        default=None,
        description=(
            "Consumer group whose committed offsets on the dead-letter topic record what was "
            "replayed, so an interrupted replay resumes; unset: `<kafka.group_id>-dlq-replay`. "
            "Must differ from kafka.group_id."
        ),
    )
    max_replays: int = Field(
        default=3,
        ge=0,
        description="Refuse to replay a record that has already been replayed this many times.",
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Dead letters per transaction (replayed records and offsets commit together).",
    )
    transaction_timeout_ms: int = Field(
        default=30_000,
        ge=1_000,
        le=900_000,
        description=(
            "How long a killed replay's open transaction holds back read_committed consumers of "
            "the target partitions, unless the next replay of the group aborts it sooner."
        ),
    )


class OpsSettings(_Section):
    """The operations endpoint: metrics and probes."""

    host: str = Field(default="0.0.0.0", description="Address the ops server binds.")  # noqa: S104
    port: int = Field(default=8080, ge=0, le=65535, description="Port for /metrics and probes.")
    log_format: Literal["json", "text"] = Field(default="json", description="Log line format.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level."
    )
    shutdown_timeout_s: float = Field(
        default=20.0, gt=0, description="Bound on draining in-flight requests at shutdown."
    )
    liveness_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="/healthz fails when the main loop has not turned for this long.",
    )
    halt_linger_s: float = Field(
        default=10.0,
        ge=0,
        description=(
            "After a halt, keep /readyz (503, with the reason) and /metrics up this long "
            "before exiting, so probes and scrapers can see why."
        ),
    )
    readiness_api_failure_s: float = Field(
        default=60.0,
        gt=0,
        description="/readyz fails when every request has failed transiently for this long.",
    )
    single_cpu: bool = Field(
        default=False,
        description=(
            "Keep all of the worker's threads on one CPU (the one it starts on): less CPU per "
            "record and more records/s, since its threads hand work to each other on one core. "
            "Only where the worker has CPUs to itself (a Guaranteed pod with the static CPU "
            "manager, a dedicated machine): pinned workers cannot be moved off a busy core."
        ),
    )


class MappingSettings(_Section):
    """Limits of mapping evaluation: what one record may cost (see mappings/README.md)."""

    evaluation_budget_ms: float = Field(
        default=500.0,
        gt=0,
        description="Time one record's mapping may take; past it the record is mapped again "
        "measuring the thread's CPU time, and dead-lettered (map/too_slow) when it spends half "
        "of this computing (not when it merely waited for a CPU).",
    )
    max_string_length: int = Field(
        default=1_048_576, ge=1, description="Longest string a mapping function or + may build."
    )
    regex_fallback_max_input: int = Field(
        default=16_384,
        ge=1,
        description="Longest input for a regex that RE2 cannot run (backtracking fallback).",
    )

    def limits(self) -> MappingLimits:
        from connector.mapping.limits import MappingLimits  # the mapping package is heavy

        return MappingLimits(
            self.evaluation_budget_ms, self.max_string_length, self.regex_fallback_max_input
        )


class TracingSettings(_Section):
    """OpenTelemetry traces (the `tracing` extra; docs/tracing.md). The exporter, endpoint,
    sampler and resource come from the SDK's standard OTEL_* variables."""

    enabled: bool = Field(
        default=False,
        description=(
            "Trace each API request and each dead letter, linked to the records' W3C "
            "`traceparent` headers. Off: OpenTelemetry is not even imported."
        ),
    )


class Settings(BaseSettings):
    """The worker's configuration. See the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    decoding: DecodingSettings = Field(default_factory=DecodingSettings)
    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    dead_letter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    receipts: ReceiptSettings = Field(default_factory=ReceiptSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    mappings_dir: Path = Field(default=Path("mappings"), description="Mapping files directory.")
    mapping: MappingSettings = Field(default_factory=MappingSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file, when given, is set on a per-load subclass (see load_settings).
        env = _EnvWithout(settings_cls, _undecodable_env_vars())
        return init_settings, env, YamlConfigSettingsSource(settings_cls)


class _EnvWithout(EnvSettingsSource):
    """The environment minus variables already reported as undecodable, so that validation
    can still report every other problem in the same run."""

    def __init__(self, settings_cls: type[BaseSettings], skip: Mapping[str, str]) -> None:
        self._skip = {name.lower() for name in skip}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        loaded = super()._load_env_vars()
        return {k: v for k, v in loaded.items() if k.lower() not in self._skip}


def _undecodable_env_vars() -> dict[str, str]:
    """Variables for dict or list settings whose value is not JSON, with the decoder's reason."""
    problems: dict[str, str] = {}
    for path, type_name, _default, _description in iter_fields():
        if not type_name.startswith(("dict", "list")):
            continue
        name = env_var_name(path)
        raw = os.environ.get(name)
        if raw is None:
            continue
        try:
            json.loads(raw)
        except ValueError as exc:
            problems[name] = f"not valid JSON ({exc})"
    return problems


class ConfigError(InvalidInput):
    """The configuration is invalid; `problems` lists every problem, one line each."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate the configuration, raising ConfigError with every problem found."""
    settings_cls: type[Settings] = Settings
    undecodable = [
        f"{name} (config key {_key_of(name)}): {why}"
        for name, why in _undecodable_env_vars().items()
    ]
    if config_file is not None:
        problems = _check_yaml_file(config_file)
        if problems:
            raise ConfigError(undecodable + problems)
        config = SettingsConfigDict(**{**Settings.model_config, "yaml_file": config_file})
        settings_cls = type("Settings", (Settings,), {"model_config": config})  # per-load subclass
    try:
        settings = settings_cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(undecodable + [_describe(error) for error in exc.errors()]) from None
    except SettingsError as exc:
        # Raised for values that cannot even be decoded, e.g. malformed JSON in a dict variable.
        cause = exc.__cause__
        raise ConfigError([*undecodable, f"{exc}" + (f": {cause}" if cause else "")]) from None
    if undecodable:
        raise ConfigError(undecodable)
    return settings


def _key_of(env_name: str) -> str:
    return env_name.removeprefix(ENV_PREFIX).lower().replace(ENV_NESTED_DELIMITER, ".")


def _check_yaml_file(path: Path) -> list[str]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [f"config file {path}: cannot be read: {exc.strerror}"]
    except UnicodeDecodeError:
        return [f"config file {path}: not UTF-8 text"]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [f"config file {path}: not valid YAML{_yaml_error_place(exc, text)}"]
    if data is not None and not isinstance(data, dict):
        return [f"config file {path}: the top level must be a mapping of sections"]
    return []


#: A line that starts a `key:` (possibly as a list item); the key is a setting or property name.
_YAML_KEY_LINE = re.compile(r"^( *)(?:- +)?([A-Za-z0-9_.\-]+) *:(?: |$)")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _yaml_error_place(exc: Exception, text: str) -> str:
    """Line, column and key of a YAML syntax error, and what is wrong in PyYAML's fixed words.

    Never the line itself nor a character of it: PyYAML's own message quotes the line, and the
    line may hold a secret (a client_secret with an unclosed quote, say).
    """
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    mark = problem_mark or context_mark
    if mark is None:
        return ""
    # The key is where the broken node starts (an unclosed quote is noticed lines later).
    key_line = (context_mark or mark).line
    key = _yaml_key_at(text.splitlines(), key_line)
    place = f" at line {mark.line + 1}, column {mark.column + 1}"
    if key:
        place += f" (key {key})"
    problem = getattr(exc, "problem", None)
    if problem:
        place += f": {_QUOTED.sub('…', str(problem))}"
    return place


def _yaml_key_at(lines: list[str], index: int) -> str:
    """The dotted key path of line `index`, from the indentation of the key lines above it."""
    path: list[str] = []
    indent: int | None = None
    for line in reversed(lines[: index + 1]):
        match = _YAML_KEY_LINE.match(line)
        if match is None:
            continue
        width = len(match.group(1))
        if indent is None or width < indent:
            path.append(match.group(2))
            indent = width
            if width == 0:
                break
    return ".".join(reversed(path))


def env_var_name(loc: tuple[str | int, ...]) -> str:
    """The environment variable that sets the field at `loc`."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part).upper() for part in loc)


def _describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    where = f"{env_var_name(loc)} (config key {key})" if loc else key
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
    value = error.get("input")
    hidden = error["type"] in ("missing", "extra_forbidden") or _is_secret(loc)
    if isinstance(value, str) and _has_userinfo(value):
        hidden = True  # user:password@ in a URL
    shown = "" if hidden else value
    detail = f", got {shown!r}" if shown not in ("", None) and not isinstance(shown, dict) else ""
    return f"{where}: {message}{detail}"


def _is_secret(loc: tuple[str | int, ...]) -> bool:
    return any(is_secret_property(str(part)) or "credentials" in str(part) for part in loc)


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, every secret replaced by '**********'."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "**********"
        if isinstance(value, BaseModel):
            return {name: walk(getattr(value, name)) for name in type(value).model_fields}
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    result = walk(settings)
    assert isinstance(result, dict)
    return result


def iter_fields(
    model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, str, str]]:
    """Every leaf setting as (path, type, default, description); feeds docs/configuration.md."""
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from iter_fields(annotation, path)
            continue
        if field.default_factory is not None:
            default: Any = field.default_factory()  # type: ignore[call-arg]
        else:
            default = field.default
        shown_default = "" if default is None else _format_default(default)
        type_name = _type_name(annotation)
        yield path, type_name, shown_default, field.description or ""


def _format_default(value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value) if value else ""
    return str(value)


def _type_name(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    for noise in ("typing.", "pydantic.types.", "pathlib.", "<class '", "'>"):
        text = text.replace(noise, "")
    return text.replace("NoneType", "None")


def reference_markdown() -> str:
    """The configuration reference table of docs/configuration.md (a test keeps the two in sync)."""
    lines = [
        "| environment variable | config key | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for path, type_name, default, description in iter_fields():
        key = ".".join(path)
        shown = f"`{default}`" if default else ""
        cell = description.replace("|", "\\|")
        kind = type_name.replace("|", "\\|")
        lines.append(f"| `{env_var_name(path)}` | `{key}` | {kind} | {shown} | {cell} |")
    return "\n".join(lines) + "\n"
