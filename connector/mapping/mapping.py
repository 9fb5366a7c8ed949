"""A compiled mapping: the object the worker routes records to and calls per record.

`apply` runs the function generated at load time (filter, then the entity) and never raises
anything but MappingFailure, whatever the record holds; `envelope` wraps an entity into the
Platform message bytes with constant parts encoded once.

A raw mapping (`target.mode: raw`, docs/raw-payloads.md) has no entity: `apply` runs only the
filter and hands back the decoded record itself, which `envelope` encodes as it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from connector.envelope import Envelope, EnvelopeTarget, encode_raw
from connector.mapping import dates, paths
from connector.mapping.compiler import ExpressionCompiler, describe
from connector.mapping.entity import SKIPPED, Builder, Field, FilterSpec
from connector.mapping.errors import TOO_SLOW, MappingFailure, SourceError
from connector.mapping.functions import FUNCTION_NAMES, Runtime
from connector.mapping.limits import MAX_DESTINATION_STARS, MAX_DESTINATION_STEPS
from connector.mapping.nodes import Node, Ref
from connector.mapping.parser import KAFKA, parse_expression
from connector.mapping.values import DESTINATION_TYPES, clean, rfc3339, type_name
from connector.records import SourceRecord
from connector.xdm import EntityValidator

SourceFormat = Literal["json", "avro", "avro-schema"]
SourceType = Literal["ATTRIBUTE", "EXPRESSION", "STATIC"]

#: Attempts at a record that ran out of its budget while its thread was mostly waiting.
STARVED_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class TargetDefaults:
    """Target values from the settings (platform.connection_id, platform.ims_org_id), used by
    mappings that do not set their own."""

    connection_id: str | None = None
    ims_org_id: str | None = None


@dataclass(slots=True)
class MapResult:
    """One record's outcome: the entity (None: the filter skipped the record) and the
    warnings of fields that were left out because their expression failed."""

    entity: dict[str, object] | None
    warnings: list[str]


def _to_date_time(value: object) -> object:
    return rfc3339(dates.to_datetime(value, "date-time field"))


def _to_date(value: object) -> object:
    return dates.to_datetime(value, "date field").date().isoformat()


#: `type:` values a mapping entry may declare for its destination, and their conversions.
FIELD_TYPES: dict[str, Callable[[object], object]] = {
    **DESTINATION_TYPES,
    "date-time": _to_date_time,
    "date": _to_date,
}


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """One validated mapping entry, before compilation."""

    label: str
    source_type: SourceType
    source: object
    destination: str
    type: str | None = None


def _position(exc: SourceError) -> str:
    return f"line {exc.line}, column {exc.column}"


def compile_field(entry: EntrySpec, runtime: Runtime) -> tuple[Field | None, list[str]]:
    """Check one entry; returns the field (None when it has problems) and its problems."""
    label = entry.label
    problems: list[str] = []
    destination: paths.Path = ()
    try:
        destination, _escaped = paths.parse_path(entry.destination)
    except SourceError as exc:
        problems.append(
            f"{label}: destination {entry.destination!r}: {exc.message} (column {exc.column})"
        )
    else:
        if not isinstance(destination[0], str):
            problems.append(f"{label}: destination {entry.destination!r} must start with a name")
    depth = sum(isinstance(step, paths.Star) for step in destination)
    if len(destination) > MAX_DESTINATION_STEPS or depth > MAX_DESTINATION_STARS:
        problems.append(
            f"{label}: destination has {len(destination)} steps and {depth} [*]; the limits "
            f"are {MAX_DESTINATION_STEPS} and {MAX_DESTINATION_STARS}"
        )
        depth = 0

    convert = FIELD_TYPES.get(entry.type) if entry.type is not None else None
    if entry.type is not None and convert is None:
        problems.append(
            f"{label}: unknown type {entry.type!r}; use one of {', '.join(FIELD_TYPES)}"
        )

    node: Node | None = None
    compiler = ExpressionCompiler(runtime, depth)
    if entry.source_type == "STATIC":
        static = _static(entry, convert, problems)
        if problems:
            return None, problems
        source_text = repr(entry.source)
        return Field(label, destination, runtime, static=static, source_text=source_text), []
    if not isinstance(entry.source, str) or not entry.source.strip():
        problems.append(f"{label}: {entry.source_type} needs a non-empty string source")
    elif entry.source_type == "ATTRIBUTE":
        try:
            steps, escaped = paths.parse_path(entry.source)
        except SourceError as exc:
            problems.append(
                f"{label}: source path {entry.source!r}: {exc.message} (column {exc.column})"
            )
        else:
            kafka = not escaped and steps[0] == KAFKA
            node = Ref(1, 1, steps[1:] if kafka else steps, kafka)
    else:
        try:
            node = parse_expression(entry.source, FUNCTION_NAMES)
        except SourceError as exc:
            problems.append(f"{label}: source: syntax error: {exc.message} ({_position(exc)})")
    if node is not None:
        compiler.compile(node)  # finds the problems; the mapping's function is generated later
    problems.extend(f"{label}: source: {p.message} ({_position(p)})" for p in compiler.problems)
    if problems or node is None:
        return None, problems
    invariant = not compiler.star_refs and not compiler.volatile
    field = Field(
        label,
        destination,
        runtime,
        node=node,
        source_text=str(entry.source),
        star_refs=compiler.star_refs,
        type_name=entry.type,
        convert=convert,
        invariant=invariant,
    )
    return field, []


def _static(
    entry: EntrySpec, convert: Callable[[object], object] | None, problems: list[str]
) -> object:
    """A STATIC value is converted and cleaned once, at load time."""
    value = entry.source
    if convert is not None and value is not None:
        try:
            value = convert(value)
        except Exception as exc:
            problems.append(f"{entry.label}: static value: {describe(exc)}")
            return None
    try:
        value = clean(value)
    except Exception as exc:
        problems.append(f"{entry.label}: static value: {describe(exc)}")
        return None
    if value is None:
        problems.append(f"{entry.label}: a STATIC entry needs a value (not null or empty)")
    return value


def compile_filter(text: str, runtime: Runtime, where: str) -> tuple[FilterSpec | None, list[str]]:
    """The filter expression, checked; problems are returned without `where` (the caller
    adds it)."""
    compiler = ExpressionCompiler(runtime, 0)
    try:
        node = parse_expression(text, FUNCTION_NAMES)
    except SourceError as exc:
        return None, [f"syntax error: {exc.message} ({_position(exc)})"]
    compiler.compile(node)
    problems = [f"{p.message} ({_position(p)})" for p in compiler.problems]
    return (None if problems else FilterSpec(node, text, where)), problems


class CompiledMapping:
    """A mapping file compiled into one generated function; cheap to call for every record.
    `source` is that function's Python source (`aep-connector map --explain`); `notices`
    are what loading found worth telling (e.g. regexes that RE2 cannot run).

    `raw_flow_id` is set for a raw mapping (`target` is then None): its messages are the
    records themselves, sent one per request with this dataflow's x-adobe-flow-id header."""

    def __init__(
        self,
        *,
        name: str,
        path: Path | None,
        source_topics: tuple[str, ...],
        topic_pattern: re.Pattern[str] | None,
        source_format: SourceFormat,
        schema_path: Path | None,
        strict: bool,
        connection_id: str | None,
        target: EnvelopeTarget | None,
        build: Builder,
        runtime: Runtime,
        source: str = "",
        notices: tuple[str, ...] = (),
        validator: EntityValidator | None = None,
        raw_flow_id: str | None = None,
        timed: bool = True,
    ) -> None:
        if (target is None) == (raw_flow_id is None):
            raise ValueError("a mapping has either an envelope target or a raw flow id")
        self.name = name
        self.path = path
        self.source_topics = source_topics
        self.topic_pattern = topic_pattern
        self.source_format: SourceFormat = source_format
        self.schema_path = schema_path
        self.strict = strict
        self.connection_id = connection_id
        self.target = target
        self.source = source
        self.notices = notices
        #: The target schema's per-record check (`validate.schema`), None when not configured.
        self.validator = validator
        self.raw_flow_id = raw_flow_id
        self._topics = frozenset(source_topics)
        self._build = build
        # Whether `build` checks the evaluation budget: if not, no clock is read per record.
        self._timed = timed
        self._clock = runtime.clock
        self._cpu_clock = runtime.cpu_clock
        self._budget_s = runtime.limits.budget_s
        #: The Platform message for an entity, serialized once (see connector.envelope); for a
        #: raw mapping, the record itself as JSON. An attribute, so that the record path calls
        #: the encoder itself (`envelope` is the same with a docstring).
        self.encode: Callable[[dict[str, object], int], bytes] = (
            encode_raw if target is None else Envelope(target).encode
        )

    def __repr__(self) -> str:
        return f"CompiledMapping(name={self.name!r}, path={self.path})"

    def matches(self, topic: str) -> bool:
        """Whether records of `topic` go through this mapping (listed, or a full pattern match)."""
        if topic in self._topics:
            return True
        return self.topic_pattern is not None and self.topic_pattern.fullmatch(topic) is not None

    def apply(self, value: object, meta: SourceRecord) -> MapResult:
        """Map one decoded record. Raises only MappingFailure (strict-mode field error, filter
        error, a value that is not an object, an entity with no field at all, or the evaluation
        budget spent: reason "too_slow")."""
        try:
            return self._map(value, meta)
        except MappingFailure as exc:
            if exc.reason != TOO_SLOW:
                raise
            return self._map_again_measured(exc, value, meta)

    def _map_again_measured(
        self, failure: MappingFailure, value: object, meta: SourceRecord
    ) -> MapResult:
        """The budget is measured on the wall clock (cheap to read), so a thread that waited
        (for the GIL, a throttled CPU quota, a loaded node) can run out of it without the record
        being costly. Map again, reading this thread's CPU time too: the record fails as
        too_slow once an attempt spends half its budget computing; after STARVED_ATTEMPTS
        attempts that were only waiting, it fails too, so that the loop is never held for
        long (the dead letter can be replayed)."""
        for _attempt in range(STARVED_ATTEMPTS):
            started = self._cpu_clock()
            try:
                return self._map(value, meta)
            except MappingFailure as exc:
                if exc.reason != TOO_SLOW or self._cpu_clock() - started >= self._budget_s / 2:
                    raise
                failure = exc
        raise failure

    def _map(self, value: object, meta: SourceRecord) -> MapResult:
        if not isinstance(value, dict):
            raise MappingFailure(f"the record value is not an object (got {type_name(value)})")
        deadline = self._clock() + self._budget_s if self._timed else math.inf
        warnings: list[str] = []
        try:
            # The function generated at load: filter, then entity.
            entity = self._build(value, meta, deadline, warnings)
        except MappingFailure:
            raise
        except Exception as exc:  # a defect must still reach the caller as a mapping failure
            raise MappingFailure(f"unexpected {type(exc).__name__} while mapping") from exc
        if entity.__class__ is dict and self.raw_flow_id is None:  # the usual outcome first
            return MapResult(entity, warnings)
        if entity is SKIPPED:
            return MapResult(None, warnings)
        if self.raw_flow_id is not None:  # the filter let it through: the record is the message
            return MapResult(value, warnings)
        if not isinstance(entity, dict):
            first = f"; first field error: {warnings[0]}" if warnings else ""
            raise MappingFailure(
                f"no destination field has a value ({len(warnings)} field error(s){first})"
            )
        return MapResult(entity, warnings)

    def envelope(self, entity: dict[str, object], created_at_ms: int) -> bytes:
        """The Platform message for `entity`, serialized once (see connector.envelope); for a
        raw mapping, the record itself as JSON."""
        return self.encode(entity, created_at_ms)
