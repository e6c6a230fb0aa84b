"""Operators, vector matching, ``@``/``offset`` and subqueries against hand-computed values.

Series are in promtool's notation, one sample per minute from t=0 (tests/helpers/promql.py).
Each expected value is worked out by hand from Prometheus 2.42's promql/engine.go; Go's
``math.Pow`` and ``math.Atan2`` values (which differ from the C library's) were confirmed with
promtool (tests/integration/test_promql_ops_promtool.py runs the same kind of cases).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kpimon.errors import EvaluationError, PromQLError
from kpimon.labels import Labels
from kpimon.promql import Scalar, compile_expr, evaluate, gomath, plan
from tests.helpers.promql import Case, load


def ev(
    series: list[tuple[str, str]], expr: str, at: str, *, interval_s: float = 60.0
) -> dict[Labels, float]:
    case = Case(series, expr, at)
    store = load(case)  # every sample: @ and negative offsets read after the eval time
    res = evaluate(compile_expr(expr), store, case.at_ms / 1000, interval_s=interval_s)
    if isinstance(res, Scalar):
        return {(): res.value}
    return dict(zip(res.labels, res.values.tolist(), strict=True))


def num(expr: str) -> float:
    (value,) = ev([], expr, "0s").values()
    return value


def lab(**kw: str) -> Labels:
    return tuple(sorted(kw.items()))


def name(metric: str, **kw: str) -> Labels:
    return tuple(sorted([("__name__", metric), *kw.items()]))


P = [
    ('x{a="1",b="p"}', "1 2 3 4 5 6 7 8"),
    ('x{a="2",b="q"}', "10 20 30 40 50 60 70 80"),
    ('y{a="1",c="r"}', "2 2 2 2 2 2 2 2"),
    ('y{a="2",c="s"}', "4 4 4 4 4 4 4 4"),
]
M = [
    ('m{a="1",i="1",t="old"}', "1"),
    ('m{a="1",i="2"}', "3"),
    ('m{a="2",i="3"}', "5"),
    ('o{a="1",t="x",u="1"}', "10"),
    ('o{a="2",t="y"}', "100"),
    ('n{a="1",i="1",t="old"}', "9"),
]


# -- scalars: IEEE and Go's math ------------------------------------------------------------


def test_division_and_modulo_follow_go() -> None:
    assert num("1 / 0") == math.inf
    assert num("-1 / 0") == -math.inf
    assert math.isnan(num("0 / 0"))
    assert num("-5 % 3") == -2.0  # sign of the dividend (fmod), not Python's %
    assert num("5 % -3") == 2.0
    assert num("5.5 % 2") == 1.5
    assert math.isnan(num("Inf % 2"))
    assert num("2 % Inf") == 2.0
    assert math.isnan(num("2 % 0"))


def test_power_is_gos_math_pow() -> None:
    assert num("1.1 ^ 10") == 2.593742460100002  # repeated squaring; C's pow: ...0023
    assert num("2 ^ -0.5") == 0.7071067811865475  # 1 / sqrt(2); C's pow: ...476
    assert num("2 ^ 0.5") == math.sqrt(2)
    assert num("0 ^ -1") == math.inf
    assert num("(-0) ^ -1") == -math.inf  # an odd negative power keeps the zero's sign
    assert num("(-0) ^ -2") == math.inf
    assert math.isnan(num("(-8) ^ (1/3)"))
    assert num("NaN ^ 0") == 1.0
    assert num("1 ^ NaN") == 1.0
    assert num("(-1) ^ Inf") == 1.0
    assert num("(-Inf) ^ 3") == -math.inf
    assert num("2 ^ -1080") == 0.0
    assert num("-2 ^ 2") == -4.0  # unary minus binds looser than ^
    assert num("2 ^ 3 ^ 2") == 512.0  # right-associative


def test_power_with_one_exponent_takes_a_fast_path_with_the_same_bits() -> None:
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-10, 10, 500), [0.0, -0.0, 1.0, -1.0, math.inf, math.nan]])
    for y in (2.0, 3.0, -1.0, -7.0, 10.0, 64.0, 1000.0, 1.5, 0.3, -2.5):
        fast = gomath.power(x, y)
        general = gomath.power(x, np.full(x.size, y))
        assert np.array_equal(fast, general, equal_nan=True), y


def test_atan2_is_gos_cephes_port() -> None:
    assert num("3 atan2 0.5") == 1.4056476493802696  # C's atan2: ...699
    assert num("5 atan2 1") == 1.3734007669450157
    assert num("0 atan2 -1") == math.pi
    assert num("1 atan2 0") == math.pi / 2
    assert num("-Inf atan2 -Inf") == -3 * math.pi / 4


def test_scalar_comparisons_need_bool_and_give_0_or_1() -> None:
    assert num("NaN == bool NaN") == 0.0
    assert num("NaN != bool NaN") == 1.0
    assert num("Inf > bool -Inf") == 1.0
    with pytest.raises(PromQLError):
        compile_expr("1 > 2")


# -- vector and scalar ----------------------------------------------------------------------


def test_names_are_dropped_by_arithmetic_and_bool_only() -> None:
    assert ev(P, "x + 1", "0s") == {lab(a="1", b="p"): 2.0, lab(a="2", b="q"): 11.0}
    assert ev(P, "x > 5", "0s") == {name("x", a="2", b="q"): 10.0}
    assert ev(P, "20 > x", "1m") == {name("x", a="1", b="p"): 2.0}  # the vector's value
    assert ev(P, "x > bool 5", "0s") == {lab(a="1", b="p"): 0.0, lab(a="2", b="q"): 1.0}
    assert ev(P, "x atan2 0", "0s") == {
        name("x", a="1", b="p"): math.pi / 2,  # atan2 keeps the name (not in Prometheus' list)
        name("x", a="2", b="q"): math.pi / 2,
    }
    assert ev(P, "-x", "0s") == {lab(a="1", b="p"): -1.0, lab(a="2", b="q"): -10.0}


def test_dropping_the_name_can_make_duplicates() -> None:
    for expr in ('{__name__=~"m|n"} * 2', '-{__name__=~"m|n"}', '{__name__=~"m|n"} > bool 0'):
        with pytest.raises(EvaluationError, match=r"^vector cannot contain metrics with the same"):
            ev(M, expr, "0s")
    assert len(ev(M, '{__name__=~"m|n"} > 0', "0s")) == 4  # filtering keeps the names


# -- vector matching ------------------------------------------------------------------------


def test_one_to_one_on_and_ignoring() -> None:
    assert ev(P, "x * on(a) y", "1m") == {lab(a="1"): 4.0, lab(a="2"): 80.0}
    assert ev(P, "x - ignoring(b, c) y", "1m") == {lab(a="1"): 0.0, lab(a="2"): 16.0}
    assert ev(P, "x > on(a) y", "2m") == {lab(a="1"): 3.0, lab(a="2"): 30.0}
    assert ev(P, "x + y", "0s") == {}  # b and c differ: nothing matches
    assert ev(P, "x + on(a) nothing", "0s") == {}


def test_group_left_copies_labels_from_the_one_side() -> None:
    got = ev(M, "m * on(a) group_left(t, u) o", "0s")
    assert got == {
        lab(a="1", i="1", t="x", u="1"): 10.0,  # t overwritten, u added
        lab(a="1", i="2", t="x", u="1"): 30.0,
        lab(a="2", i="3", t="y"): 500.0,  # o{a="2"} has no u: none set
    }
    assert ev(M, "m * on(a) group_left o", "0s") == {
        lab(a="1", i="1", t="old"): 10.0,
        lab(a="1", i="2"): 30.0,
        lab(a="2", i="3"): 500.0,
    }


def test_group_right_is_the_mirror_and_comparisons_keep_the_left_value() -> None:
    assert ev(M, "o - on(a) group_right(t) m", "0s") == {
        lab(a="1", i="1", t="x"): 9.0,
        lab(a="1", i="2", t="x"): 7.0,
        lab(a="2", i="3", t="y"): 95.0,
    }
    # Filtering: labels of the many side (name kept), value of the left-hand side.
    assert ev(M, "o > on(a) group_right m", "0s") == {
        name("m", a="1", i="1", t="old"): 10.0,
        name("m", a="1", i="2"): 10.0,
        name("m", a="2", i="3"): 100.0,
    }


def test_matching_errors_are_prometheus_messages() -> None:
    with pytest.raises(EvaluationError) as info:
        ev(M, "o * on(a) m", "0s")
    assert str(info.value) == (
        'found duplicate series for the match group {a="1"} on the right hand-side of the '
        'operation: [{__name__="m", a="1", i="2"}, {__name__="m", a="1", i="1", t="old"}]'
        ";many-to-many matching not allowed: matching labels must be unique on one side"
    )
    with pytest.raises(EvaluationError, match="on the left hand-side of the operation"):
        ev(M, "m * on(a) group_right o", "0s")
    with pytest.raises(EvaluationError) as info:
        ev(M, "m * on(a) o", "0s")
    assert str(info.value) == (
        "multiple matches for labels: many-to-one matching must be explicit "
        "(group_left/group_right)"
    )
    with pytest.raises(EvaluationError) as info:
        ev(M, '{__name__=~"m|n"} * on(a) group_left o', "0s")
    assert str(info.value) == (
        "multiple matches for labels: grouping labels must ensure unique matches"
    )


def test_missing_labels_match_as_empty() -> None:
    # on(c): every x has c="" and so does no y: no match, and x's duplicates do not matter.
    assert ev(P, "x + on(c) y", "0s") == {}
    # on(z): both y have z="" on the "one" side: an error even before looking at x.
    with pytest.raises(EvaluationError, match=r"match group \{\} on the right"):
        ev(P, "x + on(z) y", "0s")
    assert ev(P, "nothing + on(z) y", "0s") == {}  # an empty side short-circuits


# -- set operators --------------------------------------------------------------------------


def test_and_or_unless_keep_whole_series() -> None:
    assert ev(P, "x and on(a) y", "0s") == {
        name("x", a="1", b="p"): 1.0,
        name("x", a="2", b="q"): 10.0,
    }
    assert ev(P, "x and y", "0s") == {}
    assert ev(P, 'x unless on(a) y{a="1"}', "0s") == {name("x", a="2", b="q"): 10.0}
    assert ev(P, "x or on(a) y", "0s") == ev(P, "x", "0s")
    assert ev(P, 'x{a="1"} or on(a) y', "0s") == {
        name("x", a="1", b="p"): 1.0,
        name("y", a="2", c="s"): 4.0,
    }
    assert ev(P, "nothing or y", "0s") == ev(P, "y", "0s")
    assert ev(P, "x unless nothing", "0s") == ev(P, "x", "0s")


# -- @ and offset ---------------------------------------------------------------------------


def test_at_pins_the_time_and_offset_moves_from_it() -> None:
    assert ev(P, 'x{a="1"} @ 120', "7m") == {name("x", a="1", b="p"): 3.0}
    assert ev(P, 'x{a="1"} @ 120 offset 1m', "7m") == {name("x", a="1", b="p"): 2.0}
    assert ev(P, 'x{a="1"} offset -2m', "1m") == {name("x", a="1", b="p"): 4.0}
    assert ev(P, 'x{a="1"} @ start()', "3m") == {name("x", a="1", b="p"): 4.0}
    assert ev(P, 'x{a="1"} @ end() offset 1m', "3m") == {name("x", a="1", b="p"): 3.0}
    assert ev(P, 'x{a="1"} @ 90.5', "0s") == {name("x", a="1", b="p"): 2.0}
    assert ev(P, "x @ -60", "7m") == {}
    assert ev(P, 'sum_over_time(x{a="1"}[2m] @ 180)', "0s") == {lab(a="1", b="p"): 9.0}


def test_at_before_1970_and_out_of_range() -> None:
    sel = compile_expr("x @ -10.25").plan
    assert isinstance(sel, plan.Selector)
    assert sel.at == -10250
    with pytest.raises(PromQLError, match="timestamp out of bounds"):
        compile_expr("x @ 1e20")


# -- subqueries -----------------------------------------------------------------------------


def test_subquery_steps_are_aligned_to_multiples_of_the_step() -> None:
    s = [('x{a="1"}', "1 2 3 4 5 6 7 8 9 10")]
    # At 6m30s: steps at 2m..6m (1m30s rounded up to 2m); x is 3..7 there.
    assert ev(s, "sum_over_time(x[5m:1m])", "6m30s") == {lab(a="1"): 25.0}
    # [5m:2m] at 7m: steps 2m, 4m, 6m.
    assert ev(s, "sum_over_time(x[5m:2m])", "7m") == {lab(a="1"): 3.0 + 5.0 + 7.0}
    # Both ends included: at 7m, [4m:2m] has steps 4m and 6m... and 3m is not a multiple of 2m.
    assert ev(s, "count_over_time(x[4m:2m])", "7m") == {lab(a="1"): 2.0}
    assert ev(s, "count_over_time(x[4m:2m])", "8m") == {lab(a="1"): 3.0}


def test_subquery_default_step_is_the_evaluation_interval() -> None:
    s = [('x{a="1"}', "1 2 3 4 5 6 7 8 9 10")]
    assert ev(s, "count_over_time(x[4m:])", "8m") == {lab(a="1"): 5.0}
    assert ev(s, "count_over_time(x[4m:])", "8m", interval_s=120) == {lab(a="1"): 3.0}


def test_subquery_steps_use_the_lookback_and_offset_and_at() -> None:
    s = [('x{a="1"}', "1 _x8 10")]
    # Steps 0..6m: the sample at 0 is seen up to 5m, not at 6m.
    assert ev(s, "count_over_time(x[6m:1m])", "6m") == {lab(a="1"): 6.0}
    assert ev(s, "count_over_time(x[10m:1m])", "3m") == {lab(a="1"): 4.0}  # steps before 0
    assert ev(s, "count_over_time(x[2m:1m] offset 5m)", "9m") == {lab(a="1"): 3.0}  # 2m, 3m, 4m
    assert ev(s, "max_over_time(x[2m:1m] @ 540)", "0s") == {lab(a="1"): 10.0}


def test_nested_subqueries_and_functions_over_them() -> None:
    c = [('c{a="1"}', "0+6x20")]
    assert ev(c, "max_over_time(rate(c[2m])[5m:1m])", "10m") == {lab(a="1"): 0.1}
    s = [('x{a="1"}', "1 2 3 4 5 6 7 8 9 10")]
    # Outer steps: multiples of 2m in [4m, 9m], i.e. 4m, 6m, 8m (not 5m, 7m, 9m); the inner
    # max over [2m:1m] there is x at 4m, 6m, 8m: 5 + 7 + 9.
    assert ev(s, "sum_over_time(max_over_time(x[2m:1m])[5m:2m])", "9m") == {lab(a="1"): 21.0}
    assert ev(s, "last_over_time(x[3m:1m])", "4m") == {name("x", a="1"): 5.0}


def test_a_range_function_fails_on_duplicates_over_the_whole_subquery() -> None:
    pq = [('p{a="1"}', "1 2 3 stale"), ('q{a="1"}', "_ _ _ _ 1 2 3")]
    # p and q are never there at the same step, but both are in the range: Prometheus fails.
    with pytest.raises(EvaluationError, match="same labelset"):
        ev(pq, 'max_over_time(rate({__name__=~"p|q"}[1m])[6m:1m])', "6m")
    with pytest.raises(EvaluationError, match="same labelset"):
        ev(pq, 'max_over_time((-{__name__=~"p|q"})[6m:1m])', "6m")
    # An arithmetic operation checks each step only, and merges the steps by label set.
    assert ev(pq, 'max_over_time(({__name__=~"p|q"} * 1)[6m:1m])', "6m") == {lab(a="1"): 3.0}


def test_subquery_plans_and_history_needed() -> None:
    c = compile_expr("max_over_time(rate(x[5m])[30m:1m] offset 10m)")
    assert isinstance(c.plan, plan.SubqueryCall)
    assert c.plan.subquery.step_ms == 60_000
    assert c.max_range_s == (30 + 10 + 5) * 60
    assert compile_expr("max_over_time(x[30m:] @ 100)").max_range_s == 0.0
    with pytest.raises(PromQLError, match="range vector cannot be the result"):
        compile_expr("x[5m:1m]")


def test_matching_work_is_cached_across_ticks() -> None:
    """group_left, set operators and subqueries give the very same label objects every tick
    while the series do not change (what callers cache on; a new pair of series adds rows)."""
    case = Case(M, "m * on(a) group_left(t) o", "0s")
    store = load(case)
    for expr in ("m * on(a) group_left(t) o", "m or on(a) o", "max_over_time(m[2m:1m])"):
        compiled = compile_expr(expr)
        first = evaluate(compiled, store, 120.0)
        again = evaluate(compiled, store, 120.0)
        assert not isinstance(first, Scalar)
        assert not isinstance(again, Scalar)
        assert again.labels is first.labels, expr


@pytest.mark.parametrize("seed", range(6))
def test_subquery_of_a_selector_reads_all_steps_at_once_with_the_same_result(seed: int) -> None:
    """The one-read path for ``f(x[r:s])`` against the step-by-step one (``x or nothing``)."""
    rng = np.random.default_rng(seed)
    items = ["_", "stale", "NaN", "1", "2.5", "-3", "7", "Inf"]
    series = [
        (f'x{{a="{i}"}}', " ".join(rng.choice(items, size=40, p=[0.2, 0.1, 0.05] + [0.13] * 5)))
        for i in range(5)
    ]
    for expr in (
        "count_over_time(x[{r}:{s}]{o})",
        "last_over_time(x[{r}:{s}]{o})",
        "sum_over_time(x[{r}:{s}]{o}) >= -Inf",
    ):
        for r, s, o, at in (("10m", "1m", "", "20m"), ("7m", "45s", " offset 2m", "25m30s")):
            fast = expr.format(r=r, s=s, o=o)
            slow = fast.replace("x[", "(x or nothing)[")
            assert _bits(ev(series, fast, at)) == _bits(ev(series, slow, at)), fast


def _bits(result: dict[Labels, float]) -> dict[Labels, str]:
    return {k: "NaN" if math.isnan(v) else v.hex() for k, v in result.items()}
