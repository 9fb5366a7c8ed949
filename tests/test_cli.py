"""The command line as a user runs it: a real process, real environment variables."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import click
import orjson
import pytest

from connector import __version__
from connector.cli import main
from connector.settings import reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AEP_CONNECTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_help_describes_every_command_in_one_line() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    commands = result.stdout.split("Commands:")[1].split("Examples:")[0].strip().splitlines()
    assert commands, result.stdout
    for line in commands:
        name, _, summary = line.strip().partition(" ")
        assert summary.strip(), f"command {name} has no one-line description"


def test_check_names_the_bad_variable_and_exits_2() -> None:
    result = run_cli("check", env={"AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES": "one-megabyte"})
    assert result.returncode == 2
    assert "AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES" in result.stderr
    assert "one-megabyte" in result.stderr


EXAMPLES = str(README.parent / "mappings" / "examples")


def test_check_passes_with_a_valid_environment() -> None:
    result = run_cli(
        "check",
        env={
            "AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES": "900000",
            "AEP_CONNECTOR_MAPPINGS_DIR": EXAMPLES,
            "AEP_CONNECTOR_PLATFORM__CONNECTION_ID": "inlet-1",
        },
    )
    assert result.returncode == 0, result.stderr


def test_check_refuses_an_empty_mappings_directory(tmp_path: Path) -> None:
    result = run_cli("check", env={"AEP_CONNECTOR_MAPPINGS_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "no mapping files" in result.stderr


def test_check_show_masks_secrets() -> None:
    result = run_cli(
        "check",
        "--show",
        env={
            "AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_ID": "my-client",
            "AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_SECRET": "p4ssw0rd-value",
            "AEP_CONNECTOR_MAPPINGS_DIR": EXAMPLES,
            "AEP_CONNECTOR_PLATFORM__CONNECTION_ID": "inlet-1",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "p4ssw0rd-value" not in result.stdout + result.stderr
    shown = orjson.loads(result.stdout)
    assert shown["platform"]["auth"]["client_id"] == "my-client"
    assert shown["platform"]["auth"]["client_secret"] == "**********"


def test_configuration_reference_is_current() -> None:
    text = (README.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert reference_markdown() in text, (
        "docs/configuration.md's reference is stale: run scripts/update-generated (it writes "
        "the output of `aep-connector check --reference` there)"
    )


# ---------------------------------------------------------------------------- secrets (issue 11)

SECRET = "Zq8-never-printed"
VALID = {"AEP_CONNECTOR_MAPPINGS_DIR": EXAMPLES, "AEP_CONNECTOR_PLATFORM__CONNECTION_ID": "i-1"}


def test_check_names_a_misspelt_librdkafka_property_and_exits_2() -> None:
    env = {**VALID, "AEP_CONNECTOR_KAFKA__PROPERTIES": '{"security.protcol": "SASL_SSL"}'}
    result = run_cli("check", env=env)
    assert result.returncode == 2, result.stderr
    assert 'No such configuration property: "security.protcol"' in result.stderr
    assert "configuration OK" not in result.stderr


def test_run_refuses_a_misspelt_librdkafka_property_without_a_traceback() -> None:
    env = {**VALID, "AEP_CONNECTOR_KAFKA__PROPERTIES": '{"security.protcol": "SASL_SSL"}'}
    result = run_cli("run", env=env)
    assert result.returncode == 2, result.stderr
    assert "security.protcol" in result.stderr
    assert "Traceback" not in result.stderr


def test_librdkafka_value_errors_never_quote_a_secret() -> None:
    env = {
        **VALID,
        "AEP_CONNECTOR_KAFKA__PROPERTIES": '{"security.protocol": "SASL_SSL"}',
        # librdkafka quotes an invalid value: here the secret one.
        "AEP_CONNECTOR_KAFKA__SECRET_PROPERTIES": f'{{"sasl.mechanism": "{SECRET}"}}',
    }
    result = run_cli("check", env=env)
    assert result.returncode == 2, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "**********" in result.stderr


def test_check_refuses_a_certificate_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "kafka-ca.pem"
    env = {
        **VALID,
        "AEP_CONNECTOR_KAFKA__PROPERTIES": orjson.dumps(
            {"security.protocol": "SSL", "ssl.ca.location": str(missing)}
        ).decode(),
    }
    result = run_cli("check", env=env)
    assert result.returncode == 2, result.stderr
    assert "ssl.ca.location" in result.stderr


def test_check_refuses_an_unknown_schema_registry_property() -> None:
    env = {
        **VALID,
        "AEP_CONNECTOR_KAFKA__SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081",
        "AEP_CONNECTOR_KAFKA__SCHEMA_REGISTRY_PROPERTIES": '{"basic.auth.credentials.source": "X"}',
    }
    result = run_cli("check", env=env)
    assert result.returncode == 2, result.stderr
    assert "Unrecognized properties: basic.auth.credentials.source" in result.stderr


def test_yaml_error_in_the_config_file_never_echoes_the_secret(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f'platform:\n  auth:\n    client_id: abc\n    client_secret: "{SECRET}\n')
    result = run_cli("check", "--show", "--config", str(config), env=VALID)
    assert result.returncode == 2
    assert SECRET not in result.stdout + result.stderr
    assert f"{config}: not valid YAML at line 5, column 1 (key platform.auth" in result.stderr


def test_secret_in_plain_properties_is_refused_and_never_printed() -> None:
    env = {**VALID, "AEP_CONNECTOR_KAFKA__PROPERTIES": f'{{"sasl.password": "{SECRET}"}}'}
    result = run_cli("check", "--show", env=env)
    assert result.returncode == 2
    assert SECRET not in result.stdout + result.stderr
    assert "sasl.password holds a secret: set it in kafka.secret_properties" in result.stderr


def test_credentials_over_plain_http_are_refused() -> None:
    env = {
        **VALID,
        "AEP_CONNECTOR_PLATFORM__BASE_URL": "http://dcs.example.com",
        "AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_ID": "my-client",
        "AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_SECRET": SECRET,
    }
    result = run_cli("check", env=env)
    assert result.returncode == 2
    assert "base_url is plain http:// to another host while credentials are configured" in (
        result.stderr
    )
    assert SECRET not in result.stdout + result.stderr


INSECURE = {
    "AEP_CONNECTOR_KAFKA__PROPERTIES": '{"enable.ssl.certificate.verification": "false"}',
    "AEP_CONNECTOR_PLATFORM__TRANSPORT__VERIFY_CERTIFICATES": "false",
}


def test_check_warns_loudly_when_certificate_verification_is_off() -> None:
    result = run_cli("check", env={**VALID, **INSECURE})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "INSECURE" in line]
    assert len(warnings) == 2, result.stderr
    assert "enable.ssl.certificate.verification=false" in warnings[0]
    assert "platform.transport.verify_certificates is false" in warnings[1]
    quiet = run_cli("check", env=VALID)
    assert "INSECURE" not in quiet.stderr


def test_run_logs_the_warning_at_start() -> None:
    import signal
    import time

    base = {k: v for k, v in os.environ.items() if not k.startswith("AEP_CONNECTOR_")}
    env = {
        **base,
        **VALID,
        **INSECURE,
        "AEP_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens: it waits
        "AEP_CONNECTOR_OPS__PORT": "0",
        "AEP_CONNECTOR_OPS__HOST": "127.0.0.1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "run"],
        env=env,
        stdout=subprocess.PIPE,  # the logs
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "platform.transport.verify_certificates" in line:
                break
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    warnings = [orjson.loads(line) for line in lines if "INSECURE" in line]
    assert [w["level"] for w in warnings] == ["warning", "warning"], lines


# ---------------------------------------------------------------------------- help (issue 14)


def all_commands() -> list[list[str]]:
    """Every command path: [], ["check"], ..., ["dlq", "inspect"], ..."""
    paths: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])

    walk(main, [])
    return paths


def unparsed(context: click.Context) -> list[str]:
    """A group's words left for its subcommand (Click 8: `protected_args` then `args`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*getattr(context, "protected_args", []), *context.args]


def parse_command_line(words: list[str]) -> None:
    """Parse (never run) `aep-connector ...` as the CLI would: every option and value valid."""
    assert words[0] == "aep-connector", words
    command: click.Command = main
    context = main.make_context("aep-connector", words[1:])
    while isinstance(command, click.Group) and unparsed(context):
        name, sub, rest = command.resolve_command(context, unparsed(context))
        assert sub is not None
        assert name is not None
        command, context = sub, sub.make_context(name, rest, parent=context)


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "aep-connector")
def test_every_help_ends_with_examples_that_parse(
    path: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(README.parent)  # the examples name the example mappings
    result = run_cli(*path, "--help")
    assert result.returncode == 0, result.stderr
    body, found, examples = result.stdout.rstrip().rpartition("Examples:\n")
    assert found, f"aep-connector {' '.join(path)} --help has no examples"
    assert "-h, --help" in body  # after the options
    lines = [line.strip() for line in examples.splitlines()]
    assert 1 <= len(lines) <= 2
    for line in lines:
        for part in line.split("&&"):
            words = shlex.split(part)
            while "=" in words[0]:  # VAR=value before the command
                words.pop(0)
            assert words[1 : 1 + len(path)] == path, line
            parse_command_line(words)
