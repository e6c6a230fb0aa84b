"""The large differential suite: kpimon's PromQL against promtool, hand-written and generated.

Each case (input series in promtool's notation, an expression, an evaluation time) is evaluated
by kpimon; promtool (Debian's Prometheus 2.42, ``promtool test rules``) checks the answer bit for
bit against Prometheus' engine, NaN included, in one promtool run for all cases (see
:func:`tests.helpers.promql.differential`). When kpimon fails (an evaluation error), promtool must
fail too, and the other way round.

- ``EDGE_CASES``: hand-written cases for counter resets, gaps shorter and longer than the
  5-minute lookback, staleness markers, NaN and ±Inf, empty vectors, label collisions, ``rate``
  & co. over windows of 1, 2 and many samples, histograms with only a ``+Inf`` bucket, and
  the functions, aggregations and operators of issue 3;
- ``ERROR_EDGE_CASES``: cases Prometheus fails, which kpimon must fail too;
- generated cases: ``GENERATED_CASES`` random cases from a fixed seed
  (:mod:`tests.helpers.promql_gen`).

A case whose expression kpimon refuses at compile time is "unsupported": the suite fails on any
such case. While the evaluator is being extended, set ``KPIMON_PROMQL_DIFF_PROGRESS=1`` to only
report them (that test is then skipped), and ``KPIMON_PROMQL_GEN=supported`` to generate only
from the constructs kpimon accepts today; ``KPIMON_PROMQL_GEN_SEED`` and
``KPIMON_PROMQL_GEN_CASES`` change the seed and the number of generated cases. Every run ends
with a summary (cases, agreeing, disagreeing, unsupported by construct) in pytest's terminal
summary. ``python -m tests.helpers.promql_shrink SEED N`` prints the disagreements among
generated cases shrunk to small reproducers.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.helpers.promql import (
    AGREE,
    AGREE_ERROR,
    DISAGREE,
    LIVE_DIFFERS,
    ORDER_SENSITIVE,
    PROMTOOL_REJECTS,
    UNSUPPORTED,
    Case,
    Result,
    Verdict,
    differential,
    nudge,
)
from tests.helpers.promql_gen import ALL_CONSTRUCTS, generate, supported_constructs

pytestmark = pytest.mark.debian

SEED = int(os.environ.get("KPIMON_PROMQL_GEN_SEED", "3"))
GENERATED_CASES = int(os.environ.get("KPIMON_PROMQL_GEN_CASES", "640"))
PROGRESS = os.environ.get("KPIMON_PROMQL_DIFF_PROGRESS", "") not in ("", "0")
ONLY_SUPPORTED = os.environ.get("KPIMON_PROMQL_GEN", "all") == "supported"
MIN_CASES = 400

C = [('c{job="a"}', "0+10x30")]
RESETS = [('c{job="a"}', "5 10 2 8 1 9 3 4 0 6")]
GAP_SHORT = [('x{job="a"}', "1 2 _x3 6 7")]  # a 4-minute hole: the lookback bridges it
GAP_LONG = [('x{job="a"}', "1 2 _x7 10 11")]  # an 8-minute hole: longer than the lookback
STALE = [('x{job="a"}', "1 2 stale _ 5 6 stale")]
SPECIAL = [
    ('v{i="nan"}', "NaN NaN"),
    ('v{i="inf"}', "Inf 1"),
    ('v{i="-inf"}', "-Inf 2"),
    ('v{i="one"}', "1 NaN"),
]
INFS = [('v{i="inf"}', "Inf"), ('v{i="-inf"}', "-Inf"), ('v{i="one"}', "1")]
ALL_NAN = [('v{i="1"}', "NaN"), ('v{i="2"}', "NaN")]
M = [
    ('m{job="a",inst="1"}', "1 2 4 8"),
    ('m{job="a",inst="2"}', "3 3 3 3"),
    ('m{job="b",inst="1"}', "2 4 6 8"),
    ('m{job="b",inst="2"}', "5 _ 7 stale"),
]
XY = [('x{job="a"}', "1 2 3 4"), ('y{job="a"}', "4 3 2 1"), ('x{job="b"}', "5 6 7 8")]
MANY = [
    ('req{job="a",inst="1"}', "0+6x30"),
    ('req{job="a",inst="2"}', "0+12x30"),
    ('req{job="b",inst="1"}', "0+30x15 0+30x14"),
]
ONE_SIDE = [('info{job="a",ver="1"}', "1x10"), ('info{job="b",ver="2"}', "1x10")]
H_INF = [('h_bucket{le="+Inf"}', "0+10x20")]
H_INF_ZERO = [('h_bucket{le="+Inf"}', "0x20")]
H = [
    ('h_bucket{job="a",le="0.1"}', "0+1x20"),
    ('h_bucket{job="a",le="1"}', "0+4x20"),
    ('h_bucket{job="a",le="+Inf"}', "0+5x20"),
    ('h_bucket{job="b",le="0.1"}', "0+2x20"),
    ('h_bucket{job="b",le="1"}', "0+2x20"),
    ('h_bucket{job="b",le="+Inf"}', "0+8x20"),
]
H_NO_INF = [('h_bucket{le="0.5"}', "0+1x20"), ('h_bucket{le="1"}', "0+2x20")]
H_NON_MONOTONIC = [
    ('h_bucket{le="0.5"}', "0+3x20"),
    ('h_bucket{le="1"}', "0+2x20"),
    ('h_bucket{le="+Inf"}', "0+4x20"),
]
ROUNDING = [('r{job="a"}', "0.9909090909090907 14 3")]
ZEROS = [('z{job="a"}', "0 -0.4 0")]
H_ODD_LE = [
    ('h_bucket{le="1"}', "4"),
    ('h_bucket{le="1.0"}', "6"),
    ('h_bucket{le="x"}', "7"),
    ('h_bucket{le="+Inf"}', "10"),
]
DATES = [('t{k="y2k"}', "946684799 951782400"), ('t{k="leap"}', "1709164800 1740787199")]

EDGE_CASES: list[Case] = [
    # -- counter resets
    Case(RESETS, "resets(c[10m])", "9m"),
    Case(RESETS, "changes(c[10m])", "9m"),
    Case(RESETS, "resets(c[2m])", "2m", note="reset inside a 3-sample window"),
    Case(RESETS, "rate(c[3m])", "3m", note="the window starts right after a reset"),
    Case(RESETS, "increase(c[2m])", "8m", note="the last sample is a reset to 0"),
    Case(RESETS, "irate(c[1m])", "8m"),
    Case(RESETS, "delta(c[5m])", "9m", note="delta does not know resets"),
    Case(RESETS, "idelta(c[5m])", "9m"),
    Case(RESETS, "deriv(c[5m])", "9m"),
    Case([('c{job="a"}', "10 0 0 0 10")], "increase(c[5m])", "4m", note="reset to 0 then flat"),
    Case([('c{job="a"}', "3 3 3 3")], "changes(c[5m])", "3m"),
    Case([('c{job="a"}', "1 NaN 1 NaN")], "changes(c[5m])", "3m", note="NaN to NaN is no change"),
    # -- gaps shorter and longer than the lookback
    Case(GAP_SHORT, "x", "4m30s", note="inside the hole: the last sample is 3m30s old"),
    Case(GAP_SHORT, "timestamp(x)", "4m30s", note="the sample's own timestamp"),
    Case(GAP_SHORT, "rate(x[5m])", "5m"),
    Case(GAP_LONG, "x", "7m"),
    Case(GAP_LONG, "absent(x)", "7m"),
    Case(GAP_LONG, 'absent(x{job="a"})', "7m", note="labels from the equality matchers"),
    Case(GAP_LONG, "last_over_time(x[10m])", "7m"),
    Case(GAP_LONG, "present_over_time(x[5m])", "7m"),
    Case(GAP_LONG, "absent_over_time(x[5m])", "7m"),
    Case(GAP_LONG, "absent_over_time(x[10m])", "7m"),
    Case(GAP_LONG, "count_over_time(x[10m])", "10m"),
    Case(GAP_LONG, "deriv(x[10m])", "10m"),
    Case(GAP_LONG, "x offset 3m", "9m", note="offset into the hole"),
    Case(GAP_LONG, "max_over_time(x[10m:1m])", "10m", note="subquery over the hole"),
    Case(GAP_LONG, "count_over_time(x[10m:1m])", "10m"),
    # -- staleness markers
    Case(STALE, "x", "2m"),
    Case(STALE, "last_over_time(x[5m])", "3m", note="markers are not samples of a range"),
    Case(STALE, "timestamp(x)", "2m30s"),
    Case(STALE, "absent(x)", "3m"),
    Case(STALE, "present_over_time(x[30s])", "2m"),
    Case(STALE, "changes(x[10m])", "6m"),
    Case(STALE, "count_over_time(x[1m:30s])", "3m", note="subquery steps see the marker"),
    Case(STALE, "x @ 120", "6m"),
    Case(STALE, "x @ 60", "2m"),
    # -- NaN and ±Inf
    Case(SPECIAL, "v", "0s"),
    Case(SPECIAL, "abs(v)", "0s"),
    Case(SPECIAL, "sum(v)", "0s"),
    Case(SPECIAL, "sum(v)", "1m"),
    Case(INFS, "avg(v)", "0s", note="Inf + -Inf"),
    Case(SPECIAL, "max(v)", "0s"),
    Case(SPECIAL, "min(v)", "1m"),
    Case(ALL_NAN, "max(v)", "0s"),
    Case(SPECIAL, "stddev(v)", "1m"),
    Case(SPECIAL, "stdvar(v)", "0s"),
    Case(SPECIAL, "quantile(0.5, v)", "0s"),
    Case(SPECIAL, "topk(2, v)", "0s", note="NaN loses"),
    Case(SPECIAL, "bottomk(2, v)", "0s"),
    Case(SPECIAL, 'count_values("value", v)', "0s"),
    Case(SPECIAL, "sort_desc(v)", "0s"),
    Case(SPECIAL, "clamp(v, 0, 1)", "0s"),
    Case(SPECIAL, "round(v)", "0s"),
    Case(SPECIAL, "sgn(v)", "0s"),
    Case(SPECIAL, "v == v", "0s", note="NaN is not equal to itself"),
    Case(SPECIAL, "v != bool v", "0s"),
    Case(SPECIAL, "v * 0", "0s"),
    Case(SPECIAL, "-v", "1m"),
    Case(SPECIAL, "ln(v)", "0s"),
    Case(SPECIAL, "sqrt(v - 2)", "1m"),
    Case(SPECIAL, "sum_over_time(v[5m])", "1m"),
    Case(SPECIAL, "stddev_over_time(v[5m])", "1m"),
    Case(SPECIAL, "quantile_over_time(0.5, v[5m])", "1m"),
    Case(SPECIAL, "deriv(v[5m])", "1m"),
    Case(SPECIAL, "scalar(v)", "0s", note="four series: NaN"),
    Case(SPECIAL, "vector(NaN)", "0s"),
    Case(SPECIAL, "0 * Inf", "0s"),
    Case(SPECIAL, "NaN > bool NaN", "0s"),
    Case(SPECIAL, "topk(NaN, v)", "0s"),
    Case(SPECIAL, "quantile(NaN, v)", "0s"),
    # -- empty vectors
    Case(M, "sum(nosuch)", "1m"),
    Case(M, "count(nosuch)", "1m"),
    Case(M, 'absent(nosuch{job="a", inst=~"1"})', "1m"),
    Case(M, "scalar(nosuch)", "1m"),
    Case(M, "vector(1) and nosuch", "1m"),
    Case(M, "nosuch or m", "1m"),
    Case(M, "m unless nosuch", "1m"),
    Case(M, "topk(2, nosuch)", "1m"),
    Case(M, "histogram_quantile(0.5, nosuch)", "1m"),
    Case(M, 'count_values("v", nosuch)', "1m"),
    Case(M, "time() + sum(nosuch)", "1m"),
    Case(M, "m > 100", "1m"),
    # -- label collisions after aggregation and matching
    Case(M, "sum without (inst) (m)", "1m"),
    Case(M, 'count_values("job", m)', "0s", note="the value label replaces job"),
    Case(M, 'count_values without () ("__name__", m)', "0s", note="without drops the name"),
    Case(M, 'count_values by (job) ("__name__", m)', "0s"),
    Case(M, "topk by (job) (1, m)", "2m", note="keeps the original labels"),
    Case(M, "max by (job) (m) - on (job) group_left min by (job, inst) (m)", "1m"),
    Case(M, "m / on (job) group_left sum by (job) (m)", "2m"),
    Case(M, "sum by (job) (m) * on (job) group_right m", "2m"),
    Case(M + ONE_SIDE, "m * on (job) group_left (ver) info", "1m"),
    Case(XY, 'sum without (job) ({__name__=~"x|y"})', "1m"),
    Case(XY, 'last_over_time({__name__=~"x|y"}[5m])', "1m", note="keeps the name: no clash"),
    Case(XY, "x and on (job) y", "1m"),
    Case(XY, "x or y", "1m"),
    Case(XY, "x unless ignoring (job) y", "1m"),
    Case(XY, 'label_replace(x, "job", "z", "", "")', "1m", note="no clash: names kept"),
    Case(XY, 'label_join(x, "id", "-", "__name__", "job")', "1m"),
    # -- rate & co. over windows of 1, 2 and many samples
    Case(C, "rate(c[30s])", "10m", note="1 sample: nothing"),
    Case(C, "rate(c[1m])", "10m", note="2 samples"),
    Case(C, "rate(c[1h])", "30m", note="31 samples"),
    Case(C, "deriv(c[30s])", "10m"),
    Case(C, "deriv(c[1m])", "10m"),
    Case(C, "predict_linear(c[1m], 600)", "10m"),
    Case(C, "predict_linear(c[20m], 600)", "30m"),
    Case(C, "delta(c[1m])", "10m30s"),
    Case(C, "idelta(c[30s])", "10m"),
    Case(C, "stddev_over_time(c[30s])", "10m"),
    Case(C, "stdvar_over_time(c[10m])", "20m"),
    Case(C, "quantile_over_time(0.9, c[10m])", "20m"),
    Case(MANY, "sum by (job) (rate(req[5m]))", "20m"),
    Case(MANY, "sum by (job) (increase(req[15m]))", "25m"),
    Case(MANY, "max_over_time(rate(req[5m])[10m:1m])", "20m"),
    Case(MANY, "min_over_time(irate(req[2m])[20m:])", "25m"),
    Case(MANY, "avg_over_time(sum(req)[10m:2m] offset 1m)", "20m"),
    # -- histograms, +Inf only and other odd bucket sets
    Case(H_INF, "histogram_quantile(0.5, h_bucket)", "5m"),
    Case(H_INF, "histogram_quantile(0.5, rate(h_bucket[5m]))", "10m"),
    Case(H_INF_ZERO, "histogram_quantile(0.5, rate(h_bucket[5m]))", "10m"),
    Case(H, "histogram_quantile(0.5, rate(h_bucket[5m]))", "10m"),
    Case(H, "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))", "10m"),
    Case(H, "histogram_quantile(0, rate(h_bucket[5m]))", "10m"),
    Case(H, "histogram_quantile(1, rate(h_bucket[5m]))", "10m"),
    Case(H, "histogram_quantile(-1, rate(h_bucket[5m]))", "10m"),
    Case(H, "histogram_quantile(2, rate(h_bucket[5m]))", "10m"),
    Case(H_NO_INF, "histogram_quantile(0.5, h_bucket)", "5m", note="no +Inf bucket: NaN"),
    Case(H_NON_MONOTONIC, "histogram_quantile(0.5, h_bucket)", "5m"),
    Case(H_ODD_LE, "histogram_quantile(0.5, h_bucket)", "0s", note='le="1" and "1.0", le="x"'),
    Case(H_ODD_LE, "histogram_quantile(0.9, h_bucket)", "0s"),
    # -- instant functions, time, @, offset
    Case(DATES, "year(t)", "0s"),
    Case(DATES, "month(t)", "1m"),
    Case(DATES, "day_of_month(t)", "1m"),
    Case(DATES, "day_of_week(t)", "0s"),
    Case(DATES, "day_of_year(t)", "1m"),
    Case(DATES, "days_in_month(t)", "1m"),
    Case(DATES, "hour(t)", "0s"),
    Case(DATES, "minute(t)", "0s"),
    Case(DATES, "hour()", "2h30m"),
    Case(DATES, "time()", "1m30s"),
    Case(XY, "vector(time())", "1m"),
    Case(XY, "timestamp(x offset 1m)", "3m"),
    Case(XY, "exp(x)", "1m"),
    Case(ROUNDING, "exp(r)", "0s", note="Go's Exp is not correctly rounded"),
    Case(ROUNDING, "ln(r)", "1m", note="nor is Go's Log: ln(14)"),
    Case(ROUNDING, "ln(r)", "2m"),
    Case(ROUNDING, "log10(r)", "2m"),
    Case(ROUNDING, "r ^ 0.5", "1m", note="±0.5 exponents are exact"),
    Case(XY, "log2(x)", "3m"),
    Case(XY, "log10(x * 10)", "1m"),
    Case(XY, "round(x / 3, 0.1)", "1m"),
    Case(XY, "ceil(x / 3)", "1m"),
    Case(XY, "floor(-x / 3)", "1m"),
    Case(XY, "clamp_min(x, 3)", "1m"),
    Case(XY, "clamp_max(x, 3)", "1m"),
    Case(XY, "clamp(x, 5, 2)", "1m", note="min above max: empty"),
    Case(XY, "x @ 120", "0s", note="@ in the future of the eval time"),
    Case(XY, "timestamp(x @ 60)", "3m", note="the sample's time, not the eval time"),
    Case(XY, "timestamp(x @ 120 offset -1m)", "3m"),
    Case(ZEROS, "-z", "0s", note="-0"),
    Case(ZEROS, "round(z)", "1m"),
    Case(ZEROS, "ceil(z)", "1m"),
    Case(ZEROS, "z * -1", "2m"),
    Case(ZEROS, "-(0 * 1)", "0s"),
    Case(XY, "x @ end()", "2m"),
    Case(XY, "rate(x[2m] @ 180)", "1m"),
    Case(XY, "x offset -1m", "1m"),
    Case(XY, 'group by (job) ({__name__=~"x|y"})', "1m"),
    Case(XY, "x % y", "1m"),
]

ERROR_EDGE_CASES: list[Case] = [
    Case(M, 'label_replace(m, "job", "same", "", "")', "0s", note="duplicate label sets"),
    Case(M, 'label_join(m, "inst", "", "job")', "0s"),
    Case(XY, 'abs({__name__=~"x|y"})', "0s"),
    Case(XY, 'present_over_time({__name__=~"x|y"}[5m])', "0s"),
    Case(M, "m * on (job) group_left sum by (job, inst) (m)", "0s"),
    Case(M, "m + on () m", "0s", note="many-to-many"),
    Case(M, "m * ignoring (inst) group_left m", "1m", note="one side has duplicates"),
    Case(M, 'count_values("1bad", m)', "0s", note="invalid label name"),
    Case(M, 'label_replace(m, "1bad", "x", "", "")', "0s"),
]


@dataclass
class SuiteRun:
    """Everything the tests look at: the verdicts of all cases and of the spoiled answers."""

    edge: list[Verdict]
    errors: list[Verdict]
    generated: list[Verdict]
    spoiled: list[Verdict]
    constructs: Counter[str]  # how many generated expressions use each construct


def _construct(message: str) -> str:
    """The construct a refusal names: the message up to its list of what is supported."""
    return message.split(" (supported", 1)[0]


def _summary(run: SuiteRun) -> list[str]:
    everything = run.edge + run.errors + run.generated
    kinds = Counter(v.kind for v in everything)
    lines = [
        f"{len(everything)} cases ({len(run.edge) + len(run.errors)} hand-written, "
        f"{len(run.generated)} generated from seed {SEED}"
        f"{', supported constructs only' if ONLY_SUPPORTED else ''}): "
        f"{kinds[AGREE] + kinds[AGREE_ERROR]} agree ({kinds[AGREE_ERROR]} of them both errors), "
        f"{kinds[DISAGREE]} disagree, {kinds[LIVE_DIFFERS]} differ live, "
        f"{kinds[UNSUPPORTED]} unsupported, "
        f"{kinds[ORDER_SENSITIVE]} order-sensitive, {kinds[PROMTOOL_REJECTS]} rejected by promtool",
    ]
    refused = Counter(
        _construct(v.result.refused or "") for v in everything if v.kind == UNSUPPORTED
    )
    lines += [f"  unsupported: {n:4d} x {what}" for what, n in refused.most_common()]
    return lines


class _SummaryPlugin:
    """Prints the suite's summary at the end of the pytest run (also without ``-s``)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminalreporter.write_sep("-", "PromQL differential suite (kpimon vs promtool)")
        for line in self.lines:
            terminalreporter.write_line(line)


def _spoil(result: Result, how: int) -> Result:
    """A deliberately wrong answer to an agreeing case (several kinds, chosen by ``how``)."""
    samples = list(result.samples)
    labels, value = samples[0]
    if how == 0:
        samples = samples[1:]
    elif how == 1:
        samples[0] = (labels, 1.0 if math.isnan(value) else nudge(value))
    elif how == 2:
        samples[0] = (labels, 1.0 if math.isnan(value) else math.nan)
    elif how == 3:
        samples[0] = ((*labels, ("zz", "wrong")), value)
    else:
        samples.append(((("__name__", "extra"),), 1.0))
    return Result(samples=tuple(samples), scalar=result.scalar)


def _negate_zero(result: Result) -> Result:
    """``result`` with its first zero's sign flipped (0 for -0, -0 for 0)."""
    samples = list(result.samples)
    i = next(i for i, (_, v) in enumerate(samples) if v == 0)
    samples[i] = (samples[i][0], math.copysign(0.0, -math.copysign(1.0, samples[i][1])))
    return Result(samples=tuple(samples), scalar=result.scalar)


def _spoil_nan(result: Result, how: int) -> Result:
    """``result`` with its first NaN replaced by 1, or labelled otherwise."""
    samples = list(result.samples)
    i = next(i for i, (_, v) in enumerate(samples) if math.isnan(v))
    labels, value = samples[i]
    samples[i] = (labels, 1.0) if how % 2 == 0 else ((*labels, ("zz", "wrong")), value)
    return Result(samples=tuple(samples), scalar=result.scalar)


def _spoiled(verdicts: list[Verdict]) -> list[tuple[Case, Result]]:
    """Wrong answers to agreeing cases, of every kind the harness must see."""
    agreeing = [v.result for v in verdicts if v.kind in (AGREE, AGREE_ERROR)]
    cases = {id(v.result): v.case for v in verdicts}

    def some(pred: Callable[[Result], bool], n: int) -> list[Result]:
        found = [r for r in agreeing if pred(r)]
        return found[:: max(1, len(found) // n)][:n]

    out = [(r, _spoil(r, i % 5)) for i, r in enumerate(some(lambda r: bool(r.samples), 20))]
    out += [(r, Result(samples=())) for r in some(lambda r: r.error is not None, 3)]
    out += [(r, Result(error="spoiled")) for r in some(lambda r: r.error is None, 3)]
    out += [(r, Result(error="spoiled")) for r in some(lambda r: not r.samples, 2)]
    out += [(r, _negate_zero(r)) for r in some(lambda r: any(v == 0 for _, v in r.samples), 3)]
    nans = some(lambda r: any(math.isnan(v) for _, v in r.samples), 4)
    out += [(r, _spoil_nan(r, i)) for i, r in enumerate(nans)]
    return [(cases[id(r)], wrong) for r, wrong in out]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> SuiteRun:
    """All cases judged in one promtool run; the spoiled answers in a second one."""
    constructs = supported_constructs() if ONLY_SUPPORTED else ALL_CONSTRUCTS
    pairs = generate(SEED, GENERATED_CASES, constructs)
    generated = [case for case, _ in pairs]
    cases = EDGE_CASES + ERROR_EDGE_CASES + generated
    verdicts = differential(cases, tmp_path_factory.mktemp("differential"))
    n_edge, n_err = len(EDGE_CASES), len(ERROR_EDGE_CASES)
    wrong = _spoiled(verdicts)
    spoiled = differential(
        [case for case, _ in wrong],
        tmp_path_factory.mktemp("spoiled"),
        answers=[result for _, result in wrong],
        check_order=False,
    )
    run = SuiteRun(
        edge=verdicts[:n_edge],
        errors=verdicts[n_edge : n_edge + n_err],
        generated=verdicts[n_edge + n_err :],
        spoiled=spoiled,
        constructs=Counter(c for _, expr in pairs for c in expr.constructs()),
    )
    lines = _summary(run)
    print("\n".join(lines))
    pytestconfig.pluginmanager.register(_SummaryPlugin(lines), "promql-differential-summary")
    return run


def _listing(verdicts: list[Verdict], kinds: tuple[str, ...], limit: int = 40) -> str:
    bad = [v for v in verdicts if v.kind in kinds]
    text = "\n\n".join(v.describe() for v in bad[:limit])
    return f"{len(bad)} cases:\n{text}" + (
        f"\n... and {len(bad) - limit} more" if len(bad) > limit else ""
    )


def test_enough_cases(suite: SuiteRun) -> None:
    total = len(suite.edge) + len(suite.errors) + len(suite.generated)
    assert total >= MIN_CASES
    not_compared = (ORDER_SENSITIVE, UNSUPPORTED, PROMTOOL_REJECTS)
    compared = [
        v for v in suite.edge + suite.errors + suite.generated if v.kind not in not_compared
    ]
    assert len(compared) >= MIN_CASES
    keys = [(c.expr, c.at, tuple(c.series)) for c in EDGE_CASES + ERROR_EDGE_CASES]
    assert len(set(keys)) == len(keys), "duplicate hand-written cases"


def test_generator_covers_every_construct(suite: SuiteRun) -> None:
    if ONLY_SUPPORTED:
        pytest.skip("generating from the supported constructs only")
    rare = {c: suite.constructs[c] for c in sorted(ALL_CONSTRUCTS) if suite.constructs[c] < 3}
    assert not rare, f"constructs in fewer than 3 generated cases: {rare}"


def test_cases_are_valid_for_promtool(suite: SuiteRun) -> None:
    """promtool parses every expression and input (else the generator has a bug)."""
    everything = suite.edge + suite.errors + suite.generated
    assert not [v for v in everything if v.kind == PROMTOOL_REJECTS], _listing(
        everything, (PROMTOOL_REJECTS,)
    )


def test_edge_cases_agree(suite: SuiteRun) -> None:
    assert all(v.kind in (AGREE, AGREE_ERROR, UNSUPPORTED) for v in suite.edge), _listing(
        suite.edge, (DISAGREE, ORDER_SENSITIVE, LIVE_DIFFERS)
    )


def test_errors_agree(suite: SuiteRun) -> None:
    """Prometheus fails these; kpimon must fail too (and promtool must fail, or the case is bad)."""
    assert all(v.kind in (AGREE_ERROR, UNSUPPORTED) for v in suite.errors), _listing(
        suite.errors, (AGREE, DISAGREE, ORDER_SENSITIVE, LIVE_DIFFERS)
    )


def test_generated_cases_agree(suite: SuiteRun) -> None:
    assert all(
        v.kind in (AGREE, AGREE_ERROR, UNSUPPORTED, ORDER_SENSITIVE) for v in suite.generated
    ), _listing(suite.generated, (DISAGREE, LIVE_DIFFERS))


def test_generated_cases_rarely_order_sensitive(suite: SuiteRun) -> None:
    sensitive = [v for v in suite.generated if v.kind == ORDER_SENSITIVE]
    assert len(sensitive) <= len(suite.generated) // 50, _listing(sensitive, (ORDER_SENSITIVE,))


def test_every_case_supported(suite: SuiteRun) -> None:
    """kpimon compiles every expression of the suite (issue 3's whole surface)."""
    everything = suite.edge + suite.errors + suite.generated
    refused = [v for v in everything if v.kind == UNSUPPORTED]
    if refused and PROGRESS:
        counts = Counter(_construct(v.result.refused or "") for v in refused)
        pytest.skip(f"{len(refused)} unsupported (progress mode): {dict(counts.most_common(8))}")
    assert not refused, "\n".join(_summary(suite))


def test_harness_sees_wrong_answers(suite: SuiteRun) -> None:
    """Spoiled answers (one ulp, NaN, -0, a missing/extra sample, a label, an error) disagree."""
    assert len(suite.spoiled) >= 30
    assert all(v.kind == DISAGREE for v in suite.spoiled), _listing(
        suite.spoiled, (AGREE, AGREE_ERROR, PROMTOOL_REJECTS)
    )
