"""A pure-Python reader of Avro binary datums that counts depth and values as it reads.

fastavro's C reader recurses on the C stack once per nesting level, so a recursive schema
(`Node{next: ["null", "Node"]}`) lets a few kilobytes of input overflow it and kill the process;
and an array of items that take no bytes (nulls, empty records) lets a few bytes declare billions
of items. This reader stops both at the limits: nesting beyond `max_depth` and more than
`max_values` values are refused before they are built. It is slower than the C reader, so it is
used only where the C reader is unsafe (see avro.AvroSchema).

Values are the same as fastavro's for valid datums (logical types through fastavro's own
converters); invalid ones raise PoisonError.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from fastavro.read import LOGICAL_READERS

from connector.errors import PoisonError
from connector.source.limits import DecodeLimits, too_deep, too_many_values


class _Cursor:
    """One datum being read: the bytes, the read position and the values still allowed."""

    __slots__ = ("budget", "data", "pos")

    def __init__(self, data: bytes, pos: int, budget: int) -> None:
        self.data = data
        self.pos = pos
        self.budget = budget


#: Reads one value at the cursor; the int is the depth the value would sit at.
Read = Callable[[_Cursor, int], Any]


class _Invalid(Exception):
    """The bytes are not a datum of the schema (turned into PoisonError by `read`)."""


def _long(cursor: _Cursor) -> int:
    """A zig-zag varint (Avro int and long); an IndexError past the end means truncated."""
    data = cursor.data
    pos = cursor.pos
    byte = data[pos]
    pos += 1
    n = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift > 63:
            raise _Invalid("varint longer than 10 bytes")
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
    cursor.pos = pos
    return (n >> 1) ^ -(n & 1)


def _raw(cursor: _Cursor, size: int) -> bytes:
    start = cursor.pos
    end = start + size
    if size < 0 or end > len(cursor.data):
        raise _Invalid(f"length {size} runs past the end of the datum")
    cursor.pos = end
    return cursor.data[start:end]


def _read_null(cursor: _Cursor, depth: int) -> None:
    return None


def _read_boolean(cursor: _Cursor, depth: int) -> bool:
    byte = cursor.data[cursor.pos]
    cursor.pos += 1
    return byte != 0  # as fastavro: any non-zero byte is true


def _read_long(cursor: _Cursor, depth: int) -> int:
    return _long(cursor)


def _fixed_width(fmt: str) -> Read:
    unpack = struct.Struct(fmt).unpack_from
    size = struct.calcsize(fmt)

    def read(cursor: _Cursor, depth: int) -> float:
        value: float = unpack(cursor.data, cursor.pos)[0]  # struct.error when truncated
        cursor.pos += size
        return value

    return read


def _read_bytes(cursor: _Cursor, depth: int) -> bytes:
    return _raw(cursor, _long(cursor))


def _read_string(cursor: _Cursor, depth: int) -> str:
    return _raw(cursor, _long(cursor)).decode()  # UnicodeDecodeError: invalid


_PRIMITIVES: dict[str, Read] = {
    "null": _read_null,
    "boolean": _read_boolean,
    "int": _read_long,
    "long": _read_long,
    "float": _fixed_width("<f"),
    "double": _fixed_width("<d"),
    "bytes": _read_bytes,
    "string": _read_string,
}


class LimitedAvroReader:
    """Reads datums of one parsed schema (fastavro.parse_schema output, with its named types)."""

    def __init__(self, schema: Any, named: dict[str, Any], limits: DecodeLimits) -> None:
        self._named_schemas = named
        self._limits = limits
        self._named: dict[str, Read] = {}
        self._root = self._compile(schema)

    def read(self, data: bytes, start: int) -> Any:
        """The datum that fills `data[start:]`; PoisonError for anything else."""
        cursor = _Cursor(data, start, self._limits.max_values - 1)
        try:
            value = self._root(cursor, 1)
        except PoisonError:
            raise
        except RecursionError:  # a backstop: max_depth keeps the recursion well below it
            raise too_deep(self._limits) from None
        except (_Invalid, IndexError, struct.error, UnicodeDecodeError) as exc:
            detail = str(exc) if isinstance(exc, _Invalid) else "truncated or malformed"
            raise PoisonError("decode", f"invalid Avro datum: {detail}", "invalid_avro") from None
        except Exception as exc:  # fastavro's logical-type converters: ValueError, OverflowError...
            raise PoisonError(
                "decode", f"invalid Avro datum: {type(exc).__name__}: {exc}", "invalid_avro"
            ) from None
        if cursor.pos != len(data):
            raise PoisonError(
                "decode", f"{len(data) - cursor.pos} bytes after the Avro datum", "invalid_avro"
            )
        return value

    # --- compiling a schema into readers (the schema was checked by avro.AvroSchema) ---------

    def _compile(self, schema: Any) -> Read:
        if isinstance(schema, str):
            primitive = _PRIMITIVES.get(schema)
            if primitive is not None:
                return primitive
            compiled = self._named.get(schema)
            return compiled if compiled is not None else self._compile(self._named_schemas[schema])
        if isinstance(schema, list):
            return self._union(schema)
        kind = schema["type"]
        if kind in ("record", "error"):
            return self._record(schema)
        if kind == "enum":
            reader = self._enum(schema["symbols"])
        elif kind == "fixed":
            size = schema["size"]
            reader = self._fixed(size)
        elif kind == "array":
            reader = self._array(self._compile(schema["items"]))
        elif kind == "map":
            reader = self._map(self._compile(schema["values"]))
        else:  # {"type": "string", ...}: a primitive or a named type, maybe with a logicalType
            reader = self._compile(kind)
        logical = schema.get("logicalType")
        if logical is not None:
            base = kind if kind in _PRIMITIVES or kind in ("enum", "fixed") else None
            convert = LOGICAL_READERS.get(f"{base}-{logical}") if base else None
            if convert is not None:
                reader = self._logical(reader, convert, schema)
        if kind in ("enum", "fixed"):
            self._named[schema["name"]] = reader
        return reader

    def _record(self, schema: dict[str, Any]) -> Read:
        fields: list[tuple[str, Read]] = []
        count = len(schema["fields"])
        limits = self._limits
        max_depth = limits.max_depth

        def read(cursor: _Cursor, depth: int) -> dict[str, Any]:
            if depth > max_depth:
                raise too_deep(limits)
            cursor.budget -= count
            if cursor.budget < 0:
                raise too_many_values(limits)
            record: dict[str, Any] = {}
            inner = depth + 1
            for name, field in fields:  # a loop, not a comprehension: one frame less per level
                record[name] = field(cursor, inner)
            return record

        # Registered before its fields are compiled, so that a field can refer to the record.
        self._named[schema["name"]] = read
        fields.extend((f["name"], self._compile(f["type"])) for f in schema["fields"])
        return read

    def _union(self, branches: list[Any]) -> Read:
        readers = [self._compile(branch) for branch in branches]
        count = len(readers)

        def read(cursor: _Cursor, depth: int) -> Any:
            index = _long(cursor)
            if not 0 <= index < count:
                raise _Invalid(f"union branch {index} of {count}")
            return readers[index](cursor, depth)

        return read

    def _enum(self, symbols: list[str]) -> Read:
        def read(cursor: _Cursor, depth: int) -> str:
            index = _long(cursor)
            if not 0 <= index < len(symbols):
                raise _Invalid(f"enum index {index} of {len(symbols)}")
            return symbols[index]

        return read

    def _fixed(self, size: int) -> Read:
        def read(cursor: _Cursor, depth: int) -> bytes:
            return _raw(cursor, size)

        return read

    def _array(self, item: Read) -> Read:
        limits = self._limits
        max_depth = limits.max_depth

        def read(cursor: _Cursor, depth: int) -> list[Any]:
            if depth > max_depth:
                raise too_deep(limits)
            items: list[Any] = []
            inner = depth + 1
            while True:
                count = _block_count(cursor)
                if count == 0:
                    return items
                cursor.budget -= count  # before reading: a block may declare 2**62 nulls
                if cursor.budget < 0:
                    raise too_many_values(limits)
                for _ in range(count):
                    items.append(item(cursor, inner))

        return read

    def _map(self, value: Read) -> Read:
        limits = self._limits
        max_depth = limits.max_depth

        def read(cursor: _Cursor, depth: int) -> dict[str, Any]:
            if depth > max_depth:
                raise too_deep(limits)
            entries: dict[str, Any] = {}
            inner = depth + 1
            while True:
                count = _block_count(cursor)
                if count == 0:
                    return entries
                cursor.budget -= count
                if cursor.budget < 0:
                    raise too_many_values(limits)
                for _ in range(count):
                    key = _read_string(cursor, inner)
                    entries[key] = value(cursor, inner)

        return read

    @staticmethod
    def _logical(reader: Read, convert: Callable[..., Any], schema: dict[str, Any]) -> Read:
        def read(cursor: _Cursor, depth: int) -> Any:
            return convert(reader(cursor, depth), schema, None)

        return read


def _block_count(cursor: _Cursor) -> int:
    """Items in the next block of an array or map; a negative count is followed by a size."""
    count = _long(cursor)
    if count < 0:
        _long(cursor)  # the block's size in bytes, for skipping; not needed here
        count = -count
    return count
