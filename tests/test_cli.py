"""The command line as a user runs it: a real process, real environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from connector import __version__
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
    commands = result.stdout.split("Commands:")[1].strip().splitlines()
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


def test_readme_configuration_reference_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert reference_markdown() in text, (
        "README's configuration reference is stale: replace it with the output of "
        "`aep-connector check --reference`"
    )
