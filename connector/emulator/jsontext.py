"""JSON text for parsed values of any nesting depth.

The parser accepts documents nested up to 1,024 levels, but orjson refuses to serialise values
nested more than 254 levels and Python's own encoder and `repr` recurse. The emulator must still
store, serve and quote such messages, so serialising falls back to an explicit-stack encoder; the
fast path stays orjson.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

_OPEN_OBJECT = b"{"
_OPEN_ARRAY = b"["


def dumps(value: Any) -> bytes:
    """Compact JSON for `value`, whatever its depth."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return b"".join(iter_chunks(value))


def preview(value: object, limit: int = 120) -> str:
    """`value` as compact JSON cut to `limit` characters (with `…`), without encoding it whole:
    error messages say what was found, at any size or depth."""
    collected = bytearray()
    for chunk in iter_chunks(value):
        collected += chunk
        if len(collected) > limit * 4:  # enough bytes for `limit` characters of any width
            break
    text = collected.decode("utf-8", errors="ignore")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def iter_chunks(value: Any) -> Iterator[bytes]:
    """The JSON text of `value` in pieces, depth-first with an explicit stack (no recursion).

    The stack holds values still to encode and, as `bytes`, literal text to emit; parsed JSON
    never contains bytes, so the two cannot be confused.
    """
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is bytes:
            yield item
        elif kind is dict:
            if not item:
                yield b"{}"
                continue
            stack.append(b"}")
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):
                key, child = entries[index]
                stack.append(child)
                stack.append((b"," if index else b"") + orjson.dumps(str(key)) + b":")
            yield _OPEN_OBJECT
        elif kind is list:
            if not item:
                yield b"[]"
                continue
            stack.append(b"]")
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(b",")
            yield _OPEN_ARRAY
        else:
            try:
                yield orjson.dumps(item)
            except orjson.JSONEncodeError:
                yield orjson.dumps(repr(item))  # not a JSON value; only quoted in messages
