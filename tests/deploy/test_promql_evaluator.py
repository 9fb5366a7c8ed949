"""The PromQL evaluator the dashboard and alert tests stand on (tests/support/promql.py): known
answers from Prometheus's semantics, and properties of rate() and histogram_quantile()."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import promql


def store_of(*series: tuple[str, dict[str, str], list[tuple[float, float]]]) -> promql.Store:
    store = promql.Store()
    times = sorted({t for _, _, points in series for t, _ in points})
    for t in times:
        store.add(
            t, [(n, labels, v) for n, labels, points in series for pt, v in points if pt == t]
        )
    return store


def only(result: object) -> float:
    assert isinstance(result, dict)
    [value] = result.values()
    return value


def test_rate_and_increase_allow_for_counter_resets() -> None:
    store = store_of(("c_total", {}, [(0, 0), (10, 10), (20, 20)]))
    assert only(promql.evaluate("rate(c_total[30s])", store, 20)) == 1.0
    assert only(promql.evaluate("increase(c_total[30s])", store, 20)) == 30.0
    reset = store_of(("c_total", {}, [(0, 0), (10, 10), (20, 5)]))
    assert only(promql.evaluate("rate(c_total[30s])", reset, 20)) == 0.75
    # One sample in the range: no rate.
    assert promql.evaluate("rate(c_total[5s])", store, 20) == {}


def test_instant_selector_takes_the_latest_sample_within_the_lookback() -> None:
    store = store_of(("g", {"a": "1"}, [(0, 5), (10, 7)]), ("g", {"a": "2"}, [(0, 1)]))
    result = promql.evaluate('g{a="1"}', store, 15)
    assert result == {(("__name__", "g"), ("a", "1")): 7.0}
    assert promql.evaluate('g{a=~"1|2"}', store, 5) == {
        (("__name__", "g"), ("a", "1")): 5.0,
        (("__name__", "g"), ("a", "2")): 1.0,
    }
    assert promql.evaluate("g", store, 10 + promql.LOOKBACK_S + 1) == {}


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [("1", 0.0), ("2", 10.0), ("+Inf", 10.0)]
    store = store_of(*(("h_bucket", {"le": le}, [(0, c)]) for le, c in buckets))
    assert only(promql.evaluate("histogram_quantile(0.5, h_bucket)", store, 0)) == 1.5
    assert only(promql.evaluate("histogram_quantile(0.9, h_bucket)", store, 0)) == 1.9
    # A rank in the +Inf bucket: the largest finite bound.
    over = store_of(*(("h_bucket", {"le": le}, [(0, c)]) for le, c in [("1", 1), ("+Inf", 10)]))
    assert only(promql.evaluate("histogram_quantile(0.99, h_bucket)", over, 0)) == 1.0
    empty = store_of(*(("h_bucket", {"le": le}, [(0, 0)]) for le in ("1", "+Inf")))
    assert math.isnan(only(promql.evaluate("histogram_quantile(0.5, h_bucket)", empty, 0)))


def test_aggregation_and_vector_matching() -> None:
    store = store_of(
        ("a", {"job": "x", "k": "1"}, [(0, 2)]),
        ("a", {"job": "x", "k": "2"}, [(0, 3)]),
        ("a", {"job": "y", "k": "1"}, [(0, 4)]),
        ("b", {"job": "x"}, [(0, 10)]),
    )
    assert promql.evaluate("sum by (job) (a)", store, 0) == {
        (("job", "x"),): 5.0,
        (("job", "y"),): 4.0,
    }
    assert promql.evaluate("max without (k) (a)", store, 0) == {
        (("job", "x"),): 3.0,
        (("job", "y"),): 4.0,
    }
    # One-to-one on all labels but the name; on(); a comparison filter keeps the left side.
    assert promql.evaluate("sum by (job) (a) / b", store, 0) == {(("job", "x"),): 0.5}
    assert promql.evaluate("sum by (job) (a) > 4", store, 0) == {(("job", "x"),): 5.0}
    assert promql.evaluate("sum by (job) (a) > bool 4", store, 0) == {
        (("job", "x"),): 1.0,
        (("job", "y"),): 0.0,
    }
    assert promql.evaluate("sum by (job) (a) unless on (job) b", store, 0) == {(("job", "y"),): 4.0}
    assert promql.evaluate("sum by (job) (a) and on (job) b", store, 0) == {(("job", "x"),): 5.0}
    assert promql.evaluate("sum(a) + 1", store, 0) == {(): 10.0}
    assert promql.evaluate("(sum(c) or vector(0)) / sum(a)", store, 0) == {(): 0.0}


def test_deriv_is_the_least_squares_slope() -> None:
    store = store_of(("lag", {}, [(0, 100), (15, 130), (30, 160), (45, 190)]))
    assert only(promql.evaluate("deriv(lag[1m])", store, 45)) == pytest.approx(2.0)


def test_what_it_does_not_know_fails_loudly() -> None:
    store = store_of(("a", {}, [(0, 1)]))
    with pytest.raises(promql.Unsupported):
        promql.evaluate("predict_linear(a[1m], 60)", store, 0)
    with pytest.raises(promql.Unsupported):
        promql.evaluate("topk(1, a)", store, 0)
    with pytest.raises(promql.Unsupported):
        promql.substitute("rate(a[$__range])", {"__rate_interval": "1m"})


def test_metric_names_of_an_expression() -> None:
    expr = 'sum(rate(x_total{job="j"}[5m])) / on () group_left max(y) > bool 1 unless z'
    assert promql.metric_names(expr) == {"x_total", "y", "z"}
    with pytest.raises(promql.Unsupported):
        promql.metric_names('{job="j"}')


@settings(deadline=None)  # a shared, loaded machine: timings vary
@given(
    st.lists(st.integers(min_value=0, max_value=1000), min_size=2, max_size=30),
    st.integers(min_value=1, max_value=60),
)
def test_rate_of_a_monotonic_counter_is_its_rise_over_the_time(
    increments: list[int], step: int
) -> None:
    values = [float(sum(increments[: i + 1])) for i in range(len(increments))]
    points = [(float(i * step), v) for i, v in enumerate(values)]
    store = store_of(("c_total", {}, points))
    end = points[-1][0]
    window = f"{int(end) + 1}s"
    rate = only(promql.evaluate(f"rate(c_total[{window}])", store, end))
    assert rate == pytest.approx((values[-1] - values[0]) / end)


@settings(deadline=None)  # a shared, loaded machine: timings vary
@given(
    st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=8),
    st.floats(min_value=0.01, max_value=0.99),
    st.floats(min_value=0.01, max_value=0.99),
)
def test_histogram_quantile_is_monotonic_and_within_the_bounds(
    per_bucket: list[int], phi: float, other: float
) -> None:
    bounds = [float(2**i) for i in range(len(per_bucket))]
    cumulative = [float(sum(per_bucket[: i + 1])) for i in range(len(per_bucket))]
    series = [
        ("h_bucket", {"le": str(b)}, [(0.0, c)]) for b, c in zip(bounds, cumulative, strict=True)
    ]
    series.append(("h_bucket", {"le": "+Inf"}, [(0.0, cumulative[-1])]))
    store = store_of(*series)
    low, high = sorted((phi, other))
    q_low = only(promql.evaluate(f"histogram_quantile({low}, h_bucket)", store, 0))
    q_high = only(promql.evaluate(f"histogram_quantile({high}, h_bucket)", store, 0))
    if cumulative[-1] == 0:
        assert math.isnan(q_low)
        return
    assert 0 <= q_low <= q_high <= bounds[-1]
