"""Functions and aggregations of kpimon's PromQL, on hand-computed examples (no promtool here)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from kpimon.errors import EvaluationError, PromQLError
from kpimon.labels import Labels
from kpimon.promql import compile_expr, evaluate, plan
from kpimon.promql.aggregations import _go_v, format_go_f
from kpimon.promql.instant import (
    _date,
    bucket_quantile,
    civil_from_days,
    go_exp,
    go_expand,
    go_log,
    go_max,
    go_min,
    parse_go_float,
)
from tests.helpers.promql import Case, load, run_kpimon


def values(series: list[tuple[str, str]], expr: str, at: str = "0s") -> dict[Labels, float]:
    result = run_kpimon(Case(series, expr, at))
    assert result.error is None, result.error
    return dict(result.samples)


def one(series: list[tuple[str, str]], expr: str, at: str = "0s") -> float:
    (value,) = values(series, expr, at).values()
    return value


# -- compiling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "fragment", "offset"),
    [
        ("deg(x)", 'unsupported function "deg"', 0),
        ("1 + sin(x)", 'unsupported function "sin"', 4),
        ('count_values("1bad", x)', "invalid label name '1bad' in count_values", 12),
        ('label_replace(x, "1a", "", "b", "")', "invalid label name '1a' in label_replace", 0),
        ('label_replace(x, "a", "", "b", "(")', "invalid regular expression", 0),
        ('label_join(x, "a", ",", "b-c")', "invalid label name 'b-c' in label_join", 0),
    ],
)
def test_refusals_name_the_construct(expr: str, fragment: str, offset: int) -> None:
    with pytest.raises(PromQLError) as info:
        compile_expr(expr)
    assert fragment in info.value.message
    assert info.value.offset == offset


def test_scalar_functions_are_scalars() -> None:
    assert plan.is_scalar(compile_expr("time()").plan)
    assert plan.is_scalar(compile_expr("scalar(x) * 2").plan)
    assert not plan.is_scalar(compile_expr("vector(time())").plan)
    assert not plan.is_scalar(compile_expr("year()").plan)


def test_absent_labels_follow_prometheus() -> None:
    def labels(expr: str) -> Labels:
        node = compile_expr(expr).plan
        assert isinstance(node, plan.Call | plan.RangeCall)
        return node.absent

    assert labels('absent(x{job="a", env="p"})') == (("env", "p"), ("job", "a"))
    assert labels('absent(x{job="a", job="b"})') == ()
    assert labels('absent(x{job!="a", job="b"})') == (("job", "b"),)
    assert labels('absent(x{job="", b=~"c"})') == ()
    assert labels('absent_over_time(x{a="1"}[5m])') == (("a", "1"),)
    assert labels("absent(sum(x))") == ()


def test_metric_names_of_function_arguments_are_collected() -> None:
    expr = compile_expr("histogram_quantile(0.9, rate(h_bucket[5m])) + scalar(up) + topk(1, y)")
    assert expr.metric_names == frozenset({"h_bucket", "up", "y"})


# -- Go's formatting and parsing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5.0, "5"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (1e21, "1000000000000000000000"),
        (1e-7, "0.0000001"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (0.30000000000000004, "0.30000000000000004"),
    ],
)
def test_format_float_f(value: float, text: str) -> None:
    assert format_go_f(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e19, "1e+19"), (1.5, "1.5"), (123456.0, "123456"), (1234567.0, "1.234567e+06")],
)
def test_go_v(value: float, text: str) -> None:
    assert _go_v(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0),
        ("+Inf", math.inf),
        ("inf", math.inf),
        ("-Infinity", -math.inf),
        ("2.5e-1", 0.25),
        (".5", 0.5),
        ("0x1p-2", 0.25),
        ("1e400", None),
        ("1_0", None),
        (" 1", None),
        ("", None),
        ("abc", None),
    ],
)
def test_parse_go_float(text: str, value: float | None) -> None:
    assert parse_go_float(text) == value


def test_go_expand() -> None:
    m = re.fullmatch(r"(?P<host>[a-z]+)-(\d+)", "web-12")
    assert m is not None
    assert go_expand("$1:$2", m) == "web:12"
    assert go_expand("${1}x$1x", m) == "webx"  # $1x names group "1x": empty
    assert go_expand("$host/${2}", m) == "web/12"
    assert go_expand("$$1 $ ${", m) == "$1 $ ${"
    assert go_expand("$9$01", m) == ""


def test_go_min_max_infinities_win_over_nan() -> None:
    x = np.array([1.0, math.nan, -0.0, 0.0])
    assert list(go_max(np.float64(math.inf), x)) == [math.inf] * 4
    assert list(go_min(np.float64(-math.inf), x)) == [-math.inf] * 4
    assert math.isnan(go_max(np.float64(math.nan), np.array([1.0]))[0])
    assert math.copysign(1, go_min(np.float64(0.0), np.array([-0.0]))[0]) == -1
    assert math.copysign(1, go_max(np.float64(-0.0), np.array([0.0]))[0]) == 1


def test_go_exp_special_values() -> None:
    x = np.array([0.0, 1.0, -math.inf, math.inf, math.nan, 710.0, -746.0, -745.1])
    out = go_exp(x)
    assert out[0] == 1.0
    assert out[1] == math.e
    assert out[2] == 0.0
    assert out[3] == math.inf
    assert math.isnan(out[4])
    assert out[5] == math.inf
    assert out[6] == 0.0
    assert out[7] == 5e-324  # subnormal results are kept


def test_go_log_special_values_and_powers_of_two() -> None:
    x = np.array([1.0, 2.0, 0.0, -0.0, -1.0, math.inf, math.nan, 1024.0])
    out = go_log(x)
    assert out[0] == 0.0
    assert out[1] == math.log(2)
    assert out[2] == out[3] == -math.inf
    assert math.isnan(out[4])
    assert math.isnan(out[6])
    assert out[5] == math.inf
    assert out[7] == 10 * math.log(2)


# -- dates ----------------------------------------------------------------------------------------


def test_civil_from_days() -> None:
    days = np.array([0, -1, 11016, 19675, -719162], dtype=np.int64)
    year, month, day = civil_from_days(days)
    assert list(zip(year, month, day, strict=True)) == [
        (1970, 1, 1),
        (1969, 12, 31),
        (2000, 2, 29),
        (2023, 11, 14),
        (1, 1, 1),
    ]


def test_date_functions() -> None:
    secs = np.array([951782400, 1700000000, -1], dtype=np.int64)  # 2000-02-29, 2023-11-14 22:13:20
    assert list(_date("year", secs)) == [2000, 2023, 1969]
    assert list(_date("month", secs)) == [2, 11, 12]
    assert list(_date("day_of_month", secs)) == [29, 14, 31]
    assert list(_date("day_of_week", secs)) == [2, 2, 3]
    assert list(_date("day_of_year", secs)) == [60, 318, 365]
    assert list(_date("days_in_month", secs)) == [29, 30, 31]
    assert list(_date("hour", secs)) == [0, 22, 23]
    assert list(_date("minute", secs)) == [0, 13, 59]


def test_dates_with_and_without_argument() -> None:
    d = [('d{i="1"}', "86400")]
    assert values(d, "day_of_month(d)") == {(("i", "1"),): 2.0}
    assert one(d, "day_of_week()", "3d") == 0.0  # 1970-01-04 was a Sunday


# -- histogram_quantile ---------------------------------------------------------------------------


def test_bucket_quantile_interpolates() -> None:
    upper = [0.1, 0.5, 1.0, math.inf]
    counts = [10.0, 30.0, 40.0, 50.0]
    assert bucket_quantile(0.5, upper, counts) == 0.1 + 0.4 * (15 / 20)
    assert bucket_quantile(0.1, upper, counts) == 0.1 * (5 / 10)
    assert bucket_quantile(0.9, upper, counts) == 1.0  # in the +Inf bucket
    assert bucket_quantile(-1, upper, counts) == -math.inf
    assert bucket_quantile(2, upper, counts) == math.inf
    assert math.isnan(bucket_quantile(math.nan, upper, counts))
    assert math.isnan(bucket_quantile(0.5, [math.inf], [5.0]))  # +Inf bucket only
    assert math.isnan(bucket_quantile(0.5, [1.0, 2.0], [1.0, 2.0]))  # no +Inf bucket
    assert math.isnan(bucket_quantile(0.5, [1.0, math.inf], [0.0, 0.0]))  # no observations
    # Sorted by bound, then made monotonic: (1, 3), (2, 3), (+Inf, 4); rank 2 in the first.
    assert bucket_quantile(0.5, [2.0, 1.0, math.inf], [1.0, 3.0, 4.0]) == 2 / 3


def test_histogram_quantile_groups_by_labels_without_le() -> None:
    series = [
        ('h_bucket{job="a",le="1"}', "2"),
        ('h_bucket{job="a",le="+Inf"}', "4"),
        ('h_bucket{job="b",le="2"}', "1"),
        ('h_bucket{job="b",le="+Inf"}', "1"),
    ]
    assert values(series, "histogram_quantile(0.5, h_bucket)") == {
        (("job", "a"),): 1.0,
        (("job", "b"),): 1.0,  # rank 0.5 of 1 in the bucket [0, 2]
    }


# -- aggregations ---------------------------------------------------------------------------------

EIGHT = [(f'x{{i="{i}",g="{i % 2}"}}', str(v)) for i, v in enumerate([2, 4, 4, 4, 5, 5, 7, 9])]


def test_stddev_stdvar() -> None:
    # Welford in label order (g="0" first), as Prometheus: exact up to the last bits.
    assert one(EIGHT, "stddev(x)") == pytest.approx(2.0, rel=1e-15)
    assert one(EIGHT, "stdvar(x)") == pytest.approx(4.0, rel=1e-15)
    by_g = values(EIGHT, "stdvar by (g) (x)")  # (2, 4, 5, 7) and (4, 4, 5, 9)
    assert by_g == {(("g", "0"),): 3.25, (("g", "1"),): pytest.approx(4.25, rel=1e-15)}


def test_topk_bottomk_keep_labels() -> None:
    top = values(EIGHT, "topk(2, x)")
    assert top == {
        (("__name__", "x"), ("g", "1"), ("i", "7")): 9.0,
        (("__name__", "x"), ("g", "0"), ("i", "6")): 7.0,
    }
    assert set(values(EIGHT, "bottomk by (g) (1, x)").values()) == {2.0, 4.0}
    assert values(EIGHT, "topk(0, x)") == {}


def test_topk_rejects_k_beyond_int64() -> None:
    case = Case(EIGHT, "topk(NaN, x)", "0s")
    store, expr = load(case), compile_expr(case.expr)
    with pytest.raises(EvaluationError, match="Scalar value NaN overflows int64"):
        evaluate(expr, store, 0.0)


def test_quantile_and_group_and_count_values() -> None:
    assert one(EIGHT, "quantile(0.5, x)") == 4.5
    assert one(EIGHT, "quantile(0.25, x)") == 4.0
    assert one(EIGHT, "group(x)") == 1.0
    assert values(EIGHT, 'count_values("v", x)') == {
        (("v", "2"),): 1.0,
        (("v", "4"),): 3.0,
        (("v", "5"),): 2.0,
        (("v", "7"),): 1.0,
        (("v", "9"),): 1.0,
    }
    assert values(EIGHT, 'count_values by (g) ("g", x)')[(("g", "4"),)] == 3.0


# -- instant functions ----------------------------------------------------------------------------


def test_math_drops_the_name_and_keeps_values_exact() -> None:
    x = [('x{a="1"}', "-2.5")]
    assert values(x, "abs(x)") == {(("a", "1"),): 2.5}
    assert one(x, "round(x)") == -2.0  # ties round up
    assert one(x, "round(x, 2)") == -2.0
    assert one(x, "clamp(x, -1, 1)") == -1.0
    assert values(x, "clamp(x, 1, -1)") == {}
    assert one(x, "sgn(x)") == -1.0
    assert one([('x{a="1"}', "1000")], "log10(x)") == 3.0
    assert one([('x{a="1"}', "3")], "ln(x)") == 1.0986122886681096  # Go's; the C library: ...98


def test_label_replace_and_join() -> None:
    x = [('x{a="web-1",b="z"}', "1")]
    assert values(x, 'label_replace(x, "n", "$2", "a", "(.*)-(.*)")') == {
        (("__name__", "x"), ("a", "web-1"), ("b", "z"), ("n", "1")): 1.0
    }
    assert values(x, 'label_join(x, "j", "/", "b", "a", "none")') == {
        (("__name__", "x"), ("a", "web-1"), ("b", "z"), ("j", "z/web-1/")): 1.0
    }


def test_vector_scalar_time_absent() -> None:
    x = [('x{a="1"}', "3"), ('x{a="2"}', "4")]
    assert one(x, "time()", "2m") == 120.0
    assert values(x, "vector(2)") == {(): 2.0}
    assert math.isnan(one(x, "scalar(x)"))
    assert one(x, 'scalar(x{a="2"})') == 4.0
    assert values(x, 'absent(y{a="1"})') == {(("a", "1"),): 1.0}
    assert values(x, "absent(x)") == {}


def test_timestamp_is_the_sample_time() -> None:
    x = [('x{a="1"}', "1 2 _ _")]
    assert one(x, "timestamp(x)", "3m") == 60.0
    assert one(x, "timestamp(-x)", "3m") == 180.0


# -- range functions ------------------------------------------------------------------------------


def test_changes_resets_delta_idelta() -> None:
    c = [('c{a="1"}', "5 10 2 8 8 1")]
    assert one(c, "changes(c[10m])", "5m") == 4.0
    assert one(c, "resets(c[10m])", "5m") == 2.0
    assert one(c, "idelta(c[10m])", "5m") == -7.0
    # delta over [0, 5m] with samples at both edges: last - first, no extrapolation.
    assert one(c, "delta(c[5m])", "5m") == -4.0


def test_deriv_and_predict_linear() -> None:
    line = [('l{a="1"}', "0+6x10")]
    assert one(line, "deriv(l[5m])", "10m") == 0.1
    assert one(line, "predict_linear(l[5m], 60)", "10m") == 60.0 + 6.0
    assert one([('l{a="1"}', "3x10")], "deriv(l[5m])", "10m") == 0.0


def test_over_time_functions() -> None:
    w = [('w{a="1"}', "1 2 3 4")]
    assert one(w, "quantile_over_time(0.5, w[5m])", "3m") == 2.5
    assert one(w, "stdvar_over_time(w[5m])", "3m") == 1.25
    assert values(w, "last_over_time(w[5m])", "3m") == {(("__name__", "w"), ("a", "1")): 4.0}
    assert one(w, "present_over_time(w[5m])", "3m") == 1.0
    assert values(w, "absent_over_time(w[5m])", "3m") == {}
    assert values(w, 'absent_over_time(w{a="1"}[1m])', "10m") == {(("a", "1"),): 1.0}
