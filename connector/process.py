"""One record's path from bytes to envelopes, without Kafka or HTTP:

    decode ─▶ for each mapping of the topic: map ─▶ validate (XDM) ─▶ envelope ─▶ size check

`process` returns the messages to send and the dead letters of whatever failed; the worker
tracks, batches and sends them. A record read by several mappings yields one message (or one
dead letter, or nothing when filtered) per mapping.

The only exception that leaves `process` is RetryableError: a schema registry that cannot be
reached is not the record's fault, so the caller retries the whole record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Counter

from connector.delivery.batcher import FRAMING_BYTES
from connector.errors import DeadLetter, HaltError, PoisonError
from connector.mapping import CompiledMapping, MappingFailure
from connector.metrics import Metrics
from connector.records import SourceRecord
from connector.settings import API_MAX_REQUEST_BYTES, Settings
from connector.source.decode import (
    ConfluentAvroDecoder,
    Decoder,
    FixedAvroDecoder,
    JsonDecoder,
    RegistrySchemas,
)
from connector.source.limits import DecodeLimits

TOMBSTONE = DeadLetter("decode", "tombstone", "tombstone (null value)")


@dataclass(slots=True)
class Target:
    """A mapping of a route, with its per-mapping metric children looked up once (a labelled
    look-up costs about a microsecond, too much to pay for every record), and what each of its
    messages carries on (read once here, not through the mapping for every record)."""

    mapping: CompiledMapping
    connection_id: str
    accepted: Counter  # records_accepted{mapping=…}
    name: str = field(init=False)  # the mapping's
    raw_flow_id: str | None = field(init=False)  # the mapping's
    #: Bytes around the message when it is alone in a request: the batch framing for an
    #: envelope; none for a raw payload, which is the whole body of its request.
    framing: int = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.mapping.name
        self.raw_flow_id = self.mapping.raw_flow_id
        self.framing = FRAMING_BYTES if self.raw_flow_id is None else 0


@dataclass(slots=True)
class Route:
    """What to do with records of one topic: how to decode them and which mappings apply."""

    topic: str
    decoder: Decoder
    targets: list[Target]
    consumed: Counter  # records_consumed{topic=…}
    dead_letter_tombstones: bool


@dataclass(slots=True)
class Processed:
    """What became of one record: messages to send (envelope bytes and their target), dead
    letters, and how many mappings filtered it out; `tombstone` when skipped as one.
    `warnings` holds (mapping name, field warnings) for the mappings that left fields out
    (the worker counts them per batch; `map --from-topic` prints them).

    Built once per record with every field given, positionally: default factories and
    keyword arguments cost half a microsecond more per record."""

    messages: list[tuple[bytes, Target]]
    dead_letters: list[DeadLetter]
    filtered: int
    tombstone: bool
    warnings: tuple[tuple[str, list[str]], ...]


def process(record: SourceRecord, route: Route, now_ms: int) -> Processed:
    """Decode, map, envelope and size-check one record (pure: the caller counts)."""
    value = record.value
    if value is None:
        if route.dead_letter_tombstones:
            return Processed([], [TOMBSTONE], 0, False, ())
        return Processed([], [], 0, True, ())
    try:
        decoded = route.decoder(value)
    except PoisonError as exc:
        return Processed([], [exc.letter], 0, False, ())
    messages: list[tuple[bytes, Target]] = []
    letters: list[DeadLetter] = []
    filtered = 0
    warned: tuple[tuple[str, list[str]], ...] = ()
    for target in route.targets:
        mapping = target.mapping
        try:
            mapped = mapping.apply(decoded, record)
        except MappingFailure as exc:
            letters.append(DeadLetter("map", exc.reason, str(exc), mapping=target.name))
            continue
        entity, warnings = mapped.entity, mapped.warnings
        if warnings:
            warned += ((target.name, warnings),)
        if entity is None:
            filtered += 1
            continue
        validator = mapping.validator
        if validator is not None and not validator.is_valid(entity):
            violation = validator.validate(entity)  # the first violation, for the dead letter
            if violation is not None:
                letters.append(
                    DeadLetter(
                        "validate",
                        "xdm_invalid",
                        f"invalid XDM: {violation}",
                        mapping=target.name,
                        details=(
                            ("xdm.pointer", violation.pointer or "/"),
                            ("xdm.keyword", violation.keyword),
                        ),
                    )
                )
                continue
        try:
            body = mapping.encode(entity, now_ms)
        except (TypeError, ValueError) as exc:  # a value JSON cannot represent
            letters.append(DeadLetter("map", "envelope", f"envelope: {exc}", mapping=target.name))
            continue
        # Alone in a request: framed in a batch, or (raw) the whole body of a single request.
        if len(body) + target.framing > API_MAX_REQUEST_BYTES:
            letters.append(
                DeadLetter(
                    "validate",
                    "too_large",
                    f"message of {len(body)} bytes exceeds the API's 1 MB request limit",
                    mapping=target.name,
                )
            )
            continue
        messages.append((body, target))
    return Processed(messages, letters, filtered, False, warned)


class Routes:
    """Routes by topic, built when a topic is first seen (topics may match a pattern)."""

    def __init__(
        self, settings: Settings, mappings: list[CompiledMapping], metrics: Metrics
    ) -> None:
        self._settings = settings
        self._mappings = mappings
        self._metrics = metrics
        self._routes: dict[str, Route] = {}
        self._targets: dict[str, Target] = {}
        decoding = settings.decoding
        self._limits = DecodeLimits(
            decoding.max_value_bytes, decoding.max_depth, decoding.max_values
        )
        self._json = JsonDecoder(self._limits)
        self._avro: ConfluentAvroDecoder | None = None
        self._fixed_avro: dict[Path, FixedAvroDecoder] = {}

    def get(self, topic: str) -> Route:
        route = self._routes.get(topic)
        if route is None:
            route = self._routes[topic] = self._build(topic)
        return route

    def _build(self, topic: str) -> Route:
        chosen = [m for m in self._mappings if m.matches(topic)]
        if not chosen:
            raise HaltError(f"no mapping selects topic {topic!r}")
        formats = {(m.source_format, m.schema_path) for m in chosen}
        if len(formats) > 1:
            raise HaltError(
                f"mappings {[m.name for m in chosen]} read topic {topic!r} in different formats"
            )
        return Route(
            topic,
            self._decoder_for(chosen[0]),
            [self._target(m) for m in chosen],
            self._metrics.records_consumed.labels(topic),
            self._settings.dead_letter.tombstones == "dead-letter",
        )

    def _target(self, mapping: CompiledMapping) -> Target:
        target = self._targets.get(mapping.name)
        if target is None:
            assert mapping.connection_id is not None  # checked when the mappings were loaded
            target = self._targets[mapping.name] = Target(
                mapping,
                mapping.connection_id,
                self._metrics.records_accepted.labels(mapping.name),
            )
        return target

    def _decoder_for(self, mapping: CompiledMapping) -> Decoder:
        if mapping.source_format == "json":
            return self._json
        if mapping.source_format == "avro-schema":
            assert mapping.schema_path is not None
            path = mapping.schema_path
            if path not in self._fixed_avro:
                self._fixed_avro[path] = FixedAvroDecoder(path, self._limits)
            return self._fixed_avro[path]
        if self._avro is None:
            kafka = self._settings.kafka
            if not kafka.schema_registry_url:
                raise HaltError(f"mapping {mapping.name} reads Avro but no schema registry is set")
            config = {
                "url": kafka.schema_registry_url,
                **kafka.schema_registry_properties,
                **{
                    k: v.get_secret_value()
                    for k, v in kafka.schema_registry_secret_properties.items()
                },
            }
            self._avro = ConfluentAvroDecoder(
                RegistrySchemas(config), self._limits, self._settings.decoding.unknown_schema_ttl_s
            )
        return self._avro

    def connections(self) -> set[str]:
        """The connections the mappings send to."""
        return {m.connection_id for m in self._mappings if m.connection_id is not None}
