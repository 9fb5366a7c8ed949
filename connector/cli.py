"""The command line: `aep-connector COMMAND`. Each command is one short function here that
loads what it needs and hands over to the module that does the work."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

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
    check_mappings_or_exit(settings)


@main.command(short_help="Run the local emulator of the Platform streaming ingestion API.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8090, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The emulator's YAML configuration (see docs/emulator.md).",
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


@main.command(short_help="Run the worker: stream the mapped topics into the Platform.")
@config_option
def run(config_file: Path | None) -> None:
    """Consume the topics the mappings name, deliver to the API, commit after acknowledgement.

    Exit status: 0 after a clean stop (SIGTERM/SIGINT), 2 for an invalid configuration or
    mapping, 3 when the worker halted (see the last log line for why).
    """
    from connector.runner import run_worker

    settings = load_or_exit(config_file)
    sys.exit(run_worker(settings))


def check_mappings_or_exit(settings: Settings) -> None:
    """Compile every mapping of settings.mappings_dir; print every problem and exit 2 if any."""
    from connector.mapping import MappingLoadError
    from connector.runner import load_worker_mappings

    try:
        mappings = load_worker_mappings(settings)
    except MappingLoadError as exc:
        click.echo(f"invalid mappings ({len(exc.problems)} problem(s)):", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(f"mappings OK: {len(mappings)} in {settings.mappings_dir}", err=True)


@main.command("map", short_help="Map JSON lines through a mapping file; print envelopes.")
@click.argument("mapping_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("input_file", type=click.File("rb"), default="-", required=False)
@click.option("--entity-only", is_flag=True, help="Print only the XDM entity of each record.")
@config_option
def map_records(
    mapping_file: Path, input_file: BinaryIO, entity_only: bool, config_file: Path | None
) -> None:
    """Map records (JSON lines from INPUT_FILE, or stdin) with MAPPING_FILE and print one
    envelope per line (only the entity with --entity-only).

    Kafka metadata is simulated: _kafka.topic is the mapping's first topic, partition 0, the
    offset the line number - 1, no key, headers or timestamp. Bad lines and field warnings are
    reported on stderr with their line number. Exit status: 0 when every line mapped (or was
    skipped by the filter), 1 when any line failed, 2 for an invalid mapping or configuration.
    """
    import time

    from connector.mapping import (
        MappingFailure,
        MappingLoadError,
        TargetDefaults,
        load_mapping_file,
    )
    from connector.records import RecordMeta

    settings = load_or_exit(config_file)
    defaults = TargetDefaults(settings.platform.connection_id, settings.platform.ims_org_id)
    try:
        mapping = load_mapping_file(mapping_file, defaults)
    except MappingLoadError as exc:
        click.echo(f"invalid mapping ({len(exc.problems)} problem(s)):", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    topic = mapping.source_topics[0] if mapping.source_topics else ""
    out = sys.stdout.buffer
    failed = 0
    for number, line in enumerate(input_file, start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            click.echo(f"line {number}: not valid JSON: {exc}", err=True)
            failed += 1
            continue
        meta = RecordMeta(topic, 0, number - 1, None, None, {})
        try:
            result = mapping.apply(value, meta)
        except MappingFailure as exc:
            click.echo(f"line {number}: {exc}", err=True)
            failed += 1
            continue
        for warning in result.warnings:
            click.echo(f"line {number}: warning: {warning}", err=True)
        if result.entity is None:
            click.echo(f"line {number}: skipped by the filter", err=True)
            continue
        if entity_only:
            out.write(orjson.dumps(result.entity) + b"\n")
        else:
            out.write(mapping.envelope(result.entity, time.time_ns() // 1_000_000) + b"\n")
    out.flush()
    if failed:
        click.echo(f"{failed} line(s) failed", err=True)
        sys.exit(1)
