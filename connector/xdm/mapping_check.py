"""A mapping checked against its target XDM schema at load time, so that a mistake that would
reject every record (or silently drop a field) is reported before anything runs.

For every entry: the destination path exists in the schema (object fields, array items,
map values, the tenant object); a STATIC value, or a literal an expression can produce
(`"web"`, the values of `iif` and `decode`), fits the destination's type, format, enum,
pattern and range; a declared `type:` suits the destination's type. For the mapping: every
required field has an entry (`_id` and `timestamp` for ExperienceEvents, and the `required`
fields of objects the mapping writes into). Warnings (not refusals): destinations typed as
objects or arrays that receive scalars, and date-times written into `date` fields.

Problems read `<label>: destination <path>: <reason> (schema: <file>#<pointer>)`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import jsonschema_rs

from connector.mapping import nodes, paths
from connector.mapping.errors import SourceError
from connector.mapping.functions import FUNCTION_NAMES
from connector.mapping.parser import parse_expression
from connector.xdm.schema import (
    EXPERIENCE_EVENT_REQUIRED,
    SchemaLoadError,
    SchemaNode,
    XdmSchema,
    load_schema,
)
from connector.xdm.validator import EntityValidator, Violation, violation_from_error


class Entry(Protocol):
    """What the check reads of a mapping entry (the loader's EntrySpec)."""

    @property
    def label(self) -> str: ...
    @property
    def source_type(self) -> str: ...
    @property
    def source(self) -> object: ...
    @property
    def destination(self) -> str: ...
    @property
    def type(self) -> str | None: ...


#: Functions whose result is always a scalar (string, number, boolean) or null.
SCALAR_FUNCTIONS: Final = frozenset(
    {
        "concat", "instr", "replacestr", "substr", "lower", "lcase", "upper", "ucase", "join",
        "lpad", "rpad", "left", "right", "ltrim", "rtrim", "trim", "matches_regex", "sha1",
        "sha256", "sha512", "md5", "crc32", "get_url_protocol", "get_url_host", "get_url_port",
        "get_url_path", "get_url_encoded", "get_url_decoded", "now", "timestamp", "format",
        "dformat", "date", "date_part", "set_date_part", "make_date_time", "zone_date_to_utc",
        "zone_date_to_zone", "is_empty", "contains_key", "map_has_keys", "size_of",
        "to_integer", "to_bigint", "to_float", "to_decimal", "uuid", "guid", "get_values",
        "ua_os_name", "ua_os_version_major", "ua_os_version", "ua_os_name_version",
        "ua_agent_name", "ua_agent_version", "ua_agent_version_major", "ua_device_class",
    }
)  # fmt: skip
#: Functions whose result is a date-time (written as an RFC 3339 date-time string).
DATE_TIME_FUNCTIONS: Final = frozenset(
    {"now", "date", "set_date_part", "make_date_time", "zone_date_to_utc", "zone_date_to_zone"}
)
#: Declared entry types and the schema types they can be written into.
_DECLARED_FITS: Final[dict[str, frozenset[str]]] = {
    "boolean": frozenset({"boolean"}),
    "integer": frozenset({"integer", "number"}),
    "number": frozenset({"number", "integer"}),
    "string": frozenset({"string"}),
    "date-time": frozenset({"string"}),
    "date": frozenset({"string"}),
}
_DATE_FORMATS: Final = frozenset({"date", "date-time"})
_NULL_ONLY: Final = frozenset({"null"})


@dataclass
class SchemaCheck:
    """What checking one mapping against its schema found."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def build_validator(
    mapping_path: Path, schema_file: str, entries: Sequence[Entry], where: str
) -> tuple[EntityValidator | None, list[str]]:
    """The mapping loader's hook: load `schema_file` (relative to the mapping file), check the
    entries against it and compile the per-record validator. Returns the validator (None when
    anything is wrong) and the problems, each prefixed with `where` (e.g. `validate (line 9)`)
    or the entry's label."""
    try:
        schema = load_schema(mapping_path.parent / schema_file)
        check = check_mapping(schema, entries, where)
        if check.problems:
            return None, check.problems
        return EntityValidator(schema, tuple(check.warnings)), []
    except SchemaLoadError as exc:
        return None, [f"{where}: schema {p}" for p in exc.problems]


def check_mapping(schema: XdmSchema, entries: Sequence[Entry], where: str) -> SchemaCheck:
    """Every problem and warning of `entries` against `schema` at once."""
    return _Checker(schema, where).run(entries)


class _Checker:
    def __init__(self, schema: XdmSchema, where: str) -> None:
        self.schema = schema
        self.where = where
        self.result = SchemaCheck()
        self._literal_validators: dict[str, jsonschema_rs.Validator | None] = {}

    def run(self, entries: Sequence[Entry]) -> SchemaCheck:
        written: list[tuple[Entry, tuple[str, ...]]] = []
        for entry in entries:
            try:
                steps, _escaped = paths.parse_path(entry.destination)
            except SourceError:
                continue  # the mapping compiler reports bad paths
            if not steps or not isinstance(steps[0], str):
                continue
            node = self.destination(entry, steps)
            written.append((entry, _shape(steps)))
            if node is not None:
                self.values(entry, node)
        self.required(written)
        return self.result

    # --- destinations ------------------------------------------------------------------------

    def problem(self, entry: Entry, message: str, node: SchemaNode) -> None:
        self.result.problems.append(
            f"{entry.label}: destination {entry.destination}: {message} "
            f"(schema: {self.schema.where(node)})"
        )

    def warn(self, entry: Entry, message: str, node: SchemaNode) -> None:
        self.result.warnings.append(
            f"{entry.label}: destination {entry.destination}: {message} "
            f"(schema: {self.schema.where(node)})"
        )

    def destination(self, entry: Entry, steps: paths.Path) -> SchemaNode | None:
        """The node the destination writes, or None after reporting why it does not exist."""
        node = self.schema.root
        walked: list[paths.Step] = []
        for step in steps:
            if isinstance(step, str):
                child = self.schema.child(node, step)
                if child is None:
                    self.problem(entry, self.missing_field(node, walked, step), _fields_of(node))
                    return None
            else:
                child = self.schema.items(node)
                if child is None:
                    where = paths.format_path(tuple(walked))
                    self.problem(
                        entry, f"{where} is {_article(node)}, not an array in the schema", node
                    )
                    return None
            walked.append(step)
            node = child
        return node

    def missing_field(self, node: SchemaNode, walked: list[paths.Step], name: str) -> str:
        parent = paths.format_path(tuple(walked)) if walked else "the entity"
        if node.types and "object" not in node.types:
            return f"{parent} is {_article(node)} in the schema; it has no field {name!r}"
        message = f"{parent} has no field {name!r} in the schema"
        names = self.schema.field_names(node)
        same = [
            other for other in names if other.lower() == name.lower()
        ]  # names are case sensitive
        close = same or difflib.get_close_matches(name, names, n=1, cutoff=0.75)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif not walked and name.startswith("_") and self.schema.tenant and name != "_id":
            message += f" (the schema's tenant object is {self.schema.tenant!r})"
        return message

    # --- values ------------------------------------------------------------------------------

    def values(self, entry: Entry, node: SchemaNode) -> None:
        declared = entry.type
        if declared is not None:
            self.declared_type(entry, declared, node)
        if entry.source_type == "STATIC":
            if declared is None and entry.source is not None:
                self.literal(entry, "static value", entry.source, node)
            return
        if entry.source_type != "EXPRESSION" or not isinstance(entry.source, str):
            return
        try:
            tree = parse_expression(entry.source, FUNCTION_NAMES)
        except SourceError:
            return  # the mapping compiler reports syntax errors
        if declared is None:
            for value in _literal_results(tree):
                self.literal(entry, "literal", value, node)
        kinds = _result_kinds(tree)
        if kinds is None:
            return
        if kinds - _NULL_ONLY == {"scalar"} and node.is_container and declared is None:
            self.warn(
                entry,
                f"the expression gives a single value, but the schema wants {_article(node)}",
                node,
            )
        if (
            kinds - _NULL_ONLY == {"date-time"}
            and node.format == "date"
            and declared not in ("date", "string")
        ):
            self.warn(
                entry,
                "the expression gives a date-time, but the schema wants a date: "
                "add `type: date` to the entry",
                node,
            )

    def declared_type(self, entry: Entry, declared: str, node: SchemaNode) -> None:
        fits = _DECLARED_FITS.get(declared)
        if fits is None or not node.types:
            return  # unknown types are the compiler's problem; an untyped node takes anything
        if node.is_container:
            self.warn(entry, f"type {declared} writes a single value into {_article(node)}", node)
        elif not fits & node.types:
            self.problem(entry, f"type {declared} cannot be written into {_article(node)}", node)
        elif declared == "number" and node.types == {"integer"}:
            self.warn(entry, "type number may write fractions into an integer field", node)
        elif declared in _DATE_FORMATS and node.format not in (None, declared):
            self.problem(entry, f"type {declared} cannot be written into {_article(node)}", node)

    def literal(self, entry: Entry, what: str, value: object, node: SchemaNode) -> None:
        validator = self.literal_validator(node)
        if validator is None:
            return
        for error in validator.iter_errors(value):
            violation = violation_from_error(error)
            self.problem(entry, f"{what} {_show(value)} {_reason(violation)}", node)
            return

    def literal_validator(self, node: SchemaNode) -> jsonschema_rs.Validator | None:
        if node.pointer not in self._literal_validators:
            validator: jsonschema_rs.Validator | None
            try:
                validator = jsonschema_rs.Draft6Validator(
                    dict(node.schema), validate_formats=True, mask="value"
                )
            except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError):
                validator = None  # the whole schema's compilation reports it
            self._literal_validators[node.pointer] = validator
        return self._literal_validators[node.pointer]

    # --- required fields ---------------------------------------------------------------------

    def required(self, written: list[tuple[Entry, tuple[str, ...]]]) -> None:
        """Each required field of the entity, and of every object the mapping writes into,
        needs an entry writing it (or writing a whole object above it)."""
        shapes = [shape for _entry, shape in written]
        root = self.schema.root
        needed = dict.fromkeys(self.schema.required(root))
        if self.schema.is_experience_event:
            needed.update(dict.fromkeys(EXPERIENCE_EVENT_REQUIRED))
        for name in needed:
            if not _covered((name,), shapes):
                kind = "an ExperienceEvent" if name in EXPERIENCE_EVENT_REQUIRED else "the schema"
                self.result.problems.append(
                    f"{self.where}: required field {name} has no mapping "
                    f"({kind} needs it; schema: {self.schema.where(root)}/required)"
                )
        reported: set[tuple[str, ...]] = set()
        for entry, shape in written:
            node = root
            for depth, step in enumerate(shape[:-1]):
                child = self.schema.items(node) if step == "[]" else self.schema.child(node, step)
                if child is None:
                    break
                node = child
                prefix = shape[: depth + 1]
                for name in self.schema.required(node):
                    path = (*prefix, name)
                    if path in reported or _covered(path, shapes):
                        continue
                    reported.add(path)
                    self.result.problems.append(
                        f"{entry.label}: destination {entry.destination}: writes into "
                        f"{_display(prefix)}, whose field {name} is required but has no mapping "
                        f"(schema: {self.schema.where(node)}/required)"
                    )


# --- expressions -------------------------------------------------------------------------------


def _literal_results(node: nodes.Node) -> list[object]:
    """The literal values an expression can produce: itself, or the chosen branches of `iif`,
    `decode`, `coalesce`, `first` and `last` (nulls left out: they write nothing)."""
    if isinstance(node, nodes.Literal):
        return [] if node.value is None else [node.value]
    if isinstance(node, nodes.ArrayLit):
        if all(isinstance(item, nodes.Literal) for item in node.items):
            values = [item.value for item in node.items if isinstance(item, nodes.Literal)]
            return [[value for value in values if value is not None]]
        return []
    if isinstance(node, nodes.Call):
        return [value for branch in _branches(node) for value in _literal_results(branch)]
    return []


def _branches(call: nodes.Call) -> list[nodes.Node]:
    """The arguments whose value a call may return as it is."""
    args = call.args
    if call.name == "iif" and len(args) == 3:
        return [args[1], args[2]]
    if call.name == "decode" and len(args) >= 3:
        values = list(args[2::2])
        if len(args) % 2 == 0:  # key, pairs, default
            values.append(args[-1])
        return values
    if call.name in ("coalesce", "first", "last") and len(args) > 1:
        return list(args)
    return []


def _result_kinds(node: nodes.Node) -> frozenset[str] | None:
    """What an expression's result can be ("scalar", "date-time", "null"); None when it may be
    anything (a field reference, an object or array function, ...)."""
    if isinstance(node, nodes.Literal):
        return _NULL_ONLY if node.value is None else frozenset({"scalar"})
    if isinstance(node, (nodes.Binary, nodes.Unary)):
        return frozenset({"scalar"})
    if isinstance(node, nodes.Method) and node.name in ("equals", "equalsIgnoreCase"):
        return frozenset({"scalar"})
    if isinstance(node, nodes.Call):
        if node.name in DATE_TIME_FUNCTIONS:
            return frozenset({"date-time"})
        if node.name in SCALAR_FUNCTIONS:
            return frozenset({"scalar"})
        if node.name == "nullify":
            return _NULL_ONLY
        branches = _branches(node)
        if branches:
            kinds: set[str] = set()
            for branch in branches:
                found = _result_kinds(branch)
                if found is None:
                    return None
                kinds |= found
            return frozenset(kinds)
    return None


# --- small helpers ----------------------------------------------------------------------------


def _shape(steps: paths.Path) -> tuple[str, ...]:
    """A destination as schema steps: names, and `[]` for any index or `[*]`."""
    return tuple(step if isinstance(step, str) else "[]" for step in steps)


def _covered(path: tuple[str, ...], shapes: list[tuple[str, ...]]) -> bool:
    """Whether some destination writes `path`, something inside it, or a whole object above it."""
    size = len(path)
    return any(shape[:size] == path or path[: len(shape)] == shape for shape in shapes)


def _display(shape: tuple[str, ...]) -> str:
    text = ""
    for step in shape:
        text += "[*]" if step == "[]" else (f".{step}" if text else step)
    return text


def _fields_of(node: SchemaNode) -> SchemaNode:
    """Where a missing field would have been declared: the node's `properties`."""
    if isinstance(node.schema.get("properties"), dict):
        return SchemaNode(node.schema, f"{node.pointer}/properties")
    return node


def _article(node: SchemaNode) -> str:
    described = node.describe()
    if node.types == {"object"} and node.schema.get("meta:xdmType") == "map":
        described = "map (object)"
    return ("an " if described[:1] in "aeiou" else "a ") + described


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(violation: Violation) -> str:
    """`is not one of ... (enum)`, with where inside the value for objects and arrays."""
    message = violation.message.removeprefix("the value ")
    inside = f" at {violation.pointer}" if violation.pointer else ""
    return f"does not fit{inside}: {message} ({violation.keyword})"
