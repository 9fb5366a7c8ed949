"""Field paths: `person.name.first`, `items[0].sku`, `items[*].sku`, `${First Name}`.

Source attributes and destinations are paths; expressions use the same steps for field
references. A path is a tuple of steps: a field name (str), an index (int) or `STAR` (`[*]`).
Inside `${...}` any character is part of the name except an unescaped `.` (a separator) and
`}`; `\\.`, `\\}` and `\\\\` stand for the character itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from connector.mapping.errors import SourceError


class Star:
    """The `[*]` step: iterate over an array."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "[*]"


STAR: Final = Star()

Step = str | int | Star
Path = tuple[Step, ...]

#: Returned by `lookup` when a path does not exist (distinct from a present null).
MISSING: Final = object()

_PLAIN_STOP = frozenset(".[]")


def parse_path(text: str) -> tuple[Path, bool]:
    """Parse a source or destination path; returns the steps and whether the first segment was
    written escaped (`${_kafka}` is a field, plain `_kafka` is the Kafka metadata).

    Raises SourceError with the column of the problem.
    """
    steps: list[Step] = []
    first_escaped = False
    i, n = 0, len(text)
    if n == 0 or not text.strip():
        raise SourceError("empty path", 1, 1)
    expect_segment = True
    while i < n:
        ch = text[i]
        if expect_segment:
            if text.startswith("${", i):
                names, i = _escaped(text, i)
                if not steps:
                    first_escaped = True
                steps.extend(names)
            else:
                start = i
                while i < n and text[i] not in _PLAIN_STOP and not text[i].isspace():
                    i += 1
                if i == start:
                    what = "whitespace" if text[i].isspace() else repr(text[i])
                    raise SourceError(f"expected a field name, found {what}", 1, i + 1)
                steps.append(text[start:i])
            expect_segment = False
        elif ch == ".":
            i += 1
            expect_segment = True
            if i == n:
                raise SourceError("path ends with '.'", 1, i)
        elif ch == "[":
            close = text.find("]", i)
            if close < 0:
                raise SourceError("'[' without ']'", 1, i + 1)
            inner = text[i + 1 : close]
            if inner == "*":
                steps.append(STAR)
            elif inner.isascii() and inner.isdigit():
                steps.append(int(inner))
            else:
                raise SourceError(
                    f"array index must be a non-negative integer or *, not {inner!r}", 1, i + 2
                )
            i = close + 1
        else:
            what = "whitespace" if ch.isspace() else repr(ch)
            raise SourceError(f"unexpected {what} after a field name", 1, i + 1)
    return tuple(steps), first_escaped


def _escaped(text: str, start: int) -> tuple[list[str], int]:
    """Read `${...}` at `start`; returns its names (split on unescaped dots) and the next index."""
    names: list[str] = []
    current: list[str] = []
    i = start + 2
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if ch == "}":
            names.append("".join(current))
            if any(name == "" for name in names):
                raise SourceError("empty field name inside ${...}", 1, start + 1)
            return names, i + 1
        if ch == ".":
            names.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    raise SourceError("'${' without a closing '}'", 1, start + 1)


def format_path(steps: Path) -> str:
    """The path as text, escaping names that need `${...}` (for messages and round trips)."""
    out: list[str] = []
    for step in steps:
        if isinstance(step, Star):
            out.append("[*]")
        elif isinstance(step, int):
            out.append(f"[{step}]")
        else:
            name = step
            plain = (
                name
                and not name.startswith("${")
                and not any(c in _PLAIN_STOP or c.isspace() for c in name)
            )
            if not plain:
                escaped = name.replace("\\", "\\\\").replace(".", "\\.").replace("}", "\\}")
                name = "${" + escaped + "}"
            out.append("." + name if out else name)
    return "".join(out)


def split_stars(steps: Path) -> list[tuple[str | int, ...]]:
    """The plain segments between `[*]` steps: `a.b[*].c[*]` gives `[(a, b), (c,), ()]`."""
    segments: list[tuple[str | int, ...]] = []
    current: list[str | int] = []
    for step in steps:
        if isinstance(step, Star):
            segments.append(tuple(current))
            current = []
        else:
            current.append(step)
    segments.append(tuple(current))
    return segments


def lookup(value: object, steps: tuple[str | int, ...]) -> object:
    """Follow plain steps; MISSING when a step does not exist (a present null stays None)."""
    for step in steps:
        if isinstance(step, str):
            if not isinstance(value, dict) or step not in value:
                return MISSING
            value = value[step]
        else:
            if not isinstance(value, list) or step >= len(value):
                return MISSING
            value = value[step]
    return value


def getter(steps: tuple[str | int, ...]) -> Callable[[object], object]:
    """A fast function reading plain steps from a value; None when any step is absent.

    Specialised for the common one-, two- and three-name paths, which are most of a mapping.
    """
    if not steps:
        return _identity
    if all(isinstance(step, str) for step in steps):
        names = [str(step) for step in steps]
        if len(names) == 1:
            (k0,) = names

            def get1(value: object) -> object:
                return value.get(k0) if isinstance(value, dict) else None

            return get1
        if len(names) == 2:
            k0, k1 = names

            def get2(value: object) -> object:
                if isinstance(value, dict):
                    value = value.get(k0)
                    if isinstance(value, dict):
                        return value.get(k1)
                return None

            return get2
        if len(names) == 3:
            k0, k1, k2 = names

            def get3(value: object) -> object:
                if isinstance(value, dict):
                    value = value.get(k0)
                    if isinstance(value, dict):
                        value = value.get(k1)
                        if isinstance(value, dict):
                            return value.get(k2)
                return None

            return get3

    def get_any(value: object) -> object:
        found = lookup(value, steps)
        return None if found is MISSING else found

    return get_any


def _identity(value: object) -> object:
    return value
