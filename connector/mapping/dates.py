"""Dates for the mapping language: Java DateTimeFormatter patterns (formatting and parsing),
Data Prep's default parse order, epoch milliseconds, time zones and date parts.

Patterns are compiled once and cached, so a literal pattern costs nothing per record.
A date without a zone is taken as UTC. Sub-microsecond precision is dropped (Python's
datetime keeps microseconds).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connector.mapping.errors import ExpressionError, SourceError
from connector.mapping.limits import bounded_cache
from connector.mapping.values import is_number, type_name

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_SUPPORTED_LETTERS = frozenset("GyuQqMLwDdEahKkHmsSnXxZzV")
_RESERVED_PATTERN_CHARS = frozenset("[]{}#")

#: Data Prep's order for a date string parsed without a format.
DEFAULT_PATTERNS = (
    "yyyy-MM-dd HH:mm:ssZ",
    "yyyy-MM-dd HH:mm:ss.SSSZ",
    "yyyy-MM-dd HH:mm:ss.SSS",
    "yyyy-MM-dd'T'HH:mm:ss.SSSX",
    "yyyy-MM-dd'T'HH:mm:ss'Z'",
    "yyyy-MM-dd",
    "yyyy/MM/dd",
    "yyyy.MM.dd",
    "yyyy-MMM-dd",
    "yyyyMMdd",
    "MM-dd-yyyy",
    "MMddyyyy",
    "M/dd/yyyy",
    "dd.M.yyyy",
    "M/dd/yyyy hh:mm:ss a",
    "dd.M.yyyy hh:mm:ss a",
    "dd.MMM.yyyy",
    "dd-MMM-yyyy",
)

#: Longer strings are not dates: parsing gives up at once (patterns with several unbounded
#: fields, such as names, could otherwise backtrack quadratically on a hostile value).
MAX_DATE_CHARS = 256

_Token = tuple[str, int] | str  # (pattern letter, repeat count) or literal text


def _tokenize(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "'":
            if pattern.startswith("''", i):
                tokens.append("'")
                i += 2
                continue
            end = i + 1
            text: list[str] = []
            while True:
                close = pattern.find("'", end)
                if close < 0:
                    raise SourceError("unclosed quote in date pattern", 1, i + 1)
                text.append(pattern[end:close])
                if pattern.startswith("''", close):
                    text.append("'")
                    end = close + 2
                    continue
                break
            tokens.append("".join(text))
            i = close + 1
        elif ch.isascii() and ch.isalpha():
            if ch not in _SUPPORTED_LETTERS:
                raise SourceError(f"date pattern letter {ch!r} is not supported", 1, i + 1)
            j = i
            while j < n and pattern[j] == ch:
                j += 1
            tokens.append((ch, j - i))
            i = j
        elif ch in _RESERVED_PATTERN_CHARS:
            raise SourceError(f"date pattern character {ch!r} is not supported", 1, i + 1)
        else:
            tokens.append(ch)
            i += 1
    return tokens


def _offset_text(value: datetime, count: int, zero: str | None, colon: bool | None) -> str:
    offset = value.utcoffset() or timedelta(0)
    if zero is not None and not offset:
        return zero
    seconds = int(offset.total_seconds())
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    hours, minutes, secs = seconds // 3600, seconds // 60 % 60, seconds % 60
    if count == 1:
        return f"{sign}{hours:02d}" + (f"{minutes:02d}" if minutes else "")
    sep = ":" if (colon if colon is not None else count in (3, 5)) else ""
    text = f"{sign}{hours:02d}{sep}{minutes:02d}"
    if count >= 4 and secs:
        text += f"{sep}{secs:02d}"
    return text


def _formatter(letter: str, count: int) -> Callable[[datetime], str]:
    def pad(get: Callable[[datetime], int]) -> Callable[[datetime], str]:
        return lambda d: f"{get(d):0{count}d}"

    if letter in "yu":
        if count == 2:
            return lambda d: f"{d.year % 100:02d}"
        return pad(lambda d: d.year)
    if letter == "G":
        return lambda d: "AD"
    if letter in "Qq":
        quarter: Callable[[datetime], int] = lambda d: (d.month - 1) // 3 + 1  # noqa: E731
        if count <= 2:
            return pad(quarter)
        if count == 3:
            return lambda d: f"Q{quarter(d)}"
        return lambda d: ("1st", "2nd", "3rd", "4th")[quarter(d) - 1] + " quarter"
    if letter in "ML":
        if count <= 2:
            return pad(lambda d: d.month)
        if count == 3:
            return lambda d: _MONTHS[d.month - 1][:3]
        if count == 4:
            return lambda d: _MONTHS[d.month - 1]
        return lambda d: _MONTHS[d.month - 1][0]
    if letter == "E":
        if count <= 3:
            return lambda d: _DAYS[d.weekday()][:3]
        if count == 4:
            return lambda d: _DAYS[d.weekday()]
        return lambda d: _DAYS[d.weekday()][0]
    if letter == "a":
        return lambda d: "AM" if d.hour < 12 else "PM"
    if letter == "S":
        return lambda d: (f"{d.microsecond:06d}000")[:count].ljust(count, "0")
    if letter in "Xx":
        zero = "Z" if letter == "X" else None
        return lambda d: _offset_text(d, count, zero, None)
    if letter == "Z":
        if count <= 3:
            return lambda d: _offset_text(d, 2, None, False)
        if count == 4:
            return lambda d: "GMT" + (_offset_text(d, 3, None, True) if d.utcoffset() else "")
        return lambda d: _offset_text(d, 3, "Z", True)
    if letter in "zV":
        return _zone_name
    simple: dict[str, Callable[[datetime], int]] = {
        "w": lambda d: d.isocalendar()[1],
        "D": lambda d: d.timetuple().tm_yday,
        "d": lambda d: d.day,
        "h": lambda d: d.hour % 12 or 12,
        "K": lambda d: d.hour % 12,
        "k": lambda d: d.hour or 24,
        "H": lambda d: d.hour,
        "m": lambda d: d.minute,
        "s": lambda d: d.second,
        "n": lambda d: d.microsecond * 1000,
    }
    return pad(simple[letter])


#: Pattern letters written inline by the compiled formatter: (letter, count) → expression on d.
def _inline(letter: str, count: int) -> str | None:
    if letter in "yu" and count != 2:
        return f"f'{{d.year:0{count}d}}'"
    numeric = {"M": "d.month", "L": "d.month", "d": "d.day", "H": "d.hour", "m": "d.minute"}
    numeric["s"] = "d.second"
    if letter in numeric and (letter not in "ML" or count <= 2):
        return f"f'{{{numeric[letter]}:0{count}d}}'"
    if letter == "S" and count <= 6:
        return f"f'{{d.microsecond // {10 ** (6 - count)}:0{count}d}}'"
    return None


def _compiled_formatter(
    tokens: list[_Token], formatters: list[Callable[[datetime], str] | str]
) -> Callable[[datetime], str]:
    """One generated function for the whole pattern: literal text through repr(), common
    numeric letters as format specs, the others as calls of their prepared formatter."""
    namespace: dict[str, object] = {"UTC": UTC}
    parts: list[str] = []
    for index, (token, formatter) in enumerate(zip(tokens, formatters, strict=True)):
        if isinstance(token, str):
            parts.append(repr(token))
            continue
        inline = _inline(*token)
        if inline is None:
            namespace[f"part{index}"] = formatter
            inline = f"part{index}(d)"
            if token[0] == "X" or token == ("Z", 5):  # offset letters that write UTC as Z
                inline = f"('Z' if d.tzinfo is UTC else {inline})"
        parts.append(inline)
    body = " + ".join(parts) if parts else "''"
    code = compile(f"def format_date(d):\n    return {body}\n", "<date pattern>", "exec")
    exec(code, namespace)  # noqa: S102 - generated from the tokenized pattern only
    function = namespace["format_date"]
    assert callable(function)
    return function


#: Letters a compiled parser reads (numbers only; the zone is UTC): letter → variable.
_PARSED = {"y": "year", "u": "year", "M": "month", "L": "month", "d": "day", "H": "hour"}
_PARSED |= {"m": "minute", "s": "second", "S": "micro"}


def _compiled_parser(
    regex: re.Pattern[str], fields: list[tuple[str, int]]
) -> Callable[[str], datetime | None] | None:
    """For a pattern of numeric fields only (`MM/dd/yyyy`, `yyyyMMdd HH:mm:ss.SSS`): one
    generated function doing what DatePattern.parse_fields does for these letters, without
    its per-field dispatch; None for other patterns."""
    if not fields or any(
        letter not in _PARSED or (letter in "ML" and count > 2) for letter, count in fields
    ):
        return None
    lines = [
        "def parse(text):",
        f"    if len(text) > {MAX_DATE_CHARS}:",
        "        return None",
        "    match = fullmatch(text)",
        "    if match is None:",
        "        return None",
        "    year, month, day, hour, minute, second, micro = 1970, 1, 1, 0, 0, 0, 0",
        f"    ({''.join(f'g{i}, ' for i in range(len(fields)))}) = match.groups()",
    ]
    for index, (letter, count) in enumerate(fields):
        raw = f"g{index}"
        if letter in "yu" and count == 2:
            value = f"2000 + int({raw})"
        elif letter == "S":
            value = f"int(({raw} + '000000')[:6])"
        else:
            value = f"int({raw})"
        lines.append(f"    {_PARSED[letter]} = {value}")
    lines += [
        "    try:",
        "        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)",
        "    except (ValueError, OverflowError):",
        "        return None",
    ]
    namespace: dict[str, object] = {"fullmatch": regex.fullmatch, "datetime": datetime, "UTC": UTC}
    exec(compile("\n".join(lines) + "\n", "<date pattern>", "exec"), namespace)  # noqa: S102
    function = namespace["parse"]
    assert callable(function)
    return function


def _zone_name(value: datetime) -> str:
    zone = value.tzinfo
    if isinstance(zone, ZoneInfo):
        return zone.key
    if zone is None or not value.utcoffset():
        return "UTC"
    return value.tzname() or "UTC"


_NUMERIC_WIDTH = {"d": 2, "H": 2, "h": 2, "K": 2, "k": 2, "m": 2, "s": 2, "M": 2, "L": 2}
_OFFSET_RE = r"Z|z|(?:GMT|UTC)?[+-]\d{2}(?::?\d{2}){0,2}|GMT|UTC"
_ZONE_RE = r"[A-Za-z][A-Za-z0-9_+\-/]*"


def _parser_regex(letter: str, count: int) -> str:
    if letter in "yu":
        return r"\d{2}" if count == 2 else (r"\d{4}" if count == 4 else rf"\d{{{count},9}}")
    if letter in "ML" and count >= 3:
        names = [m[:3] for m in _MONTHS] if count == 3 else _MONTHS
        return "(?i:" + "|".join(names) + ")"
    if letter in _NUMERIC_WIDTH:
        return r"\d{1,2}" if count == 1 else rf"\d{{{count}}}"
    if letter == "D":
        return r"\d{1,3}" if count == 1 else rf"\d{{{count},3}}"
    if letter == "S":
        return rf"\d{{{count}}}"
    if letter == "n":
        return r"\d{1,9}"
    if letter in "wQq":
        return r"\d{1,2}" if count <= 2 else r"[A-Za-z0-9 ]+"
    if letter in "EG":
        return r"[A-Za-z]+"
    if letter == "a":
        return r"(?i:AM|PM)"
    if letter in "XxZ":
        return _OFFSET_RE
    return _ZONE_RE  # z, V


class DatePattern:
    """A compiled Java DateTimeFormatter pattern, for formatting and for parsing."""

    __slots__ = ("_fields", "_format", "_parse", "_regex", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tokens = _tokenize(pattern)
        formatters: list[Callable[[datetime], str] | str] = []
        regex: list[str] = []
        self._fields: list[tuple[str, int]] = []
        for token in tokens:
            if isinstance(token, str):
                formatters.append(token)
                regex.append(re.escape(token))
            else:
                letter, count = token
                formatters.append(_formatter(letter, count))
                regex.append(f"({_parser_regex(letter, count)})")
                self._fields.append(token)
        self._regex = re.compile("".join(regex))
        self._format = _compiled_formatter(tokens, formatters)
        self._parse = _compiled_parser(self._regex, self._fields) or self.parse_fields

    def format(self, value: datetime) -> str:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return self._format(value)

    def parse(self, text: str) -> datetime | None:
        """The date in `text`, or None when it does not match the pattern or is not a date."""
        return self._parse(text)

    def parse_fields(self, text: str) -> datetime | None:
        """`parse` for any pattern: each field read by its letter (see _compiled_parser)."""
        if len(text) > MAX_DATE_CHARS:  # no date is this long; bounds the regex's work
            return None
        match = self._regex.fullmatch(text)
        if match is None:
            return None
        year, month, day, hour, minute, second, micro = 1970, 1, 1, 0, 0, 0, 0
        day_of_year: int | None = None
        pm: bool | None = None
        zone: tzinfo = UTC
        twelve_hour = False
        for (letter, count), raw in zip(self._fields, match.groups(), strict=True):
            if letter in "yu":
                year = 2000 + int(raw) if count == 2 else int(raw)
            elif letter in "ML":
                month = int(raw) if count <= 2 else _month_number(raw)
            elif letter == "d":
                day = int(raw)
            elif letter == "D":
                day_of_year = int(raw)
            elif letter == "H":
                hour = int(raw)
            elif letter == "k":
                hour = int(raw) % 24
            elif letter in "hK":
                hour = int(raw) % 12
                twelve_hour = True
            elif letter == "m":
                minute = int(raw)
            elif letter == "s":
                second = int(raw)
            elif letter == "S":
                micro = int((raw + "000000")[:6])
            elif letter == "n":
                micro = int(raw) // 1000
            elif letter == "a":
                pm = raw.upper() == "PM"
            elif letter in "XxZzV":
                found = _zone_or_none(raw)
                if found is None:
                    return None
                zone = found
        if twelve_hour and pm:
            hour += 12
        try:
            if day_of_year is not None:
                start = datetime(year, 1, 1, hour, minute, second, micro, tzinfo=zone)
                return start + timedelta(days=day_of_year - 1)
            return datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
        except (ValueError, OverflowError):
            return None


def _month_number(name: str) -> int:
    lowered = name.lower()
    for index, month in enumerate(_MONTHS):
        if month.lower().startswith(lowered[:3]):
            return index + 1
    raise ValueError(name)  # unreachable: the regex only admits month names


@bounded_cache(maxsize=256)
def pattern(text: str) -> DatePattern:
    """A compiled pattern (cached); raises SourceError for an unsupported pattern."""
    return DatePattern(text)


def checked_pattern(text: str) -> DatePattern:
    """`pattern`, with problems as ExpressionError for patterns only known at run time."""
    try:
        return pattern(text)
    except SourceError as exc:
        raise ExpressionError(f"bad date pattern: {exc.message}") from None


_DEFAULTS = tuple(DatePattern(p) for p in DEFAULT_PATTERNS)


def parse_default(text: str) -> datetime | None:
    """A date string read as ISO 8601, else tried against Data Prep's default patterns in order.

    ISO first is a shortcut (it is parsed in C): a string that both ISO 8601 and a default
    pattern accept means the same instant either way; `yyyyMMdd` is ISO's basic form too.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    for candidate in _DEFAULTS:
        found = candidate.parse(text)
        if found is not None:
            return found
    return None


def from_epoch_ms(value: int | float) -> datetime:
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except (OverflowError, ValueError):
        raise ExpressionError("epoch milliseconds out of the date range") from None


def to_datetime(value: object, what: str) -> datetime:
    """A date from a date, an epoch-milliseconds number or a date string (default patterns)."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if is_number(value):
        assert isinstance(value, (int, float))
        return from_epoch_ms(value)
    if isinstance(value, str):
        parsed = parse_default(value)
        if parsed is None:
            raise ExpressionError(f"{what}: the string is not a recognised date")
        return parsed
    raise ExpressionError(f"{what}: expected a date, got {type_name(value)}")


_OFFSET = re.compile(r"(?:GMT|UTC)?([+-])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?")


@bounded_cache(maxsize=512)
def _zone_or_none(name: str) -> tzinfo | None:
    if name in ("Z", "z", "UTC", "GMT", "UT", "Etc/UTC"):
        return UTC
    match = _OFFSET.fullmatch(name)
    if match:
        sign, hours, minutes, seconds = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0), seconds=int(seconds or 0))
        if delta >= timedelta(hours=18):
            return None
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def zone(name: object) -> tzinfo:
    """A time zone from an id (`Europe/Paris`), `UTC`/`Z`, or an offset (`+02:00`)."""
    if not isinstance(name, str):
        raise ExpressionError(f"time zone: expected a string, got {type_name(name)}")
    found = _zone_or_none(name)
    if found is None:
        raise ExpressionError("unknown time zone")
    return found


def _iso_weekday(d: datetime) -> int:
    return d.isoweekday()


#: date_part's part names and what each reads (weekday: Monday 1 … Sunday 7, as java.time).
DATE_PARTS: dict[str, Callable[[datetime], int]] = {}
for _names, _get in (
    (("year", "yyyy", "yy"), lambda d: d.year),
    (("quarter", "qq", "q"), lambda d: (d.month - 1) // 3 + 1),
    (("month", "mm", "m"), lambda d: d.month),
    (("dayofyear", "dy", "y"), lambda d: d.timetuple().tm_yday),
    (("day", "dd", "d"), lambda d: d.day),
    (("week", "ww", "w"), lambda d: d.isocalendar()[1]),
    (("weekday", "dw"), _iso_weekday),
    (("hour", "hh", "hh24"), lambda d: d.hour),
    (("hh12",), lambda d: d.hour % 12 or 12),
    (("minute", "mi", "n"), lambda d: d.minute),
    (("second", "ss", "s"), lambda d: d.second),
    (("millisecond", "SSS"), lambda d: d.microsecond // 1000),
):
    for _name in _names:
        DATE_PARTS[_name] = _get

#: set_date_part's part names and the datetime field each replaces.
SETTABLE_PARTS: dict[str, str] = {}
for _names, _field in (
    (("year", "yyyy", "yy"), "year"),
    (("month", "mm", "m"), "month"),
    (("day", "dd", "d"), "day"),
    (("hour", "hh", "hh24"), "hour"),
    (("minute", "mi", "n"), "minute"),
    (("second", "ss", "s"), "second"),
    (("millisecond", "SSS"), "millisecond"),
):
    for _name in _names:
        SETTABLE_PARTS[_name] = _field
