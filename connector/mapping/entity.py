"""Destination paths → one builder closure for the whole XDM entity.

All destinations of a mapping are merged into a tree (objects, `[n]` arrays, `[*]` arrays,
leaves) at load time; conflicts between destinations are found there. At run time each
object node builds a dict of its children's values and returns None when nothing is left, so
no null and no empty object or array ever reaches the output, and no intermediate object is
created for fields that turn out missing.

A `[*]` destination array iterates a source array: all entries under it must read the same
source `[*]` path (entries that read none, e.g. STATIC values, are repeated per element).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from connector.mapping import paths
from connector.mapping.compiler import Ctx, Eval, StarSegments
from connector.mapping.values import clean

Builder = Callable[[Ctx], object]


@dataclass(slots=True)
class Field:
    """One mapping entry, compiled: where it writes and how its value is computed."""

    label: str  # how problems name the entry, e.g. "mappings[3] (line 27)"
    destination: paths.Path
    evaluate: Eval
    star_refs: list[StarSegments] = field(default_factory=list)
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


def build_entity(fields: list[Field]) -> tuple[Builder, list[str]]:
    """The entity builder and the problems found (each starting with the entry's label)."""
    root = _Object()
    problems: list[str] = []
    owners: dict[str, Field] = {}  # destination prefix → the first field that created it
    for item in fields:
        problem = _insert(root, item, owners)
        if problem:
            problems.append(f"{item.label}: {problem}")
    builder = _compile_object(root, 0, problems)
    return builder, problems


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


# --- run-time closures ---------------------------------------------------------------------


def _compile(node: _Node, level: int, problems: list[str]) -> Builder:
    if isinstance(node, _Leaf):
        return _leaf(node.field)
    if isinstance(node, _Object):
        return _compile_object(node, level, problems)
    if isinstance(node, _Indexed):
        return _compile_indexed(node, level, problems)
    return _compile_each(node, level + 1, problems)


def _compile_object(node: _Object, level: int, problems: list[str]) -> Builder:
    if len(node.children) == 1:
        return _compile_chain(node, level, problems)
    # Leaves are evaluated right here rather than through a closure of their own: a call per
    # field is a large share of the time per record, and a try block costs nothing until
    # something raises. A child that is a container has no destination text.
    children: list[tuple[str, Builder, Callable[[object], object] | None, str | None]] = []
    for key, child in node.children.items():
        if isinstance(child, _Leaf):
            item = child.field
            children.append((key, item.evaluate, item.convert, item.destination_text))
        else:
            children.append((key, _compile(child, level, problems), None, None))

    def build_object(ctx: Ctx) -> object:
        out: dict[str, object] = {}
        for key, evaluate, convert, destination in children:
            try:
                value = evaluate(ctx)
                if value is None:
                    continue
                if destination is not None:
                    if convert is not None:
                        value = convert(value)
                    if value.__class__ is not str:
                        value = clean(value)
                        if value is None:
                            continue
            except Exception as exc:
                if destination is None:  # a nested builder's MappingFailure (strict mode)
                    raise
                ctx.field_error(destination, exc)
                continue
            out[key] = value
        return out or None

    return build_object


def _compile_chain(node: _Object, level: int, problems: list[str]) -> Builder:
    """`a.b.c.d` with one child at each step: one closure that wraps the innermost value."""
    keys: list[str] = []
    current: _Node = node
    while isinstance(current, _Object) and len(current.children) == 1:
        ((key, current),) = current.children.items()
        keys.append(key)
    keys.reverse()
    if isinstance(current, _Leaf):
        return _chain_leaf(keys, current.field)
    inner = _compile(current, level, problems)
    if len(keys) == 1:
        (only,) = keys
        return lambda ctx: None if (value := inner(ctx)) is None else {only: value}

    def build_chain(ctx: Ctx) -> object:
        value = inner(ctx)
        if value is None:
            return None
        for key in keys:
            value = {key: value}
        return value

    return build_chain


def _chain_leaf(keys: list[str], item: Field) -> Builder:
    """A chain ending in a computed field (`commerce.productViews.value`): the field's
    evaluation and the wrapping in one closure."""
    evaluate, convert, destination = item.evaluate, item.convert, item.destination_text

    def build_chain_leaf(ctx: Ctx) -> object:
        try:
            value = evaluate(ctx)
            if value is None:
                return None
            if convert is not None:
                value = convert(value)
            if value.__class__ is not str:
                value = clean(value)
                if value is None:
                    return None
        except Exception as exc:  # any failure of one field is that field's warning
            ctx.field_error(destination, exc)
            return None
        for key in keys:
            value = {key: value}
        return value

    return build_chain_leaf


def _compile_indexed(node: _Indexed, level: int, problems: list[str]) -> Builder:
    children = tuple(_compile(node.children[i], level, problems) for i in sorted(node.children))

    def build_indexed(ctx: Ctx) -> object:
        out = [value for value in (child(ctx) for child in children) if value is not None]
        return out or None

    return build_indexed


def _compile_each(node: _Each, level: int, problems: list[str]) -> Builder:
    """An array built element by element from the source array that level `level` iterates."""
    assert node.element is not None
    element_node, shared = _split_invariant(node.element)
    element = _compile(element_node, level, problems)
    shared_leaves = [(key, _leaf(item)) for key, item in shared]
    prefix = _iteration(node, level, problems)
    if prefix is None:
        return lambda ctx: None
    read = paths.getter(prefix[-1])
    outer_level = level - 2

    def build_each(ctx: Ctx) -> object:
        items = read(ctx.root if outer_level < 0 else ctx.bound[outer_level])
        if not isinstance(items, list) or not items:
            return None
        common: dict[str, object] = {}
        for key, leaf in shared_leaves:  # fields that are the same for every element
            value = leaf(ctx)
            if value is not None:
                common[key] = value
        outer = ctx.bound
        out: list[object] = []
        for item in items:
            ctx.bound = (*outer, item) if outer else (item,)
            value = element(ctx)
            if common:
                if value is None:
                    value = common.copy()
                else:
                    value.update(common)  # type: ignore[attr-defined]
            if value is not None:
                out.append(value)
        ctx.bound = outer  # a MappingFailure skips this, but then the Ctx is dropped anyway
        return out or None

    return build_each


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


def _leaf(item: Field) -> Builder:
    evaluate, convert, destination = item.evaluate, item.convert, item.destination_text
    if convert is None:

        def build_plain_leaf(ctx: Ctx) -> object:
            try:
                value = evaluate(ctx)
                if value.__class__ is str or value is None:
                    return value
                return clean(value)
            except Exception as exc:  # any failure of one field is that field's warning
                ctx.field_error(destination, exc)
                return None

        return build_plain_leaf

    def build_leaf(ctx: Ctx) -> object:
        try:
            value = evaluate(ctx)
            if value is None:
                return None
            if convert is not None:
                value = convert(value)
            if value.__class__ is str:
                return value
            return clean(value)
        except Exception as exc:  # any failure of one field is that field's warning
            ctx.field_error(destination, exc)
            return None

    return build_leaf
