"""Fuzzing the expression language (issue 11): random parseable expressions on random
records. Whatever they hold, evaluation raises only the project's own errors."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.mapping.compiler import Ctx, ExpressionCompiler
from connector.mapping.errors import ExpressionError, MappingFailure, SourceError
from connector.mapping.functions import FUNCTIONS
from connector.mapping.parser import parse_expression
from tests.mapping.support import META, RUNTIME

FIELDS = ["a", "b", "c", "items[*].x", "a.b", "items[0]", "_kafka.key", "_kafka.headers.h"]
NAMES = sorted(FUNCTIONS)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("abcx"), inner),
    max_leaves=12,
)
_records = st.fixed_dictionaries({}, optional={k: _values for k in ("a", "b", "c", "items")})
_literals = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.sampled_from(['"x"', '"a,b"', '"yyyy-MM-dd"', '"(\\\\d+)"', "true", "null", "1.5", "0"]),
)


def _expressions() -> st.SearchStrategy[str]:
    leaves = st.sampled_from(FIELDS) | _literals

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        call = st.tuples(st.sampled_from(NAMES), st.lists(inner, min_size=0, max_size=4)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        )
        binary = st.tuples(
            inner, st.sampled_from(["+", "-", "*", "/", "mod", "==", "<", "and", "or"]), inner
        ).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
        unary = inner.map(lambda e: f"!({e})") | inner.map(lambda e: f"-({e})")
        member = inner.map(lambda e: f"({e}).x") | inner.map(lambda e: f"({e}).get(0)")
        return call | binary | unary | member

    return st.recursive(leaves, extend, max_leaves=10)


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(source=_expressions(), record=_records)
def test_expressions_raise_only_our_errors(source: str, record: dict[str, object]) -> None:
    try:
        node = parse_expression(source, frozenset(FUNCTIONS))
    except SourceError:
        return
    for depth in (0, 1):
        compiler = ExpressionCompiler(RUNTIME, depth)
        evaluate = compiler.compile(node)
        if compiler.problems:
            continue
        ctx = Ctx(record, META, strict=False)
        ctx.bound = tuple([{"x": record.get("a")}] * depth)
        with contextlib.suppress(ExpressionError, MappingFailure):  # ours; anything else fails
            evaluate(ctx)


_OPERATORS = ["+", "-", "*", "/", "mod", "div", "==", "!=", "<", ">=", "and", "or"]
_OPERANDS = [*FIELDS, "0", "0.0", "-7", "1.5", '"3"', '"x"', "null", "true"]


def _operator_expressions() -> list[tuple[str, Callable[[Ctx], object]]]:
    """Every operator between every pair of operands, compiled once."""
    compiled = []
    for op, left, right in itertools.product(_OPERATORS, _OPERANDS, _OPERANDS):
        source = f"{left} {op} {right}"
        compiler = ExpressionCompiler(RUNTIME, 0)
        evaluate = compiler.compile(parse_expression(source, frozenset(FUNCTIONS)))
        if not compiler.problems:  # [*] outside an array destination
            compiled.append((source, evaluate))
    return compiled


_OPERATIONS = _operator_expressions()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(record=_records)
def test_operators_raise_only_our_errors(record: dict[str, object]) -> None:
    # Every operator on every pair of values: zeros, nulls, objects, huge numbers, strings.
    for source, evaluate in _OPERATIONS:
        try:
            evaluate(Ctx(record, META, strict=False))
        except (ExpressionError, MappingFailure):
            pass
        except Exception as exc:
            raise AssertionError(f"{source}: {type(exc).__name__}") from exc
