"""Value rules shared by operators, functions and the output: text conversion, equality and
ordering, arithmetic, truthiness, destination types, and the final clean-up that keeps nulls
and empty containers out of an XDM entity (XDM forbids them)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal

import orjson

from connector.mapping.errors import ExpressionError
from connector.mapping.limits import MAX_VALUE_DEPTH

#: Strings accepted for a boolean destination (Data Prep's documented words, exactly).
TRUE_WORDS = frozenset(["y", "yes", "Y", "YES", "on", "ON", "true", "TRUE"])
FALSE_WORDS = frozenset(["n", "N", "no", "NO", "off", "OFF", "false", "FALSE"])

_NUMBERS = (int, float)  # exact classes: bool is not a number here

#: orjson encodes integers in this range; anything outside cannot be sent.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


_PAD2 = [f"{i:02d}" for i in range(100)]
_PAD3 = [f"{i:03d}" for i in range(1000)]


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`; fractional seconds only when present (millis or micros).

    Built from lookup tables: several times faster than isoformat() or format specs, and
    every record with a date pays for this.
    """
    zone = value.tzinfo
    if zone is not None and zone is not UTC and value.utcoffset():
        value = value.astimezone(UTC)
    year = str(value.year) if value.year >= 1000 else f"{value.year:04d}"
    text = (
        f"{year}-{_PAD2[value.month]}-{_PAD2[value.day]}"
        f"T{_PAD2[value.hour]}:{_PAD2[value.minute]}:{_PAD2[value.second]}"
    )
    micro = value.microsecond
    if not micro:
        return text + "Z"
    if micro % 1000 == 0:
        return f"{text}.{_PAD3[micro // 1000]}Z"
    return f"{text}.{micro:06d}Z"


def type_name(value: object) -> str:
    """A JSON-ish name for a value's type, for messages that must not show the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (datetime, date)):
        return "date"
    return type(value).__name__


def to_text(value: object) -> str:
    """A value as text the way Data Prep's string functions see it."""
    if value.__class__ is str or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e16:
            return f"{value:.1f}"
        return repr(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (dict, list)):
        try:
            return orjson.dumps(clean(value) or ([] if isinstance(value, list) else {})).decode()
        except orjson.JSONEncodeError as exc:
            raise ExpressionError(f"cannot turn the {type_name(value)} into text: {exc}") from None
    if value is None:
        raise ExpressionError("null has no text")
    raise ExpressionError(f"cannot turn a {type_name(value)} into text")


def clean(value: object, depth: int = 0) -> object:
    """The value as it may appear in an XDM entity, or None when nothing is left.

    Drops nulls and empty objects/arrays at every depth; dates become RFC 3339 text; Avro
    logical types (Decimal, UUID, date, time, bytes) become JSON values. Raises for values
    that cannot be sent (non-finite numbers, integers beyond 64 bits, unknown types, nesting
    deeper than MAX_VALUE_DEPTH).
    """
    cls = value.__class__
    if cls is str or cls is bool:
        return value
    if cls is int:
        if INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            return value
        raise ExpressionError("integer is outside the 64-bit range")
    if cls is datetime:
        return rfc3339(value)  # type: ignore[arg-type]
    if cls is dict:
        if depth >= MAX_VALUE_DEPTH:
            raise ExpressionError(f"the value is nested more than {MAX_VALUE_DEPTH} levels deep")
        out: dict[str, object] = {}
        for key, item in value.items():  # type: ignore[attr-defined]
            kind = item.__class__
            if kind is not str and kind is not bool:  # most values: no call for them
                if item is None:
                    continue
                item = clean(item, depth + 1)
                if item is None:
                    continue
            out[key if key.__class__ is str else to_text(key)] = item
        return out or None
    if cls is list or cls is tuple:
        if depth >= MAX_VALUE_DEPTH:
            raise ExpressionError(f"the value is nested more than {MAX_VALUE_DEPTH} levels deep")
        items: list[object] = []
        for item in value:  # type: ignore[attr-defined]
            kind = item.__class__
            if kind is not str and kind is not bool:
                if item is None:
                    continue
                item = clean(item, depth + 1)
                if item is None:
                    continue
            items.append(item)
        return items or None
    if value is None:
        return None
    if cls is float:
        if math.isfinite(value):  # type: ignore[arg-type]
            return value
        raise ExpressionError("number is not finite")
    return _clean_other(value, depth)


def _clean_other(value: object, depth: int) -> object:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return clean(int(value))
    if isinstance(value, float):
        return clean(float(value))
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ExpressionError("number is not finite")
        return clean(int(value)) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return clean(dict(value), depth)
    if isinstance(value, (list, tuple)):
        return clean(list(value), depth)
    raise ExpressionError(f"a {type_name(value)} cannot be written to the output")


def truthy(value: object) -> bool:
    """Conditions: null, false, 0, "" and empty arrays/objects are false; the rest is true."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(value: object, what: str) -> int | float:
    """A number, or a string holding one (JEXL converts numeric strings in arithmetic)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, str):
        parsed = parse_number(value)
        if parsed is not None:
            return parsed
        raise ExpressionError(f"{what}: the string is not a number")
    raise ExpressionError(f"{what}: expected a number, got {type_name(value)}")


def parse_number(text: str) -> int | float | None:
    """An int or float from text (surrounding blanks allowed), or None."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        result = float(text)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def equal(left: object, right: object) -> bool:
    """`==`: numbers by value (a numeric string equals its number), others by type and value."""
    cls = left.__class__
    if cls is right.__class__ and (cls is str or cls is int or cls is float or cls is bool):
        return left == right  # the common case, decided without the rules below
    if left is None or right is None:
        return left is right
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if is_number(left) and isinstance(right, str):
        return parse_number(right) == left
    if isinstance(left, str) and is_number(right):
        return parse_number(left) == right
    if type(left) is not type(right) and not (is_number(left) and is_number(right)):
        return False
    return left == right


def compare(left: object, right: object) -> int | None:
    """Ordering for `< > <= >=`: -1, 0 or 1; None when either side is null (the test is false)."""
    if left is None or right is None:
        return None
    if is_number(left) and is_number(right):
        pass
    elif is_number(left) and isinstance(right, str):
        right = number(right, "comparison")
    elif isinstance(left, str) and is_number(right):
        left = number(left, "comparison")
    elif not (
        (isinstance(left, str) and isinstance(right, str))
        or (isinstance(left, datetime) and isinstance(right, datetime))
    ):
        raise ExpressionError(f"cannot compare {type_name(left)} with {type_name(right)}")
    try:
        return int(left > right) - int(left < right)  # type: ignore[operator]
    except TypeError:
        raise ExpressionError("cannot compare dates with and without a time zone") from None


def add(left: object, right: object) -> object:
    """`+`: string concatenation when either side is a string, else numeric addition."""
    if left.__class__ is str and right.__class__ is str:
        return left + right
    if left is None or right is None:
        return None
    if isinstance(left, str) or isinstance(right, str):
        return to_text(left) + to_text(right)
    return number(left, "+") + number(right, "+")


def _operands(op: str, left: object, right: object) -> tuple[int | float, int | float] | None:
    """Both operands as numbers (numeric strings converted, as JEXL does); None if one is null."""
    if left is None or right is None:
        return None
    return number(left, op), number(right, op)


def subtract(left: object, right: object) -> object:
    if left.__class__ in _NUMBERS and right.__class__ in _NUMBERS:
        return left - right
    pair = _operands("-", left, right)
    return None if pair is None else pair[0] - pair[1]


def multiply(left: object, right: object) -> object:
    if left.__class__ in _NUMBERS and right.__class__ in _NUMBERS:
        return left * right
    pair = _operands("*", left, right)
    return None if pair is None else pair[0] * pair[1]


def divide(left: object, right: object) -> object:
    """`/` and `div` as in Java: int/int truncates toward zero; division by zero is an error."""
    pair = _operands("/", left, right)
    if pair is None:
        return None
    a, b = pair
    if b == 0:
        raise ExpressionError("division by zero")
    if isinstance(a, int) and isinstance(b, int):
        quotient = abs(a) // abs(b)
        return quotient if (a < 0) == (b < 0) else -quotient
    return a / b


def modulo(left: object, right: object) -> object:
    """`mod` as Java's `%`: the remainder keeps the dividend's sign."""
    pair = _operands("mod", left, right)
    if pair is None:
        return None
    a, b = pair
    if b == 0:
        raise ExpressionError("division by zero")
    if isinstance(a, int) and isinstance(b, int):
        remainder = abs(a) % abs(b)
        return remainder if a >= 0 else -remainder
    if math.isinf(a) or math.isnan(a) or math.isnan(b):
        # Java answers NaN, which no JSON value can carry (Avro doubles can be infinite)
        raise ExpressionError(f"mod of {a!r} by {b!r} has no number as its result")
    return math.fmod(a, b)


def negate(value: object) -> object:
    if value is None:
        return None
    return -number(value, "unary -")


# --- destination types -------------------------------------------------------------------


def to_boolean(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in TRUE_WORDS:
            return True
        if value in FALSE_WORDS:
            return False
        raise ExpressionError("the string is not one of the boolean words")
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    raise ExpressionError(f"expected a boolean, got {type_name(value)}")


def to_integer_value(value: object) -> object:
    if isinstance(value, bool):
        raise ExpressionError("expected an integer, got boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
        raise ExpressionError("the string is not an integer")
    raise ExpressionError(f"expected an integer, got {type_name(value)}")


def to_number_value(value: object) -> object:
    return number(value, "number")


def to_string_value(value: object) -> object:
    if isinstance(value, (dict, list)):
        raise ExpressionError(f"expected a scalar for a string field, got {type_name(value)}")
    return to_text(value)


#: Destination types a mapping may declare; each converts one value (None never reaches it).
DESTINATION_TYPES: dict[str, Callable[[object], object]] = {
    "boolean": to_boolean,
    "integer": to_integer_value,
    "number": to_number_value,
    "string": to_string_value,
}
