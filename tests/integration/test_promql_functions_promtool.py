"""kpimon's PromQL functions and aggregations checked against Debian's promtool (Prometheus 2.42).

The same method as ``test_promql_promtool.py``: kpimon answers every case, its answers become
the ``exp_samples`` of ``promql_expr_test`` entries, and one ``promtool test rules`` run checks
them all with Prometheus' own engine on the same input series. promtool compares values with
``==``, so a result holding NaN is checked twice: ``(E) >= -Inf`` (every other sample, exact)
and ``(E) != bool (E)`` (1 exactly where kpimon has NaN). Error cases expect an error from
promtool too.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import pytest

from kpimon.labels import Labels
from kpimon.promql import compile_expr, plan
from tests.helpers.promql import (
    Case,
    Result,
    bits,
    expectation,
    go_duration,
    group_for,
    run_kpimon,
    run_promtool,
    write_tests,
)

pytestmark = pytest.mark.debian

V = [
    ('v{i="a"}', "-2.5"),
    ('v{i="b"}', "0"),
    ('v{i="c"}', "2.5"),
    ('v{i="d"}', "7.49"),
    ('v{i="e"}', "NaN"),
    ('v{i="f"}', "Inf"),
    ('v{i="g"}', "-Inf"),
    ('v{i="h"}', "0.1"),
    ('v{i="k"}', "-0.5"),
    ('v{i="l"}', "1e300"),
    ('v{i="m"}', "1.5"),
]
POS = [
    ('p{i="a"}', "1"),
    ('p{i="b"}', "8"),
    ('p{i="c"}', "1000"),
    ('p{i="d"}', "0.5"),
    ('p{i="e"}', "100"),
    ('p{i="f"}', "0"),
    ('p{i="g"}', "1024"),
]
DATES = [
    ('d{i="a"}', "0"),
    ('d{i="b"}', "951782400"),  # 2000-02-29
    ('d{i="c"}', "1700000000"),
    ('d{i="d"}', "-1"),
    ('d{i="e"}', "-86401"),
    ('d{i="f"}', "4102444799"),  # 2099-12-31 23:59:59
    ('d{i="g"}', "1e12"),
    ('d{i="h"}', "59.9"),
    ('d{i="k"}', "-0.5"),
    ('d{i="l"}', "1e17"),
    ('d{i="m"}', "-62135596801"),  # before year 1
    ('d{i="n"}', "1e19"),
    ('d{i="o"}', "NaN"),
    ('d{i="p"}', "-Inf"),
    ('d{i="q"}', "1330473600"),  # 2012-02-29
]
HIST = [
    ('req_bucket{job="a",le="0.1"}', "0+1x10"),
    ('req_bucket{job="a",le="0.5"}', "0+3x10"),
    ('req_bucket{job="a",le="1"}', "0+4x10"),
    ('req_bucket{job="a",le="+Inf"}', "0+5x10"),
    ('req_bucket{job="b",le="1"}', "0+2x10"),
    ('req_bucket{job="b",le="2.5"}', "0+2x10"),
    ('req_bucket{job="b",le="+Inf"}', "0+4x10"),
]
GROUPS = [
    ('m{job="a",inst="1",cpu="0"}', "1 2 4 8"),
    ('m{job="a",inst="1",cpu="1"}', "3 3 3 3"),
    ('m{job="a",inst="2",cpu="0"}', "2 4 6 8"),
    ('m{job="b",inst="3",cpu="0"}', "5 _ 7 stale"),
    ('m{job="b",inst="4",cpu="0"}', "9 -1 0.5 2"),
]
SPECIAL = [
    ('s{job="a",i="1"}', "NaN 1 Inf"),
    ('s{job="a",i="2"}', "4 NaN -Inf"),
    ('s{job="a",i="3"}', "2 3 Inf"),
    ('s{job="b",i="4"}', "NaN NaN 1"),
]
LEVELS = [('g{a="1"}', "1 1 2 2 NaN NaN 3 stale 3 1 Inf Inf -Inf 5")]
RESETS = [('c{a="1"}', "5 10 2 8 1 9 3 4 0 6")]
LINE = [('l{a="1"}', "0+10x20"), ('l{a="2"}', "100-3x20"), ('l{a="3"}', "7x20")]
WOBBLE = [('w{a="1"}', "3 1 4 1 5 9 2 6 5 3 5 8 9 7 9")]
COUNTERS = [
    ('node_cpu_seconds_total{instance="h1",cpu="0",mode="idle"}', "0+15x40"),
    ('node_cpu_seconds_total{instance="h1",cpu="1",mode="idle"}', "0+30x40"),
    ('node_cpu_seconds_total{instance="h1",cpu="0",mode="user"}', "0+45x40"),
    ('node_cpu_seconds_total{instance="h2",cpu="0",mode="idle"}', "100+60x40"),
]


def _each(series: list[tuple[str, str]], exprs: list[str], at: str = "0s") -> list[Case]:
    return [Case(series, e, at) for e in exprs]


CASES: list[Case] = [
    # -- simple math: drops __name__, NaN and infinities propagate as in Go
    *_each(V, ["abs(v)", "ceil(v)", "floor(v)", "sgn(v)", "sqrt(v)", "-abs(v)"]),
    *_each(V, ["round(v)", "round(v, 0.5)", "round(v, 2)", "round(v, 0)", "round(v, -1)"]),
    *_each(V, ["clamp(v, -1, 1)", "clamp_min(v, 0)", "clamp_max(v, 0)", "clamp(v, 2, 1)"]),
    *_each(V, ["clamp(v, 0, 0)", "clamp_min(v, NaN)", "clamp(v, -Inf, Inf)"]),
    *_each(POS, ["ln(p)", "log2(p)", "log10(p)", "exp(p - p)", "sqrt(p)", "exp(ln(p) * 0)"]),
    Case(V, "exp(v > 100)", "0s", note="exp overflows to +Inf"),
    *_each(V, ["exp(v)", "exp(v / 3)", "exp(-v * 7.3)", "exp(v - 710)"]),
    *_each(POS, ["exp(p / 7)", "exp(-p / 1.37)", "ln(p / 3)", "log2(p * 3)", "log10(p / 7)"]),
    *_each(POS, ["exp(-p - 700)", "ln(p * 1e-310)", "exp(ln(p / 9))"]),
    Case(V, "ln(v < 0)", "0s", note="negative: NaN"),
    Case(V, "log2(v == 0)", "0s"),
    Case(V, "round(v * 10) / 10", "0s"),
    Case([('x{a="1"}', "2.5 -2.5 0.5 -0.5 1.45")], "round(x)", "4m", note="ties round up"),
    Case([('x{a="1"}', "2.5 -2.5 0.5 -0.5 1.45")], "round(x)", "1m"),
    Case([('x{a="1"}', "2.5 -2.5 0.5 -0.5 1.45")], "round(x, 0.1)", "4m"),
    # -- time, timestamp, vector, scalar
    Case(V, "time()", "0s"),
    Case(V, "time()", "1h2m3s"),
    Case(V, "time() - 60", "7m30s"),
    Case(V, "vector(1)", "0s"),
    Case(V, "vector(time())", "90s"),
    Case(V, "vector(scalar(v{i='c'}))", "0s"),
    Case(V, "scalar(v{i='c'}) * 2", "0s"),
    Case(V, "scalar(v)", "0s", note="more than one series: NaN"),
    Case(V, "scalar(v{i='zz'})", "0s", note="no series: NaN"),
    Case(V, "v * scalar(v{i='m'})", "0s"),
    Case([('x{a="1"}', "1 2 _ _ 5")], "timestamp(x)", "3m", note="the sample's time"),
    Case([('x{a="1"}', "1 2 _ _ 5")], "timestamp(x)", "4m10s"),
    Case([('x{a="1"}', "1 2 _ _ 5")], "timestamp(x offset 2m)", "4m"),
    Case([('x{a="1"}', "1 2 _ _ 5")], "timestamp(x + 1)", "3m", note="not a selector: now"),
    Case([('x{a="1"}', "1 stale")], "timestamp(x)", "1m30s"),
    # -- absent
    Case(V, 'absent(nothing{job="a", env="p"})', "0s"),
    Case(V, 'absent(nothing{job="a", job="b", env="p"})', "0s", note="job twice: dropped"),
    Case(V, 'absent(nothing{job=~"a.*", env!="p", x=""})', "0s"),
    Case(V, 'absent(nothing{env!="p", env="q"})', "0s"),
    Case(V, 'absent({__name__="nothing", job="a"})', "0s"),
    Case(V, "absent(v)", "0s"),
    Case(V, 'absent(v{i="zz"})', "0s"),
    Case(V, "absent(sum(nothing))", "0s"),
    Case(V, 'absent(abs(nothing{a="b"}))', "0s", note="not a selector: no labels"),
    # -- label_replace, label_join (keep the name; may rename the metric)
    Case(GROUPS, 'label_replace(m, "host", "h-$1", "inst", "(.*)")', "0s"),
    Case(GROUPS, 'label_replace(m, "host", "$1$2", "inst", "([0-9])")', "0s"),
    Case(GROUPS, 'label_replace(m, "cpu", "", "inst", "2")', "0s", note="empty: removed"),
    Case(GROUPS, 'label_replace(m, "job", "$1", "nothing", "(.*)")', "0s", note="job removed"),
    Case(GROUPS, 'label_replace(m, "x", "${1}y$1y", "inst", "(.)")', "0s", note="$1y is empty"),
    Case(GROUPS, 'label_replace(m, "x", "$$-$name-$", "inst", "(?P<name>.)")', "0s"),
    Case(GROUPS, 'label_replace(m, "x", "a", "inst", "2|3")', "0s", note="anchored"),
    Case(GROUPS, 'label_replace(m, "__name__", "n_$1", "job", "(.*)")', "0s"),
    Case(GROUPS, 'label_join(m, "all", "-", "job", "inst", "cpu")', "0s"),
    Case(GROUPS, 'label_join(m, "job", ",", "nothing")', "0s", note="empty join: removed"),
    Case(GROUPS, 'label_join(m, "x", "", "cpu", "cpu")', "0s"),
    Case(GROUPS, 'sum by (host) (label_replace(m, "host", "$1", "inst", "(.*)"))', "1m"),
    # -- sort (order is not checked by promtool; values and labels are)
    Case(V, "sort(v)", "0s"),
    Case(V, "sort_desc(v)", "0s"),
    # -- date functions, with and without argument
    *_each(
        DATES,
        [
            "year(d)",
            "month(d)",
            "day_of_month(d)",
            "day_of_week(d)",
            "day_of_year(d)",
            "days_in_month(d)",
            "hour(d)",
            "minute(d)",
        ],
    ),
    Case(V, "year()", "0s"),
    Case(V, "month()", "40d"),
    Case(V, "day_of_week()", "3d"),
    Case(V, "hour()", "1d5h30m"),
    Case(V, "minute()", "1d5h31m59s"),
    Case(V, "days_in_month()", "59d"),
    Case(V, "day_of_month()", "59d"),
    Case(V, "day_of_year()", "400d"),
    # -- histogram_quantile
    *_each(
        HIST,
        [f"histogram_quantile({q}, req_bucket)" for q in ("0.5", "0.9", "0.99", "0", "1")],
        "5m",
    ),
    *_each(HIST, [f"histogram_quantile({q}, req_bucket)" for q in ("-0.5", "1.5", "NaN")], "5m"),
    Case(HIST, "histogram_quantile(0.5, req_bucket)", "0s", note="no observations: NaN"),
    Case(HIST, "histogram_quantile(0.9, rate(req_bucket[5m]))", "10m"),
    Case(HIST, "histogram_quantile(0.75, sum by (le) (rate(req_bucket[5m])))", "10m"),
    Case(HIST, "histogram_quantile(0.8, sum without (job) (req_bucket))", "3m"),
    Case(HIST, "histogram_quantile(scalar(vector(0.3)), req_bucket)", "4m"),
    Case([('h_bucket{le="+Inf"}', "5")], "histogram_quantile(0.5, h_bucket)", "0s"),
    Case(
        [('h_bucket{le="1"}', "5"), ('h_bucket{le="2"}', "6")],
        "histogram_quantile(0.5, h_bucket)",
        "0s",
        note="no +Inf bucket: NaN",
    ),
    Case(
        [('h_bucket{le="1"}', "5"), ('h_bucket{le="2"}', "3"), ('h_bucket{le="+Inf"}', "6")],
        "histogram_quantile(0.6, h_bucket)",
        "0s",
        note="not monotonic: fixed",
    ),
    Case(
        [('h_bucket{le="-1"}', "2"), ('h_bucket{le="0"}', "4"), ('h_bucket{le="+Inf"}', "8")],
        "histogram_quantile(0.1, h_bucket)",
        "0s",
        note="first bucket with a bound <= 0",
    ),
    Case(
        [('h_bucket{le="-1"}', "2"), ('h_bucket{le="0"}', "4"), ('h_bucket{le="+Inf"}', "8")],
        "histogram_quantile(0.4, h_bucket)",
        "0s",
    ),
    Case(
        [('h_bucket{le="1"}', "2"), ('h_bucket{le="2"}', "4"), ('h_bucket{le="+Inf"}', "8")],
        "histogram_quantile(0.9, h_bucket)",
        "0s",
        note="rank in the +Inf bucket: the highest finite bound",
    ),
    Case(
        [
            ('h_bucket{le="1"}', "2"),
            ('h_bucket{le="1.0"}', "1"),
            ('h_bucket{le="2"}', "4"),
            ('h_bucket{le="+Inf"}', "8"),
        ],
        "histogram_quantile(0.3, h_bucket)",
        "0s",
        note="equal bounds written differently are merged",
    ),
    Case(
        [
            ('h_bucket{le="1"}', "2"),
            ('h_bucket{le="abc"}', "100"),
            ('h_bucket{x="1"}', "100"),
            ('h_bucket{le="2e0"}', "4"),
            ('h_bucket{le="Inf"}', "8"),
        ],
        "histogram_quantile(0.5, h_bucket)",
        "0s",
        note="bad or missing le: ignored",
    ),
    Case(
        [('h_bucket{le="1"}', "NaN"), ('h_bucket{le="2"}', "4"), ('h_bucket{le="+Inf"}', "8")],
        "histogram_quantile(0.5, h_bucket)",
        "0s",
    ),
    Case(
        [('h_bucket{le="1"}', "0"), ('h_bucket{le="2"}', "0"), ('h_bucket{le="+Inf"}', "8")],
        "histogram_quantile(0.5, h_bucket)",
        "0s",
    ),
    # -- aggregations: group, stddev, stdvar, topk, bottomk, quantile, count_values
    Case(GROUPS, "group(m)", "0s"),
    Case(GROUPS, "group by (job) (m)", "2m"),
    Case(GROUPS, "group without (cpu) (m)", "1m"),
    Case(GROUPS, "stddev(m)", "0s"),
    Case(GROUPS, "stdvar(m)", "0s"),
    Case(GROUPS, "stddev by (job) (m)", "1m"),
    Case(GROUPS, "stdvar without (cpu, inst) (m)", "1m"),
    Case(GROUPS, "stdvar by (inst) (m)", "2m", note="one series per group: 0"),
    Case(SPECIAL, "stddev by (job) (s)", "0s"),
    Case(SPECIAL, "stdvar by (job) (s)", "1m"),
    Case(SPECIAL, "stdvar(s)", "2m"),
    Case(GROUPS, "topk(1, m)", "0s", note="keeps the labels, name included"),
    Case(GROUPS, "topk(2, m)", "2m"),
    Case(GROUPS, "topk(10, m)", "2m", note="k beyond the group"),
    Case(GROUPS, "topk(0, m)", "2m"),
    Case(GROUPS, "topk(-3, m)", "2m"),
    Case(GROUPS, "topk(1.9, m)", "0s", note="k truncated"),
    Case(GROUPS, "topk by (job) (1, m)", "0s"),
    Case(GROUPS, "topk without (cpu) (1, m)", "3m"),
    Case(GROUPS, "bottomk(1, m)", "0s"),
    Case(GROUPS, "bottomk(2, m)", "3m"),
    Case(GROUPS, "bottomk by (job) (2, m)", "1m"),
    Case(GROUPS, "bottomk(scalar(m{inst='3'}), m)", "0s"),
    Case(SPECIAL, "topk(2, s)", "0s", note="NaN ranks last"),
    Case(SPECIAL, "bottomk(2, s)", "0s"),
    Case(SPECIAL, "topk by (job) (1, s)", "1m"),
    Case(SPECIAL, "bottomk by (job) (1, s)", "1m"),
    Case(SPECIAL, "topk(3, s{job='a'})", "0s", note="NaN fills up to k"),
    Case(V, "clamp_max(v, NaN)", "0s"),
    Case(V, "clamp(v, NaN, 0)", "0s"),
    Case(SPECIAL, "topk(1, s{job='b'})", "0s", note="only NaN"),
    Case(GROUPS, "topk(1, m) + 0", "0s"),
    Case(GROUPS, "quantile(0.5, m)", "0s"),
    Case(GROUPS, "quantile(0.25, m)", "1m"),
    Case(GROUPS, "quantile by (job) (0.9, m)", "2m"),
    Case(GROUPS, "quantile(0, m)", "3m"),
    Case(GROUPS, "quantile(1, m)", "3m"),
    Case(GROUPS, "quantile(-1, m)", "0s"),
    Case(GROUPS, "quantile(1.01, m)", "0s"),
    Case(GROUPS, "quantile(NaN, m)", "0s"),
    Case(SPECIAL, "quantile(0.5, s)", "0s", note="NaN sorts first"),
    Case(SPECIAL, "quantile by (job) (0.75, s)", "1m"),
    Case(SPECIAL, "quantile(0.5, s)", "2m", note="Inf * 0 in the interpolation"),
    Case(GROUPS, 'count_values("value", m)', "0s"),
    Case(GROUPS, 'count_values by (job) ("value", m)', "1m"),
    Case(GROUPS, 'count_values without (cpu) ("value", m)', "2m"),
    Case(GROUPS, 'count_values without (value) ("value", m)', "2m"),
    Case(GROUPS, 'count_values("job", m)', "0s", note="replaces the job label"),
    Case(GROUPS, 'count_values by (job) ("job", m)', "0s"),
    Case(GROUPS, 'count_values without (inst) ("cpu", m)', "0s"),
    Case(V, 'count_values("x", v)', "0s", note="value formatting: NaN, Inf, 1e300"),
    Case(
        [('x{a="1"}', "1e21"), ('x{a="2"}', "1e-7"), ('x{a="3"}', "0.30000000000000004")],
        'count_values("x", x)',
        "0s",
    ),
    Case(GROUPS, 'count_values("v", m > 100)', "0s", note="empty"),
    Case(GROUPS, "sum(m) + count(m)", "0s", note="the existing aggregations still work"),
    Case(GROUPS, "avg by (job) (m) - min by (job) (m) + max by (job) (m)", "0s"),
    # -- range functions
    Case(LEVELS, "changes(g[5m])", "5m", note="NaN to NaN is no change"),
    Case(LEVELS, "changes(g[20m])", "13m"),
    Case(LEVELS, "changes(g[1m])", "7m"),
    Case(LEVELS, "resets(g[20m])", "13m"),
    Case(RESETS, "resets(c[5m])", "6m"),
    Case(RESETS, "resets(c[10m])", "9m"),
    Case(RESETS, "changes(c[30s])", "9m", note="one sample: 0"),
    Case(RESETS, "delta(c[5m])", "6m", note="no counter handling"),
    Case(RESETS, "delta(c[3m])", "9m30s"),
    Case(RESETS, "idelta(c[5m])", "6m"),
    Case(RESETS, "idelta(c[30s])", "6m", note="one sample: no result"),
    Case([('g{a="1"}', "_x3 1+10x10")], "delta(g[5m])", "6m", note="not limited by zero"),
    Case([('g{a="1"}', "10 5 2 _ _ _ _ _")], "delta(g[10m])", "8m"),
    Case(LINE, "deriv(l[5m])", "10m"),
    Case(LINE, "deriv(l[10m])", "10m30s"),
    Case(LINE, "deriv(l[5m] offset 3m)", "12m"),
    Case(LINE, "predict_linear(l[5m], 3600)", "10m"),
    Case(LINE, "predict_linear(l[5m], -60)", "10m30s"),
    Case(LINE, "predict_linear(l[5m] offset 5m, 0)", "15m", note="predicts from eval time"),
    Case(WOBBLE, "deriv(w[10m])", "12m"),
    Case(WOBBLE, "predict_linear(w[10m], 600)", "14m"),
    Case([('w{a="1"}', "1 Inf 3")], "deriv(w[5m])", "2m"),
    Case([('w{a="1"}', "Inf Inf Inf")], "deriv(w[5m]) != bool 0", "2m", note="constant Inf"),
    Case([('w{a="1"}', "5 _ _ 5")], "predict_linear(w[5m], 100)", "3m", note="constant"),
    Case([('w{a="1"}', "5 _ _")], "deriv(w[5m])", "2m", note="one sample"),
    Case([('w{a="1"}', "1 2 stale 4 8")], "deriv(w[5m])", "4m"),
    Case(WOBBLE, "last_over_time(w[5m])", "10m", note="keeps the name"),
    Case([('w{a="1"}', "1 2 stale")], "last_over_time(w[5m])", "3m"),
    Case([('w{a="1"}', "1 2 _ _ _ _ _ _ _")], "last_over_time(w[5m])", "8m"),
    Case(WOBBLE, "quantile_over_time(0.5, w[5m])", "10m"),
    Case(WOBBLE, "quantile_over_time(0.9, w[10m])", "14m"),
    Case(WOBBLE, "quantile_over_time(0, w[10m])", "14m"),
    Case(WOBBLE, "quantile_over_time(1, w[10m])", "14m"),
    Case(WOBBLE, "quantile_over_time(-0.1, w[10m])", "14m"),
    Case(WOBBLE, "quantile_over_time(1.1, w[10m])", "14m"),
    Case(WOBBLE, "quantile_over_time(NaN, w[10m])", "14m"),
    Case(LEVELS, "quantile_over_time(0.5, g[20m])", "13m"),
    Case(LEVELS, "quantile_over_time(0.25, g[5m])", "6m"),
    Case(WOBBLE, "stddev_over_time(w[5m])", "10m"),
    Case(WOBBLE, "stdvar_over_time(w[10m])", "14m"),
    Case([('g{a="1"}', "0.1+0.1x20")], "stdvar_over_time(g[10m])", "20m"),
    Case([('g{a="1"}', "1e16 1 1 1 1")], "stddev_over_time(g[10m])", "4m", note="Kahan"),
    Case(LEVELS, "stddev_over_time(g[3m])", "12m"),
    Case([('g{a="1"}', "7")], "stdvar_over_time(g[1m])", "0s", note="one sample: 0"),
    Case(WOBBLE, "present_over_time(w[5m])", "10m"),
    Case([('w{a="1"}', "1 2 _x10")], "present_over_time(w[5m])", "10m", note="empty window"),
    Case(WOBBLE, "absent_over_time(w[5m])", "10m"),
    Case(WOBBLE, 'absent_over_time(nothing{job="a", x=~"y"}[5m])', "10m"),
    Case([('w{a="1"}', "1 2 _x10")], 'absent_over_time(w{a="1"}[5m])', "10m"),
    Case([('w{a="1"}', "1 2 stale _x10")], 'absent_over_time(w{a="1"}[1m])', "2m"),
    # over subqueries (windows built from evaluated steps)
    *_each(
        WOBBLE,
        [
            "deriv(w[10m:1m])",
            "changes(w[10m:2m])",
            "quantile_over_time(0.5, w[10m:1m])",
            "stddev_over_time(w[10m:1m])",
            "last_over_time(w[5m:1m])",
            "absent_over_time(nothing[5m:1m])",
            "predict_linear(w[10m:1m], 60)",
            "resets(w[10m:30s])",
            "stdvar_over_time(abs(w - 5)[10m:1m])",
        ],
        "14m",
    ),
    Case(GROUPS, "max(changes(m[5m]))", "3m"),
    Case(GROUPS, "topk(2, deriv(m[5m]))", "3m"),
    # -- the daemon's CPU utilisation expression
    Case(
        COUNTERS,
        '100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))',
        "20m",
    ),
    Case(COUNTERS, "clamp_max(rate(node_cpu_seconds_total[5m]), 1)", "20m"),
]

ERROR_CASES: list[Case] = [
    Case(GROUPS, 'label_replace(m, "inst", "x", "inst", ".*")', "0s", note="duplicates"),
    Case(GROUPS, 'label_join(m, "cpu", "", "job")', "0s"),
    Case(GROUPS, 'label_replace(m, "cpu", "", "inst", "1")', "0s"),
    Case([('x{a="1"}', "1"), ('y{a="1"}', "2")], 'abs({__name__=~"x|y"})', "0s"),
    Case([('x{a="1"}', "1"), ('y{a="1"}', "2")], 'timestamp({__name__=~"x|y"})', "0s"),
    Case([('x{a="1"}', "1 2"), ('y{a="1"}', "2 3")], 'deriv({__name__=~"x|y"}[5m])', "1m"),
    Case(
        [('a_bucket{le="1"}', "1"), ('a_bucket{le="+Inf"}', "2"), ('b_bucket{le="+Inf"}', "2")],
        'histogram_quantile(0.5, {__name__=~"a_bucket|b_bucket"})',
        "0s",
    ),
    Case(GROUPS, "topk(NaN, m)", "0s"),
    Case(GROUPS, "bottomk(1e19, m)", "0s"),
]


def _nan_safe_tests(case: Case, result: Result) -> list[dict[str, object]]:
    def test(expr: str, samples: list[tuple[Labels, float]]) -> dict[str, object]:
        return expectation(expr, case.at, samples)

    samples = list(result.samples)
    if not any(math.isnan(v) for _, v in samples):
        return [test(case.expr, samples)]
    finite = [(lab, v) for lab, v in samples if not math.isnan(v)]
    unnamed = [
        (tuple(p for p in lab if p[0] != "__name__"), 1.0 if math.isnan(v) else 0.0)
        for lab, v in samples
    ]
    if plan.is_scalar(compile_expr(case.expr).plan):
        return [test(f"({case.expr}) != bool ({case.expr})", [((), 1.0)])]
    return [
        test(f"({case.expr}) >= -Inf", finite),
        test(f"({case.expr}) != bool ({case.expr})", unnamed),
    ]


def _write(path: Path, cases: list[tuple[Case, Result]], *, expect_error: bool = False) -> None:
    groups = [
        group_for(
            case,
            [expectation(case.expr, case.at, [])]
            if expect_error
            else _nan_safe_tests(case, result),
        )
        for case, result in cases
    ]
    write_tests(path, groups)


@pytest.fixture(scope="module")
def promtool_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("promtool_functions")
    answers = [(case, run_kpimon(case)) for case in CASES]
    errors = [(case, run_kpimon(case)) for case in ERROR_CASES]
    agree, failing = tmp / "agree.yml", tmp / "errors.yml"
    _write(agree, [a for a in answers if a[1].error is None])
    _write(failing, errors, expect_error=True)
    reports = run_promtool([agree, failing])
    return {"answers": answers, "errors": errors, "agree": reports[agree], "fail": reports[failing]}


def test_enough_cases() -> None:
    assert len(CASES) >= 120
    keys = [(c.expr, c.at, tuple(c.series)) for c in CASES]
    assert len(set(keys)) == len(keys)


def test_kpimon_answers_every_case(promtool_run: dict[str, object]) -> None:
    answers = promtool_run["answers"]
    assert isinstance(answers, list)
    assert not [(c.expr, r.error) for c, r in answers if r.error is not None]


def test_promtool_agrees_with_kpimon(promtool_run: dict[str, object]) -> None:
    report = promtool_run["agree"]
    assert report.passed, report.text  # type: ignore[attr-defined]
    assert not report.failures, report.text  # type: ignore[attr-defined]


def test_errors_agree(promtool_run: dict[str, object]) -> None:
    errors = promtool_run["errors"]
    assert isinstance(errors, list)
    assert all(r.error for _, r in errors), [(c.expr, r) for c, r in errors if not r.error]
    report = promtool_run["fail"]
    seen = sorted((e, t) for e, t, kind in report.failures if kind == "err")  # type: ignore[attr-defined]
    assert seen == sorted((c.expr, go_duration(c.at_ms)) for c, _ in errors), report.text  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.expr}@{c.at}")
def test_fast_and_general_paths_agree(case: Case) -> None:
    """Evaluating with later samples present (general path) gives the same bits as live."""
    live, past = run_kpimon(case, live=True), run_kpimon(case, live=False)
    assert bits(past) == bits(live)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.expr}@{c.at}")
def test_answers_do_not_depend_on_series_order(case: Case) -> None:
    """promtool loads series in random order: a case must not depend on the input order."""
    expected = bits(run_kpimon(case))
    for order in itertools.islice(itertools.permutations(reversed(case.series)), 0, 6):
        assert bits(run_kpimon(replace(case, series=list(order)))) == expected, order
