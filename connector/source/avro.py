"""An Avro schema checked once, and read per datum with the fastest reader that is safe for it.

fastavro parses schemas it cannot read (an empty union, `{"type": "array"}` raises KeyError, a
record that must contain itself) and its C reader is safe only when the datum's depth and size
in values are bounded. So each schema is analysed when it is first seen:

- structure: every union has a branch, every enum a symbol, every fixed a size; a schema with no
  finite value (a record that requires itself) is refused as unusable;
- recursive (a named type that refers to itself): nesting is bounded only by the datum;
- depth: the deepest nesting of records, arrays and maps, when it is not recursive;
- values: a datum of n bytes decodes to at most `fixed_values + values_per_byte * n` values (every
  array item and map entry takes at least one byte, unless the item type takes none: then there
  is no bound and `values_per_byte` is infinite).

A datum is read by fastavro's C reader when the schema is not recursive, no deeper than
`max_depth`, and that bound is within `max_values`; otherwise by the depth- and value-counting
pure-Python reader (avro_python), which refuses what goes beyond the limits.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import fastavro

from connector.errors import PoisonError
from connector.source.avro_python import LimitedAvroReader
from connector.source.limits import DecodeLimits

#: Nesting of the schema's JSON itself beyond which it is refused (far beyond any real schema;
#: it keeps the analysis and compilation, which recurse over the schema, safe).
MAX_SCHEMA_NESTING = 300

_PRIMITIVE_MIN_BYTES = {
    "null": 0,
    "boolean": 1,
    "int": 1,
    "long": 1,
    "float": 4,
    "double": 8,
    "bytes": 1,
    "string": 1,
}
_NAMED_KINDS = ("record", "error", "enum", "fixed")


class SchemaError(ValueError):
    """The schema cannot be used to read datums; the message says why."""


@dataclass(frozen=True)
class _Shape:
    """What a (sub)schema's datums can be: see the module docstring."""

    depth: float  # nesting of records, arrays and maps; inf on a recursive reference
    fixed_values: float
    min_bytes: int
    values_per_byte: float
    inhabited: bool  # has a finite value (judged exactly later when the schema is recursive)


_RECURSIVE = _Shape(math.inf, math.inf, 0, math.inf, False)


class AvroSchema:
    """A parsed, analysed schema, and `read` choosing the reader per datum."""

    def __init__(self, schema: Any, limits: DecodeLimits) -> None:
        """`schema` is the schema as JSON data; SchemaError when it is not usable."""
        self.limits = limits
        named: dict[str, Any] = {}
        try:
            self.parsed = fastavro.parse_schema(schema, named_schemas=named)
            analysis = _Analysis(named)
            shape = analysis.shape(self.parsed, 0)
            # Judged per type in one pass, except around cycles: those need a fixed point.
            if not (_inhabited(self.parsed, named) if analysis.recursive else shape.inhabited):
                raise SchemaError("no datum can have this schema (a type requires itself)")
            self._limited = LimitedAvroReader(self.parsed, named, limits)
        except SchemaError:
            raise
        except Exception as exc:  # fastavro and malformed schemas: KeyError, TypeError, ...
            raise SchemaError(f"{type(exc).__name__}: {exc}") from None
        self.recursive = analysis.recursive
        self.depth = shape.depth
        self._fixed_values = shape.fixed_values
        self._values_per_byte = shape.values_per_byte
        self._fast = not self.recursive and shape.depth <= limits.max_depth

    def uses_c_reader(self, datum_bytes: int) -> bool:
        """Whether a datum of this many bytes is within the limits whatever its content."""
        if not self._fast:
            return False
        bound = self._fixed_values + self._values_per_byte * datum_bytes
        return bound <= self.limits.max_values

    def read(self, value: bytes, start: int) -> Any:
        """The datum that fills `value[start:]`; PoisonError for anything else."""
        if self.uses_c_reader(len(value) - start):
            return _read_with_fastavro(value, start, self.parsed)
        return self._limited.read(value, start)


def _read_with_fastavro(value: bytes, start: int, schema: Any) -> Any:
    stream = io.BytesIO(value)
    stream.seek(start)
    try:
        datum = fastavro.schemaless_reader(stream, schema, None)
    except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ... on bad bytes
        raise PoisonError(
            "decode", f"invalid Avro datum: {type(exc).__name__}: {exc}", "invalid_avro"
        ) from None
    if stream.tell() != len(value):
        raise PoisonError(
            "decode", f"{len(value) - stream.tell()} bytes after the Avro datum", "invalid_avro"
        )
    return datum


class _Analysis:
    """One depth-first pass over a parsed schema: structure checks and the shape of datums."""

    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.recursive = False
        self._open: set[str] = set()  # named types being analysed (a reference to one: a cycle)
        self._done: dict[str, _Shape] = {}

    def shape(self, schema: Any, nesting: int) -> _Shape:
        if nesting > MAX_SCHEMA_NESTING:
            raise SchemaError(f"schema nested deeper than {MAX_SCHEMA_NESTING} levels")
        if isinstance(schema, str):
            if schema in _PRIMITIVE_MIN_BYTES:
                return _Shape(0, 1, _PRIMITIVE_MIN_BYTES[schema], 0, True)
            return self._named_shape(schema, self.named[schema], nesting)
        if isinstance(schema, list):
            return self._union(schema, nesting)
        if not isinstance(schema, dict):
            raise SchemaError(f"not a schema: {type(schema).__name__}")
        kind = schema["type"]
        if kind in _NAMED_KINDS:
            return self._named_shape(schema["name"], schema, nesting)
        if kind == "array":
            items = self.shape(schema["items"], nesting + 1)
            per_item = items.fixed_values / items.min_bytes if items.min_bytes else math.inf
            return _Shape(1 + items.depth, 1, 1, max(items.values_per_byte, per_item), True)
        if kind == "map":
            values = self.shape(schema["values"], nesting + 1)
            per_entry = values.fixed_values / (1 + values.min_bytes)  # the key takes a byte
            return _Shape(1 + values.depth, 1, 1, max(values.values_per_byte, per_entry), True)
        if isinstance(kind, str):  # {"type": "long", "logicalType": ...} or a named type
            return self.shape(kind, nesting + 1)
        raise SchemaError(f"unknown type {kind!r}")

    def _named_shape(self, name: str, schema: dict[str, Any], nesting: int) -> _Shape:
        if name in self._open:
            self.recursive = True
            return _RECURSIVE
        done = self._done.get(name)
        if done is not None:
            return done
        self._open.add(name)
        kind = schema["type"]
        if kind == "enum":
            symbols = schema["symbols"]
            if not isinstance(symbols, list) or not symbols:
                raise SchemaError(f"enum {name} has no symbols")
            shape = _Shape(0, 1, 1, 0, True)
        elif kind == "fixed":
            size = schema["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise SchemaError(f"fixed {name} has no valid size: {size!r}")
            shape = _Shape(0, 1, size, 0, True)
        else:
            fields = [self.shape(f["type"], nesting + 1) for f in schema["fields"]]
            shape = _Shape(
                1 + max((f.depth for f in fields), default=0),
                1 + sum(f.fixed_values for f in fields),
                sum(f.min_bytes for f in fields),
                max((f.values_per_byte for f in fields), default=0),
                all(f.inhabited for f in fields),
            )
        self._open.discard(name)
        self._done[name] = shape
        return shape

    def _union(self, branches: list[Any], nesting: int) -> _Shape:
        if not branches:
            raise SchemaError("a union with no branches")
        shapes = [self.shape(branch, nesting + 1) for branch in branches]
        inhabited = [s for s in shapes if s.inhabited] or shapes
        return _Shape(
            max(s.depth for s in shapes),
            max(s.fixed_values for s in shapes),
            1 + min(s.min_bytes for s in inhabited),  # the branch index takes a byte
            max(s.values_per_byte for s in shapes),
            any(s.inhabited for s in shapes),
        )


def _inhabited(schema: Any, named: dict[str, Any]) -> bool:
    """Whether a recursive schema has a finite datum: the least fixed point over named types
    (a record has one when all its fields do, a union when one branch does)."""
    known = {name: False for name in named}

    def has_value(node: Any, definition: bool = False) -> bool:
        if isinstance(node, str):
            return node in _PRIMITIVE_MIN_BYTES or known[node]
        if isinstance(node, list):
            return any(has_value(branch) for branch in node)
        kind = node["type"]
        if kind in _NAMED_KINDS and not definition:
            return known[node["name"]]
        if kind in ("record", "error"):
            return all(has_value(f["type"]) for f in node["fields"])
        if kind in ("enum", "fixed", "array", "map"):
            return True  # checked by _Analysis; an empty array or map is always possible
        return has_value(kind)

    changed = True
    while changed:
        changed = False
        for name, definition in named.items():
            if not known[name] and has_value(definition, definition=True):
                known[name] = changed = True
    return has_value(schema)
