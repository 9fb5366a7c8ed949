"""A small PromQL evaluator over scraped /metrics samples.

The chart's Grafana dashboard and alert rules are PromQL. Parsing them (promql-parser) shows they
are well formed; evaluating them on what a worker really exports shows they mean something: that
a panel draws lines, that an alert fires when it should and stays quiet otherwise. The same
evaluator draws the dashboard's panels from a benchmark run (bench/dashboard_png.py), so the
picture in docs/ is what Grafana would show.

It covers the part of PromQL the dashboard and the rules use (selectors, rate, increase, deriv,
histogram_quantile, aggregations, arithmetic, comparisons, and/or/unless) with Prometheus's
semantics, except that rate() and increase() do not extrapolate to the ends of the range (the
difference is small with many samples per range). Anything else raises Unsupported, so a query
the evaluator cannot judge fails loudly instead of passing.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import promql_parser as pp
from prometheus_client.parser import text_string_to_metric_families

#: A series' identity: its sorted (label, value) pairs, the metric name as __name__.
Labels = tuple[tuple[str, str], ...]
#: An instant vector: labels → value.
Vector = dict[Labels, float]
#: How far back an instant selector looks for a sample (Prometheus's default lookback delta).
LOOKBACK_S = 300.0


class Unsupported(ValueError):
    """A construct this evaluator does not implement."""


def labels_of(name: str, labels: Mapping[str, str]) -> Labels:
    return tuple(sorted({**labels, "__name__": name}.items()))


def without_name(labels: Labels) -> Labels:
    return tuple(item for item in labels if item[0] != "__name__")


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a /metrics answer as (name, labels, value)."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


@dataclass
class Store:
    """Samples in time order: each series' (times, values)."""

    series: dict[Labels, tuple[list[float], list[float]]] = field(default_factory=dict)
    #: Which series each selector selects (a selector is matched once, not at every step).
    _selected: dict[str, list[Labels]] = field(default_factory=dict)

    def add(self, t: float, samples: Iterable[Sequence[Any]]) -> None:
        """One scrape at time t: (name, labels, value) triples; t must not go backwards."""
        self._selected.clear()
        for name, labels, value in samples:
            times, values = self.series.setdefault(labels_of(name, labels), ([], []))
            if times and t < times[-1]:
                raise ValueError("scrapes must be added in time order")
            times.append(t)
            values.append(float(value))

    def names(self) -> set[str]:
        return {dict(labels)["__name__"] for labels in self.series}

    def select(self, selector: Any) -> Iterable[tuple[Labels, list[float], list[float]]]:
        key = str(selector)
        if key not in self._selected:
            matchers = [(m.name, str(m.op), m.value) for m in selector.matchers.matchers]
            if selector.matchers.or_matchers:
                raise Unsupported("or-matchers")
            if selector.name:
                matchers.append(("__name__", "MatchOp.Equal", selector.name))
            self._selected[key] = [
                labels
                for labels in self.series
                if all(_matches(dict(labels).get(n, ""), op, v) for n, op, v in matchers)
            ]
        for labels in self._selected[key]:
            times, values = self.series[labels]
            yield labels, times, values


def _matches(actual: str, op: str, wanted: str) -> bool:
    if op == "MatchOp.Equal":
        return actual == wanted
    if op == "MatchOp.NotEqual":
        return actual != wanted
    if op == "MatchOp.Re":
        return re.fullmatch(wanted, actual) is not None
    if op == "MatchOp.NotRe":
        return re.fullmatch(wanted, actual) is None
    raise Unsupported(f"matcher {op}")


@dataclass
class Range:
    """A range vector: per series, its samples in (t - range, t]."""

    series: dict[Labels, tuple[list[float], list[float]]]
    seconds: float


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Grafana's $name and ${name} variables replaced by their values (longest names first)."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    if "$" in expr:
        raise Unsupported(f"an undefined variable in {expr!r}")
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (every selector must name one)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, pp.VectorSelector):
            if not node.name:
                raise Unsupported(f"a selector without a metric name: {node}")
            names.add(node.name)
        for child in _children(node):
            walk(child)

    walk(pp.parse(expr))
    return names


def _children(node: Any) -> list[Any]:
    if isinstance(node, pp.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, pp.Call):
        return list(node.args)
    if isinstance(node, pp.AggregateExpr):
        return [node.expr] + ([node.param] if node.param is not None else [])
    if isinstance(node, pp.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr | pp.SubqueryExpr):
        return [node.expr]
    return []


def evaluate(expr: str, store: Store, t: float) -> Vector | float:
    """The value of `expr` at time t: an instant vector, or a number for a scalar."""
    return _Evaluator(store, t).eval(pp.parse(expr))


def evaluate_range(expr: str, store: Store, times: Sequence[float]) -> dict[Labels, list[float]]:
    """`expr` at each time, as series of values (NaN where a series has no value)."""
    results: dict[Labels, list[float]] = {}
    for index, t in enumerate(times):
        value = evaluate(expr, store, t)
        vector = value if isinstance(value, dict) else {(): value}
        for labels, v in vector.items():
            results.setdefault(labels, [math.nan] * len(times))[index] = v
    return results


class _Evaluator:
    def __init__(self, store: Store, t: float) -> None:
        self.store = store
        self.t = t

    def eval(self, node: Any) -> Any:
        if isinstance(node, pp.NumberLiteral):
            return float(node.val)
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr)
        if isinstance(node, pp.UnaryExpr):
            value = self.eval(node.expr)
            if isinstance(value, dict):
                return {without_name(k): -v for k, v in value.items()}
            return -value
        if isinstance(node, pp.VectorSelector):
            return self.instant(node)
        if isinstance(node, pp.MatrixSelector):
            return self.range(node)
        if isinstance(node, pp.Call):
            return self.call(node)
        if isinstance(node, pp.AggregateExpr):
            return self.aggregate(node)
        if isinstance(node, pp.BinaryExpr):
            return self.binary(node)
        raise Unsupported(type(node).__name__)

    def instant(self, node: Any) -> Vector:
        if node.offset is not None or node.at is not None:
            raise Unsupported("offset and @")
        vector: Vector = {}
        for labels, times, values in self.store.select(node):
            i = bisect.bisect_right(times, self.t) - 1
            if i >= 0 and times[i] > self.t - LOOKBACK_S:
                vector[labels] = values[i]
        return vector

    def range(self, node: Any) -> Range:
        seconds = node.range.total_seconds()
        series = {}
        for labels, times, values in self.store.select(node.vector_selector):
            lo = bisect.bisect_right(times, self.t - seconds)
            hi = bisect.bisect_right(times, self.t)
            if hi > lo:
                series[labels] = (times[lo:hi], values[lo:hi])
        return Range(series, seconds)

    # ------------------------------------------------------------------ functions

    def call(self, node: Any) -> Any:
        name = node.func.name
        args = [self.eval(a) for a in node.args]
        over_range: dict[str, Callable[[list[float], list[float], float], float | None]] = {
            "rate": _rate,
            "increase": lambda ts, vs, r: None if (x := _rate(ts, vs, r)) is None else x * r,
            "deriv": _deriv,
            "max_over_time": lambda ts, vs, r: max(vs),
            "min_over_time": lambda ts, vs, r: min(vs),
            "avg_over_time": lambda ts, vs, r: sum(vs) / len(vs),
        }
        if name in over_range:
            [window] = args
            vector = {}
            for labels, (times, values) in window.series.items():
                result = over_range[name](times, values, window.seconds)
                if result is not None:
                    vector[without_name(labels)] = result
            return vector
        if name == "histogram_quantile":
            phi, vector = args
            return _histogram_quantile(phi, vector)
        if name in ("clamp_min", "clamp_max"):
            vector, bound = args
            pick = max if name == "clamp_min" else min
            return {without_name(k): pick(v, bound) for k, v in vector.items()}
        if name == "vector":
            [scalar] = args
            return {(): scalar}
        raise Unsupported(f"function {name}")

    # ------------------------------------------------------------------ aggregation

    def aggregate(self, node: Any) -> Vector:
        op = str(node.op)
        if node.param is not None:
            raise Unsupported(f"aggregation {op} with a parameter")
        vector = self.eval(node.expr)
        groups: dict[Labels, list[float]] = {}
        modifier = node.modifier
        for labels, value in vector.items():
            if modifier is None:
                key: Labels = ()
            elif str(modifier.type) == "AggModifierType.By":
                key = tuple(item for item in labels if item[0] in modifier.labels)
            else:
                dropped = {*modifier.labels, "__name__"}
                key = tuple(item for item in labels if item[0] not in dropped)
            groups.setdefault(key, []).append(value)
        functions: dict[str, Callable[[list[float]], float]] = {
            "sum": sum,
            "max": max,
            "min": min,
            "avg": lambda vs: sum(vs) / len(vs),
            "count": len,
        }
        if op not in functions:
            raise Unsupported(f"aggregation {op}")
        return {key: float(functions[op](values)) for key, values in groups.items()}

    # ------------------------------------------------------------------ binary operators

    def binary(self, node: Any) -> Any:
        op = str(node.op)
        lhs = self.eval(node.lhs)
        rhs = self.eval(node.rhs)
        modifier = node.modifier
        return_bool = bool(modifier and modifier.return_bool)
        if op in ("and", "or", "unless"):
            return self.set_operation(op, lhs, rhs, modifier)
        if not isinstance(lhs, dict) and not isinstance(rhs, dict):
            return _apply(op, lhs, rhs, return_bool, scalar=True)
        if not isinstance(lhs, dict) or not isinstance(rhs, dict):
            vector, scalar = (lhs, rhs) if isinstance(lhs, dict) else (rhs, lhs)
            result = {}
            for labels, value in vector.items():
                a, b = (value, scalar) if isinstance(lhs, dict) else (scalar, value)
                out = _apply(op, a, b, return_bool)
                if out is not None:
                    keep = labels if _is_filter(op, return_bool) else without_name(labels)
                    result[keep] = value if _is_filter(op, return_bool) else out
            return result
        return self.vector_match(op, lhs, rhs, modifier, return_bool)

    def vector_match(
        self, op: str, lhs: Vector, rhs: Vector, modifier: Any, return_bool: bool
    ) -> Vector:
        card = str(modifier.card) if modifier and modifier.card else ""
        if "OneToMany" in card:
            raise Unsupported("group_right")
        key = _match_key(modifier)
        right: dict[Labels, tuple[Labels, float]] = {}
        for labels, value in rhs.items():
            k = key(labels)
            if k in right:
                raise ValueError(f"many-to-many matching on {k}: the right side is not unique")
            right[k] = (labels, value)
        result: Vector = {}
        for labels, value in lhs.items():
            match = right.get(key(labels))
            if match is None:
                continue
            out = _apply(op, value, match[1], return_bool)
            if out is None:
                continue
            keep = labels if _is_filter(op, return_bool) else without_name(labels)
            if keep in result:
                raise ValueError(f"duplicate result series {keep}: add group_left or on()")
            result[keep] = value if _is_filter(op, return_bool) else out
        return result

    def set_operation(self, op: str, lhs: Any, rhs: Any, modifier: Any) -> Vector:
        if not isinstance(lhs, dict) or not isinstance(rhs, dict):
            raise Unsupported(f"{op} needs vectors on both sides")
        key = _match_key(modifier)
        right_keys = {key(labels) for labels in rhs}
        if op == "and":
            return {k: v for k, v in lhs.items() if key(k) in right_keys}
        if op == "unless":
            return {k: v for k, v in lhs.items() if key(k) not in right_keys}
        left_keys = {key(labels) for labels in lhs}
        return lhs | {k: v for k, v in rhs.items() if key(k) not in left_keys}


def _match_key(modifier: Any) -> Callable[[Labels], Labels]:
    matching = modifier.matching if modifier else None
    if matching is None:
        return without_name
    names = set(matching.labels)
    if str(matching.type) == "LabelModifierType.Include":  # on(...)
        return lambda labels: tuple(item for item in labels if item[0] in names)
    return lambda labels: tuple(  # ignoring(...)
        item for item in labels if item[0] not in names and item[0] != "__name__"
    )


_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _is_filter(op: str, return_bool: bool) -> bool:
    return op in _COMPARISONS and not return_bool


def _apply(op: str, a: float, b: float, return_bool: bool, scalar: bool = False) -> float | None:
    """a op b: a number, or None when a comparison filters the element out."""
    if op in _COMPARISONS:
        holds = _COMPARISONS[op](a, b)
        if return_bool or scalar:
            return 1.0 if holds else 0.0
        return a if holds else None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
        return a / b
    raise Unsupported(f"operator {op}")


def _rate(times: list[float], values: list[float], _range: float) -> float | None:
    """Per-second increase of a counter over the samples, counter resets allowed for."""
    if len(times) < 2 or times[-1] == times[0]:
        return None
    increase = 0.0
    for previous, current in itertools.pairwise(values):
        increase += current - previous if current >= previous else current
    return increase / (times[-1] - times[0])


def _deriv(times: list[float], values: list[float], _range: float) -> float | None:
    """Least-squares slope per second, as Prometheus's deriv()."""
    if len(times) < 2:
        return None
    n = len(times)
    mean_t = sum(times) / n
    mean_v = sum(values) / n
    var = sum((t - mean_t) ** 2 for t in times)
    if var == 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / var


def _histogram_quantile(phi: float, vector: Vector) -> Vector:
    """Prometheus's histogram_quantile: linear interpolation inside the bucket of the rank."""
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for labels, value in vector.items():
        le = dict(labels).get("le")
        if le is None:
            continue
        key = tuple(item for item in labels if item[0] not in ("le", "__name__"))
        groups.setdefault(key, []).append((float(le), value))
    result: Vector = {}
    for key, buckets in groups.items():
        buckets.sort()
        if not buckets or not math.isinf(buckets[-1][0]):
            result[key] = math.nan
            continue
        count = buckets[-1][1]
        if count == 0 or math.isnan(count):
            result[key] = math.nan
            continue
        if phi < 0:
            result[key] = -math.inf
            continue
        if phi > 1:
            result[key] = math.inf
            continue
        rank = phi * count
        i = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
        if i == len(buckets) - 1:
            result[key] = buckets[-2][0] if len(buckets) > 1 else math.nan
            continue
        upper, upper_count = buckets[i]
        lower, lower_count = (0.0, 0.0) if i == 0 else buckets[i - 1]
        if i == 0 and upper <= 0:
            result[key] = upper
            continue
        in_bucket = upper_count - lower_count
        fraction = (rank - lower_count) / in_bucket if in_bucket else 0.0
        result[key] = lower + (upper - lower) * fraction
    return result
