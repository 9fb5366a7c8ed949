"""`aep-connector --help` lists `dlq` (its commands' examples: tests/test_cli.py)."""

from __future__ import annotations

from tests.test_cli import run_cli


def test_main_help_lists_dlq() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    commands = result.stdout.split("Commands:")[1]
    assert "  dlq " in commands
