"""Expressions → Python expression source, with what the generator knows of each result.

The generator emits only its own constructs. Every value from a mapping file enters the
source as `repr()` of a parsed literal (str, int, finite float, bool, None) or as the name of a
prepared object in the generated module's namespace (functions, constants, path tuples);
identifiers are the generator's own (`root`, `meta`, `e1`, `t3`, `fn_lower`, `K2`). Text from
the file appears in comments only through `comment()`, which cannot end the line.

Problems found while generating (unknown function, wrong arity, a bad literal regex or date
pattern, `[*]` where it cannot be) are collected, not raised, so that a file's every mistake
is reported in one run.

`[*]` in a field path: the first `depth` stars (as many as the destination has) read the
element the enclosing loop `e1`, `e2`, ... is at; any further star collects the values of
every element into an array (a prepared collector).
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Final, NoReturn

from connector.mapping import dates, paths, regexes, useragent
from connector.mapping.errors import ExpressionError, MappingFailure, SourceError
from connector.mapping.functions import (
    FUNCTION_NAMES,
    FUNCTIONS,
    JAVA_BLANKS,
    FunctionSpec,
    Runtime,
    get_url_query_value,
    user_agent,
)
from connector.mapping.limits import MappingLimits
from connector.mapping.nodes import (
    ArrayLit,
    Binary,
    Call,
    Literal,
    Member,
    Method,
    Node,
    Ref,
    Unary,
)
from connector.mapping.parser import RESERVED_WORDS
from connector.mapping.values import (
    INT_MAX,
    INT_MIN,
    add,
    clean,
    compare,
    divide,
    equal,
    modulo,
    multiply,
    negate,
    subtract,
    to_text,
    truthy,
    type_name,
)
from connector.records import SourceRecord

KAFKA_FIELDS: Final = ("topic", "partition", "offset", "timestamp", "key", "headers")
METHODS: Final = ("equals", "equalsIgnoreCase", "get")
_HASHES: Final = ("sha1", "sha256", "sha512", "md5")


# --- what generated code calls ---------------------------------------------------------------


def describe(exc: BaseException) -> str:
    """A message for an evaluation error. Only our own errors are quoted: other exceptions'
    texts may carry record values, which must not reach logs."""
    if isinstance(exc, (ExpressionError, MappingFailure)):
        return str(exc)
    return f"unexpected {type(exc).__name__} while evaluating"


def field_warning(warnings: list[str], destination: str, exc: Exception) -> None:
    """A field could not be produced: it is left out, with a warning. A MappingFailure (the
    evaluation budget is spent) always fails the record."""
    if isinstance(exc, MappingFailure):
        raise exc
    warnings.append(f"{destination}: {describe(exc)}")


def field_failure(warnings: list[str], destination: str, exc: Exception) -> NoReturn:
    """Strict mode: a field that could not be produced fails the record."""
    if isinstance(exc, MappingFailure):
        raise exc
    raise MappingFailure(f"{destination}: {describe(exc)}") from exc


def kafka_key(meta: SourceRecord) -> str | None:
    """`_kafka.key`: the key as text (UTF-8, undecodable bytes replaced), decoded only where an
    expression reads it; the record keeps the original bytes for the dead-letter topic."""
    key = meta.key
    return None if key is None else key.decode("utf-8", errors="replace")


def kafka_header(meta: SourceRecord, name: str) -> str | None:
    """`_kafka.headers.<name>`: the last header of that name, as text (None: absent or null)."""
    found: bytes | None = None
    for header, value in meta.headers:
        if header == name:
            found = value
    return None if found is None else found.decode("utf-8", errors="replace")


def kafka_headers(meta: SourceRecord) -> dict[str, str | None]:
    """`_kafka.headers`: every header as text, by name (a repeated name: its last value)."""
    return {
        name: None if value is None else value.decode("utf-8", errors="replace")
        for name, value in meta.headers
    }


def kafka_object(meta: SourceRecord) -> dict[str, object]:
    """The whole `_kafka` value, built only when an expression reads it as one object."""
    return {
        "topic": meta.topic,
        "partition": meta.partition,
        "offset": meta.offset,
        "timestamp": meta.timestamp_ms,
        "key": kafka_key(meta),
        "headers": kafka_headers(meta),
    }


def equals(target: object, other: object) -> object:
    """Java's String.equals: null target gives null (left out)."""
    if target is None:
        return None
    if other is None:
        return False
    return type(target) is type(other) and target == other


def equals_ignore_case(target: object, other: object) -> object:
    if target is None:
        return None
    if other is None:
        return False
    return to_text(target).lower() == to_text(other).lower()


def get_member(target: object, key: object) -> object:
    """`x.name`, `x[n]` and `x.get(k)` on a computed value."""
    if target is None or key is None:
        return None
    if isinstance(target, dict):
        return target.get(key if isinstance(key, str) else to_text(key))
    if isinstance(target, list) and isinstance(key, int) and not isinstance(key, bool):
        return target[key] if 0 <= key < len(target) else None
    raise ExpressionError(f"get: cannot read a field of a {type_name(target)}")


def text_of(value: object) -> str:
    """A part of a `"..." + x + ...` chain as text."""
    kind = value.__class__
    return value if kind is str else str(value) if kind is int else to_text(value)  # type: ignore[return-value]


def make_plus(limits: MappingLimits) -> Callable[[object, object], object]:
    cap = limits.max_string_length

    def plus(left: object, right: object) -> object:
        """`+`: add(), with the string length limit."""
        result = add(left, right)
        if result.__class__ is str and len(result) > cap:
            raise ExpressionError(f"+: the result is over the limit of {cap} characters")
        return result

    return plus


def make_cap_text(limits: MappingLimits) -> Callable[[str], str]:
    cap = limits.max_string_length

    def cap_text(text: str) -> str:
        if len(text) > cap:
            raise ExpressionError(f"+: the result is over the limit of {cap} characters")
        return text

    return cap_text


class Pending:
    """The value of a repeated call before (or instead of) its first evaluation: the call
    failed or was not reached, so each field that reads it computes it again (and reports
    the same error a call of its own would)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING: Final = Pending()


def collector(segments: list[tuple[str | int, ...]]) -> Callable[[object], object]:
    """Read the first segment; each further segment follows a `[*]` and maps over its array."""
    read = paths.getter(segments[0])
    if len(segments) == 1:
        return read
    rest = collector(segments[1:])

    def collect(value: object) -> object:
        items = read(value)
        if not isinstance(items, list):
            return None
        return [rest(item) for item in items]

    return collect


#: Names every generated module can use (besides the builtins).
HELPERS: Final[dict[str, object]] = {
    "equal": equal,
    "compare": compare,
    "truthy": truthy,
    "negate": negate,
    "subtract": subtract,
    "multiply": multiply,
    "divide": divide,
    "modulo": modulo,
    "text_of": text_of,
    "to_text": to_text,
    "equals": equals,
    "equals_ignore_case": equals_ignore_case,
    "get_member": get_member,
    "kafka_object": kafka_object,
    "kafka_key": kafka_key,
    "kafka_header": kafka_header,
    "kafka_headers": kafka_headers,
    "lookup": paths.lookup,
    "MISSING": paths.MISSING,
    "user_agent": user_agent,
    "PENDING": PENDING,
    "NUMBERS": (int, float),
    "INF": math.inf,
    "INT_MIN": INT_MIN,
    "INT_MAX": INT_MAX,
}


# --- the generated module's namespace --------------------------------------------------------


class Namespace:
    """Globals of one generated module: helpers, bound library functions and prepared
    constants, each under a name the generator chose."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.values: dict[str, object] = dict(HELPERS)
        self.values["plus"] = make_plus(runtime.limits)
        self.values["cap_text"] = make_cap_text(runtime.limits)
        self._constants = 0

    def function(self, spec: FunctionSpec) -> str:
        name = "fn_" + spec.name
        if name not in self.values:
            self.values[name] = spec.bind(self.runtime)
        return name

    def add(self, prefix: str, value: object) -> str:
        """A prepared object under a new name."""
        self._constants += 1
        name = f"{prefix}{self._constants}"
        self.values[name] = value
        return name

    def literal(self, value: object) -> str:
        """Source for a constant: repr() for plain scalars, else a prepared name."""
        if value is None or value.__class__ in (str, int, bool):
            return repr(value)
        if value.__class__ is float and math.isfinite(value):
            return repr(value)
        return self.add("K", value)


def comment(text: str) -> str:
    """Text from the mapping file made safe for a `#` comment (no line break can survive)."""
    return repr(text)[1:-1]


# --- calls repeated in a mapping ----------------------------------------------------------------

#: Kinds of values a repeated call may share: immutable, so two fields holding the same
#: object is the same as each holding its own.
_SHAREABLE_KINDS: Final = frozenset(["str", "int", "bool", "datetime"])


def _shape(node: object, shapes: dict[int, object]) -> object:
    """A node without its position (equal for an expression written twice); None when the
    expression reads the clock or makes uuids (two calls may differ). `shapes` keeps the
    shape of every Call seen, by id."""
    if isinstance(node, tuple):
        parts = tuple(_shape(item, shapes) for item in node)
        return None if any(part is None for part in parts) else parts
    if isinstance(node, Literal):  # repr: 1, 1.0, True and -0.0, 0.0 differ as text
        return (Literal, node.value.__class__, repr(node.value))
    if not isinstance(node, Node):
        return node  # names, operators, path steps
    if isinstance(node, Call) and (spec := FUNCTIONS.get(node.name)) and spec.uses_runtime:
        return None
    parts = tuple(_shape(getattr(node, name), shapes) for name in _fields(node))
    shape = None if any(part is None for part in parts) else (node.__class__, *parts)
    if isinstance(node, Call):
        shapes[id(node)] = shape
    return shape


def _fields(node: Node) -> list[str]:
    return [f.name for f in fields(node) if f.name not in ("line", "column")]


def repeated_calls(roots: list[Node]) -> frozenset[object]:
    """The shapes of calls a mapping writes more than once (outside another repeated call,
    which shares its whole argument): each is computed once where the fields share a block."""
    shapes: dict[int, object] = {}
    counts: dict[object, int] = {}
    for root in roots:
        _shape(root, shapes)
    for shape in shapes.values():
        if shape is not None:
            counts[shape] = counts.get(shape, 0) + 1
    outermost: dict[object, int] = {}

    def visit(node: object) -> None:
        if isinstance(node, tuple):
            for item in node:
                visit(item)
            return
        if not isinstance(node, Node):
            return
        shape = shapes.get(id(node))
        if shape is not None and counts[shape] > 1:
            outermost[shape] = outermost.get(shape, 0) + 1
            return
        for name in _fields(node):
            visit(getattr(node, name))

    for root in roots:
        visit(root)
    return frozenset(shape for shape, count in outermost.items() if count > 1)


# --- expressions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Code:
    """A Python expression and what is known of its value: `kind` is "str", "bool", "int",
    "number" (int or float, from arithmetic), "datetime", "list", "dict", "null" or "any";
    `nonnull` whether it can be None; `small` whether it is short whatever the record holds
    (Kafka position fields, literals);
    `members`, for a list or dict display the generator wrote, its values (each as a name
    that can be tested at run time, see needs_clean); `string_path`, for string methods on
    a variable (see string_method), the variable, the methods' chain and the calls' chain."""

    text: str
    kind: str = "any"
    nonnull: bool = False
    small: bool = False
    literal: bool = False
    value: object = None
    members: tuple[Code, ...] | None = None
    string_path: tuple[str, str, str] | None = None

    @property
    def is_str(self) -> bool:
        return self.kind == "str"


def _literal_code(value: object, source: str) -> Code:
    if value is None:
        return Code(source, "null", literal=True, small=True)
    kind = {str: "str", bool: "bool", int: "int"}.get(value.__class__, "any")
    return Code(source, kind, nonnull=True, small=True, literal=True, value=value)


def _returns(spec: FunctionSpec) -> tuple[str, bool]:
    text = spec.returns
    return text.rstrip("!"), text.endswith("!")


def _merge(first: Code, second: Code, text: str) -> Code:
    """One of two values (iif): what is known of both; a display or null keeps the display's
    members (a value that is not None is then the display)."""
    kinds = {first.kind, second.kind} - {"null"}
    kind = kinds.pop() if len(kinds) == 1 else "any"
    members = None
    if first.kind == "null" or second.kind == "null":
        members = second.members if first.kind == "null" else first.members
    return Code(text, kind, nonnull=first.nonnull and second.nonnull, members=members)


#: Kinds whose values clean() returns unchanged (ints: the functions returning them stay
#: within 64 bits; int literals are checked where they are written).
CLEAN_KINDS: Final = frozenset(["str", "bool", "int"])


def needs_clean(code: Code) -> str | None:
    """When the value of `code`, if not None, may need clean() (nulls, empty objects and
    arrays, unsendable values removed): a Python condition, or None when it never does.
    Decided at generation time for scalars of a clean kind and, through their members, for
    the list and dict displays the generator writes; otherwise the value's own class."""
    generic = "v.__class__ is not str"
    if code.kind in CLEAN_KINDS and code.members is None:
        return None
    if code.kind == "number":  # what clean() lets through as it is
        return (
            "not (v.__class__ is float and -INF < v < INF "
            "or v.__class__ is int and INT_MIN <= v <= INT_MAX)"
        )
    if not code.members:  # unknown, or an empty display (which cleans to None)
        return generic
    tests: list[str] = []
    for member in code.members:
        test = _member_needs_clean(member)
        if test == "True":
            return generic
        if test is not None:
            tests.append(test)
    return " or ".join(tests) or None


def _member_needs_clean(member: Code) -> str | None:
    if member.literal:
        return None if _clean_literal(member.value) else "True"
    if member.members is not None:
        return needs_clean(member)
    if member.kind in CLEAN_KINDS:
        return None if member.nonnull else f"{member.text} is None"
    if member.text.isidentifier():
        return f"{member.text}.__class__ is not str"
    return "True"


def _clean_literal(value: object) -> bool:
    try:
        return value is not None and clean(value) is value
    except ExpressionError:
        return False


class ExpressionGenerator:
    """Generates the expressions of one mapping entry; `depth` is its destination's `[*]`
    count (the loop variables e1..e<depth> are in scope)."""

    def __init__(
        self, namespace: Namespace, source: Source, depth: int = 0, hoist: bool = False
    ) -> None:
        self.ns = namespace
        self.runtime = namespace.runtime
        self.src = source
        self.temp = source.temp
        self.depth = depth
        self.hoist = hoist  # record reads become variables at the start of their frame
        self.problems: list[SourceError] = []
        self.notices: list[str] = []  # e.g. literal regexes that RE2 cannot run
        self.star_refs: list[list[tuple[str | int, ...]]] = []  # split_stars() of [*] paths
        self.volatile = False  # uses uuid()/guid(): a new value at every evaluation
        self.heavy = False  # calls a function whose cost grows with its input
        # Statements the caller writes before the expression (hoisting only): values that
        # several fields share, e.g. a user agent parsed once per record.
        self.setup: list[str] = []

    def problem(self, node: Node, message: str) -> None:
        self.problems.append(SourceError(message, node.line, node.column))

    def display(self, items: list[Code], keys: list[Code] | None = None) -> Code:
        """A list display, or with `keys` a dict display. A value that needs_clean cannot
        judge from its code is bound to a name, which the test after it reads."""
        texts: list[str] = []
        members: list[Code] = []
        for item in items:
            if (
                item.literal
                or item.members is not None
                or (item.kind in CLEAN_KINDS and item.nonnull)
            ):
                texts.append(item.text)
                members.append(item)
                continue
            first, then = self.bind(item)
            texts.append(first)
            members.append(Code(then, item.kind, nonnull=item.nonnull))
        if keys is None:
            return Code(f"[{', '.join(texts)}]", "list", nonnull=True, members=tuple(members))
        pairs = ", ".join(f"{k.text}: {t}" for k, t in zip(keys, texts, strict=True))
        return Code("{" + pairs + "}", "dict", nonnull=True, members=tuple(members))

    def bind(self, code: Code) -> tuple[str, str]:
        """(first use, later uses) of a value read more than once: a variable as it is,
        anything else through a walrus temporary."""
        if code.text.isidentifier():
            return code.text, code.text
        temp = self.temp()
        return f"({temp} := {code.text})", temp

    def expression(self, node: Node) -> Code:
        if isinstance(node, Literal):
            return _literal_code(node.value, self.ns.literal(node.value))
        if isinstance(node, Ref):
            return self.ref(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Method):
            return self.method(node)
        if isinstance(node, Member):
            call = node.target
            if (
                isinstance(call, Call)
                and call.name == "get_url_query_str"
                and isinstance(node.key, str)
                and FUNCTIONS[call.name].arity_problem(len(call.args)) is None
                and not all(isinstance(arg, Literal) for arg in call.args)  # folded at load
            ):
                return self.call(call, query_name=node.key)
            target = self.expression(node.target)
            if target.kind == "dict" and isinstance(node.key, str):  # the lookup get_member does
                if target.nonnull:
                    return Code(f"{_atom(target.text)}.get({node.key!r})")
                first, then = self.bind(target)
                return Code(f"(None if {first} is None else {then}.get({node.key!r}))")
            return Code(f"get_member({target.text}, {node.key!r})")
        if isinstance(node, ArrayLit):
            return self.display([self.expression(item) for item in node.items])
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    # --- field paths ------------------------------------------------------------------------

    def read(self, base: str, steps: tuple[str | int, ...], base_is_dict: bool = False) -> str:
        """Plain steps read from `base`: a variable defined once per frame when hoisting
        (reads are pure), else one conditional with one fallback (None)."""
        if not steps:
            return base
        if self.hoist and (base == "root" or base.startswith("e")):
            return self.hoisted(base, steps)
        return self.inline_read(base, steps, base_is_dict)

    def hoisted(self, base: str, steps: tuple[str | int, ...]) -> str:
        level = 0 if base == "root" else int(base[1:])
        known = self.src.read_var(base, steps, level)
        if known is not None:
            return known
        if len(steps) == 1:
            return self.src.define_read(base, steps, level, base, parent_is_dict=base == "root")
        parent = self.hoisted(base, steps[:-1])
        return self.src.define_read(base, steps, level, parent)

    def inline_read(
        self, base: str, steps: tuple[str | int, ...], base_is_dict: bool = False
    ) -> str:
        if not steps:
            return base
        conditions: list[str] = []
        current, known_dict = base, base_is_dict
        temp = ""
        for position, step in enumerate(steps):
            if not (isinstance(step, str) and known_dict):
                if not current.isidentifier():
                    temp = temp or self.temp()
                    subject = f"({temp} := {current})"
                    current = temp
                else:
                    subject = current
                if isinstance(step, str):
                    conditions.append(f"isinstance({subject}, dict)")
                else:
                    conditions.append(f"isinstance({subject}, list) and len({current}) > {step}")
            access = f"{current}.get({step!r})" if isinstance(step, str) else f"{current}[{step}]"
            if position == len(steps) - 1:
                if not conditions:
                    return access
                return f"({access} if {' and '.join(conditions)} else None)"
            current, known_dict = access, False
        raise AssertionError("unreachable")  # pragma: no cover

    def ref(self, node: Ref) -> Code:
        if node.kafka:
            return self.kafka(node)
        segments = paths.split_stars(node.steps)
        stars = len(segments) - 1
        if stars == 0:
            return Code(self.read("root", segments[0], base_is_dict=True))
        self.star_refs.append(segments)
        bound = min(stars, self.depth)
        rest = segments[bound:]
        if bound == 0:
            return Code(f"{self.ns.add('collect', collector(rest))}(root)")
        element = f"e{bound}"
        if len(rest) == 1:
            return Code(self.read(element, rest[0]))
        return Code(f"{self.ns.add('collect', collector(rest))}({element})")

    def kafka(self, node: Ref) -> Code:
        steps = node.steps
        if any(isinstance(step, paths.Star) for step in steps):
            self.problem(node, "[*] cannot be used on _kafka")
            return Code("None", "null")
        if not steps:
            return Code("kafka_object(meta)", "dict", nonnull=True)
        first, rest = steps[0], steps[1:]
        if first not in KAFKA_FIELDS:
            self.problem(
                node,
                f"unknown Kafka metadata field {first!r}; use _kafka.topic, _kafka.partition, "
                "_kafka.offset, _kafka.timestamp, _kafka.key or _kafka.headers.<name>",
            )
            return Code("None", "null")
        if first == "headers":
            if not rest:
                return Code("kafka_headers(meta)", "dict", nonnull=True)
            name = rest[0]
            if not isinstance(name, str):
                self.problem(node, "a Kafka header is read by name: _kafka.headers.<name>")
                return Code("None", "null")
            after = tuple(s for s in rest[1:] if not isinstance(s, paths.Star))
            return Code(self.read(f"kafka_header(meta, {name!r})", after))
        if rest:
            self.problem(node, f"_kafka.{first} has no fields")
            return Code("None", "null")
        if first == "topic":
            return Code("meta.topic", "str", nonnull=True, small=True)
        if first == "partition":
            return Code("meta.partition", "int", nonnull=True, small=True)
        if first == "offset":
            return Code("meta.offset", "int", nonnull=True, small=True)
        if first == "timestamp":
            return Code("meta.timestamp_ms", "int", small=True)
        return Code("kafka_key(meta)", "str")

    # --- calls ------------------------------------------------------------------------------

    def call(self, node: Call, query_name: str | None = None) -> Code:
        """A function call; with `query_name`, `get_url_query_str(...).name` (the caller
        checked the call reaches the end here): get_url_query_value reads that parameter
        alone instead of building the object of all of them."""
        spec = FUNCTIONS.get(node.name)
        if spec is None:
            self.problem(node, _unknown_function(node.name))
            for arg in node.args:
                self.expression(arg)  # still report problems inside the arguments
            return Code("None", "null")
        arity = spec.arity_problem(len(node.args))
        if arity is not None:
            self.problem(node, arity)
            for arg in node.args:
                self.expression(arg)
            return Code("None", "null")
        if node.name == "iif":
            return self.iif(node)
        if node.name == "contains_key":
            return self.contains_key(node)
        if node.name == "decode":
            return self.decode(node)
        problems = len(self.problems)
        args = [self.expression(arg) for arg in node.args]
        for index, check in spec.literal_checks.items():
            if index < len(node.args):
                self.check_literal(node.args[index], node.name, check)
        if spec.literal_checks.get(1) is not None and node.name in _REGEX_FUNCTIONS:
            self.regex_notice(node)
        if node.name in ("uuid", "guid"):
            self.volatile = True
        if node.name.startswith("ua_"):
            useragent.prepare()
            shared = self.user_agent(node.name[3:], args[0])
            if shared is not None:
                return shared
        self.heavy = self.heavy or spec.heavy
        if all(isinstance(arg, Literal) for arg in node.args) and not spec.uses_runtime:
            if len(self.problems) == problems:
                return self.fold(node, spec)
            return Code("None", "null")
        if query_name is not None:
            self.ns.values["get_url_query_value"] = get_url_query_value
            mode = args[1].text if len(args) > 1 else repr("retain")
            return Code(f"get_url_query_value({args[0].text}, {mode}, {query_name!r})", "str")
        code = self.special_call(node, spec, args)
        if code is None:
            kind, nonnull = _returns(spec)
            text = f"{self.ns.function(spec)}({', '.join(a.text for a in args)})"
            code = Code(text, kind, nonnull=nonnull)
        return self.shared(node, code)

    def shared(self, node: Call, code: Code) -> Code:
        """A call the mapping repeats (see repeated_calls) is computed once per block: its
        first evaluation stores the value in a variable, set to PENDING before the field
        (statements of the caller); later ones read it, or compute it again if it is still
        PENDING (it failed, or was not reached), which gives the same value or error."""
        if not self.hoist or code.kind not in _SHAREABLE_KINDS or code.literal:
            return code
        shape = _shape(node, {})
        if shape not in self.src.repeated:
            return code
        key = f"{self.depth}:{self.src.shape_index(shape)}"
        name = self.src.memo(key)
        if name is None:
            name = self.src.fresh("shared")
            note = f"# {node.name}(...): computed once for the fields below that repeat it"
            self.setup.append(f"{name} = PENDING  {note}")
            self.src.add_memo(key, name)
            return replace(code, text=f"({name} := {code.text})", string_path=None)
        text = f"({name} if {name} is not PENDING else {code.text})"
        return replace(code, text=text, string_path=None)

    def user_agent(self, attribute: str, value: Code) -> Code | None:
        """`ua_os_name(x)`, `ua_agent_name(x)`, ...: the user agent in the variable x is
        parsed once (a setup statement before the first field that reads it) and each
        function reads one attribute of the result; None when x is not a variable."""
        if not self.hoist or value.literal or not value.text.isidentifier():
            return None
        key = f"user_agent({value.text})"
        agent = self.src.memo(key)
        if agent is None:
            agent = self.src.fresh("agent")
            note = f"# parsed once for every ua_*({value.text})"
            self.setup.append(f"{agent} = user_agent({value.text})  {note}")
            self.src.add_memo(key, agent)
            self.heavy = True
        return Code(f"{agent}.{attribute}", "str")

    def special_call(self, node: Call, spec: FunctionSpec, args: list[Code]) -> Code | None:
        """Calls written out inline: object and array builders, hashes straight to hashlib."""
        name = node.name
        if name in ("to_object", "to_map") and all(
            a.literal and a.kind == "str" for a in args[0::2]
        ):
            return self.display(args[1::2], keys=args[0::2])
        if name == "to_array" and args[0].literal:
            values = args[1:]
            if args[0].value is True or all(v.nonnull for v in values):
                return self.display(values)
            return None
        if name in _HASHES and len(args) == 1:
            digest = f"hashlib_{name}"
            self.ns.values[digest] = getattr(hashlib, name)
            if args[0].is_str and args[0].nonnull:
                text = _atom(args[0].text)
                return Code(f"{digest}({text}.encode()).hexdigest()", "str", nonnull=True)
            first, then = self.bind(args[0])
            if args[0].is_str:
                hexdigest = f"{digest}({then}.encode()).hexdigest()"
                return Code(f"(None if {first} is None else {hexdigest})", "str")
            return Code(
                f"({digest}({then}.encode()).hexdigest() if {first}.__class__ is str "
                f"else {self.ns.function(spec)}({then}))",
                "str",
            )
        if name in ("format", "dformat", "date") and len(args) > 1 and args[1].is_str:
            pattern = args[1].value
            if args[1].literal and isinstance(pattern, str):  # prepared once, here
                try:
                    prepared = self.ns.add("pattern", dates.pattern(pattern))
                except SourceError:
                    return None  # already reported by the literal check
                rest = ", ".join(a.text for a in [args[0], Code(prepared), *args[2:]])
                kind, nonnull = _returns(spec)
                call = f"{self.ns.function(spec)}({rest})"
                value = args[0].text
                if name == "dformat" and value.isidentifier():  # epoch ms: straight through
                    self.ns.values["from_epoch_ms"] = dates.from_epoch_ms
                    call = (
                        f"({prepared}.format(from_epoch_ms({value})) "
                        f"if {value}.__class__ is int else {call})"
                    )
                return Code(call, kind, nonnull=nonnull)
        if name in _STRING_METHODS and len(args) == 1:
            return self.string_method(spec, _STRING_METHODS[name], args[0])
        if name == "concat" and all(a.literal or a.text.isidentifier() for a in args):
            return self.concat(spec, args)
        if name == "is_empty" and args[0].text.isidentifier():
            value = args[0].text
            return Code(
                f"({value} is None or isinstance({value}, (str, list, dict)) and not {value})",
                "bool",
                nonnull=True,
            )
        return None

    def string_method(self, spec: FunctionSpec, method: str, arg: Code) -> Code:
        """lower(x), trim(x), ...: the str method itself when x is a string; the library
        function (which converts other values or rejects them) otherwise. On a variable the
        test is written once for a chain: `lower(trim(x))` is `x.strip(...).lower()` when x
        is a string, else `fn_lower(fn_trim(x))`."""
        if "JAVA_BLANKS" in method:
            self.ns.values["JAVA_BLANKS"] = JAVA_BLANKS
        function = self.ns.function(spec)
        if arg.string_path is not None or (arg.text.isidentifier() and not arg.is_str):
            name, methods, calls = arg.string_path or (arg.text, arg.text, arg.text)
            methods, calls = f"{methods}.{method}", f"{function}({calls})"
            text = f"({methods} if {name}.__class__ is str else {calls})"
            return Code(text, "str", string_path=(name, methods, calls))
        if arg.is_str and arg.nonnull:
            return Code(f"{_atom(arg.text)}.{method}", "str", nonnull=True)
        first, then = self.bind(arg)
        if arg.is_str:
            return Code(f"(None if {first} is None else {then}.{method})", "str")
        call = f"{function}({then})"
        return Code(f"({then}.{method} if {first}.__class__ is str else {call})", "str")

    def concat(self, spec: FunctionSpec, args: list[Code]) -> Code:
        """concat() of strings as `+` (the usual case), else the library function; the
        length limit is the same either way."""
        names = [a.text for a in args if not a.literal]
        literal = sum(len(str(a.value)) for a in args if a.literal and a.kind == "str")
        checks = " and ".join(f"{n}.__class__ is str" for n in names if not n.startswith("("))
        if not names or any(a.literal and a.kind != "str" for a in args):
            return Code(f"{self.ns.function(spec)}({', '.join(a.text for a in args)})", "str")
        size = " + ".join(f"len({n})" for n in names)
        cap = self.runtime.limits.max_string_length - literal
        joined = " + ".join(a.text for a in args)
        call = f"{self.ns.function(spec)}({', '.join(a.text for a in args)})"
        return Code(f"({joined} if {checks} and {size} <= {cap} else {call})", "str")

    def fold(self, node: Call, spec: FunctionSpec) -> Code:
        """A call with only literal arguments is computed once, here; if it can only fail,
        that is a load-time problem rather than a warning on every record."""
        values = [arg.value for arg in node.args if isinstance(arg, Literal)]
        try:
            value = spec.bind(self.runtime)(*values)
        except Exception as exc:
            self.problem(node, f"{node.name}() always fails here: {describe(exc)}")
            return Code("None", "null")
        return (
            _literal_code(value, self.ns.literal(value))
            if value is not None
            else Code("None", "null")
        )

    def check_literal(self, arg: Node, function: str, check: Callable[[object], object]) -> None:
        if not isinstance(arg, Literal):
            return
        try:
            check(arg.value)
        except ExpressionError as exc:
            self.problem(arg, f"{function}(): {exc}")

    def regex_notice(self, node: Call) -> None:
        pattern = node.args[1] if len(node.args) > 1 else None
        if isinstance(pattern, Literal) and isinstance(pattern.value, str):
            notice = regexes.engine_notice(pattern.value)
            if notice is not None:
                self.notices.append(f"{notice} (line {pattern.line}, column {pattern.column})")

    def condition(self, code: Code) -> str:
        """A condition's truth as a Python bool expression."""
        if code.kind == "bool" and code.nonnull:
            return code.text
        if code.kind == "bool":
            return f"{code.text} is True"
        return f"truthy({code.text})"

    def iif(self, node: Call) -> Code:
        test, then, otherwise = (self.expression(arg) for arg in node.args)
        return _merge(
            then, otherwise, f"({then.text} if {self.condition(test)} else {otherwise.text})"
        )

    def decode(self, node: Call) -> Code:
        """decode(KEY, k1, v1, ..., DEFAULT?): like iif, only the chosen value is evaluated.
        With string-literal keys and literal values the choice is one dict lookup."""
        key = self.expression(node.args[0])
        rest = [self.expression(arg) for arg in node.args[1:]]
        cases, values = rest[0::2][: len(rest) // 2], rest[1::2]
        default = rest[-1] if len(rest) % 2 else Code("None", "null", literal=True)
        first_use, temp = self.bind(key)
        literal_keys = all(c.literal and c.kind == "str" for c in cases)
        if literal_keys and all(v.literal or v.kind == "null" for v in [*values, default]):
            table: dict[object, object] = {}
            for case, value in zip(cases, values, strict=True):
                table.setdefault(case.value, value.value)
            fallback = f"{self.ns.add('decode', _decode_fallback(table, default.value))}({temp})"
            text = (
                f"({self.ns.add('table', table)}.get({temp}, {default.text}) "
                f"if {first_use}.__class__ is str else {fallback})"
            )
            result = Code(text)
            kinds = {v.kind for v in [*values, default]} - {"null"}
            if len(kinds) == 1:
                result = Code(text, kinds.pop(), nonnull=default.nonnull)
            return result
        branches: list[str] = []
        first = True
        for case, value in zip(cases, values, strict=True):
            subject = first_use if first else temp
            first = False
            branches.append(f"{value.text} if equal({subject}, {case.text}) else ")
        if first:  # no pairs: only the key (evaluated) and the default
            return Code(f"({key.text}, {default.text})[1]")
        return Code("(" + "".join(branches) + default.text + ")")

    def contains_key(self, node: Call) -> Code:
        (arg,) = node.args
        if isinstance(arg, Literal) and isinstance(arg.value, str):
            try:
                steps, escaped = paths.parse_path(arg.value)
            except SourceError as exc:
                self.problem(arg, f"contains_key(): {exc.message}")
                return Code("None", "null")
            kafka = not escaped and steps[0] == "_kafka"
            arg = Ref(arg.line, arg.column, steps[1:] if kafka else steps, kafka)
        if not isinstance(arg, Ref):
            self.problem(node, "contains_key() takes a field path, e.g. contains_key(user.email)")
            return Code("None", "null")
        if arg.kafka:
            return Code(f"({self.ref(arg).text} is not None)", "bool", nonnull=True)
        if any(isinstance(step, paths.Star) for step in arg.steps):
            self.problem(node, "contains_key() takes a path without [*]")
            return Code("None", "null")
        path = self.ns.literal(tuple(arg.steps))
        return Code(f"(lookup(root, {path}) is not MISSING)", "bool", nonnull=True)

    # --- operators --------------------------------------------------------------------------

    def binary(self, node: Binary) -> Code:
        if node.op == "+":
            chain = _plus_chain(node)
            if len(chain) > 2 and any(
                isinstance(n, Literal) and isinstance(n.value, str) for n in chain[:2]
            ):
                return self.text_chain(chain)
        left, right, op = self.expression(node.left), self.expression(node.right), node.op
        if op in ("and", "or"):
            return Code(
                f"({self.condition(left)} {op} {self.condition(right)})", "bool", nonnull=True
            )
        if op in ("==", "!="):
            equality = self.equality(left, right)
            return Code(equality if op == "==" else f"not {equality}", "bool", nonnull=True)
        if op == "+":
            return Code(f"plus({left.text}, {right.text})")
        if op in _ARITHMETIC:
            return self.arithmetic(op, left, right)
        temp = self.temp()
        return Code(
            f"(({temp} := compare({left.text}, {right.text})) is not None and {temp} {op} 0)",
            "bool",
            nonnull=True,
        )

    def arithmetic(self, op: str, left: Code, right: Code) -> Code:
        """`a - b`, `a * b`: Python's operator when both are numbers (the test subtract()
        and multiply() start with), else the function (numeric strings, nulls, errors).
        Written inline when the left operand is a variable or a number literal: it is then
        read after the right one with the same outcome."""
        call = f"{_ARITHMETIC[op]}({left.text}, {right.text})"
        left_number = left.literal and left.value.__class__ in (int, float)
        if op not in ("-", "*") or not (left_number or left.text.isidentifier()):
            return Code(call, "number")
        if right.literal and right.value.__class__ not in (int, float):
            return Code(call, "number")
        tests: list[str] = []
        right_text = right.text
        if not right.literal:
            first, right_text = self.bind(right)
            tests.append(f"{first}.__class__ in NUMBERS")
        if not left_number:
            tests.append(f"{left.text}.__class__ in NUMBERS")
        fallback = f"{_ARITHMETIC[op]}({left.text}, {right_text})"
        if not tests:  # two number literals
            return Code(call, "number")
        text = f"({left.text} {op} {right_text} if {' and '.join(tests)} else {fallback})"
        return Code(text, "number")

    def equality(self, left: Code, right: Code) -> str:
        """`==` as equal(); against a string literal, str == str is decided inline."""
        if right.literal and right.kind == "str" and not left.literal:
            if left.is_str and left.nonnull:
                return f"({left.text} == {right.text})"
            first, then = self.bind(left)
            if left.is_str:
                return f"({first} is not None and {then} == {right.text})"
            return (
                f"({then} == {right.text} if {first}.__class__ is str "
                f"else equal({then}, {right.text}))"
            )
        return f"equal({left.text}, {right.text})"

    def text_chain(self, chain: list[Node]) -> Code:
        """`a + "/" + b + "/" + c`: once a string is in the first two operands every `+` is a
        concatenation, so the chain is one expression (null anywhere still gives null)."""
        parts = [self.expression(n) for n in chain]
        if any(p.literal and p.value is None for p in parts):
            return Code("None", "null")
        texts: list[str] = []
        nullable: list[str] = []
        for part in parts:
            if part.literal:
                texts.append(repr(to_text(part.value)))
                continue
            text = part.text
            if not part.nonnull:
                temp = self.temp()
                nullable.append(f"({temp} := {text}) is None")
                text = temp
            if part.is_str:
                texts.append(text)
            elif part.kind == "int":
                texts.append(f"str({text})")
            else:
                texts.append(f"text_of({text})")
        joined = " + ".join(texts)
        if not all(p.small for p in parts):
            joined = f"cap_text({joined})"
        if not nullable:
            return Code(joined, "str", nonnull=True)
        return Code(f"(None if {' or '.join(nullable)} else {joined})", "str")

    def unary(self, node: Unary) -> Code:
        operand = self.expression(node.operand)
        if node.op == "-":
            return Code(f"negate({operand.text})", "number")
        return Code(f"(not {self.condition(operand)})", "bool", nonnull=True)

    def method(self, node: Method) -> Code:
        target = self.expression(node.target)
        args = [self.expression(arg) for arg in node.args]
        if node.name not in METHODS:
            self.problem(
                node, f"unknown method {node.name!r}; methods are equals, equalsIgnoreCase, get"
            )
            return Code("None", "null")
        if len(args) != 1:
            self.problem(node, f".{node.name}() takes 1 argument, got {len(args)}")
            return Code("None", "null")
        helper = {"equals": "equals", "equalsIgnoreCase": "equals_ignore_case"}.get(
            node.name, "get_member"
        )
        return Code(f"{helper}({target.text}, {args[0].text})")


_ARITHMETIC: Final = {"-": "subtract", "*": "multiply", "/": "divide", "mod": "modulo"}
#: String functions written as the str method they are on a string.
_STRING_METHODS: Final = {
    "lower": "lower()",
    "lcase": "lower()",
    "upper": "upper()",
    "ucase": "upper()",
    "trim": "strip(JAVA_BLANKS)",
    "ltrim": "lstrip(JAVA_BLANKS)",
    "rtrim": "rstrip(JAVA_BLANKS)",
}


def _atom(text: str) -> str:
    """An expression as an operand of `.`: parenthesized unless it is a name."""
    return text if text.isidentifier() else f"({text})"


_REGEX_FUNCTIONS: Final = frozenset(["explode", "extract_regex", "matches_regex"])


def _decode_fallback(table: dict[object, object], default: object) -> Callable[[object], object]:
    """decode() for a key that is not a string: `==` rules (a number equals its numeric
    string), null gives the default."""
    pairs = list(table.items())

    def decode_other(key: object) -> object:
        if key is None:
            return default
        for case, value in pairs:
            if equal(key, case):
                return value
        return default

    return decode_other


def _plus_chain(node: Node) -> list[Node]:
    """The operands of a left-nested chain of `+`: ((a + b) + c) + d gives [a, b, c, d]."""
    operands: list[Node] = []
    while isinstance(node, Binary) and node.op == "+":
        operands.append(node.right)
        node = node.left
    operands.append(node)
    operands.reverse()
    return operands


def _unknown_function(name: str) -> str:
    if name in RESERVED_WORDS:
        hint = (
            " (use size_of)" if name == "size" else (" (use is_empty)" if name == "empty" else "")
        )
        return f"{name!r} is a reserved word, not a function{hint}"
    close = difflib.get_close_matches(name, FUNCTION_NAMES, n=1)
    return f"unknown function {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


# --- function source -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Read:
    """One hoisted record read: `name = parent.get(step)` (or `parent[step]` for an index)."""

    name: str
    parent: str
    step: str | int
    parent_is_dict: bool  # `root` is a dict; other parents are checked


@dataclass(slots=True)
class _Frame:
    """The function's top or one loop's body: record reads hoisted to its start (the
    prelude), then its statements."""

    base: int  # the indentation of the frame's first statements (and of its prelude)
    indent: int = 0
    body: list[str] = field(default_factory=list)
    reads: dict[tuple[str, tuple[str | int, ...]], str] = field(default_factory=dict)
    prelude: list[_Read] = field(default_factory=list)

    def prelude_lines(self) -> list[str]:
        """The hoisted reads in the order they were defined; the fields of one object are
        read under one isinstance() check of it (a record may hold anything there)."""
        pad = "    " * self.base
        fields: dict[str, list[_Read]] = {}
        for read in self.prelude:
            if isinstance(read.step, str) and not read.parent_is_dict:
                fields.setdefault(read.parent, []).append(read)
        lines: list[str] = []
        for read in self.prelude:
            parent, step = read.parent, read.step
            if isinstance(step, int):
                lines.append(
                    f"{pad}{read.name} = ({parent}[{step}] "
                    f"if isinstance({parent}, list) and len({parent}) > {step} else None)"
                )
            elif read.parent_is_dict:
                lines.append(f"{pad}{read.name} = {parent}.get({step!r})")
            elif len(fields[parent]) == 1:
                lines.append(
                    f"{pad}{read.name} = ({parent}.get({step!r}) "
                    f"if isinstance({parent}, dict) else None)"
                )
            elif fields[parent][0] is read:  # the first field of the object: read them all
                lines.append(f"{pad}if isinstance({parent}, dict):")
                lines += [f"{pad}    {f.name} = {parent}.get({f.step!r})" for f in fields[parent]]
                lines.append(f"{pad}else:")
                lines.append(f"{pad}    {' = '.join(f.name for f in fields[parent])} = None")
        return lines


class Source:
    """The lines of one generated function: indentation, fresh names, record reads hoisted
    to the start of the function or loop body where their base is known, and values
    computed once per block (see `memo`)."""

    def __init__(self) -> None:
        self.frames = [_Frame(base=1, indent=1)]
        self._counters: dict[str, int] = {}
        self._names: set[str] = set()
        self._memos: list[dict[str, str]] = [{}]  # one scope per open block
        #: Shapes of the calls the mapping repeats (repeated_calls), computed once per block.
        self.repeated: frozenset[object] = frozenset()
        self._shape_numbers: dict[object, int] = {}

    @property
    def indent(self) -> int:
        return self.frames[-1].indent

    def line(self, text: str, extra: int = 0) -> None:
        self.frames[-1].body.append("    " * (self.indent + extra) + text)

    def open_block(self) -> None:
        """Indent the next lines (the body of an `if` the caller wrote)."""
        self.frames[-1].indent += 1
        self._memos.append({})

    def close_block(self) -> None:
        self.frames[-1].indent -= 1
        self._memos.pop()

    def open_loop(self, header: str) -> None:
        self.line(header)
        self.frames.append(_Frame(base=self.indent + 1, indent=self.indent + 1))
        self._memos.append({})

    def close_loop(self) -> None:
        frame = self.frames.pop()
        self._memos.pop()
        self.frames[-1].body.extend(frame.prelude_lines() + frame.body)

    def lines(self) -> list[str]:
        assert len(self.frames) == 1
        return self.frames[0].prelude_lines() + self.frames[0].body

    def fresh(self, prefix: str) -> str:
        count = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = count
        return f"{prefix}{count}"

    def temp(self) -> str:
        return self.fresh("t")

    def memo(self, key: str) -> str | None:
        """The variable holding the value `key` names, if a statement already computed it in
        this block or an enclosing one (so it has run whenever the next line runs)."""
        for scope in reversed(self._memos):
            if key in scope:
                return scope[key]
        return None

    def add_memo(self, key: str, variable: str) -> None:
        self._memos[-1][key] = variable

    def shape_index(self, shape: object) -> int:
        """A number for a repeated call's shape, for memo keys."""
        return self._shape_numbers.setdefault(shape, len(self._shape_numbers))

    def read_var(self, base: str, steps: tuple[str | int, ...], level: int) -> str | None:
        """The variable holding `base` read along `steps`, defined once at the start of the
        frame of `level` (0: the function, n: the n-th loop)."""
        frame = self.frames[level] if level < len(self.frames) else None
        if frame is None:
            return None
        return frame.reads.get((base, steps))

    def define_read(
        self,
        base: str,
        steps: tuple[str | int, ...],
        level: int,
        parent: str,
        parent_is_dict: bool = False,
    ) -> str:
        """A new variable for `base` read along `steps`: its last step read from `parent`,
        the variable of the steps before it (or `base` itself)."""
        frame = self.frames[level]
        name = _read_name(base, steps)
        while name in self._names:
            name = f"{_read_name(base, steps)}_{self.fresh('_')[1:]}"
        self._names.add(name)
        frame.reads[(base, steps)] = name
        frame.prelude.append(_Read(name, parent, steps[-1], parent_is_dict))
        return name


def _read_name(base: str, steps: tuple[str | int, ...]) -> str:
    """A readable variable name for a record path: `f_device_viewport_h`, `e1_sku`."""
    parts = [
        "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in str(step))
        for step in steps
    ]
    name = "_".join(part.strip("_") or "x" for part in parts)[:40]
    return ("f_" if base == "root" else f"{base}_") + name


def compile_source(source: str, namespace: dict[str, object], name: str) -> Callable[..., object]:
    """Compile generated source and return the function `name` it defines."""
    code = compile(source, f"<mapping {comment(name)}>", "exec")
    exec(code, namespace)  # noqa: S102 - generated by this module from parsed nodes only
    function = namespace[name]
    assert callable(function)
    return function
