"""The expression syntax and field paths: tokens, precedence, positions, escapes, and the
load-time errors a user sees for bad text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.mapping import paths
from connector.mapping.errors import SourceError
from connector.mapping.functions import FUNCTION_NAMES
from connector.mapping.lexer import tokenize
from connector.mapping.nodes import Binary, Call, Literal, Member, Method, Ref, Unary
from connector.mapping.parser import parse_expression
from tests.mapping.support import evaluate, problems


def parse(source: str) -> object:
    return parse_expression(source, FUNCTION_NAMES)


def test_tokens_carry_line_and_column() -> None:
    tokens = tokenize('a +\n  "x\\ty"  ${First Name}')
    assert [(t.kind, t.line, t.column) for t in tokens] == [
        ("ident", 1, 1),
        ("op", 1, 3),
        ("str", 2, 3),
        ("escaped", 2, 11),
        ("eof", 2, 24),
    ]
    assert tokens[2].value == "x\ty"
    assert tokens[3].value == ["First Name"]


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("12", 12),
        ("1.5", 1.5),
        ("2e3", 2000.0),
        ("'single'", "single"),
        ('"dq \\"x\\" \\u00e9"', 'dq "x" é'),
        ('"\\d+"', "\\d+"),
        ("true", True),
        ("false", False),
        ("null", None),
    ],
)
def test_literals(source: str, value: object) -> None:
    node = parse(source)
    assert isinstance(node, Literal)
    assert node.value == value


def test_precedence_and_word_operators() -> None:
    node = parse("a or b and not c eq 1 + 2 * 3")
    assert isinstance(node, Binary)
    assert node.op == "or"
    right = node.right
    assert isinstance(right, Binary)
    assert right.op == "and"
    comparison = right.right  # unary binds tighter than comparisons, as in Java
    assert isinstance(comparison, Binary)
    assert comparison.op == "=="
    assert isinstance(comparison.left, Unary)
    assert evaluate("1 + 2 * 3 - 4 / 2") == 5
    assert evaluate("(1 + 2) * 3") == 9
    assert evaluate("7 div 2 + 7 mod 4") == 6
    assert evaluate("2 lt 3 && 3 ge 3 || false") is True
    assert evaluate("!(1 ne 1)") is True
    assert evaluate("-2 * -3") == 6


def test_paths_escapes_and_methods() -> None:
    node = parse("${First Name}.${a\\.b}[0][*].c")
    assert isinstance(node, Ref)
    assert node.steps == ("First Name", "a.b", 0, paths.STAR, "c")
    method = parse('name.equalsIgnoreCase("X")')
    assert isinstance(method, Method)
    assert isinstance(method.target, Ref)
    member = parse("json_to_object(s).a[1]")
    assert isinstance(member, Member)
    assert member.key == 1
    call = parse("concat()")
    assert isinstance(call, Call)
    assert call.args == ()
    kafka = parse("_kafka.headers.trace")
    assert isinstance(kafka, Ref)
    assert kafka.kafka
    assert kafka.steps == ("headers", "trace")
    escaped = parse("${_kafka}.topic")
    assert isinstance(escaped, Ref)
    assert not escaped.kafka


@pytest.mark.parametrize(
    ("source", "message", "line", "column"),
    [
        ("concat(a, ", "expected a value", 1, 11),
        ("a +\n  * b", "expected a value", 2, 3),
        ("a = b", "use == to compare", 1, 3),
        ('"open', "not closed", 1, 1),
        ("${open", "closing", 1, 1),
        ("f(a b)", "expected ',' or ')'", 1, 5),
        ("a % b", "unexpected character", 1, 3),
        ("size + 1", "reserved word", 1, 1),
        ("user.if", "reserved word", 1, 6),
        ("lower + 1", "function name", 1, 1),
        ("items[x]", "integer index", 1, 7),
        ("f(x)[*]", "[*] can only follow a field path", 1, 5),
        ("a b", "expected an operator", 1, 3),
    ],
)
def test_syntax_errors_point_at_line_and_column(
    source: str, message: str, line: int, column: int
) -> None:
    with pytest.raises(SourceError) as info:
        parse(source)
    assert message in info.value.message
    assert (info.value.line, info.value.column) == (line, column), str(info.value)


def test_reserved_words_and_function_names_work_escaped() -> None:
    record = {"size": 3, "date": "2019-10-23", "if": {"lower": "x"}}
    assert evaluate("${size} + 1", record) == 4
    assert evaluate("${date}", record) == "2019-10-23"
    assert evaluate("${if}.lower", record) == "x"  # a function name after a dot is a field


def test_expression_length_limit() -> None:
    long = "concat(" + ", ".join(['"x"'] * 1400) + ")"
    assert len(long) > 4096
    assert any("limit is 4096" in p for p in problems(long))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("lowr(x)", "did you mean 'lower'"),
        ("size(x)", "use size_of"),
        ("lower(x, y)", "takes 1 argument, got 2"),
        ("substr(x)", "takes 2 to 3 arguments"),
        ("concat()", "at least 1 argument"),
        ('to_object("a")', "takes at least 2"),
        ('to_object("a", 1, "b")', "key/value pairs"),
        ("x.trim()", "unknown method"),
        ('x.equals("a", "b")', "takes 1 argument"),
        ("_kafka.partitions", "unknown Kafka metadata field"),
        ("_kafka.topic.name", "has no fields"),
        ("contains_key(lower(x))", "takes a field path"),
        ("contains_key(items[*].a)", "without [*]"),
        ('contains_key("a..b")', "expected a field name"),
    ],
)
def test_compile_problems(source: str, message: str) -> None:
    found = problems(source)
    assert any(message in p for p in found), found


def test_every_problem_of_an_expression_is_reported() -> None:
    found = problems("concat(lowr(a), uper(b), trim(c, d))")
    assert len(found) == 3
    assert all("column" in p for p in found)


# --- paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("a", ("a",)),
        ("person.name.firstName", ("person", "name", "firstName")),
        ("_{TENANT}.field-name", ("_{TENANT}", "field-name")),
        ("items[0].sku", ("items", 0, "sku")),
        ("items[*]", ("items", paths.STAR)),
        ("m[*][*].v", ("m", paths.STAR, paths.STAR, "v")),
        ("${First Name}.x", ("First Name", "x")),
        ("${a\\.b}", ("a.b",)),
        ("${a.b}", ("a", "b")),
    ],
)
def test_parse_path(text: str, steps: paths.Path) -> None:
    assert paths.parse_path(text)[0] == steps


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty path"),
        ("a..b", "expected a field name"),
        ("a.", "ends with '.'"),
        ("a[1", "without ']'"),
        ("a[-1]", "non-negative integer"),
        ("a b", "unexpected whitespace"),
        ("${}", "empty field name"),
        ("${a", "closing"),
        (".a", "expected a field name"),
    ],
)
def test_bad_paths(text: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        paths.parse_path(text)


_names = st.text(min_size=1, max_size=8)
_steps = st.lists(
    st.one_of(_names, st.integers(min_value=0, max_value=50), st.just(paths.STAR)),
    min_size=0,
    max_size=6,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(first=_names, rest=_steps)
def test_format_then_parse_round_trips(first: str, rest: list[paths.Step]) -> None:
    steps = (first, *rest)
    assert paths.parse_path(paths.format_path(steps))[0] == steps


@settings(max_examples=200, deadline=None, derandomize=True)
@given(names=st.lists(_names, min_size=1, max_size=5), value=st.integers() | st.text())
def test_getter_and_lookup_read_what_was_nested(names: list[str], value: object) -> None:
    record: object = value
    for name in reversed(names):
        record = {name: record}
    steps = tuple(names)
    assert paths.getter(steps)(record) == value
    assert paths.lookup(record, steps) == value
    assert paths.lookup(record, (*steps, "missing")) is paths.MISSING


def test_each_problem_is_reported_once() -> None:
    assert len(problems("a + lowr(b)")) == 1
    assert len(problems("upper(a, lowr(b))")) == 2


_TOKENS = [
    "a",
    "b.c",
    ".",
    "(",
    ")",
    "[",
    "]",
    "*",
    "0",
    "3",
    '"x"',
    "'y'",
    ",",
    "+",
    "-",
    "/",
    "==",
    "!=",
    "<",
    "and",
    "or",
    "not",
    "!",
    "lower",
    "iif",
    "concat",
    "to_object",
    "${b c}",
    "_kafka",
    "topic",
    "null",
    "true",
    "1.5",
    "size",
    "mod",
    "div",
    "equals",
    "get",
    "[*]",
]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    text=st.text(max_size=30)
    | st.lists(st.sampled_from(_TOKENS), max_size=12).map(" ".join)
    | st.lists(st.sampled_from(_TOKENS), max_size=12).map("".join)
)
def test_any_text_parses_or_gives_a_positioned_error(text: str) -> None:
    position: tuple[int, int] | None = None
    try:
        parse(text)
    except SourceError as exc:
        position = (exc.line, exc.column)
    if position is not None:
        assert min(position) >= 1
        return
    from tests.mapping.support import compile_expression

    _compiled, found = compile_expression(text, depth=1)
    assert all(p.line >= 1 and p.column >= 1 for p in found)
