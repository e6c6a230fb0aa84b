"""The evaluator against hand-computed values: selectors, functions, operators, aggregations.

Series are written in promtool's notation, one sample per minute from t=0 (see
tests/helpers/promql.py); every expected value below is worked out by hand from Prometheus 2.x's
definitions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kpimon.errors import EvaluationError
from kpimon.labels import Labels
from kpimon.promql import Scalar, Vector, compile_expr, evaluate
from kpimon.store import Store
from tests.helpers.promql import Case, expand, load

X1: Labels = (("__name__", "x"), ("a", "1"))


def ev(
    series: list[tuple[str, str]], expr: str, at: str, interval: str = "1m"
) -> dict[Labels, float]:
    case = Case(series, expr, at, interval)
    store = load(case, until_ms=case.at_ms)
    res = evaluate(compile_expr(expr), store, case.at_ms / 1000)
    if isinstance(res, Scalar):
        return {(): res.value}
    return dict(zip(res.labels, res.values.tolist(), strict=True))


def one(series: list[tuple[str, str]], expr: str, at: str, interval: str = "1m") -> float:
    (value,) = ev(series, expr, at, interval).values()
    return value


C = [('x{a="1"}', "0+10x20")]


def test_series_notation_expands_like_prometheus() -> None:
    assert expand("1 _x3 stale 2+3x2 -1-1x1 4x2") == [
        1.0, None, None, None, "stale", 2.0, 5.0, 8.0, -1.0, -2.0, 4.0, 4.0, 4.0
    ]  # fmt: skip
    assert expand("0.1+0.1x3")[-1] == 0.1 + 0.1 + 0.1 + 0.1  # cumulative, not 0.1 + 3 * 0.1


# -- instant selectors ---------------------------------------------------------------------


def test_instant_selector_takes_the_newest_sample_within_five_minutes() -> None:
    assert ev(C, "x", "10m") == {X1: 100.0}
    assert ev(C, "x", "10m59s") == {X1: 100.0}
    gap = [('x{a="1"}', "7 _x20")]
    assert ev(gap, "x", "5m") == {X1: 7.0}  # exactly 5 minutes old: included
    assert ev(gap, "x", "5m1ms") == {}
    assert ev([('x{a="1"}', "1 _x10 2")], "x", "8m") == {}


def test_staleness_marker_hides_the_series_until_a_new_sample() -> None:
    s = [('x{a="1"}', "1 2 stale _ 5")]
    assert ev(s, "x", "1m30s") == {X1: 2.0}
    assert ev(s, "x", "2m") == {}
    assert ev(s, "x", "3m") == {}
    assert ev(s, "x", "4m") == {X1: 5.0}


def test_offset_and_evaluation_in_the_past() -> None:
    assert ev(C, "x offset 3m", "10m") == {X1: 70.0}
    case = Case(C, "x", "4m")
    store = load(case)  # all 21 samples, evaluated at 4m: reads the ring, not the live scalars
    res = evaluate(compile_expr("x"), store, 240.0)
    assert isinstance(res, Vector)
    assert res.values.tolist() == [40.0]
    assert evaluate(compile_expr("x offset -2m"), store, 240.0).values.tolist() == [60.0]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ('x{a="1"}', {"1"}),
        ('x{a!="1"}', {"10", "2", None}),
        ('x{a=~"1"}', {"1"}),  # anchored: not "10"
        ('x{a=~"1.*"}', {"1", "10"}),
        ('x{a!~"1.*"}', {"2", None}),
        ('x{a=""}', {None}),  # a missing label is the empty string
        ('x{a=~"2|"}', {"2", None}),
        ('{__name__=~"x|y", a="2"}', {"2", "y2"}),
    ],
)
def test_label_matchers(selector: str, expected: set[str | None]) -> None:
    series = [
        ('x{a="1"}', "1"),
        ('x{a="10"}', "1"),
        ('x{a="2"}', "1"),
        ("x", "1"),
        ('y{a="2"}', "1"),
    ]
    got = ev(series, selector, "0s")
    names = {(dict(lab).get("a") if dict(lab)["__name__"] == "x" else "y2") for lab in got}
    assert names == expected


def test_nonexistent_metric_is_an_empty_vector() -> None:
    assert ev(C, "nope", "1m") == {}
    assert ev(C, "sum(nope)", "1m") == {}
    assert ev(C, "rate(nope[5m])", "1m") == {}
    assert ev(C, "x + nope", "1m") == {}
    assert ev(C, "nope > 1", "1m") == {}


# -- rate, increase, irate -----------------------------------------------------------------


def test_rate_of_a_regular_counter() -> None:
    # [5m] at 10m holds 50..100 at 5m..10m: +50 over 300 s, no extrapolation needed.
    assert one(C, "increase(x[5m])", "10m") == 50.0
    assert one(C, "rate(x[5m])", "10m") == 50.0 * (300 / 300 / 300)  # Prometheus' order
    # At 10m30s the window is [5m30s, 10m30s]: 60..100 at 6m..10m (+40 over 240 s), and the
    # edges are 30 s away (< 1.1 x 60 s): extrapolated to 300 s, so +50.
    assert one(C, "increase(x[5m])", "10m30s") == 40.0 * (300 / 240)


def test_rate_with_two_samples_and_with_one() -> None:
    s = [('x{a="1"}', "1 _x3 3")]
    # samples 1 at 0s and 3 at 240s in [-60s, 240s]: to_start 60 s < 1.1 x 240 s, but the
    # counter would reach zero 120 s before the first sample (240 x 1/2), more than 60 s: keep
    # 60. Interval 240 + 60 + 0 = 300: factor 1.25.
    assert one(s, "increase(x[5m])", "4m") == 2.0 * (300 / 240)
    assert ev([('x{a="1"}', "_x9 5")], "rate(x[5m])", "10m") == {}


def test_rate_extrapolation_is_limited_by_the_zero_point_and_the_sample_interval() -> None:
    starts_at_zero = [('x{a="1"}', "_x3 0+10x10")]
    # samples 0, 10, 20 at 3m..5m in [0, 5m]: to_start 180 s but the counter was 0 at 3m:
    # durationToZero = 0 -> no extrapolation at the start. increase 20, rate 20/300.
    assert one(starts_at_zero, "increase(x[5m])", "5m") == 20.0
    starts_high = [('x{a="1"}', "_x3 100+10x10")]
    # first value 100: zero point 600 s back, so to_start stays 180 s, beyond 1.1 x 60 s:
    # extrapolate by half an interval (30 s) only: 20 x (120 + 30) / 120.
    assert one(starts_high, "increase(x[5m])", "5m") == 20.0 * 150 / 120
    ends_early = [('x{a="1"}', "0+10x5 _x10")]
    # [3m, 8m] holds 30, 40, 50 at 3m..5m; 180 s to the end > 66 s: +30 s only.
    assert one(ends_early, "increase(x[5m])", "8m") == 20.0 * 150 / 120


def test_counter_resets() -> None:
    s = [('c{a="1"}', "5 10 2 8 1 9 3")]
    # [1m, 6m]: 10 2 8 1 9 3 -> 3 - 10 + (10 + 8 + 9) = 20
    assert one(s, "increase(c[5m])", "6m") == 20.0
    assert one(s, "rate(c[5m])", "6m") == 20.0 / 300
    # 10 20 0 10: 10 - 10 + 20 = 20; the counter was zero 90 s before the first sample, still
    # more than 1.1 x 60 s, so extrapolate by 30 s: 20 x (180 + 30) / 180
    assert one([('c{a="1"}', "10 20 0 10")], "increase(c[5m])", "3m") == 20.0 * (210 / 180)
    # each drop counts the whole previous value: 7 - 10 + 10 + 9 + 8 = 24; zero point 75 s
    # before the first sample (> 66 s): extrapolate by 30 s
    assert one([('c{a="1"}', "10 9 8 7")], "increase(c[5m])", "3m") == 24.0 * (210 / 180)


def test_staleness_markers_are_not_samples_in_a_range() -> None:
    s = [('c{a="1"}', "0 10 stale 30 40")]
    # samples 0, 10, 30, 40 at 0, 1m, 3m, 4m in [-1m, 4m]; average 80 s, to_start 60 s:
    # zero point at the first sample (value 0) -> no start extrapolation.
    assert one(s, "increase(c[5m])", "4m") == 40.0
    assert one(s, "count_over_time(c[5m])", "4m") == 4.0


def test_irate() -> None:
    assert one(C, "irate(x[5m])", "10m") == 10.0 / 60
    s = [('c{a="1"}', "5 10 2 8")]
    assert one(s, "irate(c[5m])", "2m") == 2.0 / 60  # a drop: the new value is the increase
    assert one(s, "irate(c[5m])", "3m") == 6.0 / 60
    assert one([('c{a="1"}', "1 _ _ 4")], "irate(c[5m])", "3m") == 3.0 / 180
    assert ev([('c{a="1"}', "_x4 7")], "irate(c[5m])", "4m") == {}


# -- *_over_time -------------------------------------------------------------------------


def test_over_time_functions() -> None:
    s = [('g{a="1"}', "3 1 4 stale 5 _ 2 6")]
    # [2m, 7m]: 4, (stale), 5, (gap), 2, 6
    assert one(s, "count_over_time(g[5m])", "7m") == 4.0
    assert one(s, "sum_over_time(g[5m])", "7m") == 17.0
    assert one(s, "avg_over_time(g[5m])", "7m") == 4.25
    assert one(s, "min_over_time(g[5m])", "7m") == 2.0
    assert one(s, "max_over_time(g[5m])", "7m") == 6.0
    assert ev([('g{a="1"}', "1 2 _x10")], "count_over_time(g[5m])", "9m") == {}


def test_sum_over_time_is_kahan_compensated() -> None:
    s = [('g{a="1"}', "1e16 1 1 1 1")]
    assert one(s, "sum_over_time(g[10m])", "4m") == 1e16 + 4
    # Prometheus' compensated incremental mean (promtool agrees, see the integration suite);
    # the exact mean 2000000000000000.8 would round to ...0.75
    assert one(s, "avg_over_time(g[10m])", "4m") == 2000000000000000.5


def test_nan_and_inf_in_over_time() -> None:
    nan = [('g{a="1"}', "NaN 1 NaN 3 NaN")]
    assert one(nan, "max_over_time(g[10m])", "4m") == 3.0
    assert one(nan, "min_over_time(g[10m])", "4m") == 1.0
    assert math.isnan(one(nan, "sum_over_time(g[10m])", "4m"))
    assert one([('g{a="1"}', "1 Inf 3")], "avg_over_time(g[10m])", "2m") == math.inf
    assert math.isnan(one([('g{a="1"}', "Inf -Inf")], "avg_over_time(g[10m])", "1m"))
    assert one([('g{a="1"}', "Inf 2")], "sum_over_time(g[10m])", "1m") == math.inf


# -- operators ----------------------------------------------------------------------------

TWO = [('x{a="1",b="1"}', "1 2 3 4"), ('y{a="1",b="1"}', "0 1 5 4")]
AB = (("a", "1"), ("b", "1"))


def test_arithmetic_drops_the_name_and_follows_ieee() -> None:
    assert ev(TWO, "x + 1", "1m") == {AB: 3.0}
    assert ev(TWO, "10 - x", "1m") == {AB: 8.0}
    assert ev(TWO, "x * y", "2m") == {AB: 15.0}
    assert ev(TWO, "x / y", "0s") == {AB: math.inf}
    assert ev(TWO, "-x / y", "0s") == {AB: -math.inf}
    assert math.isnan(one(TWO, "(x - 1) / y", "0s"))
    assert ev([('x{a="1"}', "-7")], "x % 3", "0s") == {(("a", "1"),): -1.0}  # fmod
    assert ev([('x{a="1"}', "7.5")], "x % -2", "0s") == {(("a", "1"),): 1.5}
    assert ev([('x{a="1"}', "3")], "x ^ 2", "0s") == {(("a", "1"),): 9.0}
    assert ev(TWO, "-x", "1m") == {AB: -2.0}


def test_scalar_arithmetic() -> None:
    assert ev(TWO, "1 + 2 * 3", "0s") == {(): 7.0}
    assert ev(TWO, "2 ^ 3 ^ 2", "0s") == {(): 512.0}
    assert ev(TWO, "1 / 0", "0s") == {(): math.inf}
    assert ev(TWO, "-(1)", "0s") == {(): -1.0}
    assert ev(TWO, "2 > bool 1", "0s") == {(): 1.0}
    assert ev(TWO, "-7 % 3", "0s") == {(): -1.0}
    assert math.isnan(ev(TWO, "0 / 0", "0s")[()])


def test_comparisons_filter_and_keep_the_left_hand_side() -> None:
    xab = (("__name__", "x"), *AB)
    assert ev(TWO, "x > 1", "1m") == {xab: 2.0}
    assert ev(TWO, "x > 2", "1m") == {}
    assert ev(TWO, "1 < x", "1m") == {xab: 2.0}  # the vector's value, not the scalar
    assert ev(TWO, "x < y", "2m") == {xab: 3.0}  # the left value, the left labels
    assert ev(TWO, "x > y", "2m") == {}
    assert ev(TWO, "x > bool 1", "0s") == {AB: 0.0}
    assert ev(TWO, "x >= bool y", "3m") == {AB: 1.0}
    assert ev(TWO, "x > on(a) y", "1m") == {(("a", "1"),): 2.0}
    assert ev(TWO, "x > ignoring(b) y", "1m") == {(("__name__", "x"), ("a", "1")): 2.0}
    assert ev(TWO, "x > 1 < 3", "1m") == {xab: 2.0}


def test_nan_compares_false_except_not_equal() -> None:
    s = [('x{a="1"}', "NaN")]
    assert ev(s, "x > 0", "0s") == {}
    assert ev(s, "x == x", "0s") == {}
    assert ev(s, "x != bool x", "0s") == {(("a", "1"),): 1.0}
    assert ev(s, "x < bool Inf", "0s") == {(("a", "1"),): 0.0}


PAIRS = [
    ('x{a="1",b="p"}', "1"),
    ('x{a="2",b="q"}', "10"),
    ('y{a="1",c="r"}', "2"),
    ('y{a="2",c="s"}', "4"),
]


def test_one_to_one_matching() -> None:
    assert ev(PAIRS, "x * on(a) y", "0s") == {(("a", "1"),): 2.0, (("a", "2"),): 40.0}
    assert ev(PAIRS, "x - ignoring(b, c) y", "0s") == {(("a", "1"),): -1.0, (("a", "2"),): 6.0}
    assert ev(PAIRS, "x + y", "0s") == {}
    assert ev(PAIRS, 'x{a="1"} + on() y{a="2"}', "0s") == {(): 5.0}


def test_duplicate_series_on_the_right_is_an_error() -> None:
    s = [('x{a="1",b="1"}', "1"), ('y{a="1",b="1"}', "2"), ('y{a="1",b="2"}', "3")]
    with pytest.raises(EvaluationError) as info:
        ev(s, "x + on(a) y", "0s")
    assert str(info.value) == (
        'found duplicate series for the match group {a="1"} on the right hand-side of the '
        'operation: [{__name__="y", a="1", b="2"}, {__name__="y", a="1", b="1"}]'
        ";many-to-many matching not allowed: matching labels must be unique on one side"
    )
    assert ev([("z", "1")], "z + on(a) y", "0s") == {}  # no match at all: no error either


def test_many_to_one_without_group_left_is_an_error() -> None:
    s = [('x{a="1",b="1"}', "1"), ('x{a="1",b="2"}', "2"), ('y{a="1"}', "3")]
    with pytest.raises(EvaluationError, match="many-to-one matching must be explicit"):
        ev(s, "x - on(a) y", "0s")
    # filtered out by the comparison before it could collide: fine, as in Prometheus
    assert ev(s, "x > on(a) y", "0s") == {}


def test_same_label_set_after_dropping_the_name_is_an_error() -> None:
    s = [('x{a="1"}', "1 2"), ('y{a="1"}', "2 3")]
    for expr in ('{__name__=~"x|y"} * 2', 'rate({__name__=~"x|y"}[5m])', '-{__name__=~"x|y"}'):
        with pytest.raises(EvaluationError, match="same labelset"):
            ev(s, expr, "1m")
    assert len(ev(s, '{__name__=~"x|y"} > 0', "1m")) == 2  # a filter keeps the names


# -- aggregations --------------------------------------------------------------------------

M = [
    ('m{job="a",inst="1",cpu="0"}', "1 2 4 8"),
    ('m{job="a",inst="1",cpu="1"}', "3 3 3 3"),
    ('m{job="a",inst="2",cpu="0"}', "2 4 6 8"),
    ('m{job="b",inst="3",cpu="0"}', "5 _ 7 stale"),
]


def test_aggregations() -> None:
    assert ev(M, "sum(m)", "0s") == {(): 11.0}
    assert ev(M, "sum by (job) (m)", "1m") == {(("job", "a"),): 9.0, (("job", "b"),): 5.0}
    assert ev(M, "avg by (inst) (m)", "2m") == {
        (("inst", "1"),): 3.5,
        (("inst", "2"),): 6.0,
        (("inst", "3"),): 7.0,
    }
    assert ev(M, "max without (cpu) (m)", "2m") == {
        (("inst", "1"), ("job", "a")): 4.0,
        (("inst", "2"), ("job", "a")): 6.0,
        (("inst", "3"), ("job", "b")): 7.0,
    }
    assert ev(M, "min(m)", "3m") == {(): 3.0}  # the stale series is gone
    assert ev(M, "count(m)", "3m") == {(): 3.0}
    assert ev(M, "count by (nope) (m)", "0s") == {(): 4.0}
    assert ev(M, "sum by (__name__) (m)", "0s") == {(("__name__", "m"),): 11.0}


def test_aggregation_merges_series_that_collide_once_labels_are_dropped() -> None:
    assert ev(M, "sum without (cpu, inst) (m)", "0s") == {
        (("job", "a"),): 6.0,
        (("job", "b"),): 5.0,
    }


def test_aggregations_with_nan_and_inf() -> None:
    s = [('m{a="1"}', "NaN"), ('m{a="2"}', "5"), ('m{a="3"}', "Inf")]
    assert ev(s, "max(m)", "0s") == {(): math.inf}
    assert ev(s, 'min(m{a!="3"})', "0s") == {(): 5.0}
    assert math.isnan(ev(s, "sum(m)", "0s")[()])
    assert ev(s, 'avg(m{a!="1"})', "0s") == {(): math.inf}
    assert ev([('m{a="1"}', "NaN")], "max(m)", "0s")[()] != 0  # all NaN: NaN


def test_avg_is_prometheus_incremental_mean() -> None:
    s = [('m{a="1"}', "0.1"), ('m{a="2"}', "0.2"), ('m{a="3"}', "0.4")]
    mean = 0.1
    mean += 0.2 / 2 - mean / 2
    mean += 0.4 / 3 - mean / 3
    assert ev(s, "avg(m)", "0s") == {(): mean}


def test_avg_of_big_groups_is_sum_over_count() -> None:
    store = Store(retention_s=600, min_interval_s=15)
    keys = [f'm{{i="{i}"}}'.encode() for i in range(100)]
    vals = np.arange(100, dtype=np.float64)
    store.ingest("t", (), keys, vals, 1000.0)
    res = evaluate(compile_expr("avg(m)"), store, 1000.0)
    assert isinstance(res, Vector)
    assert res.values.tolist() == [49.5]


def test_rate_then_aggregate_like_a_cpu_kpi() -> None:
    s = [
        ('cpu{instance="h1",cpu="0",mode="idle"}', "0+30x10"),
        ('cpu{instance="h1",cpu="1",mode="idle"}', "0+60x10"),
        ('cpu{instance="h1",cpu="0",mode="user"}', "0+15x10"),
    ]
    expr = '100 * (1 - avg by (instance) (rate(cpu{mode="idle"}[5m])))'
    assert ev(s, expr, "10m") == {(("instance", "h1"),): 100 * (1 - 0.75)}


# -- result identity and caching -----------------------------------------------------------


def test_labels_object_is_reused_while_the_result_series_are_the_same() -> None:
    store = Store(retention_s=600, min_interval_s=15)
    e = compile_expr("x > 1")
    store.ingest("t", (), [b'x{a="1"}', b'x{a="2"}'], np.array([2.0, 3.0]), 1000.0)
    first = evaluate(e, store, 1000.0)
    store.ingest("t", (), [b'x{a="1"}', b'x{a="2"}'], np.array([4.0, 5.0]), 1015.0)
    second = evaluate(e, store, 1015.0)
    assert isinstance(first, Vector)
    assert isinstance(second, Vector)
    assert second.labels is first.labels
    assert second.values.tolist() == [4.0, 5.0]
    store.ingest("t", (), [b'x{a="1"}', b'x{a="2"}'], np.array([0.0, 5.0]), 1030.0)
    third = evaluate(e, store, 1030.0)
    assert isinstance(third, Vector)
    assert third.labels is not first.labels
    assert list(third.labels) == [(("__name__", "x"), ("a", "2"))]


def test_new_series_are_seen_after_the_selector_was_cached() -> None:
    store = Store(retention_s=600, min_interval_s=15)
    e = compile_expr("sum(x)")
    store.ingest("t", (), [b'x{a="1"}'], np.array([1.0]), 1000.0)
    assert evaluate(e, store, 1000.0).values.tolist() == [1.0]  # type: ignore[union-attr]
    store.ingest("t", (), [b'x{a="1"}', b'x{a="2"}'], np.array([1.0, 2.0]), 1015.0)
    assert evaluate(e, store, 1015.0).values.tolist() == [3.0]  # type: ignore[union-attr]
    other = Store(retention_s=600, min_interval_s=15)  # caches are per store
    other.ingest("u", (), [b'x{a="9"}'], np.array([9.0]), 1000.0)
    assert evaluate(e, other, 1000.0).values.tolist() == [9.0]  # type: ignore[union-attr]


def test_vector_results_are_snapshots() -> None:
    store = Store(retention_s=600, min_interval_s=15)
    store.ingest("t", (), [b"x"], np.array([1.0]), 1000.0)
    res = evaluate(compile_expr("x"), store, 1000.0)
    store.ingest("t", (), [b"x"], np.array([2.0]), 1015.0)
    assert isinstance(res, Vector)
    assert res.values.tolist() == [1.0]


def test_window_edges_in_a_target_whose_series_come_and_go() -> None:
    """Series of one target share rows; a row without a sample of a series is not a sample."""
    store = Store(retention_s=900, min_interval_s=15)
    for i in range(10):  # s="1" is missing from the scrape at 5m (a staleness marker there)
        keys = [b'x{s="0"}', b'x{s="1"}'] if i != 5 else [b'x{s="0"}']
        store.ingest("t", (), keys, np.array([i * 10.0, i * 20.0])[: len(keys)], 60.0 * i)
    count = evaluate(compile_expr("count_over_time(x[4m])"), store, 540.0)
    assert isinstance(count, Vector)
    assert count.values.tolist() == [5.0, 4.0]  # [5m, 9m]: s="1" has 6m..9m only
    low = evaluate(compile_expr("min_over_time(x[4m])"), store, 540.0)
    assert isinstance(low, Vector)
    assert low.values.tolist() == [50.0, 120.0]  # the row without a sample is not a NaN sample
    inc = evaluate(compile_expr("increase(x[4m])"), store, 540.0)
    assert isinstance(inc, Vector)
    # s="1": 120..180 at 6m..9m, 60 s to the start (< 66 s): 60 x 240 / 180
    assert inc.values.tolist() == [40.0, 60.0 * (240 / 180)]


def test_a_reset_on_the_window_start_is_not_inside_the_window() -> None:
    s = [('c{a="1"}', "50 60 5 15 25 35 45")]
    # [2m, 6m]: 5 .. 45, the drop 60 -> 5 happened at the first sample: no correction
    assert one(s, "increase(c[4m])", "6m") == 40.0
    # [1m, 6m]: 60 5 15 .. 45, the drop is inside: 45 - 60 + 60
    assert one(s, "increase(c[5m])", "6m") == 45.0
