"""The closed function library of the mapping language, named and behaving as Data Prep's.

Every function takes already evaluated arguments and returns a value or None (None: leave the
destination out). Most return None when their main input is null. A bad input raises
ExpressionError, which becomes a field warning. `iif` and `decode` (only the chosen branch is
evaluated) and `contains_key` (a path argument) are evaluated by the compiler, so they have
no `impl` here.

Left out on purpose: `fpid_to_ecid` (its algorithm is not public), Analytics-only `aa_*`
functions and destination-only array lambdas (`filterArray`, `transformArray`, ...).
"""

from __future__ import annotations

import codecs
import hashlib
import re
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Final, NoReturn
from urllib.parse import quote_plus, unquote_plus
from urllib.parse import urlsplit as _cached_urlsplit

import orjson

from connector.mapping import dates
from connector.mapping.errors import ExpressionError
from connector.mapping.limits import MAX_USER_AGENT_CHARS, MappingLimits, bounded_cache
from connector.mapping.regexes import Pattern, compile_pattern
from connector.mapping.useragent import NO_AGENT, AgentInfo, _agent_info, agent_info
from connector.mapping.values import compare, is_number, to_text, type_name

JAVA_BLANKS: Final = "".join(chr(code) for code in range(33))  # what Java's String.trim() removes
_ABSENT: Final = object()  # an optional argument that was not written
# Python's urlsplit keeps an unbounded-by-bytes LRU cache of its own (128 URLs of any length:
# 400 KB URLs from records held 100 MB and more); the functions here cache in _split_url only.
urlsplit = getattr(_cached_urlsplit, "__wrapped__", _cached_urlsplit)


def _system_now_ms() -> int:
    return time.time_ns() // 1_000_000


def _random_uuid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Runtime:
    """What evaluation depends on besides the record: the non-deterministic inputs of `now()`,
    `timestamp()`, `uuid()` and `guid()`, the clocks of the evaluation budget (seconds) and the
    limits. Tests inject fixed ones."""

    now_ms: Callable[[], int] = _system_now_ms
    new_uuid: Callable[[], str] = _random_uuid
    clock: Callable[[], float] = time.perf_counter
    #: This thread's CPU time (seconds): read only when the wall-clock budget ran out.
    cpu_clock: Callable[[], float] = time.thread_time
    limits: MappingLimits = field(default_factory=MappingLimits)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One library function: arity rules, and checks run at load time on literal arguments."""

    name: str
    impl: Callable[..., object] | None
    min_args: int
    max_args: int | None
    pairs_from: int | None = None  # arguments from this index come as (key, value) pairs
    uses_runtime: bool = False  # impl takes the Runtime as its first argument
    uses_limits: bool = False  # impl takes the MappingLimits as its first argument
    literal_checks: dict[int, Callable[[object], object]] = field(default_factory=dict)
    # What the code generator knows of the result: "str", "bool", "int", "datetime", "list",
    # "dict" or "any"; a trailing "!" means never null.
    returns: str = "any"
    # Cost grows with the input beyond a C-speed pass (regexes, splitting, parsing): the
    # generated code checks the evaluation budget before a field that calls it.
    heavy: bool = False

    def arity_problem(self, count: int) -> str | None:
        """Why `count` arguments are wrong for this function, or None."""
        low, high = self.min_args, self.max_args
        if count < low or (high is not None and count > high):
            if high is None:
                wanted = f"at least {low} argument{'s' if low != 1 else ''}"
            elif low == high:
                wanted = f"{low} argument{'s' if low != 1 else ''}"
            else:
                wanted = f"{low} to {high} arguments"
            return f"{self.name}() takes {wanted}, got {count}"
        if self.pairs_from is not None and (count - self.pairs_from) % 2:
            return f"{self.name}() takes key/value pairs: an even number of arguments"
        return None

    def bind(self, runtime: Runtime) -> Callable[..., object]:
        assert self.impl is not None
        if self.uses_runtime:
            return partial(self.impl, runtime)
        if self.uses_limits:
            return partial(self.impl, runtime.limits)
        return self.impl


# --- argument helpers --------------------------------------------------------------------


def _text(value: object, what: str) -> str:
    if value.__class__ is str:
        return value
    if isinstance(value, (dict, list)):
        raise ExpressionError(f"{what}: expected a string, got {type_name(value)}")
    return to_text(value)


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or value is None:
        raise ExpressionError(f"{what}: expected an integer, got {type_name(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ExpressionError(f"{what}: expected an integer, got {type_name(value)}")


def _regex(limits: MappingLimits, pattern: object, what: str) -> Pattern:
    text = _text(pattern, what)
    try:
        return compile_pattern(text, limits)
    except ExpressionError as exc:
        raise ExpressionError(f"{what}: {exc}") from None


def _capped(limits: MappingLimits, length: int, what: str) -> None:
    """Refuse to build a string longer than the limit (checked before building it)."""
    if length > limits.max_string_length:
        raise ExpressionError(
            f"{what}: the result would be {length} characters long, over the limit of "
            f"{limits.max_string_length}"
        )


@bounded_cache(maxsize=64)
def _codec(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _charset(name: object) -> str:
    text = _text(name, "charset")
    codec = _codec(text)
    if codec is None:
        raise ExpressionError(f"unknown charset {text!r}")
    return codec


def _pairs(args: tuple[object, ...], what: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for index in range(0, len(args) - 1, 2):
        key = args[index]
        if key is None:
            raise ExpressionError(f"{what}: a key is null")
        out[_text(key, what)] = args[index + 1]
    return out


def _object(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ExpressionError(f"{what}: expected an object, got {type_name(value)}")
    return value


# --- string ------------------------------------------------------------------------------


def concat(limits: MappingLimits, *args: object) -> object:
    parts: list[str] = []
    size = 0
    for arg in args:
        if arg.__class__ is str:
            parts.append(arg)
            size += len(arg)
        elif arg is not None:
            text = _text(arg, "concat")
            parts.append(text)
            size += len(text)
    if not parts:
        return None
    _capped(limits, size, "concat")
    return "".join(parts)


def explode(limits: MappingLimits, value: object, pattern: object = ",") -> object:
    if value is None:
        return None
    return _java_split(_regex(limits, pattern, "explode"), _text(value, "explode"))


def _java_split(regex: Pattern, text: str) -> list[str]:
    """Java's String.split: no leading empty part from a zero-width match, no trailing empties."""
    if text == "":
        return [""]
    parts: list[str] = []
    position = 0
    for match in regex.finditer(text):
        if match.end() == 0:
            continue
        parts.append(text[position : match.start()])
        position = match.end()
    parts.append(text[position:])
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def instr(value: object, sub: object, start: object = 0, occurrence: object = 1) -> object:
    """0-based position of the n-th occurrence of `sub` at or after `start`; -1 if absent."""
    if value is None or sub is None:
        return None
    text, needle = _text(value, "instr"), _text(sub, "instr")
    position = max(_int(start, "instr start"), 0)
    count = _int(occurrence, "instr occurrence")
    if count < 1:
        raise ExpressionError("instr: occurrence must be at least 1")
    for nth in range(count):
        position = text.find(needle, position if nth == 0 else position + 1)
        if position < 0:
            return -1
    return position


def replacestr(limits: MappingLimits, value: object, find: object, replacement: object) -> object:
    if value is None:
        return None
    text = _text(value, "replacestr")
    if find is None:
        return text
    repl = "" if replacement is None else _text(replacement, "replacestr")
    needle = _text(find, "replacestr")
    if len(repl) > len(needle):  # the result can grow: know its length before building it
        count = text.count(needle) if needle else len(text) + 1
        _capped(limits, len(text) + count * (len(repl) - len(needle)), "replacestr")
    return text.replace(needle, repl)


def substr(value: object, start: object, length: object = _ABSENT) -> object:
    """0-based start; a length past the end stops at the end."""
    if value is None:
        return None
    text = _text(value, "substr")
    begin = max(_int(start, "substr start"), 0)
    if length is _ABSENT or length is None:
        return text[begin:]
    size = _int(length, "substr length")
    if size < 0:
        raise ExpressionError("substr: length must not be negative")
    return text[begin : begin + size]


def lower(value: object) -> object:
    return None if value is None else _text(value, "lower").lower()


def upper(value: object) -> object:
    return None if value is None else _text(value, "upper").upper()


@bounded_cache(maxsize=128)
def _char_class(separators: str) -> re.Pattern[str]:
    return re.compile("[" + re.escape(separators) + "]")


def split(value: object, separators: object = None) -> object:
    """Split on any of the separator characters (whitespace by default); empty parts dropped."""
    if value is None:
        return None
    text = _text(value, "split")
    if separators is None or separators == "":
        return text.split()
    chars = _text(separators, "split")
    pieces = text.split(chars) if len(chars) == 1 else _char_class(chars).split(text)
    return [piece for piece in pieces if piece]


def join(limits: MappingLimits, separator: object, *values: object) -> object:
    """Join the values (arrays are joined element by element); nulls are skipped."""
    sep = "" if separator is None else _text(separator, "join")
    parts: list[str] = []
    for value in values:
        items = value if isinstance(value, list) else [value]
        parts.extend(_text(item, "join") for item in items if item is not None)
    size = sum(map(len, parts)) + len(sep) * max(len(parts) - 1, 0)
    _capped(limits, size, "join")
    return sep.join(parts)


def _pad(limits: MappingLimits, value: object, size: object, padding: object, left: bool) -> object:
    if value is None:
        return None
    text = _text(value, "lpad" if left else "rpad")
    target = _int(size, "pad length")
    if target > limits.max_string_length:
        raise ExpressionError(f"pad length is over {limits.max_string_length}")
    fill = " " if padding is None or padding == "" else _text(padding, "pad")
    missing = target - len(text)
    if missing <= 0:
        return text
    pad = (fill * (missing // len(fill) + 1))[:missing]
    return pad + text if left else text + pad


def lpad(limits: MappingLimits, value: object, size: object, padding: object = " ") -> object:
    return _pad(limits, value, size, padding, left=True)


def rpad(limits: MappingLimits, value: object, size: object, padding: object = " ") -> object:
    return _pad(limits, value, size, padding, left=False)


def left(value: object, size: object) -> object:
    if value is None:
        return None
    count = _int(size, "left")
    return _text(value, "left")[: max(count, 0)]


def right(value: object, size: object) -> object:
    if value is None:
        return None
    count = _int(size, "right")
    text = _text(value, "right")
    return text[len(text) - count :] if 0 < count < len(text) else (text if count > 0 else "")


def ltrim(value: object) -> object:
    return None if value is None else _text(value, "ltrim").lstrip(JAVA_BLANKS)


def rtrim(value: object) -> object:
    return None if value is None else _text(value, "rtrim").rstrip(JAVA_BLANKS)


def trim(value: object) -> object:
    return None if value is None else _text(value, "trim").strip(JAVA_BLANKS)


# --- regex -------------------------------------------------------------------------------


def extract_regex(limits: MappingLimits, value: object, pattern: object) -> object:
    """The first match anywhere in the string: [whole match, group 1, ...]; null if none."""
    if value is None:
        return None
    match = _regex(limits, pattern, "extract_regex").search(_text(value, "extract_regex"))
    if match is None:
        return None
    return [match.group(0), *match.groups()]


def matches_regex(limits: MappingLimits, value: object, pattern: object) -> object:
    """Whether the whole string matches (Java's String.matches)."""
    if value is None:
        return None
    compiled = _regex(limits, pattern, "matches_regex")
    return compiled.fullmatch(_text(value, "matches_regex")) is not None


# --- hash --------------------------------------------------------------------------------


def _digest(algorithm: str) -> Callable[..., object]:
    constructor = getattr(hashlib, algorithm)

    def digest(value: object, charset: object = "UTF-8") -> object:
        if value is None:
            return None
        text = value if value.__class__ is str else _text(value, algorithm)
        data = text.encode() if charset == "UTF-8" else text.encode(_charset(charset))
        return constructor(data).hexdigest()

    digest.__name__ = algorithm
    return digest


def crc32(value: object, charset: object = "UTF-8") -> object:
    if value is None:
        return None
    data = _text(value, "crc32").encode(_charset(charset), errors="strict")
    return f"{zlib.crc32(data):08x}"


# --- url ---------------------------------------------------------------------------------

_DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "ws": 80,
    "wss": 443,
    "ftp": 21,
    "sftp": 22,
    "ssh": 22,
    "smtp": 25,
    "ldap": 389,
    "ldaps": 636,
}
_QUERY_MODES = ("retain", "remove", "append")


def _url(value: object, what: str) -> tuple[str, str, str, str, str] | None:
    """(scheme, netloc, path, query, fragment), or None for text that is not an absolute URL."""
    return _split_url(value if value.__class__ is str else _text(value, what))


@bounded_cache(maxsize=4096)
def _split_url(text: str) -> tuple[str, str, str, str, str] | None:
    # Page URLs repeat a lot in a stream; the parts are immutable, so a cache is safe.
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment


def get_url_protocol(value: object) -> object:
    parts = None if value is None else _url(value, "get_url_protocol")
    return parts[0] if parts else None


def get_url_host(value: object) -> object:
    if value is None:
        return None
    try:
        parts = urlsplit(_text(value, "get_url_host"))
        return parts.hostname if parts.scheme and parts.netloc else None
    except ValueError:
        return None


def get_url_port(value: object) -> object:
    """The port, or the scheme's well-known port when the URL has none; null if unknown."""
    if value is None:
        return None
    try:
        parts = urlsplit(_text(value, "get_url_port"))
        if not parts.scheme or not parts.netloc:
            return None
        port = parts.port
    except ValueError:
        return None
    return port if port is not None else _DEFAULT_PORTS.get(parts.scheme.lower())


def get_url_path(value: object, full: object = False) -> object:
    """The path; with FULL true also the query string and the fragment."""
    parts = None if value is None else _url(value, "get_url_path")
    if parts is None:
        return None
    _scheme, _netloc, path, query, fragment = parts
    if full is True:
        path += ("?" + query if query else "") + ("#" + fragment if fragment else "")
    return path or None


def _query_mode(mode: object) -> str:
    if mode not in _QUERY_MODES:
        raise ExpressionError('get_url_query_str: the mode must be "retain", "remove" or "append"')
    assert isinstance(mode, str)
    return mode


@bounded_cache(maxsize=4096)
def _query_pairs(query: str) -> tuple[tuple[str, str], ...]:
    """parse_qsl(query, keep_blank_values=True), cached (a tuple: callers build their dict)."""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        name, _eq, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = unquote_plus(name), unquote_plus(value)
        pairs.append((name, value))
    return tuple(pairs)


def get_url_query_str(value: object, mode: object = "retain") -> object:
    """Query parameters as an object (a repeated name keeps its last value); the fragment is
    kept on the last value ("retain"), dropped ("remove") or added as `_anchor_` ("append")."""
    how = mode if mode == "remove" or mode == "retain" else _query_mode(mode)
    parts = None if value is None else _url(value, "get_url_query_str")
    if parts is None:
        return None
    query, fragment = parts[3], parts[4]
    pairs = _query_pairs(query) if query else ()
    out: dict[str, object] = dict(pairs)
    if fragment and how == "retain" and pairs:
        last = pairs[-1][0]
        out[last] = f"{out[last]}#{fragment}"
    elif fragment and how == "append":
        out["_anchor_"] = fragment
    return out


def get_url_query_value(value: object, mode: object, name: str) -> object:
    """`get_url_query_str(value, mode).name` without building the object (generated code
    calls this for that form): the last value of the parameter, with the fragment where
    get_url_query_str puts it, and the same errors."""
    how = mode if mode == "remove" or mode == "retain" else _query_mode(mode)
    if value.__class__ is str:
        parts = _split_url(value)
    else:
        parts = None if value is None else _url(value, "get_url_query_str")
    if parts is None:
        return None
    query, fragment = parts[3], parts[4]
    if fragment and how == "append" and name == "_anchor_":
        return fragment
    pairs = _query_pairs(query) if query else ()
    if pairs and fragment and how == "retain" and pairs[-1][0] == name:
        return f"{pairs[-1][1]}#{fragment}"  # the last pair keeps the fragment
    for key, text in reversed(pairs):  # a repeated name: its last value
        if key == name:
            return text
    return None


def get_url_encoded(value: object) -> object:
    """Form encoding as Java's URLEncoder: space becomes +, only letters, digits and .-*_ stay."""
    if value is None:
        return None
    return quote_plus(_text(value, "get_url_encoded"), safe="*").replace("~", "%7E")


def get_url_decoded(value: object) -> object:
    if value is None:
        return None
    return unquote_plus(_text(value, "get_url_decoded"), errors="replace")


# --- date --------------------------------------------------------------------------------


def now(runtime: Runtime) -> object:
    return dates.from_epoch_ms(runtime.now_ms())


def timestamp(runtime: Runtime) -> object:
    return runtime.now_ms()


def _pattern(pattern: object, what: str) -> dates.DatePattern:
    """A date pattern: prepared at load time for a literal (the generated code passes the
    DatePattern itself), else compiled (and cached) from the text."""
    if pattern.__class__ is dates.DatePattern:
        return pattern
    return dates.checked_pattern(_text(pattern, what))


def format_date(value: object, pattern: object) -> object:
    if value is None:
        return None
    return _pattern(pattern, "format").format(dates.to_datetime(value, "format"))


def dformat(value: object, pattern: object) -> object:
    if value is None:
        return None
    if not is_number(value):
        raise ExpressionError(f"dformat: expected epoch milliseconds, got {type_name(value)}")
    assert isinstance(value, (int, float))
    return _pattern(pattern, "dformat").format(dates.from_epoch_ms(value))


def date(value: object, pattern: object = None, default: object = _ABSENT) -> object:
    """Parse a date; with a default, a missing or unparsable value gives the default."""
    if pattern is None and value.__class__ is str:
        try:  # ISO 8601 first, as parse_default does, without its call
            iso = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return iso if iso.tzinfo is not None else iso.replace(tzinfo=UTC)
    if value is None:
        return None if default is _ABSENT or default is None else dates.to_datetime(default, "date")
    parsed: datetime | None
    if isinstance(value, str):
        if pattern is None:
            parsed = dates.parse_default(value)
        else:
            parsed = _pattern(pattern, "date").parse(value)
    else:
        parsed = dates.to_datetime(value, "date")
    if parsed is not None:
        return parsed
    if default is _ABSENT:
        raise ExpressionError("date: the string does not match the date pattern")
    return None if default is None else dates.to_datetime(default, "date")


def _part_name(part: object, table: dict[str, object]) -> str:
    if isinstance(part, str):
        if part in table:
            return part
        if part.lower() in table:
            return part.lower()
    raise ExpressionError(f"unknown date part; use one of: {', '.join(sorted(table))}")


def date_part(part: object, value: object) -> object:
    name = _part_name(part, dict(dates.DATE_PARTS))
    if value is None:
        return None
    return dates.DATE_PARTS[name](dates.to_datetime(value, "date_part"))


def set_date_part(part: object, new: object, value: object) -> object:
    name = _part_name(part, dict(dates.SETTABLE_PARTS))
    if value is None or new is None:
        return None
    current = dates.to_datetime(value, "set_date_part")
    number = _int(new, "set_date_part value")
    target = dates.SETTABLE_PARTS[name]
    try:
        if target == "millisecond":
            return current.replace(microsecond=number * 1000)
        if target == "year":
            return current.replace(year=number)
        if target == "month":
            return current.replace(month=number)
        if target == "day":
            return current.replace(day=number)
        if target == "hour":
            return current.replace(hour=number)
        if target == "minute":
            return current.replace(minute=number)
        return current.replace(second=number)
    except (ValueError, OverflowError):
        raise ExpressionError("set_date_part: the result is not a valid date") from None


def make_date_time(
    year: object,
    month: object,
    day: object,
    hour: object = 0,
    minute: object = 0,
    second: object = 0,
    nanos: object = 0,
    zone: object = "UTC",
) -> object:
    values = (year, month, day, hour, minute, second, nanos)
    if any(part is None for part in values) or zone is None:
        return None
    y, mo, d, h, mi, s, ns = (_int(part, "make_date_time") for part in values)
    try:
        return datetime(y, mo, d, h, mi, s, ns // 1000, tzinfo=dates.zone(zone))
    except (ValueError, OverflowError):
        raise ExpressionError("make_date_time: not a valid date") from None


def zone_date_to_utc(value: object) -> object:
    return None if value is None else dates.to_datetime(value, "zone_date_to_utc").astimezone(UTC)


def zone_date_to_zone(value: object, zone: object) -> object:
    if value is None:
        return None
    return dates.to_datetime(value, "zone_date_to_zone").astimezone(dates.zone(zone))


# --- object and map ----------------------------------------------------------------------


def is_empty(value: object) -> object:
    if value is None:
        return True
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    return False


def nullify() -> object:
    return None


def to_object(*args: object) -> object:
    return _pairs(args, "to_object")


def str_to_object(value: object, value_delim: object = "=", field_delim: object = ",") -> object:
    """`"a=1,b=2"` → `{"a": "1", "b": "2"}`; blanks around keys and values are trimmed."""
    if value is None:
        return None
    text = _text(value, "str_to_object")
    vdel = _text("=" if value_delim is None else value_delim, "str_to_object")
    fdel = _text("," if field_delim is None else field_delim, "str_to_object")
    if not vdel or not fdel:
        raise ExpressionError("str_to_object: delimiters must not be empty")
    out: dict[str, object] = {}
    for item in text.split(fdel):
        if vdel in item:
            key, val = item.split(vdel, 1)
            out[key.strip(JAVA_BLANKS)] = val.strip(JAVA_BLANKS)
    return out


def json_to_object(value: object) -> object:
    if value is None:
        return None
    try:
        parsed = orjson.loads(_text(value, "json_to_object"))
    except orjson.JSONDecodeError:
        raise ExpressionError("json_to_object: the string is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise ExpressionError(f"json_to_object: the JSON is a {type_name(parsed)}, not an object")
    return parsed


def arrays_to_object(*args: object) -> object:
    """Zip named arrays into an array of objects (the longest array sets the length)."""
    columns: list[tuple[str, list[object]]] = []
    for key, values in _pairs(args, "arrays_to_object").items():
        if values is None:
            continue
        if not isinstance(values, list):
            raise ExpressionError(f"arrays_to_object: expected an array, got {type_name(values)}")
        columns.append((key, values))
    length = max((len(values) for _key, values in columns), default=0)
    return [
        {key: values[index] for key, values in columns if index < len(values)}
        for index in range(length)
    ]


def get_keys(value: object) -> object:
    return None if value is None else list(_object(value, "get_keys"))


def get_values(
    value: object, key: object, value_delim: object, field_delim: object = ","
) -> object:
    parsed = str_to_object(value, value_delim, field_delim)
    if not isinstance(parsed, dict):
        return None
    return parsed.get(_text(key, "get_values"))


def object_to_map(*args: object) -> object:
    """One object argument → a copy of it; otherwise key/value pairs like to_map."""
    if len(args) == 1:
        return None if args[0] is None else dict(_object(args[0], "object_to_map"))
    if len(args) % 2:
        raise ExpressionError("object_to_map: takes one object or key/value pairs")
    return _pairs(args, "object_to_map")


def array_to_map(values: object, key: object) -> object:
    """Index an array of objects by one of their fields (elements without it are skipped)."""
    if values is None:
        return None
    if not isinstance(values, list):
        raise ExpressionError(f"array_to_map: expected an array, got {type_name(values)}")
    name = _text(key, "array_to_map")
    out: dict[str, object] = {}
    for item in values:
        if isinstance(item, dict) and item.get(name) is not None:
            out[_text(item[name], "array_to_map")] = item
    return out


def map_get_values(mapping: object, keys: object) -> object:
    """One key → its value; an array of keys → an object with those of them that exist."""
    if mapping is None:
        return None
    source = _object(mapping, "map_get_values")
    if isinstance(keys, list):
        wanted = [_text(key, "map_get_values") for key in keys if key is not None]
        return {key: source[key] for key in wanted if key in source}
    return None if keys is None else source.get(_text(keys, "map_get_values"))


def map_has_keys(mapping: object, keys: object) -> object:
    if mapping is None:
        return False
    source = _object(mapping, "map_has_keys")
    wanted = keys if isinstance(keys, list) else [keys]
    return all(key is not None and _text(key, "map_has_keys") in source for key in wanted)


def add_to_map(*maps: object) -> object:
    """Merge objects; when a key repeats, the first one wins."""
    out: dict[str, object] = {}
    for mapping in maps:
        if mapping is None:
            continue
        for key, value in _object(mapping, "add_to_map").items():
            out.setdefault(key, value)
    return out


# --- array -------------------------------------------------------------------------------


def coalesce(*values: object) -> object:
    for value in values:
        if value is not None:
            return value
    return None


def _items(values: tuple[object, ...]) -> list[object] | tuple[object, ...]:
    """One array argument stands for its elements (first(items)); otherwise the arguments."""
    if len(values) == 1 and isinstance(values[0], list):
        return values[0]
    return values


def first(*values: object) -> object:
    items = _items(values)
    return items[0] if items else None


def last(*values: object) -> object:
    items = _items(values)
    return items[-1] if items else None


def to_array(include_nulls: object, *values: object) -> object:
    if include_nulls is True:
        return list(values)
    if include_nulls is False:
        return [value for value in values if value is not None] if None in values else list(values)
    raise ExpressionError("to_array: the first argument must be true or false")


def add_to_array(values: object, *more: object) -> object:
    """Append values to an array; an array value adds its elements."""
    out: list[object] = (
        [] if values is None else (list(values) if isinstance(values, list) else [values])
    )
    for value in more:
        if isinstance(value, list):
            out.extend(value)
        elif value is not None:
            out.append(value)
    return out


def join_arrays(*arrays: object) -> object:
    out: list[object] = []
    for value in arrays:
        if isinstance(value, list):
            out.extend(value)
        elif value is not None:
            out.append(value)
    return out


def size_of(value: object) -> object:
    """Elements of an array, keys of an object or characters of a string; 0 for null."""
    if value is None:
        return 0
    if isinstance(value, (str, list, dict)):
        return len(value)
    raise ExpressionError(f"size_of: expected an array, object or string, got {type_name(value)}")


def upsert_array(values: object) -> object:
    """Profile-only upsert helpers: on the streaming path they return their input unchanged."""
    return values


# --- logic, aggregate, convert -----------------------------------------------------------


def _extreme(values: tuple[object, ...], sign: int) -> object:
    best: object = None
    for value in _items(values):
        if value is None:
            continue
        if best is None or (compare(value, best) or 0) * sign > 0:
            best = value
    return best


def min_value(*values: object) -> object:
    return _extreme(values, -1)


def max_value(*values: object) -> object:
    return _extreme(values, 1)


_INT32_LIMIT = 2**31
_INT64_LIMIT = 2**63


def _to_int(value: object, what: str, bits: int) -> object:
    if value.__class__ is str and "_" not in value:  # the common case, straight through
        try:
            number = int(value)
        except ValueError:
            raise ExpressionError(f"{what}: the string is not an integer") from None
        limit = _INT32_LIMIT if bits == 32 else _INT64_LIMIT
        if -limit <= number < limit:
            return number
        raise ExpressionError(f"{what}: the value does not fit in {bits} bits")
    if value is None:
        return None
    if isinstance(value, bool):
        raise ExpressionError(f"{what}: expected a number or a numeric string, got boolean")
    result: int
    if isinstance(value, str):
        try:
            if "_" in value:  # int() accepts 1_000; Java does not
                raise ValueError(value)
            result = int(value)
        except ValueError:
            raise ExpressionError(f"{what}: the string is not an integer") from None
    elif isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ExpressionError(f"{what}: the number is not finite")
        result = int(value)
    else:
        raise ExpressionError(
            f"{what}: expected a number or a numeric string, got {type_name(value)}"
        )
    limit = _INT32_LIMIT if bits == 32 else _INT64_LIMIT
    if not -limit <= result < limit:
        raise ExpressionError(f"{what}: the value does not fit in {bits} bits")
    return result


def to_integer(value: object) -> object:
    if value.__class__ is str and "_" not in value:  # the common case without a second call
        try:
            number = int(value)
        except ValueError:
            raise ExpressionError("to_integer: the string is not an integer") from None
        if -_INT32_LIMIT <= number < _INT32_LIMIT:
            return number
    return _to_int(value, "to_integer", 32)


def to_bigint(value: object) -> object:
    return _to_int(value, "to_bigint", 64)


def _to_float(value: object, what: str) -> object:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ExpressionError(
            f"{what}: expected a number or a numeric string, got {type_name(value)}"
        )
    try:
        result = float(value.strip(JAVA_BLANKS) if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ExpressionError(f"{what}: the string is not a number") from None
    if result != result or result in (float("inf"), float("-inf")):
        raise ExpressionError(f"{what}: the number is not finite")
    return result


def to_float(value: object) -> object:
    return _to_float(value, "to_float")


def to_decimal(value: object) -> object:
    """A JSON number (double precision: JSON output has no decimal type)."""
    return _to_float(value, "to_decimal")


def new_uuid(runtime: Runtime) -> object:
    return runtime.new_uuid()


# --- user agent --------------------------------------------------------------------------


def _ua(attribute: str) -> Callable[[object], object]:
    def read(value: object) -> object:
        if value.__class__ is str:
            return getattr(agent_info(value), attribute)
        if value is None:
            return None
        return getattr(agent_info(_text(value, "user agent")), attribute)

    return read


class UnreadableAgent:
    """A user-agent value that is not text (an object, an array): reading any of its
    attributes raises the error each ua_* function raises for it."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> NoReturn:
        raise self.error.with_traceback(None)


def user_agent(value: object) -> AgentInfo | UnreadableAgent:
    """What every ua_* function of one value reads, computed once: generated code calls
    this once per record and value and reads `.os_name`, `.agent_name`, ... from it. Never
    raises: an error is kept for each field that reads the value to report it."""
    try:
        if value.__class__ is str and len(value) <= MAX_USER_AGENT_CHARS:
            return _agent_info(value)  # the cached parse itself: what agent_info() calls
        if value is None:
            return NO_AGENT
        return agent_info(value if isinstance(value, str) else _text(value, "user agent"))
    except Exception as exc:
        return UnreadableAgent(exc)


# --- load-time checks on literal arguments -------------------------------------------------


def _check_regex(value: object) -> object:
    return _regex(MappingLimits(), value, "regex")


def _check_pattern(value: object) -> object:
    return None if value is None else dates.checked_pattern(_text(value, "date pattern"))


def _check_part(table: dict[str, object]) -> Callable[[object], object]:
    return lambda value: _part_name(value, table)


def _check_bool(value: object) -> object:
    if not isinstance(value, bool):
        raise ExpressionError("expected true or false")
    return value


def _check_zone(value: object) -> object:
    return dates.zone(value)


# --- the table ---------------------------------------------------------------------------


def _spec(
    name: str,
    impl: Callable[..., object] | None,
    low: int,
    high: int | None,
    *,
    pairs_from: int | None = None,
    runtime: bool = False,
    limits: bool = False,
    checks: dict[int, Callable[[object], object]] | None = None,
    returns: str = "any",
    heavy: bool = False,
) -> FunctionSpec:
    return FunctionSpec(
        name, impl, low, high, pairs_from, runtime, limits, checks or {}, returns, heavy
    )


def _table() -> dict[str, FunctionSpec]:
    regex: dict[int, Callable[[object], object]] = {1: _check_regex}
    pattern: dict[int, Callable[[object], object]] = {1: _check_pattern}
    specs = [
        _spec("concat", concat, 1, None, limits=True, returns="str"),
        _spec("explode", explode, 1, 2, limits=True, checks=regex, returns="list", heavy=True),
        _spec("instr", instr, 2, 4, returns="int"),
        _spec("replacestr", replacestr, 3, 3, limits=True, returns="str"),
        _spec("substr", substr, 2, 3, returns="str"),
        _spec("lower", lower, 1, 1, returns="str"),
        _spec("lcase", lower, 1, 1, returns="str"),
        _spec("upper", upper, 1, 1, returns="str"),
        _spec("ucase", upper, 1, 1, returns="str"),
        _spec("split", split, 1, 2, returns="list", heavy=True),
        _spec("join", join, 2, None, limits=True, returns="str!", heavy=True),
        _spec("lpad", lpad, 2, 3, limits=True, returns="str"),
        _spec("rpad", rpad, 2, 3, limits=True, returns="str"),
        _spec("left", left, 2, 2, returns="str"),
        _spec("right", right, 2, 2, returns="str"),
        _spec("ltrim", ltrim, 1, 1, returns="str"),
        _spec("rtrim", rtrim, 1, 1, returns="str"),
        _spec("trim", trim, 1, 1, returns="str"),
        _spec("extract_regex", extract_regex, 2, 2, limits=True, checks=regex, heavy=True),
        _spec(
            "matches_regex",
            matches_regex,
            2,
            2,
            limits=True,
            checks=regex,
            returns="bool",
            heavy=True,
        ),
        *(
            _spec(algorithm, _digest(algorithm), 1, 2, checks={1: _charset}, returns="str")
            for algorithm in ("sha1", "sha256", "sha512", "md5")
        ),
        _spec("crc32", crc32, 1, 2, checks={1: _charset}, returns="str"),
        _spec("get_url_protocol", get_url_protocol, 1, 1, returns="str"),
        _spec("get_url_host", get_url_host, 1, 1, returns="str"),
        _spec("get_url_port", get_url_port, 1, 1, returns="int"),
        _spec("get_url_path", get_url_path, 1, 2, returns="str"),
        _spec(
            "get_url_query_str",
            get_url_query_str,
            1,
            2,
            checks={1: _query_mode},
            returns="dict",
            heavy=True,
        ),
        _spec("get_url_encoded", get_url_encoded, 1, 1, returns="str"),
        _spec("get_url_decoded", get_url_decoded, 1, 1, returns="str"),
        _spec("now", now, 0, 0, runtime=True, returns="datetime!"),
        _spec("timestamp", timestamp, 0, 0, runtime=True, returns="int!"),
        _spec("format", format_date, 2, 2, checks=pattern, returns="str"),
        _spec("dformat", dformat, 2, 2, checks=pattern, returns="str"),
        _spec("date", date, 1, 3, checks=pattern, returns="datetime"),
        _spec("date_part", date_part, 2, 2, checks={0: _check_part(dict(dates.DATE_PARTS))}),
        _spec(
            "set_date_part",
            set_date_part,
            3,
            3,
            checks={0: _check_part(dict(dates.SETTABLE_PARTS))},
            returns="datetime",
        ),
        _spec("make_date_time", make_date_time, 3, 8, checks={7: _check_zone}),
        _spec("zone_date_to_utc", zone_date_to_utc, 1, 1, returns="datetime"),
        _spec("zone_date_to_zone", zone_date_to_zone, 2, 2, checks={1: _check_zone}),
        _spec("is_empty", is_empty, 1, 1, returns="bool!"),
        _spec("contains_key", None, 1, 1, returns="bool!"),
        _spec("nullify", nullify, 0, 0),
        _spec("to_object", to_object, 2, None, pairs_from=0, returns="dict!"),
        _spec("str_to_object", str_to_object, 1, 3, returns="dict", heavy=True),
        _spec("json_to_object", json_to_object, 1, 1, returns="dict", heavy=True),
        _spec("arrays_to_object", arrays_to_object, 2, None, pairs_from=0, returns="list!"),
        _spec("get_keys", get_keys, 1, 1, returns="list"),
        _spec("get_values", get_values, 3, 4, heavy=True),
        _spec("to_map", to_object, 2, None, pairs_from=0, returns="dict!"),
        _spec("object_to_map", object_to_map, 1, None),
        _spec("array_to_map", array_to_map, 2, 2, returns="dict", heavy=True),
        _spec("map_get_values", map_get_values, 2, 2),
        _spec("map_has_keys", map_has_keys, 2, 2, returns="bool!"),
        _spec("add_to_map", add_to_map, 1, None, returns="dict!"),
        _spec("coalesce", coalesce, 1, None),
        _spec("first", first, 1, None),
        _spec("last", last, 1, None),
        _spec("to_array", to_array, 1, None, checks={0: _check_bool}, returns="list!"),
        _spec("add_to_array", add_to_array, 1, None, returns="list!"),
        _spec("join_arrays", join_arrays, 1, None, returns="list!"),
        _spec("size_of", size_of, 1, 1, returns="int!"),
        _spec("upsert_array_append", upsert_array, 1, 1),
        _spec("upsert_array_replace", upsert_array, 1, 1),
        _spec("iif", None, 3, 3),
        _spec("decode", None, 3, None),
        _spec("min", min_value, 1, None),
        _spec("max", max_value, 1, None),
        _spec("to_integer", to_integer, 1, 1, returns="int"),
        _spec("to_bigint", to_bigint, 1, 1, returns="int"),
        _spec("to_float", to_float, 1, 1),
        _spec("to_decimal", to_decimal, 1, 1),
        _spec("uuid", new_uuid, 0, 0, runtime=True, returns="str!"),
        _spec("guid", new_uuid, 0, 0, runtime=True, returns="str!"),
    ]
    for name in (
        "os_name",
        "os_version_major",
        "os_version",
        "os_name_version",
        "agent_name",
        "agent_version",
        "agent_version_major",
        "device_class",
    ):
        specs.append(_spec(f"ua_{name}", _ua(name), 1, 1, returns="str", heavy=True))
    return {spec.name: spec for spec in specs}


#: Every function of the language by name.
FUNCTIONS: Final[dict[str, FunctionSpec]] = _table()
FUNCTION_NAMES: Final = frozenset(FUNCTIONS)
