"""The bounds every decoded record value stays within, whatever its bytes.

A value larger than `max_value_bytes` is refused before any decoding. A decoded value is at most
`max_depth` containers deep (objects, arrays, maps, Avro records), so the stages after decoding
can walk it recursively; it holds at most `max_values` values in all (every scalar, object,
array, map, and every item or entry in them counts one), so a few bytes cannot become
gigabytes of objects.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from connector.errors import PoisonError

#: Defaults, also those of the `decoding` settings section.
DEFAULT_MAX_VALUE_BYTES = 3 * 512 * 1024  # 1.5 MiB: the API takes at most 1 MB per message
DEFAULT_MAX_DEPTH = 100
DEFAULT_MAX_VALUES = 250_000
#: The depth-limited Avro reader recurses about three Python frames per level; this keeps it
#: well inside Python's default recursion limit of 1000.
MAX_DEPTH_LIMIT = 200


@dataclass(frozen=True)
class DecodeLimits:
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_values: int = DEFAULT_MAX_VALUES

    def __post_init__(self) -> None:
        if self.max_value_bytes < 1 or self.max_values < 1:
            raise ValueError("max_value_bytes and max_values must be positive")
        if not 1 <= self.max_depth <= MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH_LIMIT}")

    def check_size(self, value: bytes) -> None:
        if len(value) > self.max_value_bytes:
            raise PoisonError(
                "decode",
                f"value of {len(value):,} bytes is over the {self.max_value_bytes:,}-byte limit",
                "too_large",
            )


def too_deep(limits: DecodeLimits) -> PoisonError:
    return PoisonError("decode", f"nested deeper than {limits.max_depth} levels", "too_deep")


def too_many_values(limits: DecodeLimits) -> PoisonError:
    return PoisonError("decode", f"more than {limits.max_values:,} values", "too_many_values")


def check_decoded(value: Any, limits: DecodeLimits) -> None:
    """Raise PoisonError if the decoded `value` is deeper or holds more values than allowed.

    Iterative, so that it is safe on a value of any depth; linear in the number of values.
    """
    max_depth = limits.max_depth
    budget = limits.max_values - 1
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        items: Collection[Any]
        if node.__class__ is dict:
            items = node.values()
        elif node.__class__ is list:
            items = node
        else:
            continue
        if depth > max_depth:
            raise too_deep(limits)
        budget -= len(items)
        if budget < 0:
            raise too_many_values(limits)
        for item in items:
            if item.__class__ is dict or item.__class__ is list:
                stack.append((item, depth + 1))
