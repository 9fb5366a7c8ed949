"""The command line: `aep-connector COMMAND`. Each command is one short function here that
loads what it needs and hands over to the module that does the work."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, get_args

import click
import orjson

from connector import __version__
from connector.errors import Stage
from connector.settings import ConfigError, Settings, load_settings, masked, reference_markdown

if TYPE_CHECKING:
    from connector.dlq.selection import Selection
    from connector.mapping import CompiledMapping

#: Exit status for an invalid configuration or mapping (as for a usage error).
EXIT_CONFIG = 2

_Client = TypeVar("_Client")

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="AEP_CONNECTOR_CONFIG",
    help="YAML configuration file; environment variables override it.",
)


def examples(*lines: str) -> str:
    """A help epilog listing example command lines, kept unwrapped."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=examples(
        "aep-connector check --config config.yaml && aep-connector run --config config.yaml",
        "aep-connector map mappings/examples/web-commerce.yaml "
        "mappings/examples/web-commerce.input.jsonl",
    ),
)
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


@main.command(
    short_help="Validate the configuration and the mappings, then exit.",
    epilog=examples(
        "aep-connector check --config config.yaml",
        "AEP_CONNECTOR_MAPPINGS_DIR=mappings/examples aep-connector check --show",
    ),
)
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
    check_clients_or_exit(settings)
    from connector.preflight import security_warnings

    for warning in security_warnings(settings):
        click.echo(f"warning: {warning}", err=True)
    click.echo("configuration OK", err=True)
    check_mappings_or_exit(settings)


def check_clients_or_exit(settings: Settings) -> None:
    """Build the Kafka, schema-registry and API clients without connecting; print every
    problem and exit 2 if any (a misspelt librdkafka property, an unreadable certificate)."""
    from connector.preflight import client_problems

    problems = client_problems(settings)
    if problems:
        click.echo(f"invalid client configuration ({len(problems)} problem(s)):", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(EXIT_CONFIG)


@main.command(
    short_help="Run the local emulator of the Platform streaming ingestion API.",
    epilog=examples(
        "aep-connector emulator --port 8090",
        "aep-connector emulator --host 0.0.0.0 --port 8090 --config emulator.yaml",
    ),
)
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


@main.command(
    short_help="Run the worker: stream the mapped topics into the Platform.",
    epilog=examples(
        "aep-connector run --config config.yaml",
        "AEP_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 AEP_CONNECTOR_MAPPINGS_DIR=mappings "
        "aep-connector run",
    ),
)
@config_option
def run(config_file: Path | None) -> None:
    """Consume the topics the mappings name, deliver to the API, commit after acknowledgement.

    Exit status: 0 after a clean stop (SIGTERM/SIGINT), 2 for an invalid configuration or
    mapping, 3 when the worker halted (see the last log line for why).
    """
    from connector.runner import run_worker

    settings = load_or_exit(config_file)
    check_clients_or_exit(settings)
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
    for mapping in mappings:
        for warning in mapping.validator.warnings if mapping.validator else ():
            click.echo(f"warning: {mapping.path}: {warning}", err=True)
    click.echo(f"mappings OK: {len(mappings)} in {settings.mappings_dir}", err=True)


@main.command(
    "map",
    short_help="Map JSON lines or live topic records; print envelopes.",
    epilog=examples(
        "aep-connector map mappings/examples/crm-profile.yaml "
        "mappings/examples/crm-profile.input.jsonl --entity-only",
        "aep-connector map mappings/examples/web-commerce.yaml --from-topic --config config.yaml "
        "--partition 3 --offset 1200 --records 5",
    ),
)
@click.argument("mapping_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("input_file", type=click.File("rb"), default="-", required=False)
@click.option("--entity-only", is_flag=True, help="Print only the XDM entity of each record.")
@click.option(
    "--explain", is_flag=True, help="Print the Python source the mapping compiles to, and exit."
)
@click.option(
    "--from-topic",
    is_flag=True,
    help="Read live records of the mapping's topic with the worker's decoder instead of JSON "
    "lines; joins no consumer group, commits nothing, sends nothing (docs/preview.md).",
)
@click.option(
    "--records",
    type=click.IntRange(1, 10_000),
    help="With --from-topic: how many records to read (default 10).",
)
@click.option(
    "--partition",
    type=click.IntRange(min=0),
    help="With --from-topic: read this partition only (its last records, or from --offset).",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    help="With --from-topic and --partition: the first offset to read.",
)
@click.option(
    "--topic",
    help="With --from-topic: the topic to read, when the mapping reads several or a pattern.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="With --from-topic: give up after this many seconds without progress.",
)
@config_option
def map_records(
    mapping_file: Path,
    input_file: BinaryIO,
    entity_only: bool,
    explain: bool,
    from_topic: bool,
    records: int | None,
    partition: int | None,
    offset: int | None,
    topic: str | None,
    timeout: float,
    config_file: Path | None,
) -> None:
    """Map records (JSON lines from INPUT_FILE, or stdin) with MAPPING_FILE and print one
    envelope per line (only the entity with --entity-only). With --explain, print the
    generated Python function the mapping runs as, and exit.

    A raw mapping (`target.mode: raw`) prints each record as it would be sent, and names the
    endpoint and the x-adobe-flow-id header on stderr.

    Kafka metadata is simulated: _kafka.topic is the mapping's first topic, partition 0, the
    offset the line number - 1, no key, headers or timestamp. Bad lines, field warnings and
    entities that break the mapping's XDM schema (`validate`) are reported on stderr with their
    line number. Exit status: 0 when every line mapped (or was skipped by the filter), 1 when
    any line failed, 2 for an invalid mapping or configuration.

    With --from-topic, records are read from the mapping's topic (--config for the brokers and
    the schema registry) and go through the worker's own decode, map, validate and envelope
    steps: stdout gets what the worker would send, stderr one line per record with its
    partition and offset, its field warnings and dead-letter reasons. Default: the 10 newest
    records of the topic. Exit status: 0 when nothing would be dead-lettered, 1 when something
    would, 2 for an invalid mapping, configuration or option, 3 when the topic or the schema
    registry could not be read.
    """
    preview_options = {"--records": records, "--partition": partition, "--offset": offset}
    given = [name for name, value in preview_options.items() if value is not None]
    given += ["--topic"] if topic is not None else []
    if not from_topic and given:
        raise click.UsageError(f"{', '.join(given)} go(es) with --from-topic")
    if from_topic and getattr(input_file, "name", "<stdin>") != "<stdin>":
        raise click.UsageError("--from-topic reads the topic: give no INPUT_FILE")
    if offset is not None and partition is None:
        raise click.UsageError("--offset needs --partition")
    import time

    from connector.mapping import (
        MappingFailure,
        MappingLoadError,
        TargetDefaults,
        load_mapping_file,
    )
    from connector.records import SourceRecord

    settings = load_or_exit(config_file)
    connection = settings.platform.connection_id
    if from_topic and connection is None:
        connection = "(preview)"  # nothing is sent: a mapping needs no connection to preview
    defaults = TargetDefaults(connection, settings.platform.ims_org_id)
    try:
        mapping = load_mapping_file(mapping_file, defaults, limits=settings.mapping.limits())
    except MappingLoadError as exc:
        click.echo(f"invalid mapping ({len(exc.problems)} problem(s)):", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    for notice in mapping.notices:
        click.echo(f"notice: {notice}", err=True)
    if explain:
        click.echo(mapping.source, nl=False)
        return
    validator = mapping.validator
    for warning in validator.warnings if validator else ():
        click.echo(f"warning: {mapping_file}: {warning}", err=True)
    if mapping.raw_flow_id is not None:
        inlet = mapping.connection_id or "<platform.connection_id>"
        click.echo(
            f"raw mode: each record below is POSTed alone to /collection/{inlet} with "
            f"x-adobe-flow-id: {mapping.raw_flow_id}",
            err=True,
        )
    if from_topic:
        sys.exit(
            preview_or_exit(
                settings, mapping, topic, records or 10, partition, offset, entity_only, timeout
            )
        )
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
        meta = SourceRecord(topic, 0, number - 1, None, None, line)
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
        violations = validator.violations(result.entity) if validator else []
        for violation in violations:  # the worker dead-letters such a record (stage validate)
            click.echo(f"line {number}: invalid XDM: {violation}", err=True)
        if violations:
            failed += 1
            continue
        try:
            if entity_only:
                encoded = orjson.dumps(result.entity)
            else:
                encoded = mapping.envelope(result.entity, time.time_ns() // 1_000_000)
        except (orjson.JSONEncodeError, TypeError, ValueError) as exc:
            click.echo(f"line {number}: the entity cannot be encoded: {exc}", err=True)
            failed += 1
            continue
        out.write(encoded + b"\n")
    out.flush()
    if failed:
        click.echo(f"{failed} line(s) failed", err=True)
        sys.exit(1)


def preview_or_exit(
    settings: Settings,
    mapping: CompiledMapping,
    topic: str | None,
    records: int,
    partition: int | None,
    offset: int | None,
    entity_only: bool,
    timeout: float,
) -> int:
    """`map --from-topic`: the exit status of the preview (connector/preview.py)."""
    from confluent_kafka import Consumer

    from connector.errors import HaltError
    from connector.preview import preview_config, run_preview

    if topic is not None and not mapping.matches(topic):
        raise click.BadParameter(
            f"mapping {mapping.name} does not read {topic}", param_hint="--topic"
        )
    if topic is None:
        if len(mapping.source_topics) != 1 or mapping.topic_pattern is not None:
            raise click.UsageError(
                f"mapping {mapping.name} reads several topics or a pattern: choose one with --topic"
            )
        topic = mapping.source_topics[0]
    consumer = kafka_client_or_exit(lambda: Consumer(preview_config(settings)))
    try:
        return run_preview(
            settings,
            mapping,
            topic,
            records,
            partition,
            offset,
            entity_only,
            timeout,
            consumer,
            sys.stdout.buffer,
            sys.stderr,
        )
    except HaltError as exc:  # what the worker would refuse too, e.g. Avro without a registry
        click.echo(f"map --from-topic: {exc}", err=True)
        return EXIT_CONFIG


# ---------------------------------------------------------------------------- dlq

#: `dlq` exit statuses besides 0 and EXIT_CONFIG (docs/dead-letters.md).
EXIT_DLQ_REFUSED = 1  # replay: some selected letters were refused
EXIT_DLQ_KAFKA = 3  # the topic is missing, the brokers failed, or a transaction failed
EXIT_DLQ_INTERRUPTED = 4  # replay: stopped by SIGINT/SIGTERM; the same command resumes


@main.group(
    short_help="Inspect the dead-letter topic; replay chosen dead letters.",
    epilog=examples(
        "aep-connector dlq inspect --config config.yaml",
        "aep-connector dlq replay --config config.yaml --stage api --dry-run",
    ),
)
def dlq() -> None:
    """Inspect the dead-letter topic and replay chosen dead letters to their topics.

    Both read the worker's configuration (--config and AEP_CONNECTOR_* variables) for the
    Kafka connection and the topic name.

    \b
    More in docs/dead-letters.md: the headers, both commands, the replay guarantees.
    """


def selection_options(command: Callable[..., None]) -> Callable[..., None]:
    """The filters shared by `dlq inspect` and `dlq replay`."""
    options = [
        click.option(
            "--topic",
            help="Dead-letter topic to read (default: dead_letter.topic of the configuration).",
        ),
        click.option(
            "--stage",
            "stages",
            multiple=True,
            type=click.Choice(get_args(Stage)),
            help="Only letters of this stage (repeatable).",
        ),
        click.option(
            "--class",
            "error_classes",
            multiple=True,
            metavar="CLASS",
            help="Only letters of this error class, e.g. api_rejected (repeatable).",
        ),
        click.option(
            "--source-topic",
            "source_topics",
            multiple=True,
            metavar="TOPIC",
            help="Only letters from this topic (repeatable).",
        ),
        click.option(
            "--mapping",
            "mappings",
            multiple=True,
            help="Only letters of this mapping (repeatable).",
        ),
        click.option(
            "--since",
            metavar="TIME",
            help="Only letters dead-lettered at or after TIME: ISO 8601 (UTC unless a zone is "
            "given) or a duration ago (90s, 15m, 2h, 7d).",
        ),
        click.option("--until", metavar="TIME", help="Only letters dead-lettered before TIME."),
        click.option(
            "--offsets",
            multiple=True,
            metavar="[P:]FIRST-LAST",
            help="Only letters at these offsets of the dead-letter topic, ends inclusive and "
            "optional (0:100-199, 0:100-, -99, 2:42; repeatable).",
        ),
        click.option(
            "--source-offsets",
            multiple=True,
            metavar="[P:]FIRST-LAST",
            help="Only letters whose original record was at these offsets (repeatable).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def kafka_client_or_exit(make: Callable[[], _Client]) -> _Client:
    """Create Kafka clients; librdkafka refuses bad properties at once: exit 2 saying which."""
    from confluent_kafka import KafkaException

    try:
        return make()
    except KafkaException as exc:
        click.echo(f"invalid Kafka client configuration: {exc.args[0].str()}", err=True)
        sys.exit(EXIT_CONFIG)


def build_selection(filters: dict[str, Any]) -> Selection:
    """The Selection the filter options describe; a usage error (exit 2) when one is bad."""
    import time

    from connector.dlq.selection import Selection, parse_offset_range, parse_time

    now_ms = time.time_ns() // 1_000_000

    def parsed(name: str, parse: Callable[[str], Any], text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=f"--{name}") from None

    def moment(name: str) -> int | None:
        text = filters[name]
        return None if text is None else parsed(name, lambda t: parse_time(t, now_ms), text)

    return Selection(
        stages=frozenset(filters["stages"]),
        error_classes=frozenset(filters["error_classes"]),
        source_topics=frozenset(filters["source_topics"]),
        mappings=frozenset(filters["mappings"]),
        since_ms=moment("since"),
        until_ms=moment("until"),
        offsets=tuple(parsed("offsets", parse_offset_range, t) for t in filters["offsets"]),
        source_offsets=tuple(
            parsed("source-offsets", parse_offset_range, t) for t in filters["source_offsets"]
        ),
    )


@dlq.command(
    "inspect",
    short_help="Summarise the dead-letter topic (no payloads by default).",
    epilog=examples(
        "aep-connector dlq inspect --config config.yaml",
        "aep-connector dlq inspect --stage api --since 2h --show-payloads --limit 5",
    ),
)
@config_option
@selection_options
@click.option(
    "--show-payloads",
    is_flag=True,
    help="Also print every selected letter (key, value, all headers) as a JSON line.",
)
@click.option(
    "--limit", type=click.IntRange(min=0), help="With --show-payloads: at most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def dlq_inspect(
    config_file: Path | None,
    topic: str | None,
    show_payloads: bool,
    limit: int | None,
    as_json: bool,
    **filters: Any,
) -> None:
    """Read the whole dead-letter topic and summarise the selected letters: counts by stage,
    error class, source topic and mapping; per combination of those the first and last
    dead-letter time, offsets and a sample reason (the error message header, which may quote
    field values). Payloads are printed only with --show-payloads, as JSON lines before the
    summary. Joins no consumer group and commits nothing.

    Exit status: 0 done, 2 invalid configuration or option, 3 Kafka failure (topic missing,
    brokers unreachable).
    """
    import uuid

    from connector.dlq.letter import StoredLetter
    from connector.dlq.reader import DeadLetterTopicError, open_reader
    from connector.dlq.summary import payload_line, render_text, summarize

    settings = load_or_exit(config_file)
    selection = build_selection(filters)
    topic = topic or settings.dead_letter.topic
    out = sys.stdout.buffer
    shown = 0

    def show(letter: StoredLetter) -> None:
        nonlocal shown
        if show_payloads and (limit is None or shown < limit):
            out.write(payload_line(letter) + b"\n")
            shown += 1

    # A group id of its own, never used to join or commit: librdkafka requires one.
    group = f"{settings.kafka.client_id}-dlq-inspect-{uuid.uuid4()}"
    reader = kafka_client_or_exit(lambda: open_reader(settings, topic, group))
    try:
        summary = summarize(topic, reader.read(reader.spans(), 1000), selection, show)
    except DeadLetterTopicError as exc:
        click.echo(f"dlq inspect: {exc}", err=True)
        sys.exit(EXIT_DLQ_KAFKA)
    finally:
        reader.close()
    out.flush()
    if as_json:
        click.echo(orjson.dumps(summary.as_dict()).decode())
    else:
        click.echo(render_text(summary, selection.describe()), nl=False)


@dlq.command(
    "replay",
    short_help="Re-produce chosen dead letters to their original topics.",
    epilog=examples(
        "aep-connector dlq replay --config config.yaml --stage api --since 2024-05-01 --dry-run",
        "aep-connector dlq replay --config config.yaml --class api_rejected --mapping orders",
    ),
)
@config_option
@selection_options
@click.option(
    "--to-topic", help="Produce every replayed letter to this topic instead of its original one."
)
@click.option(
    "--group",
    help="Replay consumer group: its committed offsets on the dead-letter topic say what was "
    "replayed (default: replay.group_id, else <kafka.group_id>-dlq-replay).",
)
@click.option(
    "--max-replays",
    type=click.IntRange(min=0),
    help="Refuse letters already replayed this many times (default: replay.max_replays).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    help="Letters per transaction (default: replay.batch_size).",
)
@click.option(
    "--max-rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Replay at most this many letters per second.",
)
@click.option(
    "--keep-timestamps",
    is_flag=True,
    help="Give replayed records their original timestamps (default: the replay's). Records "
    "older than the target topic's retention are then deleted at its next retention check.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; produce nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON.")
def dlq_replay(
    config_file: Path | None,
    topic: str | None,
    to_topic: str | None,
    group: str | None,
    max_replays: int | None,
    batch_size: int | None,
    max_rate: float | None,
    keep_timestamps: bool,
    dry_run: bool,
    as_json: bool,
    **filters: Any,
) -> None:
    """Re-produce the selected dead letters to their original topic (the source.topic header)
    and partition, or to --to-topic: original key, value and headers, without the worker's
    aep.dlq.* headers, with aep.replay.count incremented. Reads from the replay
    group's committed offsets to the end of the topic as it was at the start; each batch's
    records and offsets are committed in one Kafka transaction, so an interrupted replay
    resumes where it stopped and replays nothing twice. Every letter read counts as done for
    the group, selected or not: use another --group to read the topic again. Progress goes to
    stderr, the report to stdout.

    Exit status: 0 done, 1 done but letters were refused (replay limit, no source topic),
    2 invalid configuration or option, 3 Kafka failure (nothing past the last committed batch
    was committed; run again to resume), 4 interrupted by SIGINT/SIGTERM (run again to resume).
    """
    import signal
    import threading
    import time
    from signal import SIGINT, SIGTERM

    from connector.dlq.reader import DeadLetterTopicError
    from connector.dlq.replay import (
        ReplayError,
        ReplayOptions,
        ReplayReport,
        open_replayer,
        progress_line,
        render_report,
    )

    settings = load_or_exit(config_file)
    selection = build_selection(filters)
    replay = settings.replay
    group = group or replay.group_id or f"{settings.kafka.group_id}-dlq-replay"
    if group == settings.kafka.group_id:
        raise click.BadParameter(
            "the replay group must differ from the worker's (kafka.group_id)",
            param_hint="--group",
        )
    options = ReplayOptions(
        selection=selection,
        max_replays=replay.max_replays if max_replays is None else max_replays,
        to_topic=to_topic,
        batch_size=batch_size or replay.batch_size,
        max_rate=max_rate,
        dry_run=dry_run,
        keep_timestamps=keep_timestamps,
    )
    last_progress = 0.0

    def progress(report: ReplayReport) -> None:
        nonlocal last_progress
        now = time.monotonic()
        if now - last_progress >= 1.0 or report.read == report.to_read:
            click.echo(progress_line(report), err=True)
            last_progress = now

    replayer = kafka_client_or_exit(
        lambda: open_replayer(
            settings, topic or settings.dead_letter.topic, group, options, progress
        )
    )
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda _s, _f: stop.set()) for s in (SIGINT, SIGTERM)}
    status = 0
    try:
        report = replayer.run(stop)
    except (ReplayError, DeadLetterTopicError) as exc:
        click.echo(f"dlq replay: {exc}", err=True)
        report, status = replayer.report, EXIT_DLQ_KAFKA
    finally:
        replayer.reader.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if as_json:
        click.echo(orjson.dumps(report.as_dict()).decode())
    else:
        click.echo(render_report(report, selection.describe(), options.max_replays), nl=False)
    if status == 0 and report.interrupted:
        status = EXIT_DLQ_INTERRUPTED
    elif status == 0 and report.refused:
        status = EXIT_DLQ_REFUSED
    sys.exit(status)
