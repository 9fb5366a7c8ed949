"""Every library function against the reference page's examples, then edge cases: nulls,
wrong types, unicode, empty arrays. Expressions are evaluated through the real compiler."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from connector.mapping.functions import FUNCTIONS
from connector.mapping.values import rfc3339
from tests.mapping.support import FIXED_UUID, NOW_MS, error_of, evaluate, problems

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 5_1_1 like Mac OS X) AppleWebKit/534.46 "
    "(KHTML, like Gecko) Version/5.1 Mobile/9B206 Safari/7534.48.3"
)

# (expression, expected value) straight from the reference page.
REFERENCE_EXAMPLES = [
    ('concat("Hi, ", "there", "!")', "Hi, there!"),
    ('explode("Hi, there!", " ")', ["Hi,", "there!"]),
    ('instr("adobe.com", "com")', 6),
    ('replacestr("a re b", "re", "x")', "a x b"),
    ('substr("This is a substring test", 7, 8)', " a subst"),
    ('lower("HeLLo")', "hello"),
    ('split("Hello world", " ")', ["Hello", "world"]),
    ('join(" ", to_array(true, "Hello", "world"))', "Hello world"),
    ('lpad("bat", 8, "yz")', "yzyzybat"),
    ('rpad("bat", 8, "yz")', "batyzyzy"),
    ('left("abcde", 2)', "ab"),
    ('trim(" hello ")', "hello"),
    (
        'extract_regex("E259,E259B_009,1_1", "([^,]+),[^,]*,([^,]+)")',
        ["E259,E259B_009,1_1", "E259", "1_1"],
    ),
    ('matches_regex("E259,E259B_009,1_1", "([^,]+),[^,]*,([^,]+)")', True),
    ('md5("my text", "UTF-8")', "d3b96ce8c9fb4e9bd0198d03ba6852c7"),
    ('crc32("my text")', "802ef98d"),
    ('get_url_host("https://platform.adobe.com/home")', "platform.adobe.com"),
    (
        'get_url_query_str("foo://example.com:8042/over/there?name=ferret#nose", "append")',
        {"name": "ferret", "_anchor_": "nose"},
    ),
    ('format(date("2019-10-23 11:24:00"), "yyyy-MM-dd")', "2019-10-23"),
    ("dformat(1571829875000, \"yyyy-MM-dd'T'HH:mm:ss.SSSX\")", "2019-10-23T11:24:35.000Z"),
    ('date_part("month", date("2019-10-17 11:55:12"))', 10),
    ("is_empty([1, null])", False),
    ('to_object("a", 1, "b", 2)', {"a": 1, "b": 2}),
    (
        'arrays_to_object("sku", ["id1","id2"], "price", [22.5, 14.35])',
        [{"sku": "id1", "price": 22.5}, {"sku": "id2", "price": 14.35}],
    ),
    ('coalesce(null, "a", "b")', "a"),
    ("to_array(false, 1, null, 2)", [1, 2]),
    ('iif("s".equalsIgnoreCase("S"), "True", "False")', "True"),
    ('decode("ca", "ca", "California", "pa", "Pennsylvania", "N/A")', "California"),
    ("max(3, 1, 4)", 4),
    ('to_integer("12")', 12),
]


@pytest.mark.parametrize(("source", "expected"), REFERENCE_EXAMPLES)
def test_reference_examples(source: str, expected: object) -> None:
    assert evaluate(source) == expected


def test_date_with_format_is_the_reference_instant() -> None:
    value = evaluate('date("2019-10-23 11:24", "yyyy-MM-dd HH:mm")')
    assert rfc3339(value) == "2019-10-23T11:24:00Z"


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("ua_os_name", "iOS"),
        ("ua_os_version_major", "iOS 5"),
        ("ua_os_version", "5.1.1"),
        ("ua_os_name_version", "iOS 5.1.1"),
        ("ua_agent_name", "Safari"),
        ("ua_agent_version", "5.1"),
        ("ua_agent_version_major", "Safari 5"),
        ("ua_device_class", "Phone"),
    ],
)
def test_user_agent_reference_example(function: str, expected: str) -> None:
    assert evaluate(f"{function}(ua)", {"ua": IPHONE}) == expected


@pytest.mark.parametrize(
    ("agent", "device_class", "agent_name"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36",
            "Desktop",
            "Chrome",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Tablet",
            "Safari",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Mobile Safari/537.36",
            "Phone",
            "Chrome",
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Robot",
            "Googlebot",
        ),
    ],
)
def test_user_agent_classes(agent: str, device_class: str, agent_name: str) -> None:
    assert evaluate("ua_device_class(ua)", {"ua": agent}) == device_class
    assert evaluate("ua_agent_name(ua)", {"ua": agent}) == agent_name


def test_user_agent_unknown_and_null() -> None:
    assert evaluate('ua_os_name("curl/8.0")') is None
    assert evaluate('ua_device_class("")') == "Unknown"
    assert evaluate("ua_agent_name(missing)") is None


# --- string ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('concat("a", null, 1, true)', "a1true"),
        ("concat(null, missing)", None),
        ('concat("ü", "ß", "日本")', "üß日本"),
        ('explode("a,b,,c")', ["a", "b", "", "c"]),
        ('explode("a,b,,")', ["a", "b"]),
        ('explode("", ",")', [""]),
        ('explode("a1b22c", "[0-9]+")', ["a", "b", "c"]),
        ("explode(missing)", None),
        ('instr("adobe.com", "x")', -1),
        ('instr("abcabc", "b", 2)', 4),
        ('instr("abcabcabc", "bc", 0, 3)', 7),
        ('instr("abcabc", "bc", 0, 3)', -1),
        ('replacestr("aaa", "a", "b")', "bbb"),
        ('replacestr("abc", null, "x")', "abc"),
        ('replacestr("abc", "b", null)', "ac"),
        ('substr("abc", 1)', "bc"),
        ('substr("abc", 5, 2)', ""),
        ('substr("äöü", 1, 1)', "ö"),
        ('upper("straße")', "STRASSE"),
        ('lcase("ÀB")', "àb"),
        ('ucase("ab")', "AB"),
        ('split("a,b;;c", ",;")', ["a", "b", "c"]),
        ('split("  a  b ")', ["a", "b"]),
        ('split(",,", ",")', []),
        ('join(",", ["a", null, "b"], "c")', "a,b,c"),
        ('join("-", [])', ""),
        ('lpad("bat", 2, "x")', "bat"),
        ('lpad("7", 3, "0")', "007"),
        ('rpad("ab", 4)', "ab  "),
        ('right("abcde", 2)', "de"),
        ('right("ab", 5)', "ab"),
        ('left("ab", -1)', ""),
        ('right("ab", 0)', ""),
        ('ltrim("  a ")', "a "),
        ('rtrim("  a ")', "  a"),
        ("trim(missing)", None),
    ],
)
def test_string_functions(source: str, expected: object) -> None:
    assert evaluate(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('instr("abc", "b", 0, 0)', "occurrence"),
        ('substr("abc", 0, -1)', "length"),
        ('substr("abc", "x")', "integer"),
        ('lpad("a", 2000000, "x")', "pad length"),
        ("lower(obj)", "expected a string"),
        ('explode("abc", "(")', "regular expression"),
    ],
)
def test_string_function_errors(source: str, message: str) -> None:
    assert message in error_of(source, {"obj": {"a": 1}})


# --- regex and hash ----------------------------------------------------------------------


def test_regex_functions() -> None:
    assert evaluate('extract_regex("order 42 of 7", "([0-9]+)")') == ["42", "42"]
    assert evaluate('extract_regex("abc", "(x)?b")') == ["b", None]
    assert evaluate('extract_regex("abc", "z")') is None
    assert evaluate('matches_regex("abc", "b")') is False  # the whole string must match
    assert evaluate('matches_regex("abc", "a.c")') is True
    assert evaluate('matches_regex(missing, "a")') is None
    assert evaluate('matches_regex("a1", "\\w\\d")') is True  # unknown escapes keep "\"


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("sha1", None),
        ("sha256", None),
        ("sha512", None),
        ("md5", "d3b96ce8c9fb4e9bd0198d03ba6852c7"),
        ("crc32", "802ef98d"),
    ],
)
def test_hashes_are_lowercase_hex(function: str, expected: str | None) -> None:
    import hashlib
    import zlib

    data = b"my text"
    reference = {
        "sha1": hashlib.sha1(data).hexdigest(),  # noqa: S324 - the function under test
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha512": hashlib.sha512(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),  # noqa: S324
        "crc32": f"{zlib.crc32(data):08x}",
    }[function]
    result = evaluate(f'{function}("my text")')
    assert result == reference
    assert result == result.lower()
    if function in ("md5", "crc32"):
        assert result == expected
    assert evaluate(f"{function}(missing)") is None


def test_hash_charsets() -> None:
    import hashlib

    latin1 = hashlib.sha256("é".encode("latin-1")).hexdigest()
    assert evaluate('sha256("é", "ISO-8859-1")') == latin1
    assert evaluate('sha256("é")') == hashlib.sha256("é".encode()).hexdigest()
    assert problems('md5("x", "NO-SUCH-CHARSET")') != []
    assert "charset" in error_of("md5(a, b)", {"a": "x", "b": "KLINGON"})
    with pytest.raises(UnicodeEncodeError):
        evaluate('md5(s, "US-ASCII")', {"s": "日本"})


# --- url ---------------------------------------------------------------------------------


URL = "foo://example.com:8042/over/there?name=ferret#nose"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (f'get_url_protocol("{URL}")', "foo"),
        (f'get_url_host("{URL}")', "example.com"),
        (f'get_url_port("{URL}")', 8042),
        ('get_url_port("https://a.example/x")', 443),
        ('get_url_port("http://a.example/x")', 80),
        ('get_url_port("gopher://a.example/x")', None),
        (f'get_url_path("{URL}")', "/over/there"),
        (f'get_url_path("{URL}", true)', "/over/there?name=ferret#nose"),
        ('get_url_path("https://a.example")', None),
        (f'get_url_query_str("{URL}", "retain")', {"name": "ferret#nose"}),
        (f'get_url_query_str("{URL}", "remove")', {"name": "ferret"}),
        ('get_url_query_str("https://a.example/?q=a+b%21&flag")', {"q": "a b!", "flag": ""}),
        ('get_url_query_str("https://a.example/")', {}),
        ('get_url_host("not a url")', None),
        ('get_url_protocol("/relative/path")', None),
        ('get_url_port("http://[::1")', None),
        ('get_url_encoded("a b/ü~*")', "a+b%2F%C3%BC%7E*"),
        ('get_url_decoded("a+b%2F%C3%BC")', "a b/ü"),
        (
            'get_url_encoded("https://example.com/partneralliance_asia-pacific_2022")',
            "https%3A%2F%2Fexample.com%2Fpartneralliance_asia-pacific_2022",
        ),
        ("get_url_decoded(missing)", None),
    ],
)
def test_url_functions(source: str, expected: object) -> None:
    assert evaluate(source) == expected


def test_url_query_mode_is_checked_at_load_time() -> None:
    assert any("retain" in p for p in problems('get_url_query_str(u, "keep")'))


# --- date --------------------------------------------------------------------------------


def test_now_and_timestamp_use_the_injected_clock() -> None:
    assert evaluate("timestamp()") == NOW_MS
    assert rfc3339(evaluate("now()")) == "2019-10-23T11:24:35Z"
    assert evaluate("uuid()") == FIXED_UUID
    assert evaluate("guid()") == FIXED_UUID


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('date("2019-10-23")', "2019-10-23T00:00:00Z"),
        ('date("2019/10/23")', "2019-10-23T00:00:00Z"),
        ('date("2019.10.23")', "2019-10-23T00:00:00Z"),
        ('date("2019-Oct-23")', "2019-10-23T00:00:00Z"),
        ('date("20191023")', "2019-10-23T00:00:00Z"),
        ('date("10-23-2019")', "2019-10-23T00:00:00Z"),
        ('date("10232019")', "2019-10-23T00:00:00Z"),
        ('date("3/14/1969")', "1969-03-14T00:00:00Z"),
        ('date("14.3.1969")', "1969-03-14T00:00:00Z"),
        ('date("3/14/1969 02:05:09 PM")', "1969-03-14T14:05:09Z"),
        ('date("14.3.1969 12:05:09 AM")', "1969-03-14T00:05:09Z"),
        ('date("23.Oct.2019")', "2019-10-23T00:00:00Z"),
        ('date("23-Oct-2019")', "2019-10-23T00:00:00Z"),
        ('date("2019-10-23 11:24:00+0200")', "2019-10-23T09:24:00Z"),
        ('date("2019-10-23 11:24:00.250Z")', "2019-10-23T11:24:00.250Z"),
        ('date("2019-10-23 11:24:00.250")', "2019-10-23T11:24:00.250Z"),
        ('date("2019-10-23T11:24:35.000Z")', "2019-10-23T11:24:35Z"),
        ('date("2019-10-23T11:24:35Z")', "2019-10-23T11:24:35Z"),
        ('date("2019-10-23T13:24:35.123456+02:00")', "2019-10-23T11:24:35.123456Z"),
        ("date(1571829875000)", "2019-10-23T11:24:35Z"),
        ('date("23/10/2019 11h24", "dd/MM/yyyy HH\'h\'mm")', "2019-10-23T11:24:00Z"),
        ('date("2019-296", "yyyy-DDD")', "2019-10-23T00:00:00Z"),
        ('date("19-10-23 Europe/Paris", "yy-MM-dd VV")', "2019-10-22T22:00:00Z"),
        ('date("nonsense", "yyyy", "2000-01-01")', "2000-01-01T00:00:00Z"),
        ('date(missing, "yyyy", "2000-01-01")', "2000-01-01T00:00:00Z"),
        (
            'make_date_time(2019, 10, 23, 11, 24, 35, 123456789, "Europe/Paris")',
            "2019-10-23T09:24:35.123456Z",
        ),
        ("make_date_time(2019, 10, 23)", "2019-10-23T00:00:00Z"),
        ('zone_date_to_utc(date("2019-10-23T13:24:35+02:00"))', "2019-10-23T11:24:35Z"),
        ('set_date_part("m", 4, date("2016-11-09T11:44:44.797Z"))', "2016-04-09T11:44:44.797Z"),
        ('set_date_part("SSS", 5, date("2016-11-09T11:44:44Z"))', "2016-11-09T11:44:44.005Z"),
        ('set_date_part("year", 2020, date("2016-11-09T11:44:44Z"))', "2020-11-09T11:44:44Z"),
    ],
)
def test_dates(source: str, expected: str) -> None:
    assert rfc3339(evaluate(source)) == expected


def test_date_failures() -> None:
    assert "does not match" in error_of('date(s, "yyyy-MM-dd")', {"s": "23 Oct"})
    assert "does not match" in error_of('date("23 Oct", "yyyy-MM-dd")')  # at load time
    assert "not a recognised date" in error_of('format(s, "yyyy")', {"s": "yesterday"})
    assert "valid date" in error_of("make_date_time(2019, 2, d)", {"d": 30})
    assert "time zone" in error_of("zone_date_to_zone(now(), z)", {"z": "Mars/Olympus"})
    assert evaluate('date("2019-02-30", "yyyy-MM-dd", null)') is None
    assert evaluate("date(missing)") is None
    assert evaluate('format(missing, "yyyy")') is None
    assert evaluate('dformat(missing, "yyyy")') is None


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyy-MM-dd'T'HH:mm:ss.SSSX", "2019-10-03T14:05:09.007Z"),
        ("yy/M/d h:mm a", "19/10/3 2:05 PM"),
        ("EEE, d MMM yyyy", "Thu, 3 Oct 2019"),
        ("EEEE MMMM", "Thursday October"),
        ("D w Q QQQ", "276 40 4 Q4"),
        ("HH:mm:ss.SSSSSS xxx Z", "14:05:09.007000 +00:00 +0000"),
        ("k K", "14 2"),
        ("'It''s' yyyy", "It's 2019"),
    ],
)
def test_dformat_patterns(pattern: str, expected: str) -> None:
    millis = int(datetime(2019, 10, 3, 14, 5, 9, 7000, tzinfo=UTC).timestamp() * 1000)
    assert evaluate(f'dformat({millis}, "{pattern}")'.replace("''", "''")) == expected


def test_format_keeps_the_zone_of_a_converted_date() -> None:
    source = 'format(zone_date_to_zone(date("2019-10-23T11:24:00Z"), "Europe/Paris"), "HH:mm XXX")'
    assert evaluate(source) == "13:24 +02:00"
    paris = evaluate('zone_date_to_zone(date("2019-10-23T11:24:00Z"), "+02:00")')
    assert paris.utcoffset() == timedelta(hours=2)
    assert paris.tzinfo == timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        ("year", 2019),
        ("yyyy", 2019),
        ("quarter", 4),
        ("month", 10),
        ("mm", 10),
        ("dayofyear", 296),
        ("day", 23),
        ("d", 23),
        ("week", 43),
        ("weekday", 3),
        ("dw", 3),
        ("hour", 15),
        ("hh12", 3),
        ("minute", 4),
        ("mi", 4),
        ("second", 5),
        ("millisecond", 678),
        ("SSS", 678),
    ],
)
def test_date_part(part: str, expected: int) -> None:
    assert evaluate(f'date_part("{part}", date("2019-10-23 15:04:05.678"))') == expected


def test_date_part_names_are_checked_at_load_time() -> None:
    assert any("unknown date part" in p for p in problems('date_part("fortnight", now())'))
    assert any("unknown date part" in p for p in problems('set_date_part("week", 1, now())'))


def test_bad_literal_patterns_are_load_time_problems() -> None:
    assert any("not supported" in p for p in problems('dformat(1, "yyyy-MM-dd bb")'))
    assert any("unclosed quote" in p for p in problems('format(now(), "\'T")'))


# --- object, map, array ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("is_empty(null)", True),
        ('is_empty("")', True),
        ("is_empty([])", True),
        ("is_empty(obj)", False),
        ("is_empty(0)", False),
        ("contains_key(obj.a)", True),
        ("contains_key(obj.nothing)", True),  # present, even though null
        ("contains_key(obj.b)", False),
        ('contains_key("obj.a")', True),
        ("contains_key(_kafka.key)", True),
        ("nullify()", None),
        (
            'str_to_object("firstName=John,lastName=Doe,phone=123 456 7890", "=", ",")',
            {"firstName": "John", "lastName": "Doe", "phone": "123 456 7890"},
        ),
        ('str_to_object("a: 1; b: 2; junk", ":", ";")', {"a": "1", "b": "2"}),
        ('json_to_object("{\\"a\\": [1, {\\"b\\": null}]}")', {"a": [1, {"b": None}]}),
        ("get_keys(obj)", ["a", "nothing"]),
        ('get_values("firstName - John , lastName - Cena", "firstName", "-", ",")', "John"),
        ('get_values("a=1", "b", "=")', None),
        ('to_map("k", 1)', {"k": 1}),
        ("object_to_map(obj)", {"a": 1, "nothing": None}),
        ('object_to_map("a", 1, "b", 2)', {"a": 1, "b": 2}),
        ('array_to_map(items, "id")', {"x": {"id": "x", "v": 1}, "7": {"id": 7}}),
        ('map_get_values(obj, "a")', 1),
        ('map_get_values(obj, ["a", "zz"])', {"a": 1}),
        ('map_has_keys(obj, ["a", "nothing"])', True),
        ('map_has_keys(obj, "zz")', False),
        ('map_has_keys(missing, "a")', False),
        ('add_to_map(obj, to_map("a", 2, "c", 3))', {"a": 1, "nothing": None, "c": 3}),
        (
            'arrays_to_object("a", [1, 2, 3], "b", [true])',
            [{"a": 1, "b": True}, {"a": 2}, {"a": 3}],
        ),
        ('arrays_to_object("a", [], "b", null)', []),
        ("coalesce(missing, null)", None),
        ("first(items)", {"id": "x", "v": 1}),
        ('first("a", "b")', "a"),
        ("first([])", None),
        ("last(items)", {"id": 7}),
        ('last("a", "b")', "b"),
        ("to_array(true, 1, null)", [1, None]),
        ("add_to_array([1], 2, [3, 4], null)", [1, 2, 3, 4]),
        ("add_to_array(missing, 1)", [1]),
        ("join_arrays([1], null, [2, 3], 4)", [1, 2, 3, 4]),
        ("size_of(items)", 3),
        ('size_of("日本")', 2),
        ("size_of(obj)", 2),
        ("size_of(missing)", 0),
        ("upsert_array_append(items)", [{"id": "x", "v": 1}, {"v": 2}, {"id": 7}]),
        ("upsert_array_replace([1])", [1]),
        ("min(3, null, 1)", 1),
        ('max("b", "a")', "b"),
        ("max([2, 5, 1])", 5),
        ("min([])", None),
        ('decode("zz", "a", 1)', None),
        ('decode("zz", "a", 1, "other")', "other"),
        ('decode(2, 1, "one", 2, "two")', "two"),
        ('decode("2", 1, "one", 2, "two")', "two"),
        ('iif(missing, "yes", "no")', "no"),
    ],
)
def test_object_map_array_logic(source: str, expected: object) -> None:
    record = {
        "obj": {"a": 1, "nothing": None},
        "items": [{"id": "x", "v": 1}, {"v": 2}, {"id": 7}],
    }
    assert evaluate(source, record) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('json_to_object("[1]")', "not an object"),
        ('json_to_object("{")', "not valid JSON"),
        ("get_keys(items)", "expected an object"),
        ('array_to_map("x", "id")', "expected an array"),
        ('arrays_to_object("a", 1)', "expected an array"),
        ("size_of(1)", "size_of"),
        ('max(1, "a")', "not a number"),
        ("max(1, [2])", "cannot compare"),
        ("to_array(1, 2)", "true or false"),
        ("to_object(null, 1)", "key is null"),
        ('str_to_object("a=1", "", ",")', "delimiters"),
        ("object_to_map(1)", "expected an object"),
    ],
)
def test_object_errors(source: str, message: str) -> None:
    assert message in error_of(source, {"items": [1]})


def test_decode_evaluates_only_the_chosen_value() -> None:
    assert evaluate('decode("a", "a", 1, "b", to_integer(x))', {"x": "nope"}) == 1


# --- convert -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('to_integer(" 42 ")', 42),
        ("to_integer(12.9)", 12),
        ("to_integer(-12.9)", -12),
        ('to_bigint("9007199254740993")', 9007199254740993),
        ('to_float("1.5e3")', 1500.0),
        ("to_float(2)", 2.0),
        ('to_decimal("0.1")', 0.1),
        ("to_integer(missing)", None),
    ],
)
def test_conversions(source: str, expected: object) -> None:
    assert evaluate(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('to_integer("12.5")', "not an integer"),
        ('to_integer("1_000")', "not an integer"),
        ('to_integer("3000000000")', "32 bits"),
        ('to_bigint("99999999999999999999")', "64 bits"),
        ("to_integer(true)", "boolean"),
        ('to_float("NaN")', "not finite"),
        ('to_float("abc")', "not a number"),
        ("to_decimal([1])", "numeric string"),
    ],
)
def test_conversion_errors(source: str, message: str) -> None:
    assert message in error_of(source)


def test_constant_calls_that_always_fail_are_load_time_problems() -> None:
    assert any("always fails" in p for p in problems('to_integer("abc")'))


def test_every_function_is_exercised_here() -> None:
    text = Path(__file__).read_text(encoding="utf-8")
    untested = [name for name in FUNCTIONS if not re.search(rf"\b{name}\b", text)]
    assert untested == []
