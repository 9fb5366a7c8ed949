"""The bounds that keep one record's evaluation linear in its size and short in time.

A mapping is written by the operator but runs on record data, which may be hostile: a value
must not be able to make the worker build huge strings, fill a cache, backtrack in a regex or
run for minutes. These limits are set once per process (settings section `mapping`) and
reach the functions through the Runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Final, TypeVar

#: An expression's syntax tree may be at most this many levels deep. Generated Python nests
#: a few parentheses per level and CPython refuses more than 200, so this is also what keeps
#: every valid expression compilable.
MAX_EXPRESSION_DEPTH: Final = 48

#: Destination paths longer than this are load errors (XDM paths are a handful of steps).
MAX_DESTINATION_STEPS: Final = 64

#: `[*]` levels in one destination (each is a nested loop in the generated function).
MAX_DESTINATION_STARS: Final = 8

#: Values nested deeper than this cannot be written to the output (the JSON encoder's own
#: limit is 255 levels, envelope included).
MAX_VALUE_DEPTH: Final = 128

#: Caches keyed by record strings (URLs, user agents, patterns) skip keys longer than this,
#: so that a cache's size in bytes is bounded by its entry count times this.
CACHE_MAX_KEY_CHARS: Final = 2048

#: User agents are parsed on their first this many characters (real ones are far shorter;
#: ua-parser runs hundreds of regexes over the whole string).
MAX_USER_AGENT_CHARS: Final = 1024


@dataclass(frozen=True, slots=True)
class MappingLimits:
    """Per-record limits of mapping evaluation (see mappings/README.md, "Limits")."""

    #: Wall-clock budget for mapping one record; past it the record fails as `too_slow`.
    evaluation_budget_ms: float = 500.0
    #: Longest string a function or `+` may build (characters).
    max_string_length: int = 1_048_576
    #: Longest input a regex that RE2 cannot run is applied to (characters).
    regex_fallback_max_input: int = 16_384

    @property
    def budget_s(self) -> float:
        return self.evaluation_budget_ms / 1000.0


R = TypeVar("R")


def bounded_cache(maxsize: int) -> Callable[[Callable[[str], R]], Callable[[str], R]]:
    """An LRU cache for a function of one string that bypasses strings longer than
    CACHE_MAX_KEY_CHARS: the cache then holds at most maxsize short keys (and what was derived
    from them), whatever the records contain."""

    def decorate(function: Callable[[str], R]) -> Callable[[str], R]:
        cached = lru_cache(maxsize=maxsize)(function)

        @wraps(function)
        def lookup(key: str) -> R:
            if len(key) > CACHE_MAX_KEY_CHARS:
                return function(key)
            return cached(key)

        lookup.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        lookup.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return lookup

    return decorate
