"""What the generated function shares and skips gives exactly what each field computed on its
own gives: a user agent parsed once per record for every ua_* field, the fields of an object
read under one check, str methods written inline, clean() left out where the generator knows
the value is clean, declared types converted only when they must be."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.mapping import (
    CompiledMapping,
    MappingFailure,
    Runtime,
    entity,
    load_mapping_file,
    values,
)
from connector.mapping import functions as library
from connector.mapping.codegen import describe, get_member
from connector.mapping.compiler import Ctx, ExpressionCompiler
from connector.mapping.dates import pattern
from connector.mapping.functions import FUNCTION_NAMES
from connector.mapping.mapping import FIELD_TYPES
from connector.mapping.parser import parse_expression
from connector.mapping.values import FALSE_WORDS, TRUE_WORDS, clean
from connector.mapping.values import to_boolean as library_to_boolean
from tests.mapping.support import DEFAULTS, META, RUNTIME, base_mapping, evaluate, write_mapping

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 5_1_1 like Mac OS X) AppleWebKit/534.46"
FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSX"

# (expression, declared type): each field is written to its own top-level key, so the
# generated function evaluates them in this order and its warnings follow it.
FIELDS: list[tuple[str, str | None]] = [
    ("ua_os_name(d.ua)", None),
    ("ua_agent_name(d.ua)", None),
    ('iif(d.s == "x", ua_os_version(d.ua), null)', None),  # the parse is shared from a branch
    ("decode(ua_device_class(d.ua), 'Phone', 'mobile', 'Desktop', 'desktop')", None),
    ("ua_agent_version(lower(d.ua))", None),  # not a variable: not shared
    ("ua_os_name(d.s)", None),
    ("lower(trim(d.s))", None),
    ("upper(d.s)", None),
    ("rtrim(ltrim(d.n))", None),
    ("trim(d.s + d.ua)", None),
    ('to_array(false, to_object("id", d.s, "k", "lit", "n", d.n))', None),
    ('to_object("a", lower(d.s), "b", d.y.z)', None),
    ('iif(is_empty(d.s), null, to_array(true, d.s, d.n, "c"))', None),
    ("[d.n, 2, d.s]", None),
    ("to_array(true, d.s, null)", None),  # a null member: always cleaned
    ("date(d.t)", None),
    ("date(d.t)", "date"),
    ("date(d.t)", "date-time"),
    (f'dformat(d.n, "{FORMAT}")', None),
    ("d.n", "integer"),
    ("d.n", "number"),
    ("d.s", "boolean"),
    ("d.n", "string"),
    ('get_url_query_str(d.url, "remove").q', None),
    ("get_url_query_str(d.url).q", None),
    ("d.y.z", None),
    ("d.y", None),
]

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(
        [
            IPHONE,
            "curl/8.0",
            "  Yes ",
            "\x00 a\x1f",  # Java's trim() removes these blanks (str.strip() does too)
            "\u00a0b\u2003",  # ... but not these (str.strip() would)
            "yes",
            "x",
            "2019-10-23T11:24:35.5+02:00",
            "2019-10-23",
            "https://a.example/p?q=1&r=2#frag",
            "https://a.example/p#only",
            "not a url",
            "1571829875000",
            " 42 ",
        ]
    )
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["z", "q", "k"]), inner, max_size=3)
    ),
    max_leaves=6,
)
_dates = st.datetimes(timezones=st.just(UTC)) | st.datetimes()  # Avro timestamps, naive too
_inner = st.fixed_dictionaries(
    {},
    optional={
        "ua": _values,
        "s": _values,
        "n": _values | st.integers(min_value=0, max_value=2**45),
        "t": _values | _dates,
        "url": _values,
        "y": _values,
    },
)
_records = st.fixed_dictionaries({}, optional={"d": _inner | _values})


def _mapping(directory: Path, strict: bool) -> CompiledMapping:
    entries: list[dict[str, Any]] = [
        {"sourceType": "EXPRESSION", "source": source, "destination": f"o{i}"}
        | ({"type": kind} if kind else {})
        for i, (source, kind) in enumerate(FIELDS)
    ]
    entries.append({"sourceType": "STATIC", "source": "x", "destination": "always"})
    path = write_mapping(directory, base_mapping(entries, strict=strict), f"m{strict}.yaml")
    return load_mapping_file(path, DEFAULTS, runtime=RUNTIME)


@pytest.fixture(scope="module")
def mappings(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, CompiledMapping]:
    directory = tmp_path_factory.mktemp("generated")
    return {strict: _mapping(directory, strict) for strict in (False, True)}


_ALONE = []
for _source, _kind in FIELDS:
    _compiler = ExpressionCompiler(RUNTIME, 0)
    _ALONE.append(_compiler.compile(parse_expression(_source, FUNCTION_NAMES)))
    assert not _compiler.problems, _source


def each_field_alone(record: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    """The entity and warnings field by field: each expression compiled on its own (no
    shared parse, no hoisted reads), then the declared type and clean() as documented."""
    entity: dict[str, object] = {}
    warnings: list[str] = []
    for index, ((_source, kind), alone) in enumerate(zip(FIELDS, _ALONE, strict=True)):
        try:
            value = alone(Ctx(record, META, strict=False))
            if value is not None and kind is not None:
                value = FIELD_TYPES[kind](value)
            value = clean(value)
        except Exception as exc:
            warnings.append(f"o{index}: {describe(exc)}")
            continue
        if value is not None:
            entity[f"o{index}"] = value
    entity["always"] = "x"
    return entity, warnings


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(record=_records)
def test_the_generated_function_equals_each_field_computed_alone(
    mappings: dict[bool, CompiledMapping], record: dict[str, object]
) -> None:
    expected, warnings = each_field_alone(record)
    result = mappings[False].apply(record, META)
    assert result.entity == expected
    assert result.warnings == warnings
    if warnings:
        with pytest.raises(MappingFailure) as failure:
            mappings[True].apply(record, META)
        assert str(failure.value) == warnings[0]
    else:
        assert mappings[True].apply(record, META).entity == expected


def test_a_user_agent_is_parsed_once_per_record_and_value(
    mappings: dict[bool, CompiledMapping],
) -> None:
    source = mappings[False].source
    assert source.count("user_agent(f_d_ua)") == 1  # four ua_* fields share it
    assert source.count("fn_ua_agent_version(") == 1  # of lower(d.ua): its own call
    assert source.count("too_slow('o0')") == 1  # the parse is the costly part: checked once
    assert "too_slow('o1')" not in source


def test_an_unreadable_user_agent_fails_each_field_that_reads_it(
    mappings: dict[bool, CompiledMapping],
) -> None:
    result = mappings[False].apply({"d": {"ua": {"an": "object"}}}, META)
    expected = "user agent: expected a string, got object"
    assert result.warnings[:3] == [f"o0: {expected}", f"o1: {expected}", f"o3: {expected}"]


def test_a_user_agent_shared_in_a_block_is_not_read_outside_it(tmp_path: Path) -> None:
    # The first ua_* is inside the [*] loop: the field after the loop parses again.
    entries = [
        {"source": "items[*].id", "destination": "out[*].id"},
        {"sourceType": "EXPRESSION", "source": "ua_os_name(ua)", "destination": "out[*].os"},
        {"sourceType": "EXPRESSION", "source": "ua_agent_name(ua)", "destination": "agent"},
    ]
    path = write_mapping(tmp_path, base_mapping(entries))
    mapping = load_mapping_file(path, DEFAULTS, runtime=RUNTIME)
    for items in ([], [{"id": 1}]):
        result = mapping.apply({"items": items, "ua": IPHONE}, META)
        assert result.entity is not None
        assert result.entity["agent"] == "Safari"
    assert mapping.source.count("user_agent(f_ua)") == 2


def test_an_object_read_by_several_fields_is_checked_once(
    mappings: dict[bool, CompiledMapping],
) -> None:
    source = mappings[False].source
    assert source.count("isinstance(f_d, dict)") == 1
    assert "    if isinstance(f_d, dict):\n        f_d_ua = f_d.get('ua')\n" in source


# The inline forms of single calls, against the library functions they stand for.


def _outcome(function: Any, *args: object) -> object:
    try:
        return function(*args)
    except Exception as exc:
        return f"error: {describe(exc)}"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=_values | _dates)
def test_inline_calls_equal_the_library_functions(value: object) -> None:
    record = {"a": value}
    cases = [
        ("lower(trim(a))", lambda v: library.lower(library.trim(v))),
        ("upper(a)", library.upper),
        ("ucase(rtrim(ltrim(a)))", lambda v: library.upper(library.rtrim(library.ltrim(v)))),
        ("lcase(a)", library.lower),
        (f'dformat(a, "{FORMAT}")', lambda v: library.dformat(v, FORMAT)),
        ('dformat(a, "yyyy ZZZZZ")', lambda v: library.dformat(v, "yyyy ZZZZZ")),
        (
            'get_url_query_str(a, "retain").q',
            lambda v: get_member(library.get_url_query_str(v, "retain"), "q"),
        ),
        ('to_object("k", a).k', lambda v: v),
    ]
    for source, reference in cases:
        got = _outcome(lambda s=source: evaluate(s, record))
        want = _outcome(reference, value)
        if isinstance(want, float) and math.isnan(want):
            assert isinstance(got, float), source
            assert math.isnan(got), source
        else:
            assert got == want, source


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("trim(a)", "\u00a0b\u2003"),  # Java's trim() keeps Unicode spaces
        ("ltrim(a)", "\u00a0b\u2003\x1f"),
        ("rtrim(a)", "\x00 \u00a0b\u2003"),
        ("upper(trim(a))", "\u00a0B\u2003"),
    ],
)
def test_inline_trims_remove_what_java_removes(source: str, expected: str) -> None:
    assert evaluate(source, {"a": "\x00 \u00a0b\u2003\x1f"}) == expected


def test_a_hash_of_a_plus_chain_hashes_the_whole_chain() -> None:
    # The chain is one string expression: its .encode() must apply to all of it.
    want = hashlib.sha256(b"web.events/3").hexdigest()
    assert evaluate('sha256(_kafka.topic + "/" + _kafka.partition)') == want


def test_an_offset_letter_writes_utc_as_z_and_other_zones_as_offsets() -> None:
    paris = datetime(2019, 10, 23, 11, 24, 35, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert pattern(FORMAT).format(datetime(2019, 10, 23, 11, 24, 35, 5000, tzinfo=UTC)) == (
        "2019-10-23T11:24:35.005Z"
    )
    assert pattern(FORMAT).format(paris) == "2019-10-23T13:24:35.000+02"
    assert pattern("ZZZZZ").format(paris) == "+02:00"
    assert pattern("ZZZZZ").format(datetime(2019, 1, 1, tzinfo=UTC)) == "Z"
    assert pattern("Z").format(datetime(2019, 1, 1, tzinfo=UTC)) == "+0000"  # never Z
    assert pattern("xx").format(datetime(2019, 1, 1, tzinfo=UTC)) == "+0000"


# Calls a mapping repeats are computed once per block (codegen.repeated_calls).

SHARED_FIELDS: list[tuple[str, str]] = [
    ('iif(d.s == "x", to_integer(d.n), null)', "o0"),  # the first one may not be evaluated
    ("to_integer(d.n)", "o1"),
    ("to_integer(d.n) * 2", "o2"),
    ("lower(trim(d.s))", "o3"),
    ('concat(lower(trim(d.s)), "!")', "o4"),
    ("date(d.t)", "o5"),
    ("date(d.t)", "o6"),
    ("to_integer(items[*].q)", "out[*].a"),
    ("items[*].p * to_integer(items[*].q)", "out[*].b"),
    ("upper(d.s)", "out[*].c"),  # the same for every element: before the loop
    ("upper(d.s)", "up"),
]


def _shared_mapping(directory: Path, strict: bool) -> CompiledMapping:
    entries: list[dict[str, Any]] = [
        {"sourceType": "EXPRESSION", "source": source, "destination": destination}
        for source, destination in SHARED_FIELDS
    ]
    entries.append({"sourceType": "EXPRESSION", "source": "date(d.t)", "destination": "o7"})
    entries[-1]["type"] = "date"
    path = write_mapping(directory, base_mapping(entries, strict=strict), f"s{strict}.yaml")
    return load_mapping_file(path, DEFAULTS, runtime=RUNTIME)


@pytest.fixture(scope="module")
def shared_mappings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CompiledMapping]:
    """The mapping as generated, and generated with nothing shared (the reference)."""
    directory = tmp_path_factory.mktemp("shared")
    made = {f"shared {strict}": _shared_mapping(directory, strict) for strict in (False, True)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(entity, "repeated_calls", lambda roots: frozenset())
        for strict in (False, True):
            made[f"alone {strict}"] = _shared_mapping(directory, strict)
    return made


def test_repeated_calls_are_computed_once_per_block(
    shared_mappings: dict[str, CompiledMapping],
) -> None:
    source = shared_mappings["shared False"].source
    assert source.count("shared1 = PENDING") == 1
    assert source.count("(shared1 := ") == 1  # the first one stores the value ...
    assert source.count("shared1 if shared1 is not PENDING else fn_to_integer(f_d_n)") == 2
    assert source.count(" := (f_d_s.strip(JAVA_BLANKS).lower()") == 1  # ... later ones read it
    assert source.count("fn_date(f_d_t)") == 3  # the first call, and each fallback
    assert "shared5 = PENDING" in source  # in the loop: once per element
    assert "(shared5 := fn_to_integer(e1_q))" in source
    assert "shared5 if shared5 is not PENDING else fn_to_integer(e1_q)" in source
    reference = shared_mappings["alone False"].source
    assert "PENDING" not in reference
    assert reference.count("fn_to_integer(f_d_n)") == 3


_shared_items = st.lists(
    st.fixed_dictionaries(
        {}, optional={"q": _values | st.sampled_from(["3", "x", "-7"]), "p": _values}
    ),
    max_size=3,
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(inner=_inner | _values, items=_shared_items | _values)
def test_shared_calls_give_what_each_call_gives(
    shared_mappings: dict[str, CompiledMapping], inner: object, items: object
) -> None:
    # A failed or skipped first call, or a previous element's value, is never reused.
    record = {"d": inner, "items": items}
    for strict in (False, True):
        expected = _outcome(shared_mappings[f"alone {strict}"].apply, record, META)
        result = _outcome(shared_mappings[f"shared {strict}"].apply, record, META)
        assert result == expected


def test_calls_of_the_clock_or_uuids_are_not_shared(tmp_path: Path) -> None:
    uuids = iter(range(100))
    runtime = Runtime(now_ms=RUNTIME.now_ms, new_uuid=lambda: f"u{next(uuids)}")
    entries = [
        {"sourceType": "EXPRESSION", "source": 'concat(uuid(), "-", a)', "destination": "x"},
        {"sourceType": "EXPRESSION", "source": 'concat(uuid(), "-", a)', "destination": "y"},
    ]
    path = write_mapping(tmp_path, base_mapping(entries))
    mapping = load_mapping_file(path, DEFAULTS, runtime=runtime)
    assert mapping.apply({"a": "b"}, META).entity == {"x": "u0-b", "y": "u1-b"}
    assert "PENDING" not in mapping.source


# get_url_query_str(url, mode).name reads one parameter (functions.get_url_query_value).

_query_names = st.sampled_from(["q", "r", "_anchor_", "a b", "a%20b", "q+", ""])
_query_parts = st.lists(
    st.tuples(_query_names, st.sampled_from(["=", ""]), st.text(alphabet="ab+%2=#&", max_size=4)),
    max_size=4,
)
_urls = st.builds(
    lambda base, parts, fragment: (
        base
        + ("?" + "&".join(n + eq + v for n, eq, v in parts) if parts is not None else "")
        + ("#" + fragment if fragment is not None else "")
    ),
    st.sampled_from(["https://a.example/p", "http://b.example", "a.example/p", "mailto:x", ""]),
    st.none() | _query_parts,
    st.none() | st.text(alphabet="ab#?", max_size=3),
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    value=_urls | _values,
    mode=st.sampled_from(["retain", "remove", "append", "keep", None, 1]),
    name=_query_names,
)
def test_one_query_parameter_equals_the_object_of_all(
    value: object, mode: object, name: str
) -> None:
    got = _outcome(library.get_url_query_value, value, mode, name)
    want = _outcome(lambda: get_member(library.get_url_query_str(value, mode), name))
    assert got == want


def test_a_query_parameter_is_read_without_the_object(tmp_path: Path) -> None:
    entries = [
        {
            "sourceType": "EXPRESSION",
            "source": 'get_url_query_str(u, "append").q',
            "destination": "a",
        },
        {"sourceType": "EXPRESSION", "source": "get_url_query_str(u)._anchor_", "destination": "b"},
        {
            "sourceType": "EXPRESSION",
            "source": 'get_url_query_str(u, "retain").q',
            "destination": "c",
        },
        {"sourceType": "EXPRESSION", "source": "get_url_query_str(u, m).q", "destination": "d"},
        {
            "sourceType": "EXPRESSION",
            "source": 'get_url_query_str(u, "append")._anchor_',
            "destination": "e",
        },
    ]
    mapping = load_mapping_file(
        write_mapping(tmp_path, base_mapping(entries)), DEFAULTS, runtime=RUNTIME
    )
    assert "get_url_query_value(f_u, 'append', 'q')" in mapping.source
    assert "get_url_query_value(f_u, 'retain', '_anchor_')" in mapping.source
    assert "get_url_query_value(f_u, f_m, 'q')" in mapping.source
    assert "fn_get_url_query_str" not in mapping.source
    result = mapping.apply({"u": "https://x.example/?q=1&r=2&q=3#top", "m": "keep"}, META)
    assert result.entity == {"a": "3", "c": "3#top", "e": "top"}
    assert result.warnings == [
        'd: get_url_query_str: the mode must be "retain", "remove" or "append"'
    ]


def test_boolean_words_are_looked_up_and_other_values_converted(tmp_path: Path) -> None:
    entries = [{"source": "b", "destination": "out", "type": "boolean"}]
    mapping = load_mapping_file(
        write_mapping(tmp_path, base_mapping(entries)), DEFAULTS, runtime=RUNTIME
    )
    assert "if v.__class__ is str and v in BOOLEAN_WORDS:" in mapping.source
    words = sorted(TRUE_WORDS | FALSE_WORDS)
    for value in [*words, "Yes", " yes", "", 0, 1, 2, 1.0, True, False, [], {"a": 1}, ["y"]]:
        want = _outcome(library_to_boolean, value)
        result = _outcome(mapping.apply, {"b": value}, META)
        got = result if isinstance(result, str) else (result.entity, result.warnings)
        if isinstance(want, str):  # an error: the field's warning, and no entity at all
            first = f"first field error: out: {want.removeprefix('error: ')}"
            assert got == f"error: no destination field has a value (1 field error(s); {first})"
        else:
            assert got == ({"out": want}, [])


# Arithmetic: Python's operator inline for numbers, and clean() only for what it would change.


def _when_one(a: object, b: object) -> object:
    return values.multiply(a, b) if values.equal(a, 1) else None


ARITHMETIC: list[tuple[str, Any]] = [
    ("a * b", lambda a, b: values.multiply(a, b)),
    ("a - b", lambda a, b: values.subtract(a, b)),
    ("3 * b", lambda a, b: values.multiply(3, b)),
    ("2.5 - a", lambda a, b: values.subtract(2.5, a)),
    ("a - b * 2", lambda a, b: values.subtract(a, values.multiply(b, 2))),
    ("(a - 1) * b", lambda a, b: values.multiply(values.subtract(a, 1), b)),
    ("-a", lambda a, b: values.negate(a)),
    ("a / b", lambda a, b: values.divide(a, b)),
    ("a mod b", lambda a, b: values.modulo(a, b)),
    (
        "iif(a == 1, a * b, null)",
        lambda a, b: values.multiply(a, b) if values.equal(a, 1) else None,
    ),
]
_operands = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**66), max_value=2**66)
    | st.floats()
    | st.sampled_from([" 7 ", "2.5", "x", "", 0, 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, [1], {}])
)


@pytest.fixture(scope="module")
def arithmetic_mapping(tmp_path_factory: pytest.TempPathFactory) -> CompiledMapping:
    entries = [
        {"sourceType": "EXPRESSION", "source": source, "destination": f"o{i}"}
        for i, (source, _function) in enumerate(ARITHMETIC)
    ]
    entries.append({"sourceType": "STATIC", "source": "x", "destination": "always"})
    path = write_mapping(tmp_path_factory.mktemp("arithmetic"), base_mapping(entries))
    return load_mapping_file(path, DEFAULTS, runtime=RUNTIME)


def test_arithmetic_on_variables_is_written_inline(arithmetic_mapping: CompiledMapping) -> None:
    source = arithmetic_mapping.source
    assert "(f_a * f_b if f_b.__class__ in NUMBERS and f_a.__class__ in NUMBERS" in source
    assert "(3 * f_b if f_b.__class__ in NUMBERS else multiply(3, f_b))" in source
    assert "(f_a - t1 if (t1 := (f_b * 2 if f_b.__class__ in NUMBERS" in source
    assert "multiply((f_a - 1 if f_a.__class__ in NUMBERS else subtract(f_a, 1)), f_b)" in source
    assert "v = clean(v)" in source  # only where the value is not a finite float or 64-bit int
    assert "v.__class__ is float and -INF < v < INF" in source


@settings(max_examples=400, deadline=None, derandomize=True)
@given(a=_operands, b=_operands)
def test_inline_arithmetic_equals_the_library_functions(
    arithmetic_mapping: CompiledMapping, a: object, b: object
) -> None:
    expected: dict[str, object] = {}
    warnings: list[str] = []
    for index, (_source, function) in enumerate(ARITHMETIC):
        try:
            value = clean(function(a, b))
        except Exception as exc:
            warnings.append(f"o{index}: {describe(exc)}")
            continue
        if value is not None:
            expected[f"o{index}"] = value
    result = arithmetic_mapping.apply({"a": a, "b": b}, META)
    assert result.warnings == warnings
    assert result.entity is not None
    typed = [(key, type(value), value) for key, value in result.entity.items()]
    expected["always"] = "x"
    assert typed == [(key, type(value), value) for key, value in expected.items()]


def test_a_copied_string_is_stored_at_once_and_other_values_cleaned(tmp_path: Path) -> None:
    entries = [{"source": "a", "destination": "x"}, {"source": "b.c", "destination": "y"}]
    mapping = load_mapping_file(
        write_mapping(tmp_path, base_mapping(entries)), DEFAULTS, runtime=RUNTIME
    )
    assert "    if f_a.__class__ is str:\n        o1['x'] = f_a\n" in mapping.source
    assert "v = clean(f_b_c)" in mapping.source
    record: dict[str, object] = {"a": "s", "b": {"c": {"d": None, "e": [None, 1]}}}
    assert mapping.apply(record, META).entity == {"x": "s", "y": {"e": [1]}}
    result = mapping.apply({"a": 2**64, "b": {"c": [1]}}, META)
    assert result.warnings == ["x: integer is outside the 64-bit range"]
    assert result.entity == {"y": [1]}


def test_values_the_same_for_every_element_are_computed_once(tmp_path: Path) -> None:
    entries = [
        {"source": "items[*].id", "destination": "out[*].id"},
        {"sourceType": "EXPRESSION", "source": "upper(c)", "destination": "out[*].c"},
        {"sourceType": "EXPRESSION", "source": "to_integer(n)", "destination": "out[*].n"},
    ]
    mapping = load_mapping_file(
        write_mapping(tmp_path, base_mapping(entries)), DEFAULTS, runtime=RUNTIME
    )
    source = mapping.source
    assert source.index("same1 = None") < source.index("for e1 in items1:")
    assert "            if same1 is not None:\n                o2['c'] = same1\n" in source
    result = mapping.apply({"items": [{"id": 1}, {"id": 2}], "c": "usd", "n": "x"}, META)
    assert result.entity == {"out": [{"id": 1, "c": "USD"}, {"id": 2, "c": "USD"}]}
    assert list(result.entity["out"][0]) == ["id", "c"]  # the mapping's order
    assert result.warnings == ["out[*].n: to_integer: the string is not an integer"]  # once
    result = mapping.apply({"items": [{"id": 1}, {}], "n": "7"}, META)
    assert result.entity == {"out": [{"id": 1, "n": 7}, {"n": 7}]}


# Date patterns of numeric fields parse with a generated function (dates._compiled_parser).

NUMERIC_PATTERNS = ["MM/dd/yyyy", "yyyyMMdd", "yy-M-d H:m:s", "dd.MM.yyyy HH:mm:ss.SSS", "uuuu"]


def _shaped(index: int, digits: list[int]) -> str:
    """A text in the shape of a numeric pattern: each letter a digit."""
    chars = iter(digits)
    text = NUMERIC_PATTERNS[index]
    return "".join(str(next(chars, 0)) if c.isalpha() else c for c in text)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    index=st.integers(min_value=0, max_value=len(NUMERIC_PATTERNS) - 1),
    digits=st.lists(st.integers(min_value=0, max_value=9), min_size=24, max_size=24),
    other=st.text(alphabet="0123456789/.-: ", max_size=24),
)
def test_a_compiled_date_parser_equals_the_field_by_field_one(
    index: int, digits: list[int], other: str
) -> None:
    compiled = pattern(NUMERIC_PATTERNS[index])
    for text in (_shaped(index, digits), other):
        assert compiled.parse(text) == compiled.parse_fields(text)


def test_numeric_date_patterns_are_compiled_and_others_read_field_by_field() -> None:
    assert pattern("MM/dd/yyyy").parse("02/29/2000") == datetime(2000, 2, 29, tzinfo=UTC)
    assert pattern("MM/dd/yyyy").parse("02/30/2000") is None
    assert pattern("dd.MM.yyyy HH:mm:ss.SSS")._parse.__name__ == "parse"  # generated
    assert pattern(FORMAT)._parse == pattern(FORMAT).parse_fields  # a zone letter: generic
    assert pattern("dd-MMM-yyyy")._parse == pattern("dd-MMM-yyyy").parse_fields  # month names
