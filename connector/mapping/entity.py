"""Destination paths → the generated Python function that builds the whole XDM entity.

All destinations of a mapping are merged into a tree (objects, `[n]` arrays, `[*]` arrays,
leaves) at load time; conflicts between destinations are found there. The tree is then
written out as one function: each field is evaluated where its value is stored, each object
is a dict filled by statements and attached to its parent only when it is not empty, chains
of single-child objects are one literal, and each `[*]` array is one loop. So no null and no
empty object or array ever reaches the output, and no intermediate object is created for
fields that turn out missing.

A `[*]` destination array iterates a source array: all entries under it must read the same
source `[*]` path (entries that read none, e.g. STATIC values, are repeated per element).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from connector.mapping import paths
from connector.mapping.codegen import (
    Code,
    ExpressionGenerator,
    Namespace,
    Source,
    comment,
    compile_source,
    describe,
    field_failure,
    field_warning,
    needs_clean,
    repeated_calls,
)
from connector.mapping.errors import MappingFailure, SourceError, too_slow
from connector.mapping.functions import Runtime
from connector.mapping.nodes import Node
from connector.mapping.values import FALSE_WORDS, INT_MAX, INT_MIN, TRUE_WORDS, clean, rfc3339
from connector.records import SourceRecord

StarSegments = list[tuple[str | int, ...]]
#: The generated `map_record(root, meta, deadline, warnings)`.
Builder = Callable[[dict[str, object], SourceRecord, float, list[str]], object]
Conversion = Callable[[object], object]

#: What the generated function returns for a record the filter skipped.
SKIPPED = object()

#: What each declared type's conversion returns, when no clean-up is needed after it.
_CONVERTED_KINDS = {"boolean": "bool", "string": "str", "date-time": "str", "date": "str"}
#: The class of value each declared type's conversion returns unchanged.
_UNCHANGED_CLASS = {"boolean": "bool", "integer": "int", "string": "str"}
#: The conversions of a date (class datetime exactly) to the declared types that take one.
_FROM_DATETIME = {"date-time": "rfc3339(v)", "date": "v.date().isoformat()"}

_NO_STATIC = object()

#: The words a boolean destination accepts (values.to_boolean), and their values.
BOOLEAN_WORDS = dict.fromkeys(sorted(TRUE_WORDS), True) | dict.fromkeys(sorted(FALSE_WORDS), False)

#: Prepared constants that --explain describes rather than prints.
_DESCRIBED = {
    "JAVA_BLANKS": "the characters \\x00 to ' ' (what Java's String.trim() removes)",
    "PENDING": "a repeated call's value before it is computed",
    "NUMBERS": "(int, float)",
    "BOOLEAN_WORDS": "the words a boolean field accepts and their values (y, yes, on, true and "
    "n, no, off, false, in lower or upper case)",
}


@dataclass(slots=True)
class Field:
    """One mapping entry, checked: where it writes and what computes its value (an expression
    node, or a STATIC value converted and cleaned at load)."""

    label: str  # how problems name the entry, e.g. "mappings[3] (line 27)"
    destination: paths.Path
    runtime: Runtime
    node: Node | None = None
    static: object = _NO_STATIC
    source_text: str = ""  # the entry's source, for the generated comment
    star_refs: list[StarSegments] = field(default_factory=list)
    type_name: str | None = None
    convert: Callable[[object], object] | None = None
    # The same value for every element of a [*] array (no [*] read, no uuid()).
    invariant: bool = False

    @property
    def destination_text(self) -> str:
        return paths.format_path(self.destination)


@dataclass(slots=True)
class _Leaf:
    field: Field


@dataclass(slots=True)
class _Object:
    children: dict[str, _Node] = field(default_factory=dict)


@dataclass(slots=True)
class _Indexed:
    children: dict[int, _Node] = field(default_factory=dict)


@dataclass(slots=True)
class _Each:
    prefix: str  # the destination array, for messages
    element: _Node | None = None
    fields: list[Field] = field(default_factory=list)


_Node = _Leaf | _Object | _Indexed | _Each


def build_entity(fields: list[Field], strict: bool = False) -> tuple[Builder, list[str]]:
    """The entity builder `(root, meta, deadline, warnings) -> entity or None` and the
    problems found (each starting with the entry's label)."""
    runtime = fields[0].runtime if fields else Runtime()
    program = generate("entity", fields, None, runtime, strict)
    return program.function, program.problems


def entity_tree(fields: list[Field]) -> tuple[_Object, list[str]]:
    """All destinations merged into one tree, and the conflicts found."""
    root = _Object()
    problems: list[str] = []
    owners: dict[str, Field] = {}  # destination prefix → the first field that created it
    for item in fields:
        problem = _insert(root, item, owners)
        if problem:
            problems.append(f"{item.label}: {problem}")
    return root, problems


def _insert(root: _Object, item: Field, owners: dict[str, Field]) -> str | None:
    steps = item.destination
    node: _Node = root
    for position, step in enumerate(steps):
        last = position == len(steps) - 1
        here = paths.format_path(steps[: position + 1])
        if isinstance(node, _Each):
            node.fields.append(item)
        child = _child(node, step)
        if child is None:
            made: _Node = _Leaf(item) if last else _new_container(steps[position + 1], here)
            _set_child(node, step, made)
            owners.setdefault(here, item)
            node = made
            continue
        owner = owners.get(here)
        other = f" of {owner.label}" if owner is not None else ""
        if isinstance(child, _Leaf):
            if last:
                return f"duplicate destination {here} (also mapped by {child.field.label})"
            return (
                f"destination {item.destination_text} is inside {here}, "
                f"mapped by {child.field.label}"
            )
        if last:
            return f"destination {here} is also the parent of other destinations{other}"
        wanted = _new_container(steps[position + 1], here)
        if type(wanted) is not type(child):
            return (
                f"conflicting [*] shapes: {item.destination_text} uses {here} as "
                f"{_kind(wanted)}, but it is {_kind(child)} in other destinations{other}"
            )
        node = child
    return None


def _kind(node: _Node) -> str:
    if isinstance(node, _Each):
        return "an array iterated with [*]"
    if isinstance(node, _Indexed):
        return "an array with [n] indexes"
    return "an object"


def _new_container(next_step: paths.Step, here: str) -> _Node:
    if isinstance(next_step, paths.Star):
        return _Each(prefix=here)
    if isinstance(next_step, int):
        return _Indexed()
    return _Object()


def _child(node: _Node, step: paths.Step) -> _Node | None:
    if isinstance(node, _Object) and isinstance(step, str):
        return node.children.get(step)
    if isinstance(node, _Indexed) and isinstance(step, int):
        return node.children.get(step)
    if isinstance(node, _Each) and isinstance(step, paths.Star):
        return node.element
    raise AssertionError("containers are created to match the next step")  # pragma: no cover


def _set_child(node: _Node, step: paths.Step, child: _Node) -> None:
    if isinstance(node, _Each):
        node.element = child
    elif isinstance(node, _Object):
        assert isinstance(step, str)
        node.children[step] = child
    elif isinstance(node, _Indexed):
        assert isinstance(step, int)
        node.children[step] = child


# --- the generated function ------------------------------------------------------------------


@dataclass(slots=True)
class Program:
    """A mapping's generated function, its source (for `map --explain`) and what generating
    it found: problems (the mapping is invalid) and notices (worth telling the user)."""

    function: Builder
    source: str
    problems: list[str]
    notices: list[str]
    timed: bool = True  # the function checks the evaluation budget (reads its deadline)


@dataclass(slots=True)
class FilterSpec:
    """The mapping's filter expression, parsed."""

    node: Node
    text: str
    where: str  # how problems name it, e.g. "filter (line 16)"


def generate(
    name: str,
    fields: list[Field],
    keep: FilterSpec | None,
    runtime: Runtime,
    strict: bool = False,
) -> Program:
    """Generate and compile the function `map_record(root, meta, deadline, warnings)`: the
    filter (returns SKIPPED when it is false), then the entity (None when no field has a
    value). Its arguments are all it reads, so that a record costs no context object; a field
    error adds to `warnings`, or in strict mode fails the record (MappingFailure)."""
    writer = _Writer(runtime)
    writer.ns.values["field_error"] = field_failure if strict else field_warning
    nodes = [item.node for item in fields if item.node is not None]
    writer.src.repeated = repeated_calls(nodes + ([keep.node] if keep is not None else []))
    root, problems = entity_tree(fields)
    writer.problems.extend(problems)
    if keep is not None:
        writer.filter(keep)
    writer.root(root)
    source = writer.source(name)
    function: Builder = _nothing
    if not writer.problems:
        try:
            function = compile_source(source, writer.ns.values, "map_record")
        except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
            writer.problems.append(f"the mapping is too large to compile ({type(exc).__name__})")
    return Program(function, source, writer.problems, writer.notices, writer.uses_deadline)


def _nothing(
    root: dict[str, object], meta: SourceRecord, deadline: float, warnings: list[str]
) -> object:
    return None


def _filter_failure(exc: Exception) -> MappingFailure:
    if isinstance(exc, MappingFailure):
        return exc
    return MappingFailure(f"filter: {describe(exc)}")


class _Writer:
    """Writes one mapping's function: statements for the entity tree, expressions from
    ExpressionGenerator for the fields."""

    def __init__(self, runtime: Runtime) -> None:
        self.ns = Namespace(runtime)
        self.ns.values.update(
            {
                "clean": clean,
                "rfc3339": rfc3339,
                "too_slow": too_slow,
                "clock": runtime.clock,
                "SKIPPED": SKIPPED,
                "filter_failure": _filter_failure,
            }
        )
        self.src = Source()
        self.problems: list[str] = []
        self.notices: list[str] = []
        self.uses_deadline = False

    def source(self, name: str) -> str:
        head = [
            f"# The generated function of mapping {comment(name)} (aep-connector map --explain).",
            "# root: the record's value; meta: the Kafka record (topic, partition, offset,",
            "# timestamp_ms; key and headers as bytes); deadline: when the evaluation budget",
            "# runs out; field_error() adds a field's warning to warnings (or, in strict mode,",
            "# fails the record).",
        ]
        lines = self.src.lines()
        used = set(re.findall(r"\w+", "\n".join(lines)))
        prepared = [
            f"#   {key} = {_DESCRIBED.get(key) or comment(_short(repr(value)))}"
            for key, value in self.ns.values.items()
            if (key[:1].isupper() or key.startswith(("table", "K"))) and key in used
        ]
        if prepared:
            head += ["# Prepared constants:", *prepared]
        signature = "def map_record(root, meta, deadline, warnings):"
        return "\n".join([*head, signature, *lines, ""])

    def expressions(self, depth: int) -> ExpressionGenerator:
        return ExpressionGenerator(self.ns, self.src, depth, hoist=True)

    def budget_check(self, where: str) -> None:
        self.uses_deadline = True
        self.src.line("if clock() > deadline:")
        self.src.line(f"    raise too_slow({where!r})")

    def report(self, where: str, generator: ExpressionGenerator) -> None:
        self.problems.extend(
            f"{where}: {p.message} (line {p.line}, column {p.column})" for p in generator.problems
        )
        self.notices.extend(f"{where}: {notice}" for notice in generator.notices)

    # --- the filter -------------------------------------------------------------------------

    def filter(self, keep: FilterSpec) -> None:
        generator = self.expressions(0)
        code = generator.expression(keep.node)
        self.report(keep.where, generator)
        src = self.src
        src.line(f"# filter: {comment(keep.text)}")
        if generator.heavy:
            self.budget_check("filter")
        for statement in generator.setup:
            src.line(statement)
        src.line("try:")
        src.line(f"    keep = {generator.condition(code)}")
        src.line("except Exception as exc:")
        src.line("    raise filter_failure(exc) from exc")
        src.line("if not keep:")
        src.line("    return SKIPPED")

    # --- the entity tree --------------------------------------------------------------------

    def root(self, root: _Object) -> None:
        var = self.object(root, None, 0)
        self.src.line(f"return {var} or None")

    def node(self, node: _Node, attach: Callable[[str], str], level: int) -> None:
        if isinstance(node, _Leaf):
            self.leaf(node.field, attach, level)
        elif isinstance(node, _Object):
            if len(node.children) == 1:
                self.chain(node, attach, level)
            else:
                self.object(node, attach, level)
        elif isinstance(node, _Indexed):
            self.indexed(node, attach, level)
        else:
            self.each(node, attach, level + 1)

    def object(
        self,
        node: _Object,
        attach: Callable[[str], str] | None,
        level: int,
        shared: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """A dict filled by statements; `shared` are (key, variable) pairs of values computed
        before the loop this object is an element of, stored last (see each)."""
        var = self.src.fresh("o")
        self.src.line(f"{var} = {{}}")
        for key, child in node.children.items():
            self.node(child, _store(var, key), level)
        for key, value in shared:
            self.src.line(f"if {value} is not None:")
            self.src.line(f"    {_store(var, key)(value)}")
        if attach is not None:
            self.src.line(f"if {var}:")
            self.src.line(f"    {attach(var)}")
        return var

    def chain(self, node: _Object, attach: Callable[[str], str], level: int) -> None:
        """`a.b.c` with one child at each step: the innermost value wrapped in one literal."""
        keys: list[str] = []
        current: _Node = node
        while isinstance(current, _Object) and len(current.children) == 1:
            ((key, current),) = current.children.items()
            keys.append(key)

        def wrap(value: str) -> str:
            for key in reversed(keys):
                value = f"{{{key!r}: {value}}}"
            return attach(value)

        if isinstance(current, _Object):
            self.object(current, wrap, level)
        else:
            self.node(current, wrap, level)

    def indexed(self, node: _Indexed, attach: Callable[[str], str], level: int) -> None:
        var = self.src.fresh("a")
        self.src.line(f"{var} = []")
        for index in sorted(node.children):
            self.node(node.children[index], lambda value: f"{var}.append({value})", level)
        self.src.line(f"if {var}:")
        self.src.line(f"    {attach(var)}")

    def each(self, node: _Each, attach: Callable[[str], str], level: int) -> None:
        """An array built element by element from the source array the level-th loop reads."""
        assert node.element is not None
        prefix = _iteration(node, level, self.problems)
        if prefix is None:
            return
        src = self.src
        element_node, shared = _split_invariant(node.element)
        generator = self.expressions(level - 1)
        base = "root" if level == 1 else f"e{level - 1}"
        items = src.fresh("items")
        src.line(f"# {comment(node.prefix)}[*]: one element per element of the source array")
        src.line(f"{items} = {generator.read(base, prefix[-1], base_is_dict=level == 1)}")
        src.line(f"if isinstance({items}, list) and {items}:")
        src.open_block()
        common: list[tuple[str, str]] = []
        for key, item in shared:  # fields that are the same for every element: evaluated once
            variable = src.fresh("same")
            src.line(f"{variable} = None  # the same for every element")
            self.leaf(item, _assign(variable), level - 1)
            common.append((key, variable))
        array = src.fresh("a")
        src.line(f"{array} = []")
        src.open_loop(f"for e{level} in {items}:")
        self.budget_check(f"{node.prefix}[*]")
        append = f"{array}.append"
        if common:
            assert isinstance(element_node, _Object)
            self.object(
                element_node, lambda value: f"{append}({value})", level, shared=tuple(common)
            )
        else:
            self.node(element_node, lambda value: f"{append}({value})", level)
        src.close_loop()
        src.line(f"if {array}:")
        src.line(f"    {attach(array)}")
        src.close_block()

    def leaf(self, item: Field, attach: Callable[[str], str], level: int) -> None:
        src = self.src
        destination = item.destination_text
        src.line(f"# {comment(item.label)}: {comment(destination)} = {comment(item.source_text)}")
        if item.static is not _NO_STATIC:
            src.line(attach(self.ns.literal(item.static)))
            return
        assert item.node is not None
        generator = self.expressions(level)
        code = generator.expression(item.node)
        self.report(item.label, generator)
        if generator.heavy:
            self.budget_check(destination)
        for statement in generator.setup:
            src.line(statement)
        if item.convert is None and _plain_copy(code):
            self.copy(code.text, destination, attach)
            return
        src.line("try:")
        src.line(f"    v = {code.text}")
        if item.convert is not None:
            assert item.type_name is not None
            self.convert(item.type_name, item.convert, code)
        else:
            self.clean(code)
        src.line("except Exception as exc:")
        src.line(f"    v = field_error(warnings, {destination!r}, exc)")
        src.line("if v is not None:")
        src.line(f"    {attach('v')}")

    def copy(self, variable: str, destination: str, attach: Callable[[str], str]) -> None:
        """A record value copied as it is: a string is stored at once; anything else is
        cleaned first (what the general form does, without its steps for a string)."""
        src = self.src
        src.line(f"if {variable}.__class__ is str:")
        src.line(f"    {attach(variable)}")
        src.line(f"elif {variable} is not None:")
        src.line("    try:")
        src.line(f"        v = clean({variable})")
        src.line("    except Exception as exc:")
        src.line(f"        v = field_error(warnings, {destination!r}, exc)")
        src.line("    if v is not None:")
        src.line(f"        {attach('v')}")

    def convert(self, type_name: str, convert: Conversion, code: Code) -> None:
        """`v` converted to its declared type, then made sendable where the type's values
        may not be (numbers: non-finite, integers: beyond 64 bits)."""
        src = self.src
        function = "as_" + type_name.replace("-", "_")
        self.ns.values[function] = convert
        src.line("    if v is not None:")
        if code.kind == "datetime" and type_name in _FROM_DATETIME:
            self.ns.values["datetime"] = datetime
            src.line("        if v.__class__ is datetime:")
            src.line(f"            v = {_FROM_DATETIME[type_name]}")
            src.line("        else:")
            src.line(f"            v = {function}(v)")
        elif type_name == "boolean":  # Data Prep's words looked up here, other values converted
            self.ns.values["BOOLEAN_WORDS"] = BOOLEAN_WORDS
            src.line("        if v.__class__ is str and v in BOOLEAN_WORDS:")
            src.line("            v = BOOLEAN_WORDS[v]")
            src.line("        elif v.__class__ is not bool:")
            src.line(f"            v = {function}(v)")
        elif type_name in _UNCHANGED_CLASS:  # the conversion returns such a value as it is
            src.line(f"        if v.__class__ is not {_UNCHANGED_CLASS[type_name]}:")
            src.line(f"            v = {function}(v)")
        else:
            src.line(f"        v = {function}(v)")
        if type_name == "integer":
            self.ns.values.update(INT_MIN=INT_MIN, INT_MAX=INT_MAX)
            src.line("        if v.__class__ is not int or not INT_MIN <= v <= INT_MAX:")
            src.line("            v = clean(v)")
        elif type_name not in _CONVERTED_KINDS:
            src.line("        if v.__class__ is not str:")
            src.line("            v = clean(v)")

    def clean(self, code: Code) -> None:
        """`v` made sendable (no null, no empty object or array, dates as text), where what
        is known of the expression leaves that open."""
        src = self.src
        if code.kind == "datetime":
            self.ns.values["datetime"] = datetime
            src.line("    if v.__class__ is datetime:")
            src.line("        v = rfc3339(v)")
            src.line("    elif v is not None and v.__class__ is not str:")
            src.line("        v = clean(v)")
            return
        test = needs_clean(code)
        if test is not None:
            if not code.nonnull:
                test = f"v is not None and {test if ' or ' not in test else f'({test})'}"
            src.line(f"    if {test}:")
            src.line("        v = clean(v)")


def _assign(variable: str) -> Callable[[str], str]:
    """The statement storing a value in a variable."""
    return lambda value: f"{variable} = {value}"


def _plain_copy(code: Code) -> bool:
    """A variable whose value is not known (a record read): see _Writer.copy."""
    return (
        code.text.isidentifier()
        and not code.nonnull
        and code.kind == "any"
        and code.members is None
        and needs_clean(code) == "v.__class__ is not str"
    )


def _store(var: str, key: str) -> Callable[[str], str]:
    """The statement storing a value under `key` of the dict `var`."""
    return lambda value: f"{var}[{key!r}] = {value}"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _split_invariant(element: _Node) -> tuple[_Node, list[tuple[str, Field]]]:
    """Split off the trailing leaves of an element object that do not depend on the element
    (e.g. a currency code from the record): computed once per array, not once per element.
    Only a trailing run is taken, so each element keeps the mapping's key order."""
    if not isinstance(element, _Object):
        return element, []
    children = list(element.children.items())
    first_shared = len(children)
    while first_shared > 1:
        child = children[first_shared - 1][1]
        if not (isinstance(child, _Leaf) and child.field.invariant):
            break
        first_shared -= 1
    if first_shared == len(children):
        return element, []
    shared = [(key, child.field) for key, child in children[first_shared:]]  # type: ignore[union-attr]
    return _Object(dict(children[:first_shared])), shared


def _iteration(node: _Each, level: int, problems: list[str]) -> StarSegments | None:
    """The source path (segments up to the level-th `[*]`) every field under `node` agrees on."""
    chosen: StarSegments | None = None
    chosen_by: Field | None = None
    for item in node.fields:
        for segments in item.star_refs:
            if len(segments) - 1 < level:
                continue
            prefix = segments[:level]
            if chosen is None:
                chosen, chosen_by = prefix, item
            elif prefix != chosen:
                assert chosen_by is not None
                problems.append(
                    f"{item.label}: conflicting [*] shapes: {node.prefix}[*] iterates "
                    f"{_star_text(chosen)} in {chosen_by.label} but {_star_text(prefix)} here"
                )
                break
    if chosen is None:
        labels = ", ".join(sorted({item.label for item in node.fields}))
        problems.append(
            f"{labels}: destination {node.prefix}[*] iterates no source array: "
            "at least one entry under it must read a source path with [*]"
        )
    return chosen


def _star_text(segments: StarSegments) -> str:
    steps: list[paths.Step] = []
    for segment in segments:
        steps.extend(segment)
        steps.append(paths.STAR)
    return paths.format_path(tuple(steps))


__all__ = ["SKIPPED", "Builder", "Field", "FilterSpec", "Program", "SourceError", "generate"]
