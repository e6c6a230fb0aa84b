"""Differential tests of kpimon's PromQL against Debian's ``promtool test rules`` (Prometheus 2.42).

Every case is evaluated by kpimon; its answer is written as the ``exp_samples`` of a
``promql_expr_test`` and promtool checks it against Prometheus' own engine on the same input
series, one promtool run for all cases. promtool 2.42 compares values exactly (no tolerance, so
NaN never matches: NaN results are checked through ``x != bool x``), and sorts samples, so order
does not matter. Three files go to that one run:

- ``agree.yml``: kpimon's answers; promtool must pass every case;
- ``wrong.yml``: kpimon's answers deliberately spoiled (one ulp, a missing or extra sample, a
  label); promtool must fail exactly these, proving the harness can see a disagreement;
- ``errors.yml``: expressions kpimon refuses at evaluation time; promtool must report an error
  for each of them too.

Input series start at t=0 and are one ``interval`` apart (default 1m), as in promtool.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from tests.helpers.promql import (
    Case,
    FileReport,
    Result,
    go_duration,
    nudge,
    promtool_file,
    run_kpimon,
    run_promtool,
    unordered_error,
)

pytestmark = pytest.mark.debian

C1 = [('x{a="1"}', "0+10x20")]
RESETS = [('c{a="1"}', "5 10 2 8 1 9 3 4 0 6")]
TWO = [('x{a="1",b="1"}', "1 2 3 4"), ('y{a="1",b="1"}', "0 1 5 4")]
PAIRS = [
    ('x{a="1",b="p"}', "1 2 3 4"),
    ('x{a="2",b="q"}', "10 20 30 40"),
    ('y{a="1",c="r"}', "2 2 2 2"),
    ('y{a="2",c="s"}', "4 4 4 4"),
]
GROUPS = [
    ('m{job="a",inst="1",cpu="0"}', "1 2 4 8"),
    ('m{job="a",inst="1",cpu="1"}', "3 3 3 3"),
    ('m{job="a",inst="2",cpu="0"}', "2 4 6 8"),
    ('m{job="b",inst="3",cpu="0"}', "5 _ 7 stale"),
]
COUNTERS = [
    ('node_cpu_seconds_total{instance="h1",cpu="0",mode="idle"}', "0+15x40"),
    ('node_cpu_seconds_total{instance="h1",cpu="1",mode="idle"}', "0+30x40"),
    ('node_cpu_seconds_total{instance="h1",cpu="0",mode="user"}', "0+45x40"),
    ('node_cpu_seconds_total{instance="h2",cpu="0",mode="idle"}', "100+60x40"),
]

CASES: list[Case] = [
    # -- instant selectors: lookback, staleness, matchers, offset
    Case(C1, "x", "10m"),
    Case(C1, "x", "10m30s", note="between samples: the older one"),
    Case([('x{a="1"}', "1 _x10")], "x", "5m", note="exactly 5m old: still seen (2.x)"),
    Case([('x{a="1"}', "1 _x10")], "x", "5m1ms", note="older than the lookback"),
    Case([('x{a="1"}', "1 _x10 2")], "x", "8m", note="gap longer than the lookback"),
    Case([('x{a="1"}', "1 2 stale")], "x", "2m", note="staleness marker is the newest sample"),
    Case([('x{a="1"}', "1 2 stale")], "x", "3m30s"),
    Case([('x{a="1"}', "1 stale 3")], "x", "2m"),
    Case([('x{a="1"}', "1 stale _ _ 5")], "x", "3m"),
    Case(C1, "x offset 3m", "10m"),
    Case(C1, "x offset 1h", "10m"),
    Case(PAIRS, 'x{a="1"}', "1m"),
    Case(PAIRS, 'x{a!="1"}', "1m"),
    Case(PAIRS, 'x{a=~"1|2"}', "1m"),
    Case([('x{a="10"}', "1"), ('x{a="1"}', "2")], 'x{a=~"1"}', "0s", note="regex anchored"),
    Case([('x{a="10"}', "1"), ('x{a="1"}', "2")], 'x{a!~"1.*"}', "0s"),
    Case(PAIRS, 'x{c=""}', "1m", note="a missing label matches the empty string"),
    Case(PAIRS, 'y{c=~"r|"}', "1m"),
    Case(PAIRS, '{__name__=~"x|y", a="2"}', "1m"),
    Case(PAIRS, '{__name__="y"}', "1m"),
    Case([('x{a="q\\"u\\\\o\\nte"}', "1 2")], "x", "1m", note="escapes in label values"),
    Case([('x{a="1"}', "Inf -Inf 3")], "x", "0s"),
    Case([('x{a="1"}', "Inf -Inf 3")], "x", "1m"),
    Case([('x{a="1"}', "NaN")], "x != bool x", "0s", note="NaN, seen through != bool"),
    Case([('x{a="1"}', "NaN")], "x > 0", "0s"),
    # -- rate / increase: extrapolation, resets, few samples, staleness
    Case(C1, "rate(x[5m])", "10m"),
    Case(C1, "increase(x[5m])", "10m"),
    Case(C1, "rate(x[5m])", "10m30s"),
    Case(C1, "rate(x[1m])", "10m", note="two samples, both on the window's edges"),
    Case(C1, "rate(x[90s])", "10m15s"),
    Case(C1, "increase(x[5m] offset 4m)", "10m"),
    Case(C1, "rate(x[10m])", "5m", note="window reaches back before the first sample"),
    Case([('x{a="1"}', "_x3 0+10x10")], "rate(x[5m])", "5m", note="starts inside the window"),
    Case([('x{a="1"}', "_x3 100+10x10")], "rate(x[5m])", "5m", note="not limited by zero"),
    Case([('x{a="1"}', "_x3 1+10x10")], "increase(x[5m])", "6m", note="zero point limits"),
    Case([('x{a="1"}', "0+10x5 _x10")], "increase(x[5m])", "8m", note="ends inside the window"),
    Case([('x{a="1"}', "_x9 5")], "rate(x[5m])", "10m", note="one sample: no result"),
    Case([('x{a="1"}', "1 _x3 3")], "rate(x[5m])", "4m", note="two samples"),
    Case(RESETS, "rate(c[5m])", "6m"),
    Case(RESETS, "increase(c[5m])", "9m"),
    Case(RESETS, "increase(c[10m])", "9m"),
    Case([('c{a="1"}', "10 20 0 10")], "increase(c[5m])", "3m", note="reset to zero"),
    Case([('c{a="1"}', "10 9 8 7")], "increase(c[5m])", "3m", note="a falling gauge"),
    Case([('c{a="1"}', "-5 0 5 10")], "increase(c[5m])", "3m", note="negative first value"),
    Case([('c{a="1"}', "0 10 stale 30 40")], "rate(c[5m])", "4m", note="stale is skipped"),
    Case([('c{a="1"}', "0 10 stale 5 40")], "increase(c[5m])", "4m"),
    Case([('c{a="1"}', "0 10 20 stale")], "rate(c[5m])", "4m"),
    Case([('c{a="1"}', "0.5+0.1x30")], "rate(c[7m])", "20m"),
    Case([('c{a="1"}', "3 7 1 _ _ 9 12 2 5 8 13")], "increase(c[6m])", "10m"),
    Case([('c{a="1"}', "0+7x30")], "rate(c[5m])", "22m30s", interval="45s"),
    Case([('c{a="1"}', "0 1 3 _ 10 12 _ _ 30")], "rate(c[1m])", "2m", interval="15s"),
    Case([('c{a="1"}', "0 1 3 _ 10 12 _ _ 30")], "increase(c[1m30s])", "2m", interval="15s"),
    Case([('c{a="1"}', "Inf 1 2")], "rate(c[5m]) != bool 0", "2m", note="Inf - Inf"),
    Case([('c{a="1"}', "1 2 Inf")], "rate(c[5m])", "2m"),
    # -- irate
    Case(C1, "irate(x[5m])", "10m"),
    Case(RESETS, "irate(c[5m])", "4m", note="last two samples are a reset"),
    Case(RESETS, "irate(c[5m])", "5m"),
    Case([('c{a="1"}', "1 _ _ 4")], "irate(c[5m])", "3m"),
    Case([('c{a="1"}', "1 5 stale 9")], "irate(c[5m])", "3m"),
    Case([('c{a="1"}', "_x4 7")], "irate(c[5m])", "4m", note="one sample: no result"),
    # -- *_over_time
    Case(C1, "avg_over_time(x[5m])", "10m"),
    Case([('g{a="1"}', "0.1+0.1x20")], "avg_over_time(g[10m])", "20m"),
    Case([('g{a="1"}', "0.1+0.1x20")], "sum_over_time(g[10m])", "20m"),
    Case([('g{a="1"}', "1e16 1 1 1 1")], "sum_over_time(g[10m])", "4m", note="Kahan"),
    Case([('g{a="1"}', "1e16 1 1 1 1")], "avg_over_time(g[10m])", "4m"),
    Case([('g{a="1"}', "3 1 4 1 5 9 2 6")], "min_over_time(g[3m])", "7m"),
    Case([('g{a="1"}', "3 1 4 1 5 9 2 6")], "max_over_time(g[3m])", "7m"),
    Case([('g{a="1"}', "3 1 4 stale 5 _ 2 6")], "count_over_time(g[5m])", "7m"),
    Case([('g{a="1"}', "3 1 4 stale 5 _ 2 6")], "sum_over_time(g[5m])", "7m"),
    Case([('g{a="1"}', "NaN 1 NaN 3 NaN")], "max_over_time(g[10m])", "4m", note="NaN ignored"),
    Case([('g{a="1"}', "NaN 1 NaN 3 NaN")], "min_over_time(g[10m])", "4m"),
    Case([('g{a="1"}', "1 Inf 3")], "avg_over_time(g[10m])", "2m"),
    Case([('g{a="1"}', "Inf -Inf")], "avg_over_time(g[10m]) != bool 0", "1m"),
    Case([('g{a="1"}', "1 2 3 _x10")], "count_over_time(g[5m])", "9m", note="empty window"),
    Case([('g{a="1"}', "1 2 3 4 5 6")], "avg_over_time(g[2m] offset 2m)", "5m"),
    # -- aggregations (values chosen so that any summation order gives the same bits)
    Case(GROUPS, "sum(m)", "0s"),
    Case(GROUPS, "sum by (job) (m)", "1m"),
    Case(GROUPS, "avg by (inst) (m)", "2m"),
    Case(GROUPS, "avg(m)", "1m"),
    Case(GROUPS, "max without (cpu) (m)", "2m"),
    Case(GROUPS, "min by (job, cpu) (m)", "1m"),
    Case(GROUPS, "count without () (m)", "2m"),
    Case(GROUPS, "count by (nonexistent) (m)", "2m"),
    Case(GROUPS, "sum by (__name__) (m)", "1m"),
    Case(GROUPS, "sum(m > 100)", "1m", note="empty input: no result"),
    Case([('m{a="1"}', "NaN"), ('m{a="2"}', "5")], "max(m)", "0s"),
    Case([('m{a="1"}', "Inf"), ('m{a="2"}', "5")], "avg(m)", "0s"),
    Case(COUNTERS, 'avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))', "20m"),
    Case(
        COUNTERS,
        '100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))',
        "20m",
    ),
    Case(COUNTERS, "sum without (cpu, mode) (increase(node_cpu_seconds_total[10m]))", "30m"),
    # -- binary operators
    Case(TWO, "x + 1", "1m"),
    Case(TWO, "10 - x", "1m"),
    Case(TWO, "x * y", "2m"),
    Case(TWO, "x / y", "0s", note="division by zero gives +Inf"),
    Case(TWO, "-x / y", "0s"),
    Case([('x{a="1"}', "7 -7 7.5")], "x % 3", "0s"),
    Case([('x{a="1"}', "7 -7 7.5")], "x % -3", "1m"),
    Case([('x{a="1"}', "7 -7 7.5")], "x % 2", "2m"),
    Case([('x{a="1"}', "2 3 0.5")], "x ^ 2", "1m"),
    Case([('x{a="1"}', "2 3 0.5")], "2 ^ x", "2m"),
    Case(TWO, "x > 1", "1m", note="filter keeps the metric name"),
    Case(TWO, "1 < x", "1m", note="scalar on the left: still the vector's value"),
    Case(TWO, "x > bool 1", "0s"),
    Case(TWO, "x == bool 2", "1m"),
    Case(TWO, "x < y", "2m"),
    Case(TWO, "x > y", "2m"),
    Case(TWO, "x >= bool y", "3m"),
    Case(TWO, "x != y", "3m"),
    Case(TWO, "x > on(a) y", "1m", note="on() keeps only the listed labels"),
    Case(TWO, "x > ignoring(b) y", "1m"),
    Case(TWO, "x + on() y", "1m"),
    Case(PAIRS, "x * on(a) y", "1m"),
    Case(PAIRS, "x - ignoring(b, c) y", "2m"),
    Case(PAIRS, "x > bool ignoring(b, c) y", "2m"),
    Case(PAIRS, "x + y", "1m", note="no match: empty"),
    Case(TWO, "x > 2 < 4", "3m"),
    Case(TWO, "x + y * 2", "3m"),
    Case(TWO, "-x", "1m"),
    Case(TWO, "-(x - y)", "2m"),
    Case(TWO, "1 + 2 * 3", "0s"),
    Case(TWO, "2 ^ 3 ^ 2", "0s"),
    Case(TWO, "1 > bool 2", "0s"),
    Case(TWO, "(1 + 2) / 4 - -1", "0s"),
    Case(TWO, "1 / 0", "0s"),
    Case(TWO, "-1 / 0", "0s"),
    Case(TWO, "5 % 3", "0s"),
]

ERROR_CASES: list[Case] = [
    Case(
        [('x{a="1",b="1"}', "1"), ('y{a="1",b="1"}', "2"), ('y{a="1",b="2"}', "3")],
        "x + on(a) y",
        "0s",
        note="duplicate series on the right",
    ),
    Case(
        [('x{a="1",b="1"}', "1"), ('x{a="1",b="2"}', "2"), ('y{a="1"}', "3")],
        "x - on(a) y",
        "0s",
        note="many-to-one without group_left",
    ),
    Case(
        [('x{a="1"}', "1"), ('y{a="1"}', "2")],
        '{__name__=~"x|y"} * 2',
        "0s",
        note="same label set once the name is dropped",
    ),
    Case([('x{a="1"}', "1 2"), ('y{a="1"}', "2 3")], 'rate({__name__=~"x|y"}[5m])', "1m"),
    Case([('x{a="1"}', "1"), ('y{a="1"}', "2")], '-{__name__=~"x|y"}', "0s"),
    Case(
        [('x{a="1"}', "1"), ('y{a="1"}', "2"), ('z{a="1"}', "2")],
        'x == bool ignoring(b) {__name__=~"y|z"}',
        "0s",
    ),
]


def _spoil(case: Case, result: Result, how: int) -> tuple[Case, Result]:
    """A deliberately wrong answer to ``case`` (several kinds, chosen by ``how``)."""
    samples = list(result.samples)
    assert samples, case
    labels, value = samples[0]
    if how == 0:
        samples[0] = (labels, nudge(value))
    elif how == 1:
        samples = samples[1:]
    elif how == 2:
        samples.append(((("__name__", "extra"),), 1.0))
    elif how == 3:
        samples[0] = ((*labels, ("zz", "wrong")), value)
    else:
        samples[0] = (labels, -value if value else 1.0)
    return case, Result(samples=tuple(samples))


def _wrong_cases(answers: list[tuple[Case, Result]]) -> list[tuple[Case, Result]]:
    picks = [a for a in answers if a[1].samples and a[1].error is None]
    chosen = [picks[i] for i in range(0, len(picks), max(1, len(picks) // 10))][:10]
    return [_spoil(c, r, i % 5) for i, (c, r) in enumerate(chosen)]


@pytest.fixture(scope="module")
def promtool_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """kpimon's answers to every case, and promtool's verdict on them (one promtool run)."""
    tmp = tmp_path_factory.mktemp("promtool")
    answers = [(case, run_kpimon(case)) for case in CASES]
    errors = [(case, run_kpimon(case)) for case in ERROR_CASES]
    wrong = _wrong_cases(answers)
    files = {name: tmp / f"{name}.yml" for name in ("agree", "wrong", "errors")}
    promtool_file(files["agree"], answers)
    promtool_file(files["wrong"], wrong)
    promtool_file(files["errors"], [(c, Result()) for c, _ in errors])
    reports = run_promtool(list(files.values()))
    return {
        "answers": answers,
        "errors": errors,
        "wrong": wrong,
        "reports": {name: reports[path] for name, path in files.items()},
    }


def _report(run: dict[str, object], name: str) -> FileReport:
    reports = run["reports"]
    assert isinstance(reports, dict)
    report = reports[name]
    assert isinstance(report, FileReport)
    return report


def test_enough_cases() -> None:
    assert len(CASES) >= 60
    keys = [(c.expr, c.at) for c in ERROR_CASES]
    assert len(set(keys)) == len(keys), "error cases must be told apart by expr and time"


def test_kpimon_answers_every_case_without_error(promtool_run: dict[str, object]) -> None:
    answers = promtool_run["answers"]
    assert isinstance(answers, list)
    failed = [(c.expr, r.error) for c, r in answers if r.error is not None]
    assert not failed
    nan = [c.expr for c, r in answers if any(math.isnan(v) for _, v in r.samples)]
    assert not nan, f"promtool cannot compare NaN; rewrite with != bool: {nan}"


def test_promtool_agrees_with_kpimon(promtool_run: dict[str, object]) -> None:
    report = _report(promtool_run, "agree")
    assert report.passed, report.text
    assert not report.failures, report.text


def test_promtool_detects_wrong_answers(promtool_run: dict[str, object]) -> None:
    wrong = promtool_run["wrong"]
    assert isinstance(wrong, list)
    assert len(wrong) >= 5
    report = _report(promtool_run, "wrong")
    assert not report.passed
    seen = [(expr, time) for expr, time, kind in report.failures if kind == "mismatch"]
    expected = [(c.expr, go_duration(c.at_ms)) for c, _ in wrong]
    assert sorted(seen) == sorted(expected), report.text


def test_errors_agree(promtool_run: dict[str, object]) -> None:
    errors = promtool_run["errors"]
    assert isinstance(errors, list)
    assert all(r.error for _, r in errors), [(c.expr, r) for c, r in errors if not r.error]
    report = _report(promtool_run, "errors")
    seen = sorted((expr, time) for expr, time, kind in report.failures if kind == "err")
    assert seen == sorted((c.expr, go_duration(c.at_ms)) for c, _ in errors), report.text


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.expr}@{c.at}")
def test_fast_and_general_paths_agree(case: Case) -> None:
    """Evaluating with later samples present (general path) gives the same bits as live."""
    assert run_kpimon(case, live=False) == run_kpimon(case, live=True)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.expr}@{c.at}")
def test_answers_do_not_depend_on_series_order(case: Case) -> None:
    """promtool loads series in random order, so a case must not depend on summation order."""
    expected = set(run_kpimon(case).samples)
    for order in itertools.islice(itertools.permutations(case.series), 1, 24):
        assert set(run_kpimon(replace(case, series=list(order))).samples) == expected, order


def test_error_messages_match_prometheus(promtool_run: dict[str, object]) -> None:
    report = _report(promtool_run, "errors")
    errors = promtool_run["errors"]
    assert isinstance(errors, list)
    for case, result in errors:
        assert result.error is not None
        head = f"time: {go_duration(case.at_ms)}, err: "
        quoted = case.expr.replace('"', '\\"')
        line = next(ln for ln in report.text.splitlines() if head in ln and quoted in ln)
        assert unordered_error(result.error) == unordered_error(line.split(head, 1)[1]), line
