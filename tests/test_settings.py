"""The settings model: sources, precedence, every problem reported, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connector.settings import (
    API_MAX_REQUEST_BYTES,
    ConfigError,
    Settings,
    env_var_name,
    load_settings,
    masked,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from an environment without any connector variable."""
    import os

    for name in list(os.environ):
        if name.startswith("AEP_CONNECTOR_"):
            monkeypatch.delenv(name)


def test_defaults_are_valid_and_under_the_api_limit() -> None:
    settings = load_settings()
    framing = len(b'{"messages":[]}')
    assert settings.batching.max_request_bytes + framing < API_MAX_REQUEST_BYTES
    assert settings.platform.auth.enabled is False


def test_environment_nested_with_double_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES", "500000")
    monkeypatch.setenv("AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_ID", "cid")
    monkeypatch.setenv("AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_SECRET", "s3cr3t")
    monkeypatch.setenv("AEP_CONNECTOR_KAFKA__PROPERTIES", '{"security.protocol": "SSL"}')
    settings = load_settings()
    assert settings.batching.max_request_bytes == 500_000
    assert settings.platform.auth.enabled
    assert settings.platform.auth.client_secret is not None
    assert settings.platform.auth.client_secret.get_secret_value() == "s3cr3t"
    assert settings.kafka.properties == {"security.protocol": "SSL"}


def test_yaml_file_with_environment_taking_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("batching:\n  max_records: 7\n  linger_ms: 9\nmappings_dir: /m\n")
    monkeypatch.setenv("AEP_CONNECTOR_BATCHING__LINGER_MS", "11")
    settings = load_settings(config)
    assert settings.batching.max_records == 7
    assert settings.batching.linger_ms == 11
    assert settings.mappings_dir == Path("/m")


def test_every_problem_is_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES", "lots")
    monkeypatch.setenv("AEP_CONNECTOR_OPS__PORT", "70000")
    monkeypatch.setenv("AEP_CONNECTOR_KAFKA__PROPERTIES", "{not json")
    config = tmp_path / "config.yaml"
    config.write_text("batching:\n  linger: 5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    text = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 4, text
    assert "AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES" in text
    assert "'lots'" in text
    assert "AEP_CONNECTOR_OPS__PORT" in text
    assert "AEP_CONNECTOR_KAFKA__PROPERTIES" in text
    assert "not valid JSON" in text
    assert "(config key batching.linger): unknown setting" in text


def test_secret_without_id_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_SECRET", "hunter2")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "client_id and client_secret must be set together" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_unreadable_or_malformed_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("batching: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(scalar)


def test_masked_hides_every_secret() -> None:
    settings = Settings(
        platform={"auth": {"client_id": "id", "client_secret": "topsecret"}},
        kafka={"secret_properties": {"sasl.password": "kafkapass"}},
    )
    shown = repr(masked(settings))
    assert "topsecret" not in shown
    assert "kafkapass" not in shown
    assert "**********" in shown
    assert "topsecret" not in repr(settings)


def test_env_var_name() -> None:
    assert env_var_name(("batching", "max_request_bytes")) == (
        "AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES"
    )


# ---------------------------------------------------------------------------- secrets (issue 11)

CLIENT_SECRET = "Zq8-not-in-any-message"


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        # An unclosed quote: PyYAML's message quotes the line, secret and all.
        (f'platform:\n  auth:\n    client_id: abc\n    client_secret: "{CLIENT_SECRET}\n', 5, 1),
        # A colon in an unquoted value.
        (f"platform:\n  auth:\n    client_id: abc\n    client_secret: a: {CLIENT_SECRET}\n", 4, 21),
        # A tab where YAML allows none.
        (f"platform:\n  auth:\n    client_secret: {CLIENT_SECRET}\n\tclient_id: x\n", 4, 1),
    ],
)
def test_yaml_syntax_error_gives_line_column_and_key_never_the_text(
    tmp_path: Path, text: str, line: int, column: int
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    (problem,) = caught.value.problems
    assert CLIENT_SECRET not in problem
    assert CLIENT_SECRET[:6] not in problem
    assert f"not valid YAML at line {line}, column {column}" in problem
    assert "(key platform.auth." in problem


@hypothesis_settings(max_examples=150, deadline=None)
@given(
    secret=st.text(
        st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="'\"#"),
        min_size=8,
        max_size=40,
    ),
    breakage=st.sampled_from(['"{}', "'{}", "{}: x", "[{}", "{{{}", "{}\n\tx: y", "{}\n  - x"]),
)
def test_no_yaml_error_quotes_a_secret(
    tmp_path_factory: pytest.TempPathFactory, secret: str, breakage: str
) -> None:
    config = tmp_path_factory.mktemp("yaml") / "config.yaml"
    value = breakage.format(secret)
    config.write_text(f"platform:\n  auth:\n    client_id: abc\n    client_secret: {value}\n")
    problems: list[str] = []
    try:
        load_settings(config)
    except ConfigError as exc:  # nearly always: invalid YAML, or a value that is no string
        problems = exc.problems
    assert secret not in "\n".join(problems)


def test_yaml_key_path_follows_indentation() -> None:
    from connector.settings import _yaml_key_at

    lines = [
        "kafka:",
        "  properties:",
        "    security.protocol: SSL",
        "  group_id: g",
        "platform:",
        "  auth:",
        "    scopes:",
        "      - openid",
    ]
    assert _yaml_key_at(lines, 2) == "kafka.properties.security.protocol"
    assert _yaml_key_at(lines, 3) == "kafka.group_id"
    assert _yaml_key_at(lines, 7) == "platform.auth.scopes"


#: Every librdkafka property whose value is a secret (librdkafka's CONFIGURATION.md).
LIBRDKAFKA_SECRETS = [
    "sasl.password",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.pem",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.config",
]
#: Neighbours that are not secret and stay allowed in plain properties.
LIBRDKAFKA_PLAIN = [
    "sasl.username",
    "sasl.mechanism",
    "ssl.key.location",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.keystore.location",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.token.endpoint.url",
]


@pytest.mark.parametrize("key", LIBRDKAFKA_SECRETS)
def test_secret_librdkafka_keys_are_refused_in_plain_properties(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEP_CONNECTOR_KAFKA__PROPERTIES", f'{{"{key}": "{CLIENT_SECRET}"}}')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    (problem,) = caught.value.problems
    assert CLIENT_SECRET not in problem
    assert key in problem
    assert "kafka.secret_properties" in problem
    assert "AEP_CONNECTOR_KAFKA__SECRET_PROPERTIES" in problem
    # Where it belongs it is accepted, and never shown.
    monkeypatch.delenv("AEP_CONNECTOR_KAFKA__PROPERTIES")
    monkeypatch.setenv("AEP_CONNECTOR_KAFKA__SECRET_PROPERTIES", f'{{"{key}": "{CLIENT_SECRET}"}}')
    assert CLIENT_SECRET not in repr(masked(load_settings()))


def test_plain_librdkafka_keys_are_accepted() -> None:
    properties = {key: "value" for key in LIBRDKAFKA_PLAIN}
    assert Settings(kafka={"properties": properties}).kafka.properties == properties


@pytest.mark.parametrize("key", ["basic.auth.user.info", "bearer.auth.token", "ssl.key.password"])
def test_secret_registry_keys_are_refused_in_plain_registry_properties(key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(kafka={"schema_registry_properties": {key: CLIENT_SECRET}})
    text = str(caught.value)
    assert "schema_registry_secret_properties" in text
    assert key in text
    Settings(kafka={"schema_registry_secret_properties": {key: CLIENT_SECRET}})


def test_credentials_in_urls_are_refused_without_quoting_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "AEP_CONNECTOR_KAFKA__SCHEMA_REGISTRY_URL", f"https://reg:{CLIENT_SECRET}@registry:8081"
    )
    monkeypatch.setenv(
        "AEP_CONNECTOR_PLATFORM__TRANSPORT__PROXY_URL", f"http://svc:{CLIENT_SECRET}@proxy:3128"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 2, text
    assert CLIENT_SECRET not in text
    assert "basic.auth.user.info in schema_registry_secret_properties" in text
    assert "platform.transport.proxy_credentials" in text


def test_insecure_tls_properties_are_found() -> None:
    assert Settings().kafka.insecure_tls() == []
    kafka = Settings(
        kafka={
            "properties": {
                "enable.ssl.certificate.verification": "false",
                "ssl.endpoint.identification.algorithm": "none",
            }
        }
    ).kafka
    assert kafka.insecure_tls() == [
        "enable.ssl.certificate.verification=false",
        "ssl.endpoint.identification.algorithm=none",
    ]


# ---------------------------------------------------------------------------- API transport


AUTH = {"client_id": "id", "client_secret": CLIENT_SECRET}


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8090", "http://localhost:8090", "http://[::1]:8090", "http://127.0.0.9"],
)
def test_credentials_over_plain_http_to_loopback_are_accepted(base_url: str) -> None:
    auth = {**AUTH, "token_url": base_url + "/ims/token/v3"}
    assert Settings(platform={"base_url": base_url, "auth": auth}).platform.auth.enabled


@pytest.mark.parametrize(
    ("platform", "named"),
    [
        ({"base_url": "http://dcs.example.com", "auth": AUTH}, "base_url"),
        ({"base_url": "http://10.0.0.5:8090", "auth": AUTH}, "base_url"),
        ({"auth": {**AUTH, "token_url": "http://ims.example.com/token"}}, "auth.token_url"),
        (
            {"base_url": "http://gateway.internal", "extra_headers": {"Authorization": "x"}},
            "base_url",
        ),
    ],
)
def test_credentials_over_plain_http_to_other_hosts_are_refused(
    platform: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(platform=platform)
    text = str(caught.value)
    assert f"{named} is plain http://" in text
    assert CLIENT_SECRET not in text


def test_plain_http_without_credentials_is_accepted() -> None:
    """docker compose's emulator is `http://emulator:8090`, without credentials."""
    Settings(platform={"base_url": "http://emulator:8090"})


def test_transport_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = "AEP_CONNECTOR_PLATFORM__TRANSPORT__"
    monkeypatch.setenv(prefix + "CA_BUNDLE", "/etc/ca.pem")
    monkeypatch.setenv(prefix + "CLIENT_CERTIFICATE", "/etc/client.pem")
    monkeypatch.setenv(prefix + "CLIENT_KEY_PASSWORD", CLIENT_SECRET)
    monkeypatch.setenv(prefix + "PROXY_URL", "http://proxy:3128")
    monkeypatch.setenv(prefix + "PROXY_CREDENTIALS", f"svc:{CLIENT_SECRET}")
    transport = load_settings().platform.transport
    assert transport.ca_bundle == Path("/etc/ca.pem")
    assert transport.client_certificate == Path("/etc/client.pem")
    assert transport.proxy_url == "http://proxy:3128"
    assert transport.verify_certificates is True
    assert CLIENT_SECRET not in repr(masked(load_settings()))


@pytest.mark.parametrize(
    ("transport", "complaint"),
    [
        ({"client_key": "/k.pem"}, "need client_certificate"),
        ({"client_key_password": "x"}, "need client_certificate"),
        ({"proxy_credentials": "svc:pw"}, "proxy_credentials needs proxy_url"),
        ({"proxy_url": "http://p:1", "proxy_credentials": "no-colon"}, "must be user:password"),
        ({"proxy_url": "socks5://p:1"}, "must be http://host:port"),
    ],
)
def test_transport_settings_that_do_not_fit_together(
    transport: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(platform={"transport": transport})
