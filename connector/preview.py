"""`aep-connector map FILE --from-topic`: the worker's path on live records, nothing sent.

Records are read with a consumer that only assigns partitions: it never joins a consumer
group (the group id is a throwaway one that librdkafka requires and that is never used to
join or commit), so it cannot take partitions from the workers nor move their offsets.
Each record goes through `process()`, the function the worker runs, with the decoder
`Routes` builds as it does for the worker (JSON, Avro through the schema registry, Avro with a
fixed schema): what is printed is what the worker would send or dead-letter, so the two
cannot drift. Nothing is sent to the API.

Which records (see docs/preview.md): `--partition P --offset O` reads N records of P from O;
`--partition P` the last N of P; neither, the N newest records of the topic (by timestamp,
from the last N of each partition).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

import orjson
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.errors import DeadLetter, HaltError, RetryableError
from connector.mapping import CompiledMapping
from connector.metrics import Metrics
from connector.process import Processed, Routes, process
from connector.records import SourceRecord
from connector.settings import Settings
from connector.source.kafka import consumer_config, source_record

#: Exit statuses of the preview besides 0 (all records sendable or filtered).
EXIT_DEAD_LETTERS = 1  # some record would be dead-lettered
EXIT_SOURCE = 3  # the topic or the schema registry could not be read

#: Connection id given to a mapping that names none while previewing: nothing is sent.
PREVIEW_CONNECTION = "(preview)"


class SourceUnavailable(Exception):
    """The topic is missing or empty where asked, or the brokers did not answer in time."""


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets `start` (inclusive) to `end` (exclusive) of one partition."""

    partition: int
    start: int
    end: int


def plan_spans(
    watermarks: dict[int, tuple[int, int]],
    records: int,
    partition: int | None = None,
    offset: int | None = None,
) -> list[Span]:
    """Where to read `records` records, given each partition's (low, high) watermarks: from
    `offset` of `partition`; the last ones of `partition`; else the last ones of every
    partition (the caller keeps the newest). Empty spans are left out."""
    if partition is not None:
        if partition not in watermarks:
            known = ", ".join(str(n) for n in sorted(watermarks))
            raise SourceUnavailable(f"{partition} is not a partition of the topic ({known})")
        chosen = {partition: watermarks[partition]}
    else:
        chosen = watermarks
    spans = []
    for number, (low, high) in sorted(chosen.items()):
        start = max(low, offset) if offset is not None else max(low, high - records)
        end = min(high, start + records)
        if end > start:
            spans.append(Span(number, start, end))
    return spans


def newest(records: list[SourceRecord], count: int) -> list[SourceRecord]:
    """The `count` most recent records by timestamp (records without one count as oldest;
    ties in partition and offset order), oldest first."""
    ordered = sorted(
        records,
        key=lambda r: (-1 if r.timestamp_ms is None else r.timestamp_ms, r.partition, r.offset),
    )
    return ordered[-count:] if count else []


def preview_config(settings: Settings) -> dict[str, Any]:
    """The worker's connection properties (brokers, TLS, SASL) for a consumer that assigns."""
    client_id = settings.kafka.client_id
    return consumer_config(settings) | {
        "group.id": f"{client_id}-preview-{uuid.uuid4()}",  # required; never joined
        "client.id": f"{client_id}-preview",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,  # how reading knows it reached a partition's end
    }


def read_records(
    consumer: Any,
    topic: str,
    records: int,
    partition: int | None,
    offset: int | None,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[SourceRecord]:
    """The records the options choose, in the order they are shown."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise SourceUnavailable(f"could not read the metadata of {topic}: {exc}") from None
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        why = found.error.str() if found is not None and found.error is not None else "missing"
        raise SourceUnavailable(f"topic {topic} is not available ({why})")
    watermarks = {}
    for number in sorted(found.partitions):
        try:
            watermarks[number] = consumer.get_watermark_offsets(
                TopicPartition(topic, number), timeout=timeout_s
            )
        except KafkaException as exc:
            raise SourceUnavailable(f"could not read the offsets of {topic}: {exc}") from None
    spans = plan_spans(watermarks, records, partition, offset)
    read = _read_spans(consumer, topic, spans, timeout_s, clock)
    return read if partition is not None else newest(read, records)


def _read_spans(
    consumer: Any, topic: str, spans: list[Span], timeout_s: float, clock: Callable[[], float]
) -> list[SourceRecord]:
    ends = {s.partition: s.end for s in spans}
    if not ends:
        return []
    consumer.assign([TopicPartition(topic, s.partition, s.start) for s in spans])
    read: list[SourceRecord] = []
    last_progress = clock()
    try:
        while ends:
            for message in consumer.consume(num_messages=500, timeout=0.2):
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    ends.pop(message.partition(), None)
                    continue
                try:
                    record = source_record(message)  # the worker's own translation
                except HaltError as exc:  # a failed login, a fatal client error
                    raise SourceUnavailable(str(exc)) from None
                if record is None or record.partition not in ends:
                    continue
                last_progress = clock()
                if record.offset < ends[record.partition]:
                    read.append(record)
                if record.offset >= ends[record.partition] - 1:
                    ends.pop(record.partition)
            if ends and clock() - last_progress > timeout_s:
                raise SourceUnavailable(
                    f"no progress reading {topic} for {timeout_s:.0f} s (partitions "
                    f"{sorted(ends)} unfinished): are the brokers reachable?"
                )
    finally:
        consumer.unassign()
    return read


def describe(
    record: SourceRecord, processed: Processed, entity_only: bool
) -> tuple[list[bytes], list[str]]:
    """What the worker would do with one record: the lines for stdout (envelopes, or entities
    with `entity_only`) and for stderr (one status line, then warnings and dead letters)."""
    place = f"partition {record.partition} offset {record.offset}"
    out: list[bytes] = []
    notes: list[str] = []
    for body, _target in processed.messages:
        out.append(_entity(body) if entity_only else body)
    for mapping, warnings in processed.warnings:
        notes += [f"{place}: warning: {mapping}: {warning}" for warning in warnings]
    for letter in processed.dead_letters:
        notes.append(f"{place}: {_dead_letter(letter)}")
    status = []
    if processed.messages:
        size = sum(len(body) for body, _ in processed.messages)
        status.append(f"{len(processed.messages)} message(s) to send, {size:,} bytes")
    if processed.dead_letters:
        status.append(f"{len(processed.dead_letters)} dead letter(s)")
    if processed.filtered:
        status.append("skipped by the filter")
    if processed.tombstone:
        status.append("skipped: tombstone (null value)")
    return out, [f"{place}: {'; '.join(status) or 'nothing to send'}", *notes]


def _dead_letter(letter: DeadLetter) -> str:
    where = f", mapping {letter.mapping}" if letter.mapping else ""
    details = "".join(f", {name} {value}" for name, value in letter.details)
    return (
        f"dead letter (stage {letter.stage}, reason {letter.error_class}{where}{details}): "
        f"{letter.message}"
    )


def _entity(body: bytes) -> bytes:
    """The XDM entity of an envelope (a message of another shape is shown whole)."""
    message = orjson.loads(body)
    inner = message.get("body") if isinstance(message, dict) else None
    if isinstance(inner, dict) and "xdmEntity" in inner:
        return orjson.dumps(inner["xdmEntity"])
    return body


def run_preview(
    settings: Settings,
    mapping: CompiledMapping,
    topic: str,
    records: int,
    partition: int | None,
    offset: int | None,
    entity_only: bool,
    timeout_s: float,
    consumer: Any,
    out: BinaryIO,
    err: TextIO,
) -> int:
    """Read with `consumer` (made from preview_config; closed here), process and print;
    returns the exit status (0, EXIT_DEAD_LETTERS, EXIT_SOURCE). HaltError for a
    configuration the worker would refuse too (Avro without a schema registry)."""
    try:
        route = Routes(settings, [mapping], Metrics()).get(topic)
    except HaltError:
        consumer.close()
        raise
    try:
        chosen = read_records(consumer, topic, records, partition, offset, timeout_s)
    except SourceUnavailable as exc:
        err.write(f"map --from-topic: {exc}\n")
        return EXIT_SOURCE
    finally:
        consumer.close()
    counts = {"send": 0, "dead": 0, "filtered": 0, "tombstone": 0}
    now_ms = time.time_ns() // 1_000_000
    for record in chosen:
        try:
            processed = process(record, route, now_ms)
        except RetryableError as exc:  # the worker would retry; a preview says so and stops
            err.write(f"map --from-topic: the schema registry could not be read: {exc}\n")
            return EXIT_SOURCE
        lines, notes = describe(record, processed, entity_only)
        for line in lines:
            out.write(line + b"\n")
        out.flush()
        for note in notes:
            err.write(note + "\n")
        err.flush()
        counts["send"] += bool(processed.messages)
        counts["dead"] += bool(processed.dead_letters)
        counts["filtered"] += bool(processed.filtered)
        counts["tombstone"] += processed.tombstone
    where = f"partition {partition}" if partition is not None else "the newest records"
    err.write(
        f"read {len(chosen)} record(s) of {topic} ({where}): {counts['send']} to send, "
        f"{counts['dead']} dead-lettered, {counts['filtered']} filtered, "
        f"{counts['tombstone']} tombstone(s) skipped; nothing was sent\n"
    )
    return EXIT_DEAD_LETTERS if counts["dead"] else 0
