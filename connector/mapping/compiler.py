"""Expression syntax trees → plain Python closures `Ctx -> value`, built once per mapping.

Problems found while compiling (unknown function, wrong arity, a bad literal regex or date
pattern, `[*]` where it cannot be) are collected, not raised, so that a file's every mistake
is reported in one run. The closures do no parsing and no validation per record.

`[*]` in a field path: the first `depth` stars (as many as the destination has) are bound to
the element currently being built, `ctx.bound[level]`; any further star collects the values of
every element into an array.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Final

from connector.mapping import paths, useragent
from connector.mapping.errors import ExpressionError, MappingFailure, SourceError
from connector.mapping.functions import FUNCTION_NAMES, FUNCTIONS, Runtime
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
    add,
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
from connector.records import RecordMeta

KAFKA_FIELDS: Final = ("topic", "partition", "offset", "timestamp", "key", "headers")
METHODS: Final = ("equals", "equalsIgnoreCase", "get")


class Ctx:
    """One record being mapped: its value, its Kafka metadata, the array elements bound by the
    destination's `[*]`, and the field warnings collected so far."""

    __slots__ = ("bound", "meta", "root", "strict", "warnings")

    def __init__(self, root: dict[str, object], meta: RecordMeta, strict: bool) -> None:
        self.root = root
        self.meta = meta
        self.bound: tuple[object, ...] = ()
        self.warnings: list[str] = []
        self.strict = strict

    def field_error(self, destination: str, exc: Exception) -> None:
        """A field could not be produced: a warning, or in strict mode the record's failure."""
        message = f"{destination}: {describe(exc)}"
        if self.strict:
            raise MappingFailure(message) from exc
        self.warnings.append(message)


def describe(exc: Exception) -> str:
    """A message for an evaluation error. Only our own errors are quoted: other exceptions'
    texts may carry record values, which must not reach logs."""
    if isinstance(exc, (ExpressionError, MappingFailure)):
        return str(exc)
    return f"unexpected {type(exc).__name__} while evaluating"


Eval = Callable[[Ctx], object]
StarSegments = list[tuple[str | int, ...]]


def kafka_object(meta: RecordMeta) -> dict[str, object]:
    """The whole `_kafka` value, built only when an expression reads it as one object."""
    return {
        "topic": meta.topic,
        "partition": meta.partition,
        "offset": meta.offset,
        "timestamp": meta.timestamp_ms,
        "key": meta.key,
        "headers": dict(meta.headers),
    }


class ExpressionCompiler:
    """Compiles the expressions of one mapping entry; `depth` is its destination's `[*]` count."""

    def __init__(self, runtime: Runtime, depth: int = 0) -> None:
        self.runtime = runtime
        self.depth = depth
        self.problems: list[SourceError] = []
        self.star_refs: list[StarSegments] = []  # split_stars() of every path with a [*]
        self.volatile = False  # uses uuid()/guid(): a new value at every evaluation

    def problem(self, node: Node, message: str) -> None:
        self.problems.append(SourceError(message, node.line, node.column))

    def compile(self, node: Node) -> Eval:
        if isinstance(node, Literal):
            return _constant(node.value)
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
            return self.member(node)
        if isinstance(node, ArrayLit):
            items = [self.compile(item) for item in node.items]
            return lambda ctx: [item(ctx) for item in items]
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    # --- field paths ----------------------------------------------------------------------

    def ref(self, node: Ref) -> Eval:
        if node.kafka:
            return self.kafka(node)
        segments = paths.split_stars(node.steps)
        stars = len(segments) - 1
        if stars == 0:
            return _root_reader(segments[0])
        self.star_refs.append(segments)
        bound = min(stars, self.depth)
        rest = segments[bound:]
        if bound == 0:
            walk = _collector(rest)
            return lambda ctx: walk(ctx.root)
        level = bound - 1
        if len(rest) == 1 and len(rest[0]) == 1 and isinstance(rest[0][0], str):
            name = rest[0][0]

            def read_element(ctx: Ctx) -> object:  # the usual items[*].field
                element = ctx.bound[level]
                return element.get(name) if isinstance(element, dict) else None

            return read_element
        walk = _collector(rest)
        return lambda ctx: walk(ctx.bound[level])

    def kafka(self, node: Ref) -> Eval:
        steps = node.steps
        if any(isinstance(step, paths.Star) for step in steps):
            self.problem(node, "[*] cannot be used on _kafka")
            return _constant(None)
        if not steps:
            return lambda ctx: kafka_object(ctx.meta)
        first, rest = steps[0], steps[1:]
        if first not in KAFKA_FIELDS:
            self.problem(
                node,
                f"unknown Kafka metadata field {first!r}; use _kafka.topic, _kafka.partition, "
                "_kafka.offset, _kafka.timestamp, _kafka.key or _kafka.headers.<name>",
            )
            return _constant(None)
        if first == "headers":
            if not rest:
                return lambda ctx: dict(ctx.meta.headers)
            name = rest[0]
            if not isinstance(name, str):
                self.problem(node, "a Kafka header is read by name: _kafka.headers.<name>")
                return _constant(None)
            after = paths.getter(tuple(s for s in rest[1:] if not isinstance(s, paths.Star)))
            return lambda ctx: after(ctx.meta.headers.get(name))
        if rest:
            self.problem(node, f"_kafka.{first} has no fields")
            return _constant(None)
        if first == "topic":
            return lambda ctx: ctx.meta.topic
        if first == "partition":
            return lambda ctx: ctx.meta.partition
        if first == "offset":
            return lambda ctx: ctx.meta.offset
        if first == "timestamp":
            return lambda ctx: ctx.meta.timestamp_ms
        return lambda ctx: ctx.meta.key

    # --- calls ----------------------------------------------------------------------------

    def call(self, node: Call) -> Eval:
        spec = FUNCTIONS.get(node.name)
        if spec is None:
            self.problem(node, _unknown_function(node.name))
            for arg in node.args:
                self.compile(arg)  # still report problems inside the arguments
            return _constant(None)
        arity = spec.arity_problem(len(node.args))
        if arity is not None:
            self.problem(node, arity)
            for arg in node.args:
                self.compile(arg)
            return _constant(None)
        if node.name == "iif":
            return self.iif(node)
        if node.name == "contains_key":
            return self.contains_key(node)
        if node.name == "decode":
            return self.decode(node)
        if node.name in ("to_object", "to_map") and all(
            isinstance(key, Literal) and isinstance(key.value, str) for key in node.args[0::2]
        ):
            return self.object_literal(node)
        args = [self.compile(arg) for arg in node.args]
        problems = len(self.problems)
        for index, check in spec.literal_checks.items():
            if index < len(node.args):
                self.check_literal(node.args[index], node.name, check)
        impl = spec.bind(self.runtime)
        if node.name in ("uuid", "guid"):
            self.volatile = True
        if node.name.startswith("ua_"):
            useragent.prepare()
        literal = [isinstance(arg, Literal) for arg in node.args]
        if all(literal) and not spec.uses_runtime and len(self.problems) == problems:
            return self.fold(node, impl)
        fused = self.fused_call(impl, node.args, args)
        return fused if fused is not None else _caller(impl, node.args, args)

    def simple_read(self, node: Node) -> tuple[int, tuple[str, ...]] | None:
        """For a field path the caller can read inline: (level, names), level -1 being the
        record (one or two names) and n the element bound by the n-th [*] (one name)."""
        if not isinstance(node, Ref) or node.kafka:
            return None
        segments = paths.split_stars(node.steps)
        stars = len(segments) - 1
        last = segments[-1]
        if not all(isinstance(step, str) for step in last):
            return None
        names = tuple(str(step) for step in last)
        if stars == 0 and 1 <= len(names) <= 2:
            return -1, names
        if 0 < stars <= self.depth and len(names) == 1:
            return stars - 1, names
        return None

    def fused_call(
        self, impl: Callable[..., object], nodes: tuple[Node, ...], compiled: list[Eval]
    ) -> Eval | None:
        """`f(field)`, `f(field, literal)` and `f(field, expr)`, the most common calls, read the
        field inline: one call less per evaluation than through the field's own closure."""
        if not nodes or len(nodes) > 2:
            return None
        read = self.simple_read(nodes[0])
        if read is None:
            return None
        level, names = read
        if len(nodes) == 2 and not isinstance(nodes[1], Literal):
            return _fused_with_expression(impl, level, names, compiled[1])
        if len(nodes) == 2:
            literal = nodes[1]
            assert isinstance(literal, Literal)
            return _fused_with_constant(impl, level, names, literal.value)
        if level < 0 and len(names) == 1:
            (name,) = names
            return lambda ctx: impl(ctx.root.get(name))
        if level < 0:
            first, second = names

            def call_two(ctx: Ctx) -> object:
                value = ctx.root.get(first)
                return impl(value.get(second) if isinstance(value, dict) else None)

            return call_two
        (name,) = names

        def call_element(ctx: Ctx) -> object:
            element = ctx.bound[level]
            return impl(element.get(name) if isinstance(element, dict) else None)

        return call_element

    def fold(self, node: Call, impl: Callable[..., object]) -> Eval:
        """A call with only literal arguments is computed once, here; if it can only fail,
        that is a load-time problem rather than a warning on every record."""
        values = [arg.value for arg in node.args if isinstance(arg, Literal)]
        try:
            return _constant(impl(*values))
        except Exception as exc:
            self.problem(node, f"{node.name}() always fails here: {describe(exc)}")
            return _constant(None)

    def check_literal(self, arg: Node, function: str, check: Callable[[object], object]) -> None:
        if not isinstance(arg, Literal):
            return
        try:
            check(arg.value)
        except ExpressionError as exc:
            self.problem(arg, f"{function}(): {exc}")

    def iif(self, node: Call) -> Eval:
        condition, then, otherwise = (self.compile(arg) for arg in node.args)
        _cond, then_node, else_node = node.args
        if isinstance(then_node, Literal) and isinstance(else_node, Literal):
            yes, no = then_node.value, else_node.value  # the common iif(test, 1, null)

            def choose_constant(ctx: Ctx) -> object:
                test = condition(ctx)
                return yes if test is True or (test is not False and truthy(test)) else no

            return choose_constant

        def choose(ctx: Ctx) -> object:
            test = condition(ctx)
            if test is True or (test is not False and truthy(test)):
                return then(ctx)
            return otherwise(ctx)

        return choose

    def decode(self, node: Call) -> Eval:
        """decode(KEY, k1, v1, ..., DEFAULT?): like iif, only the chosen value is evaluated.
        With string-literal keys (the usual case) the choice is one dict lookup."""
        key, *rest = (self.compile(arg) for arg in node.args)
        case_nodes = node.args[1::2][: len(rest) // 2]
        pairs = list(zip(rest[0::2], rest[1::2], strict=False))
        default = rest[-1] if len(rest) % 2 else _constant(None)

        def decode_any(ctx: Ctx) -> object:
            wanted = key(ctx)
            for case, value in pairs:
                if equal(wanted, case(ctx)):
                    return value(ctx)
            return default(ctx)

        if not all(isinstance(n, Literal) and isinstance(n.value, str) for n in case_nodes):
            return decode_any
        table: dict[object, Eval] = {}
        for case_node, (_case, value) in zip(case_nodes, pairs, strict=True):
            assert isinstance(case_node, Literal)
            table.setdefault(case_node.value, value)

        def decode_table(ctx: Ctx) -> object:
            wanted = key(ctx)
            if wanted.__class__ is str:
                return table.get(wanted, default)(ctx)
            return default(ctx) if wanted is None else decode_any(ctx)

        return decode_table

    def object_literal(self, node: Call) -> Eval:
        """to_object("k1", v1, "k2", v2, ...) with literal keys: a prepared dict filled in."""
        template: dict[str, object] = {}
        dynamic: list[tuple[str, Eval]] = []
        for key_node, value_node in zip(node.args[0::2], node.args[1::2], strict=True):
            assert isinstance(key_node, Literal)
            assert isinstance(key_node.value, str)
            key = key_node.value
            if isinstance(value_node, Literal):
                template[key] = value_node.value
            else:
                template[key] = None
                dynamic.append((key, self.compile(value_node)))

        def build(ctx: Ctx) -> object:
            out = template.copy()
            for key, value in dynamic:
                out[key] = value(ctx)
            return out

        return build

    def contains_key(self, node: Call) -> Eval:
        (arg,) = node.args
        if isinstance(arg, Literal) and isinstance(arg.value, str):
            try:
                steps, escaped = paths.parse_path(arg.value)
            except SourceError as exc:
                self.problem(arg, f"contains_key(): {exc.message}")
                return _constant(None)
            kafka = not escaped and steps[0] == "_kafka"
            arg = Ref(arg.line, arg.column, steps[1:] if kafka else steps, kafka)
        if not isinstance(arg, Ref):
            self.problem(node, "contains_key() takes a field path, e.g. contains_key(user.email)")
            return _constant(None)
        if arg.kafka:
            read = self.ref(arg)
            return lambda ctx: read(ctx) is not None
        if any(isinstance(step, paths.Star) for step in arg.steps):
            self.problem(node, "contains_key() takes a path without [*]")
            return _constant(None)
        plain = tuple(s for s in arg.steps if not isinstance(s, paths.Star))
        return lambda ctx: paths.lookup(ctx.root, plain) is not paths.MISSING

    # --- operators ------------------------------------------------------------------------

    def binary(self, node: Binary) -> Eval:
        if node.op == "+":
            chain = _plus_chain(node)
            if len(chain) > 2 and any(
                isinstance(n, Literal) and isinstance(n.value, str) for n in chain[:2]
            ):
                return self.text_chain(chain)
        left, right, op = self.compile(node.left), self.compile(node.right), node.op
        if op == "and":
            return lambda ctx: truthy(left(ctx)) and truthy(right(ctx))
        if op == "or":
            return lambda ctx: truthy(left(ctx)) or truthy(right(ctx))
        operands = (node.left, node.right)
        if op == "!=":
            pair = [left, right]
            equals = self.fused_call(equal, operands, pair) or _caller(equal, operands, pair)
            return lambda ctx: not equals(ctx)
        if op in _OPERATORS:
            function = _OPERATORS[op]
            pair = [left, right]
            return self.fused_call(function, operands, pair) or _caller(function, operands, pair)
        test = _ORDERINGS[op]

        def ordering(ctx: Ctx) -> object:
            result = compare(left(ctx), right(ctx))
            return result is not None and test(result)

        return ordering

    def text_chain(self, chain: list[Node]) -> Eval:
        """`a + "/" + b + "/" + c`: once a string is in the first two operands every `+` is a
        concatenation, so the chain is one join (null anywhere still gives null)."""
        parts = [
            (True, n.value) if isinstance(n, Literal) else (False, self.compile(n)) for n in chain
        ]
        if any(constant and value is None for constant, value in parts):
            return _constant(None)
        texts = [(constant, to_text(value) if constant else value) for constant, value in parts]

        def join_text(ctx: Ctx) -> object:
            out: list[str] = []
            for constant, part in texts:
                if constant:
                    out.append(part)  # type: ignore[arg-type]
                    continue
                value = part(ctx)  # type: ignore[operator]
                if value is None:
                    return None
                kind = value.__class__
                out.append(value if kind is str else str(value) if kind is int else to_text(value))
            return "".join(out)

        return join_text

    def unary(self, node: Unary) -> Eval:
        operand = self.compile(node.operand)
        if node.op == "-":
            return lambda ctx: negate(operand(ctx))
        return lambda ctx: not truthy(operand(ctx))

    def method(self, node: Method) -> Eval:
        target = self.compile(node.target)
        args = [self.compile(arg) for arg in node.args]
        if node.name not in METHODS:
            self.problem(
                node, f"unknown method {node.name!r}; methods are equals, equalsIgnoreCase, get"
            )
            return _constant(None)
        if len(args) != 1:
            self.problem(node, f".{node.name}() takes 1 argument, got {len(args)}")
            return _constant(None)
        (arg,) = args
        if node.name == "equals":
            return lambda ctx: _equals(target(ctx), arg(ctx), ignore_case=False)
        if node.name == "equalsIgnoreCase":
            return lambda ctx: _equals(target(ctx), arg(ctx), ignore_case=True)
        return lambda ctx: _get(target(ctx), arg(ctx))

    def member(self, node: Member) -> Eval:
        target, key = self.compile(node.target), node.key
        return lambda ctx: _get(target(ctx), key)


_OPERATORS: dict[str, Callable[[object, object], object]] = {
    "==": equal,
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "mod": modulo,
}
_ORDERINGS: dict[str, Callable[[int], bool]] = {
    "<": lambda c: c < 0,
    ">": lambda c: c > 0,
    "<=": lambda c: c <= 0,
    ">=": lambda c: c >= 0,
}


def _constant(value: object) -> Eval:
    return lambda ctx: value


def _caller(impl: Callable[..., object], nodes: Sequence[Node], args: list[Eval]) -> Eval:
    """`impl` applied to the arguments' values; literal arguments are passed as they are
    instead of through a call each (they are most of the arguments of decode, to_object...)."""
    literal = [isinstance(node, Literal) for node in nodes]
    values = [node.value if isinstance(node, Literal) else None for node in nodes]
    if len(args) == 0:
        return lambda ctx: impl()
    if len(args) == 1:
        (a0,) = args
        return lambda ctx: impl(a0(ctx))
    if len(args) == 2 and not any(literal):
        a0, a1 = args
        return lambda ctx: impl(a0(ctx), a1(ctx))
    if len(args) == 2 and literal == [False, True]:
        a0, c1 = args[0], values[1]
        return lambda ctx: impl(a0(ctx), c1)
    if len(args) == 2 and literal == [True, False]:
        c0, a1 = values[0], args[1]
        return lambda ctx: impl(c0, a1(ctx))
    if len(args) == 3 and not any(literal):
        a0, a1, a2 = args
        return lambda ctx: impl(a0(ctx), a1(ctx), a2(ctx))
    if len(args) == 3 and literal == [False, True, False]:  # concat(a, "|", b)
        a0, c1, a2 = args[0], values[1], args[2]
        return lambda ctx: impl(a0(ctx), c1, a2(ctx))
    if len(args) == 3 and literal == [False, True, True]:  # lpad(a, 8, "0")
        a0, c1, c2 = args[0], values[1], values[2]
        return lambda ctx: impl(a0(ctx), c1, c2)
    dynamic = [(index, arg) for index, arg in enumerate(args) if not literal[index]]
    if len(dynamic) == 1:
        index, only = dynamic[0]
        before, after = values[:index], values[index + 1 :]
        return lambda ctx: impl(*before, only(ctx), *after)
    template = tuple(values)

    def call_mixed(ctx: Ctx) -> object:
        current = list(template)
        for index, arg in dynamic:
            current[index] = arg(ctx)
        return impl(*current)

    return call_mixed


def _root_reader(steps: tuple[str | int, ...]) -> Eval:
    """A plain path read from the record; the one- and two-name cases skip a call (the record
    itself is always a dict)."""
    if len(steps) == 1 and isinstance(steps[0], str):
        name = steps[0]
        return lambda ctx: ctx.root.get(name)
    if len(steps) == 2 and isinstance(steps[0], str) and isinstance(steps[1], str):
        first, second = str(steps[0]), str(steps[1])

        def read_two(ctx: Ctx) -> object:
            value = ctx.root.get(first)
            return value.get(second) if isinstance(value, dict) else None

        return read_two
    if len(steps) == 3 and all(isinstance(step, str) for step in steps):
        one, two, three = (str(step) for step in steps)

        def read_three(ctx: Ctx) -> object:
            value = ctx.root.get(one)
            if isinstance(value, dict):
                value = value.get(two)
                if isinstance(value, dict):
                    return value.get(three)
            return None

        return read_three
    read = paths.getter(steps)
    return lambda ctx: read(ctx.root)


def _plus_chain(node: Node) -> list[Node]:
    """The operands of a left-nested chain of `+`: ((a + b) + c) + d gives [a, b, c, d]."""
    if isinstance(node, Binary) and node.op == "+":
        return [*_plus_chain(node.left), node.right]
    return [node]


def _fused_with_constant(
    impl: Callable[..., object], level: int, names: tuple[str, ...], constant: object
) -> Eval:
    """`f(field, literal)` with the field read inline (see fused_call)."""
    if level < 0 and len(names) == 1:
        (name,) = names
        return lambda ctx: impl(ctx.root.get(name), constant)
    if level < 0:
        first, second = names

        def call_two(ctx: Ctx) -> object:
            value = ctx.root.get(first)
            return impl(value.get(second) if isinstance(value, dict) else None, constant)

        return call_two
    (name,) = names

    def call_element(ctx: Ctx) -> object:
        element = ctx.bound[level]
        return impl(element.get(name) if isinstance(element, dict) else None, constant)

    return call_element


def _fused_with_expression(
    impl: Callable[..., object], level: int, names: tuple[str, ...], other: Eval
) -> Eval:
    """`f(field, expr)` with the field read inline (see fused_call)."""
    if level < 0 and len(names) == 1:
        (name,) = names
        return lambda ctx: impl(ctx.root.get(name), other(ctx))
    if level < 0:
        first, second = names

        def call_two(ctx: Ctx) -> object:
            value = ctx.root.get(first)
            return impl(value.get(second) if isinstance(value, dict) else None, other(ctx))

        return call_two
    (name,) = names

    def call_element(ctx: Ctx) -> object:
        element = ctx.bound[level]
        return impl(element.get(name) if isinstance(element, dict) else None, other(ctx))

    return call_element


def _collector(segments: StarSegments) -> Callable[[object], object]:
    """Read the first segment; each further segment follows a `[*]` and maps over its array."""
    read = paths.getter(segments[0])
    if len(segments) == 1:
        return read
    rest = _collector(segments[1:])

    def collect(value: object) -> object:
        items = read(value)
        if not isinstance(items, list):
            return None
        return [rest(item) for item in items]

    return collect


def _equals(target: object, other: object, *, ignore_case: bool) -> object:
    """Java's String.equals / equalsIgnoreCase: null target gives null (left out)."""
    if target is None:
        return None
    if other is None:
        return False
    if not ignore_case:
        return type(target) is type(other) and target == other
    return to_text(target).lower() == to_text(other).lower()


def _get(target: object, key: object) -> object:
    if target is None or key is None:
        return None
    if isinstance(target, dict):
        return target.get(key if isinstance(key, str) else to_text(key))
    if isinstance(target, list) and isinstance(key, int) and not isinstance(key, bool):
        return target[key] if 0 <= key < len(target) else None
    raise ExpressionError(f"get: cannot read a field of a {type_name(target)}")


def _unknown_function(name: str) -> str:
    if name in RESERVED_WORDS:
        hint = (
            " (use size_of)" if name == "size" else (" (use is_empty)" if name == "empty" else "")
        )
        return f"{name!r} is a reserved word, not a function{hint}"
    close = difflib.get_close_matches(name, FUNCTION_NAMES, n=1)
    return f"unknown function {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
