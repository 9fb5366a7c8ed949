"""Per-message checks of the Platform envelope, as pure functions over parsed JSON.

These run for every message at tens of thousands of messages a second, so the valid path does
only dictionary look-ups and type tests; paths and messages are built only for violations.
Every walk over message data uses an explicit stack, so any nesting depth gets its validation
answer instead of a RecursionError.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from jsonschema import Draft6Validator, FormatChecker
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from connector.emulator.config import RejectRule
from connector.emulator.jsontext import preview

Path = tuple[str | int, ...]

_MISSING: Final = object()
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+\-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_JSON_TYPES: Final[Mapping[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed check: where (a path inside the message), which check, and what is wrong."""

    path: Path
    keyword: str
    message: str

    def where(self, prefix: str = "") -> str:
        """The location as `prefix.header.schemaRef.id` or `prefix.body.xdmEntity.items[2]`."""
        parts = [prefix]
        for part in self.path:
            if isinstance(part, int):
                parts.append(f"[{part}]")
            else:
                parts.append(f".{part}" if parts[-1] else part)
        return "".join(parts) or "(message)"

    def pointer(self) -> str:
        """The location as a JSON pointer from the message root, e.g. `#/header/imsOrgId`."""
        escaped = (str(part).replace("~", "~0").replace("/", "~1") for part in self.path)
        return "#" + "".join("/" + part for part in escaped)


def describe(violations: Iterable[Violation], prefix: str = "") -> str:
    """Every violation as `where: what`, joined with `; `."""
    return "; ".join(f"{v.where(prefix)}: {v.message}" for v in violations)


@dataclass(frozen=True)
class EnvelopeRules:
    """What one connection requires of a message's envelope."""

    ims_org_id: str | None = None
    strict: bool = False
    datasets: frozenset[str] | None = None
    require_flow_id: bool = False
    #: The flows of a dataflow inlet: header.flowId must name one of them.
    flow_ids: frozenset[str] | None = None
    validators: Mapping[str, Validator] | None = None


def check_message(message: object, rules: EnvelopeRules) -> list[Violation]:
    """Every envelope violation of one message; an empty list means the message is acceptable."""
    if type(message) is not dict:
        return [Violation((), "type", f"expected an object, got {_type_of(message)}")]
    problems: list[Violation] = []
    header = message.get("header", _MISSING)
    schema_ref: Any = _MISSING
    if type(header) is dict:
        schema_ref = _check_header(header, rules, problems)
    else:
        problems.append(_not_object(("header",), header))
    body = message.get("body", _MISSING)
    if type(body) is dict:
        _check_body(body, schema_ref, rules, problems)
    else:
        problems.append(_not_object(("body",), body))
    return problems


def _check_header(header: dict[str, Any], rules: EnvelopeRules, problems: list[Violation]) -> Any:
    """Check the header; return its schemaRef when that is an object, else _MISSING."""
    schema_ref = header.get("schemaRef", _MISSING)
    if type(schema_ref) is dict:
        _check_schema_ref(schema_ref, rules.strict, problems)
    else:
        problems.append(_not_object(("header", "schemaRef"), schema_ref))
        schema_ref = _MISSING

    org = header.get("imsOrgId", _MISSING)
    if rules.ims_org_id is not None and org != rules.ims_org_id:
        if org is _MISSING:
            problems.append(_required(("header", "imsOrgId")))
        else:
            problems.append(
                Violation(
                    ("header", "imsOrgId"),
                    "const",
                    f"expected {_show(rules.ims_org_id)}, got {_show(org)}",
                )
            )

    dataset = header.get("datasetId", _MISSING)
    if type(dataset) is not str or not dataset:
        problems.append(_not_string(("header", "datasetId"), dataset))
    elif rules.datasets is not None and dataset not in rules.datasets:
        known = ", ".join(sorted(rules.datasets)) or "none"
        problems.append(
            Violation(
                ("header", "datasetId"),
                "enum",
                f"unknown dataset {_show(dataset)} for this connection (known: {known})",
            )
        )

    if rules.require_flow_id or rules.flow_ids is not None:
        flow = header.get("flowId", _MISSING)
        if type(flow) is not str or not flow:
            problems.append(_not_string(("header", "flowId"), flow))
        elif rules.flow_ids is not None and flow not in rules.flow_ids:
            known = ", ".join(sorted(rules.flow_ids))
            problems.append(
                Violation(
                    ("header", "flowId"),
                    "enum",
                    f"unknown flow {_show(flow)} for this connection (known: {known})",
                )
            )
    return schema_ref


def _check_schema_ref(schema_ref: dict[str, Any], strict: bool, problems: list[Violation]) -> None:
    content_type = schema_ref.get("contentType", _MISSING)
    if type(content_type) is not str or not content_type:
        problems.append(_not_string(("header", "schemaRef", "contentType"), content_type))
    schema_id = schema_ref.get("id", _MISSING)
    if schema_id is _MISSING:
        if strict:
            problems.append(
                Violation(
                    ("header", "schemaRef", "id"), "required", "required (strict mode) but missing"
                )
            )
    elif type(schema_id) is not str or not _URI.match(schema_id):
        problems.append(
            Violation(
                ("header", "schemaRef", "id"), "format", f"expected a URI, got {_show(schema_id)}"
            )
        )


def _check_body(
    body: dict[str, Any],
    header_schema_ref: Any,
    rules: EnvelopeRules,
    problems: list[Violation],
) -> None:
    meta = body.get("xdmMeta", _MISSING)
    if type(meta) is dict:
        meta_ref = meta.get("schemaRef", _MISSING)
        if meta_ref is _MISSING:
            problems.append(_required(("body", "xdmMeta", "schemaRef")))
        elif header_schema_ref is not _MISSING and not _same_ref(meta_ref, header_schema_ref):
            problems.append(
                Violation(
                    ("body", "xdmMeta", "schemaRef"),
                    "const",
                    f"must equal header.schemaRef {_show(header_schema_ref)}, "
                    f"got {_show(meta_ref)}",
                )
            )
    else:
        problems.append(_not_object(("body", "xdmMeta"), meta))

    entity = body.get("xdmEntity", _MISSING)
    if type(entity) is not dict:
        problems.append(_not_object(("body", "xdmEntity"), entity))
        return
    if contains_empty(entity):
        problems.extend(
            Violation(path, *_EMPTY_VIOLATIONS[kind])
            for path, kind in empty_paths(entity, ("body", "xdmEntity"))
        )
    if rules.validators and header_schema_ref is not _MISSING:
        schema_id = header_schema_ref.get("id")
        validator = rules.validators.get(schema_id) if type(schema_id) is str else None
        if validator is not None:
            problems.extend(_schema_violations(validator, entity))


def _schema_violations(validator: Validator, entity: dict[str, Any]) -> list[Violation]:
    try:
        return [
            Violation(
                ("body", "xdmEntity", *error.absolute_path), str(error.validator), error.message
            )
            for error in validator.iter_errors(entity)
        ]
    except RecursionError:
        # jsonschema recurses (its messages `repr` the failing value); a value nested close to
        # the parser's limit can exhaust the stack. Say so instead of failing the request.
        return [
            Violation(
                ("body", "xdmEntity"),
                "maxDepth",
                "nested too deeply to validate against the schema",
            )
        ]


# What each kind of empty value is reported as: XDM refuses nulls and empty values alike.
_EMPTY_VIOLATIONS: Final[Mapping[type, tuple[str, str]]] = {
    type(None): ("null", "null is not allowed in XDM; leave the key out instead"),
    str: ("minLength", "an empty string is not allowed in XDM; leave the key out instead"),
    dict: ("minProperties", "an empty object is not allowed in XDM; leave the key out instead"),
    list: ("minItems", "an empty array is not allowed in XDM; leave the key out instead"),
}


def contains_empty(value: object) -> bool:
    """Whether a null, "", {} or [] appears anywhere in `value` (`value` itself included)."""
    stack: list[Any] = [value]
    pop = stack.pop
    extend = stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            if not item:
                return True
        elif kind is dict:
            if not item:
                return True
            extend(item.values())
        elif kind is list:
            if not item:
                return True
            extend(item)
        elif item is None:
            return True
    return False


def empty_paths(value: object, base: Path = ()) -> list[tuple[Path, type]]:
    """The path and type of every null, "", {} and [] inside `value`, in document order.

    A depth-first walk with a stack of child iterators; each container records only its parent
    and key, and a path is built only for what is found, so a deep document costs time
    proportional to its size.
    """
    kind = type(value)
    if value is None or (kind in _SIZED and not value):
        return [(base, kind)]
    if kind is not dict and kind is not list:
        return []
    found: list[tuple[int, str | int, type]] = []
    parents: list[tuple[int, str | int | None]] = [(-1, None)]  # slot 0: `value` itself
    stack: list[tuple[Iterator[tuple[Any, Any]], int]] = [(_children(value), 0)]
    while stack:
        children, slot = stack[-1]
        for key, child in children:
            kind = type(child)
            if kind is dict or kind is list:
                if not child:
                    found.append((slot, key, kind))
                    continue
                parents.append((slot, key))
                stack.append((_children(child), len(parents) - 1))
                break
            if child is None or (kind is str and not child):
                found.append((slot, key, kind))
        else:
            stack.pop()
    return [(_path_to(parents, slot, key, base), kind) for slot, key, kind in found]


_SIZED: Final = (str, dict, list)


def _children(container: Any) -> Iterator[tuple[Any, Any]]:
    return iter(container.items()) if type(container) is dict else enumerate(container)


def _path_to(
    parents: Sequence[tuple[int, str | int | None]], slot: int, key: str | int, base: Path
) -> Path:
    reversed_parts: list[str | int] = [key]
    while slot > 0:
        slot, parent_key = parents[slot]
        assert parent_key is not None  # only slot 0, the root, has no key
        reversed_parts.append(parent_key)
    return (*base, *reversed(reversed_parts))


def _same_ref(left: object, right: object) -> bool:
    """`==` for the two schemaRefs, which are small; a hostile deep pair takes the slow path."""
    try:
        return left == right
    except RecursionError:
        return json_equal(left, right)


# --- reject rules ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledRejectRule:
    """A reject rule with its pointer split once, so matching costs a few look-ups."""

    index: int
    pointer: str
    parts: tuple[str, ...]
    equals: Any
    status: int
    message: str


def compile_reject_rules(rules: Sequence[RejectRule]) -> tuple[CompiledRejectRule, ...]:
    compiled = []
    for index, rule in enumerate(rules):
        parts = tuple(
            part.replace("~1", "/").replace("~0", "~") for part in rule.pointer.split("/")[1:]
        )
        message = rule.message or (
            f"rejected by reject rule {index}: {rule.pointer} equals {_show(rule.equals)}"
        )
        compiled.append(
            CompiledRejectRule(index, rule.pointer, parts, rule.equals, rule.status, message)
        )
    return tuple(compiled)


def matching_reject_rule(
    message: object, rules: Sequence[CompiledRejectRule]
) -> CompiledRejectRule | None:
    """The first rule whose pointer resolves, in `message`, to a value equal to its `equals`."""
    for rule in rules:
        value = resolve_pointer(message, rule.parts)
        if value is not _MISSING and json_equal(value, rule.equals):
            return rule
    return None


def resolve_pointer(document: object, parts: Sequence[str]) -> object:
    """The value at a split JSON pointer, or the module's _MISSING sentinel."""
    value = document
    for part in parts:
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def json_equal(left: object, right: object) -> bool:
    """Equality of JSON values at any depth; unlike Python's `==`, true is not 1."""
    stack: list[tuple[Any, Any]] = [(left, right)]
    while stack:
        a, b = stack.pop()
        kind_a, kind_b = type(a), type(b)
        if kind_a is dict:
            if kind_b is not dict or a.keys() != b.keys():
                return False
            stack.extend((a[key], b[key]) for key in a)
        elif kind_a is list:
            if kind_b is not list or len(a) != len(b):
                return False
            stack.extend(zip(a, b, strict=True))
        elif kind_b is dict or kind_b is list:
            return False
        elif kind_a is bool or kind_b is bool:
            if kind_a is not kind_b or a != b:
                return False
        elif a != b:
            return False
    return True


# --- JSON Schema validation of entities -------------------------------------------------------


def _check_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


def _check_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.match(value):
        return False
    date.fromisoformat(value)
    return True


def _check_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(_URI.match(value))


def _check_uri_reference(value: object) -> bool:
    return not isinstance(value, str) or not any(c.isspace() for c in value)


def format_checker() -> FormatChecker:
    """The formats XDM uses (date-time, date, uri, uri-reference) plus jsonschema's own."""
    checker = FormatChecker()
    checker.checks("date-time", raises=ValueError)(_check_date_time)
    checker.checks("date", raises=ValueError)(_check_date)
    checker.checks("uri")(_check_uri)
    checker.checks("uri-reference")(_check_uri_reference)
    return checker


def build_validator(schema: dict[str, Any]) -> Validator:
    """A validator for an exported XDM schema (draft-06 unless it names another draft).

    XDM's `meta:*` keywords are unknown to JSON Schema, so the validator ignores them.
    Raises jsonschema.SchemaError when the schema itself is invalid.
    """
    cls = validator_for(schema, default=Draft6Validator)
    cls.check_schema(schema)
    validator: Validator = cls(schema, format_checker=format_checker())
    return validator


# --- small helpers -----------------------------------------------------------------------------


def _type_of(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _show(value: object, limit: int = 120) -> str:
    """A value as compact JSON, truncated: rejection messages say what was found."""
    return preview(value, limit)


def _required(path: Path) -> Violation:
    return Violation(path, "required", "required but missing")


def _not_object(path: Path, value: object) -> Violation:
    if value is _MISSING:
        return _required(path)
    return Violation(path, "type", f"expected an object, got {_type_of(value)}")


def _not_string(path: Path, value: object) -> Violation:
    if value is _MISSING:
        return _required(path)
    if value == "":
        return Violation(path, "minLength", "expected a non-empty string, got an empty string")
    return Violation(path, "type", f"expected a non-empty string, got {_type_of(value)}")
