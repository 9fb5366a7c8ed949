"""The command line: `aep-connector COMMAND`. Each command is one short function here that
loads what it needs and hands over to the module that does the work."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from connector import __version__
from connector.settings import ConfigError, Settings, load_settings, masked, reference_markdown

#: Exit status for an invalid configuration or mapping (as for a usage error).
EXIT_CONFIG = 2

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="AEP_CONNECTOR_CONFIG",
    help="YAML configuration file; environment variables override it.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aep-connector")
def main() -> None:
    """Stream Kafka topics into Adobe Experience Platform's streaming ingestion API."""


def load_or_exit(config_file: Path | None) -> Settings:
    """Load the configuration or print every problem and exit with status 2."""
    try:
        return load_settings(config_file)
    except ConfigError as exc:
        click.echo(f"invalid configuration ({len(exc.problems)} problem(s)):", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(EXIT_CONFIG)


@main.command(short_help="Validate the configuration and the mappings, then exit.")
@config_option
@click.option("--show", is_flag=True, help="Print the effective configuration, secrets masked.")
@click.option(
    "--reference", is_flag=True, help="Print the configuration reference (Markdown) and exit."
)
def check(config_file: Path | None, show: bool, reference: bool) -> None:
    """Validate the configuration and the mappings, then exit (0 valid, 2 invalid)."""
    if reference:
        click.echo(reference_markdown(), nl=False)
        return
    settings = load_or_exit(config_file)
    if show:
        click.echo(orjson.dumps(masked(settings), option=orjson.OPT_INDENT_2).decode())
    click.echo("configuration OK", err=True)


@main.command(short_help="Run the local emulator of the Platform streaming ingestion API.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8090, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The emulator's YAML configuration (see connector/emulator/README.md).",
)
def emulator(host: str, port: int, config_file: Path | None) -> None:
    """Serve the streaming collection API, the token endpoint and the /__emulator/ control API
    until interrupted (exit status 2 for an invalid configuration)."""
    from connector.emulator import EmulatorConfigError, create_app, load_config, serve

    try:
        app = create_app(load_config(config_file))
    except EmulatorConfigError as exc:
        click.echo(f"invalid emulator configuration ({len(exc.problems)} problem(s)):", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    serve(app, host, port)
