"""Regular expressions of the mapping language on a linear-time engine.

Patterns run on RE2 (google-re2), whose matching time is linear in the input: a record cannot
make a regex backtrack for minutes. A pattern RE2 cannot run (backreferences, lookaround) runs
on the `regex` module, guarded: inputs longer than `regex_fallback_max_input` are a field
error, and a match that takes longer than the evaluation budget fails the record as too_slow.
Literal patterns that need the fallback are reported at load time (see `engine_notice`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, cast

import re2
import regex

from connector.mapping.errors import ExpressionError, too_slow
from connector.mapping.limits import MappingLimits, bounded_cache

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported by us, not printed by RE2


class Match(Protocol):
    def group(self, index: int = 0) -> str | None: ...
    def groups(self) -> Sequence[str | None]: ...
    def start(self, index: int = 0) -> int: ...
    def end(self, index: int = 0) -> int: ...


class Pattern(Protocol):
    """What the regex functions use: RE2's pattern objects and GuardedPattern both have it."""

    def search(self, text: str) -> Match | None: ...
    def fullmatch(self, text: str) -> Match | None: ...
    def finditer(self, text: str) -> Iterator[Match]: ...


class GuardedPattern:
    """A pattern RE2 cannot run, on the backtracking `regex` module with an input cap and a
    time budget per call."""

    __slots__ = ("_compiled", "_max_input", "_timeout")

    def __init__(self, compiled: regex.Pattern[str], limits: MappingLimits) -> None:
        self._compiled = compiled
        self._max_input = limits.regex_fallback_max_input
        self._timeout = limits.budget_s

    def _checked(self, text: str) -> str:
        if len(text) > self._max_input:
            raise ExpressionError(
                f"input of {len(text)} characters is over {self._max_input}, the limit for a "
                "regex that RE2 cannot run"
            )
        return text

    def search(self, text: str) -> Match | None:
        try:
            return self._compiled.search(self._checked(text), timeout=self._timeout)
        except TimeoutError:
            raise too_slow("regex") from None

    def fullmatch(self, text: str) -> Match | None:
        try:
            return self._compiled.fullmatch(self._checked(text), timeout=self._timeout)
        except TimeoutError:
            raise too_slow("regex") from None

    def finditer(self, text: str) -> Iterator[Match]:
        try:
            found = list(self._compiled.finditer(self._checked(text), timeout=self._timeout))
        except TimeoutError:
            raise too_slow("regex") from None
        return iter(found)


def re2_problem(pattern: str) -> str | None:
    """Why RE2 refuses `pattern`, or None when it runs on RE2."""
    try:
        _re2_compile(pattern)
    except re2.error as exc:
        return _message(exc)
    return None


def engine_notice(pattern: str) -> str | None:
    """For a literal pattern that is valid but not RE2-compatible: what the user should know."""
    problem = re2_problem(pattern)
    if problem is None:
        return None
    return (
        f"regex {pattern!r} is not RE2-compatible ({problem}): it runs on the backtracking "
        "engine, on inputs up to regex_fallback_max_input characters, within the "
        "evaluation budget"
    )


def compile_pattern(pattern: str, limits: MappingLimits) -> Pattern:
    """The pattern on RE2, or guarded on `regex`; raises ExpressionError for a bad pattern."""
    try:
        return cast(Pattern, _re2_compile(pattern))
    except re2.error:
        pass
    try:
        compiled = _regex_compile(pattern)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise ExpressionError(f"bad regular expression: {_message(exc)}") from None
    return GuardedPattern(compiled, limits)


def _message(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else str(exc)
    return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)


@bounded_cache(maxsize=512)
def _re2_compile(pattern: str) -> object:
    return re2.compile(pattern, _RE2_OPTIONS)


@bounded_cache(maxsize=128)
def _regex_compile(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern)
