"""The settings model: sources, precedence, every problem reported, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest

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
