"""`aep-connector --help` lists `dlq`; each dlq command's help ends with examples that parse."""

from __future__ import annotations

import shlex

import click
import pytest

from connector.cli import dlq, main
from tests.test_cli import run_cli


def test_main_help_lists_dlq() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    commands = result.stdout.split("Commands:")[1]
    assert "  dlq " in commands


@pytest.mark.parametrize("command", ["inspect", "replay"])
def test_help_ends_with_examples_that_parse(command: str) -> None:
    result = run_cli("dlq", command, "--help")
    assert result.returncode == 0, result.stderr
    body, found, examples = result.stdout.rstrip().rpartition("Examples:\n")
    assert found
    assert "-h, --help" in body  # the examples come after the options
    lines = [line.strip() for line in examples.splitlines()]
    assert 1 <= len(lines) <= 2
    subcommand = dlq.commands[command]
    for line in lines:
        words = shlex.split(line)
        assert words[:3] == ["aep-connector", "dlq", command]
        # Parsing alone: every option exists and every value is valid.
        subcommand.make_context(command, words[3:], parent=click.Context(main))
