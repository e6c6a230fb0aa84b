"""Operators, vector matching, ``@``/``offset`` and subqueries: kpimon against Debian's promtool.

Each case is evaluated by kpimon and checked by ``promtool test rules`` (Prometheus 2.42) with
its exact comparison, all cases in one promtool run (see :func:`tests.helpers.promql.differential`:
NaN results are checked through ``>= -Inf`` tricks, every input sample is loaded). A case where
kpimon fails must fail in promtool too, with the same message. Input series start at t=0 and
are one ``interval`` apart (default 1m); the subquery default step is the test file's
``evaluation_interval`` (1m), as kpimon's ``evaluate(interval_s=60)``.
"""

from __future__ import annotations

import pytest

from tests.helpers.promql import (
    AGREE,
    AGREE_ERROR,
    Case,
    Verdict,
    differential,
    unordered_error,
)

pytestmark = pytest.mark.debian

# Two metrics matched on "a"; x has "b", y has "c".
P = [
    ('x{a="1",b="p"}', "1+1x12"),
    ('x{a="2",b="q"}', "10+10x12"),
    ('y{a="1",c="r"}', "2x12"),
    ('y{a="2",c="s"}', "4 4 4 0 0 4x8"),
]
# Special values, one series each.
SPECIAL = [
    ('v{k="nan"}', "NaN"),
    ('v{k="inf"}', "Inf"),
    ('v{k="ninf"}', "-Inf"),
    ('v{k="zero"}', "0"),
    ('v{k="neg"}', "-7"),
    ('v{k="pos"}', "7.5"),
    ('v{k="tiny"}', "1e-300"),
    ('v{k="huge"}', "1e300"),
    ('v{k="eleven"}', "1.1"),
]
# Many-to-one: several m per "a", one o per "a".
M = [
    ('m{a="1",i="1",t="old"}', "1 2 3"),
    ('m{a="1",i="2"}', "3 4 5"),
    ('m{a="2",i="3"}', "5 6 7"),
    ('m{a="3",i="4"}', "8 8 8"),
    ('o{a="1",t="x",u="1"}', "10 20 30"),
    ('o{a="2",t="y"}', "100 200 300"),
    ('n{a="1",i="1",t="old"}', "9 9 9"),
]
# Series that come and go, for set operators and subqueries.
G = [
    ('g{a="1"}', "1 2 3 _ _ _ _ _ _ 10 11 12"),
    ('g{a="2"}', "_ _ 5 6 7 8 stale _ 9 9 9 9"),
    ('h{a="1"}', "0+3x11"),
    ('h{a="3"}', "5 stale 5 stale 5 stale 5 stale 5 stale 5 stale"),
]
PQ = [('p{a="1"}', "1 2 3 stale"), ('q{a="1"}', "_ _ _ _ 1 2 3")]
C = [('c{a="1"}', "0+7x40"), ('c{a="2"}', "100 90 80 70 5 10 20 40 80 160 320 640 1280")]
FAST = [('f{a="1"}', "0+5x80")]

NUMBERS = [
    "1 / 0",
    "-1 / 0",
    "0 / 0",
    "5 % 3",
    "-5 % 3",
    "5 % -3",
    "5.5 % 2",
    "-5.5 % -2",
    "Inf % 2",
    "2 % Inf",
    "2 % 0",
    "-0 % 5",
    "2 ^ 0.5",
    "2 ^ -0.5",
    "(-2) ^ 0.5",
    "(-8) ^ 3",
    "0 ^ -1",
    "(-0) ^ -1",
    "(-0) ^ -2",
    "0 ^ 0",
    "NaN ^ 0",
    "1 ^ NaN",
    "1.1 ^ 3",
    "1.1 ^ 10",
    "1.1 ^ 64",
    "1.1 ^ -7",
    "3 ^ 40",
    "0.9 ^ 1000",
    "2 ^ 1023",
    "2 ^ 1024",
    "2 ^ -1074",
    "2 ^ -1080",
    "10 ^ -2",
    "7 ^ 22",
    "(-1) ^ Inf",
    "0.5 ^ -Inf",
    "(-Inf) ^ 3",
    "(-Inf) ^ -3",
    "(-Inf) ^ 2",
    "Inf ^ -1",
    "1 atan2 2",
    "-1 atan2 -2",
    "0 atan2 -1",
    "1 atan2 0",
    "Inf atan2 Inf",
    "-Inf atan2 -Inf",
    "3 atan2 -Inf",
    "1e-300 atan2 1e300",
    "3 atan2 0.5",
    "0.7 atan2 1",
    "5 atan2 1",
    "-2 atan2 3",
    "0x1F * .5 + 1e3",
    "-2 ^ 2",
    "2 ^ 3 ^ 2",
    "1 - 2 - 3",
    "12 / 3 / 2",
    "- -1",
    "-(1 + 2) * 3",
    "1 + 2 * 3 % 4",
    "(1 > bool 0) + (2 <= bool 1)",
    "NaN == bool NaN",
    "NaN != bool NaN",
    "Inf > bool -Inf",
    "-Inf >= bool NaN",
]

SCALAR_VECTOR = [
    "v + 1",
    "v - Inf",
    "v * 0",
    "v / 0",
    "0 / v",
    "v % 3",
    "v % -3",
    "-7 % v",
    "v % 0",
    "v % Inf",
    "v ^ 2",
    "v ^ 3",
    "v ^ 0.5",
    "v ^ -1",
    "v ^ 0",
    "2 ^ v",
    "v ^ 10",
    "v atan2 1",
    "1 atan2 v",
    "v atan2 -1",
    "v atan2 v",
    "v == bool v",
    "v != bool v",
    "v > bool 0",
    "v < 0",
    "v >= -Inf",
    "0 > v",
    "7.5 == v",
    "-v",
    "-v ^ 2",
    "- -v",
]

VECTOR_VECTOR = [
    "x + on(a) y",
    "x - ignoring(b, c) y",
    "x + y",
    "x atan2 on(a) y",
    "x == bool on(a) y",
    "x != on(a) y",
    "x < ignoring(b, c) y",
    "x > on(a) y",
    "y >= bool ignoring(c, b) x",
    "x * on(a) group_left(c) y",
    "x * on(a) group_left y",
    "x * on(a) group_left(c, b, d) y",
    "x > on(a) group_left(c) y",
    "x > bool on(a) group_left(c) y",
    "y / on(a) group_right(c) x",
    "y / on(a) group_right x",
    "y < on(a) group_right(c) x",
    "y <= bool ignoring(b, c) group_right x",
    "x + on(c) y",
    "x + on(a, c) y",
    "x + on(a) nothing",
    "nothing * on(z) y",
]

MANY = [
    "m * on(a) group_left(t) o",
    "m * on(a) group_left o",
    "m / on(a) group_left(t, u) o",
    "m > on(a) group_left(t) o",
    "m == bool on(a) group_left(t) o",
    "o * on(a) group_right(t) m",
    "o - on(a) group_right m",
    "o < on(a) group_right(t) m",
    "m + ignoring(i, t) group_left o",
    "m + ignoring(i, t, u) group_left(u) o",
    'm * on(a) group_left(t) o{a="1"}',
    "n * on(a, i) group_left(t) m",
    "sum by (a) (m) * on(a) o",
    "m and on(a) o",
    "m unless on(a) o",
    "m or on(a) o",
    "o or m",
    "m and ignoring(i, t) o",
]

ERRORS = [
    "m * on(a) o",
    "o * on(a) m",
    "m * on(a) group_right o",
    "o / on(a) group_left m",
    '{__name__=~"m|n"} * on(a) group_left o',
    "x + on(z) y",
    "x > on(z) group_left y",
    '{__name__=~"m|n"} * 2',
    '-{__name__=~"m|n"}',
    '{__name__=~"m|n"} > bool on(a) group_left o',
    "max_over_time((m * on(a) o)[3m:1m])",
    'count_over_time(rate({__name__=~"m|n"}[2m])[2m:1m])',
]

SETS = [
    "g and h",
    "g or h",
    "g unless h",
    "h unless g",
    "g and on() h",
    "g unless on() h",
    "g or on(a) h",
    "h or g",
    "(g > 2) or h",
    "g and (h > 10)",
    "(g or h) + 1",
    "sum by (a) (g or h)",
    "g unless on(a) nothing",
    "nothing or g",
    "g and nothing",
    '{__name__=~"g|h"} and on(a) g',
]

MODIFIERS = [
    "x @ 120",
    "x @ 120 offset 1m",
    "x offset 1m @ 120",
    "x @ 100.5",
    "x @ 0",
    "x @ -60",
    "x @ 660",
    "x @ 1000",
    "x @ 1e6",
    "x offset -3m",
    "x offset -30s",
    "x @ start()",
    "x @ end() offset 1m",
    "sum(x @ 240)",
    "x @ 240 + x",
    "x @ 240 / on(a) y @ 60",
    "rate(c[5m] @ 300)",
    "rate(c[5m] @ 300 offset 2m)",
    "rate(c[5m] offset -2m)",
    "increase(c[3m] @ end())",
    "max_over_time(x[3m] @ 180)",
    "max_over_time(x[3m] offset -5m)",
    # timestamp() reads at the @ time, ignoring the offset, among the samples up to @ - offset.
    "timestamp(x @ 60)",
    "timestamp(x @ 120 offset -1m)",
    "timestamp(x @ 120 offset 1m)",
    "timestamp(x @ 120 offset 4m30s)",
    "timestamp(x @ 120 offset 6m)",
    "timestamp(x @ end() offset 1m)",
]

SUBQUERIES = [
    ("max_over_time(x[5m:1m])", "6m"),
    ("max_over_time(x[5m:1m])", "6m30s"),
    ("max_over_time(x[5m:2m])", "7m"),
    ("min_over_time(x[5m:45s])", "7m10s"),
    ("sum_over_time(x[5m:])", "7m"),
    ("sum_over_time(x[5m:])", "7m59s"),
    ("count_over_time(x[10m:1m])", "3m"),
    ("count_over_time(x[5m:1m] offset 2m)", "8m"),
    ("count_over_time(x[5m:1m] offset -2m)", "4m"),
    ("avg_over_time(x[5m:1m] @ 240)", "10m"),
    ("avg_over_time(x[5m:1m] @ 240 offset 1m)", "10m"),
    ("avg_over_time(x[5m:1m] offset 1m @ 250)", "2m"),
    ("count_over_time(x[5m:1m] @ start())", "9m"),
    ("max_over_time(rate(c[2m])[5m:1m])", "8m"),
    ("max_over_time(rate(c[2m])[5m:30s])", "8m15s"),
    ("max_over_time(sum_over_time(x[2m:1m])[5m:2m])", "9m"),
    ("min_over_time(max_over_time(x[3m:1m])[6m:])", "9m30s"),
    ("sum_over_time(max_over_time(x[2m:1m] offset 1m)[4m:2m] offset 1m)", "10m"),
    ("max_over_time(max_over_time(x[2m:40s] @ 300)[4m:1m])", "9m"),
    ("rate(c[5m:1m])", "9m"),
    ("rate(c[5m:1m])", "9m20s"),
    ("increase(c[5m:30s])", "10m"),
    ("irate(c[5m:1m])", "8m"),
    ("count_over_time((x > 3)[6m:1m])", "6m"),
    ("sum_over_time((g or h)[4m:1m])", "7m30s"),
    ("count_over_time(g[10m:1m])", "9m"),
    ("last_over_time(g[10m:1m])", "8m"),
    ("last_over_time((g + 1)[10m:1m])", "8m"),
    ("max_over_time((x * on(a) group_left(c) y)[3m:1m])", "5m"),
    ("max_over_time((x @ 120)[5m:1m])", "9m"),
    ("max_over_time((x offset 1m)[5m:1m])", "9m"),
    ("max_over_time(x offset 1m[5m:1m])", "9m"),
    ("sum_over_time((-x)[3m:1m])", "5m"),
    ("max_over_time(sum by (a) (x)[4m:1m])", "5m"),
    ("quantile_over_time(0.5, x[5m:1m])", "7m"),
    ("stddev_over_time(x[5m:1m])", "7m"),
    ("absent_over_time(nothing[5m:1m])", "7m"),
    ("absent_over_time(x[5m:1m])", "7m"),
    ("changes(g[10m:1m])", "11m"),
    ("max_over_time(f[10m:1m])", "20m"),
    ("sum_over_time(rate(f[1m])[20m:1m])", "30m"),
    ("avg_over_time(c[1h:5m])", "12m"),
    # Prometheus' @ quirk: a subquery whose first step is the enclosing one's does not
    # re-anchor the @ times inside, which are then read shifted by its offset.
    ("max_over_time((x @ 300)[2m:1m] offset -2m)", "10m"),
    ("max_over_time((x @ 300)[2m:1m] offset -1m)", "10m"),
    ("max_over_time((x @ 300 offset 1m)[2m:1m] offset -2m)", "10m"),
    ("max_over_time(max_over_time(c[3m] @ 300)[2m:1m] offset -2m)", "10m"),
    ("max_over_time(max_over_time(c[3m] @ 300)[2m:1m] offset -3m)", "10m"),
    ("max_over_time((x @ 300)[2m:1m] offset -6m)", "10m"),
    ("max_over_time(max_over_time((x @ 300)[1m:1m] offset -1m)[2m:1m] offset -2m)", "9m"),
    ("max_over_time(max_over_time(x[2m:1m] @ 300)[2m:1m] offset -2m)", "9m"),
    ("max_over_time(max_over_time((x @ 240)[2m:1m] @ 300 offset -2m)[3m:1m])", "9m"),
    ("max_over_time(max_over_time((x @ 240)[2m:1m] @ 300 offset -1m)[3m:1m])", "9m"),
    # predict_linear is evaluated at every step even with @: its window moves with the steps.
    ("max_over_time(predict_linear(c[3m] @ 300, 60)[4m:1m])", "9m"),
    ("sum_over_time(predict_linear(c[3m] @ 300, 60)[4m:1m])", "9m"),
    ("sum_over_time(predict_linear(c[3m], 60)[4m:1m])", "9m"),
    ("sum_over_time(predict_linear(c[3m] @ 300 offset 1m, 60)[4m:1m])", "9m"),
    ("predict_linear(c[5m:1m] @ 300, 60)", "9m"),
    # No step in the range: nothing to read.
    ("max_over_time(x[10s:1m])", "10m15s"),
    ("rate(x[10s:1m])", "10m15s"),
    ("absent_over_time(x[10s:1m])", "10m15s"),
    ("quantile_over_time(0.5, x[10s:1m])", "10m15s"),
    ("max_over_time(x[10s:1m])", "10m5s"),
]


def _cases() -> list[Case]:
    out: list[Case] = []
    out += [Case(SPECIAL, e, "0s") for e in NUMBERS]
    out += [Case(SPECIAL, e, "0s") for e in SCALAR_VECTOR]
    out += [Case(P, e, "3m") for e in VECTOR_VECTOR]
    out += [Case(P, e, "4m", note="y{a=2} is 0: division by zero") for e in VECTOR_VECTOR[:4]]
    out += [Case(M, e, "1m") for e in MANY]
    out += [Case(G, e, t) for e in SETS for t in ("1m", "5m")]
    out += [Case(P + C, e, "6m") for e in MODIFIERS]
    out += [Case(P + C + G + FAST, e, t) for e, t in SUBQUERIES]
    out.append(Case([('x{a="1"}', "0+1x40")], "max_over_time(x[3m:1m])", "8m", interval="45s"))
    out.append(Case(PQ, 'max_over_time(({__name__=~"p|q"} * 1)[6m:1m])', "6m", note="merged"))
    many = [(f'w{{k="{i}"}}', repr(-20 + i * 0.37)) for i in range(80)]  # > 64: numpy fast path
    out += [Case(many, e, "0s") for e in ("w ^ 7", "w ^ -3", "w ^ 0.5", "w atan2 0.3")]
    out.append(Case(PQ, 'max_over_time(last_over_time({__name__=~"p|q"}[1m])[2m:1m])', "6m"))
    out.append(Case([('x{a="1"}', "0+1x40")], "sum_over_time(x[3m:20s])", "8m", interval="45s"))
    return out


CASES = _cases()
ERROR_CASES = [Case(M + P, e, "1m") for e in ERRORS] + [
    Case(P, 'x + on() y{a="1"}', "3m", note="two x match the one y"),
    Case(G, "sum_over_time((g or h)[4m:1m])", "10m", note="g{a=1} and h{a=1} in one range"),
    Case(G, "g + on() h", "5m", note="duplicates on the right: h{a=1} and h{a=3}"),
    Case(G, 'count_over_time((-{__name__=~"g|h"})[3m:1m])', "8m"),
    # p and q never have points at the same step: only the whole range collides.
    Case(PQ, 'max_over_time((-{__name__=~"p|q"})[6m:1m])', "6m"),
    Case(PQ, 'max_over_time(rate({__name__=~"p|q"}[1m])[6m:1m])', "6m"),
    Case(PQ, 'max_over_time(max_over_time({__name__=~"p|q"}[1m:1m])[6m:1m])', "6m"),
    Case(PQ, 'max_over_time(last_over_time({__name__=~"p|q"}[1m])[6m:1m])', "6m"),
]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> list[Verdict]:
    return differential(CASES + ERROR_CASES, tmp_path_factory.mktemp("ops"), check_order=True)


def test_enough_cases() -> None:
    assert len(CASES) >= 120
    keys = [(c.expr, c.at, tuple(c.series)) for c in CASES + ERROR_CASES]
    assert len(set(keys)) == len(keys)


def test_promtool_agrees(verdicts: list[Verdict]) -> None:
    bad = [v for v in verdicts[: len(CASES)] if v.kind != AGREE]
    assert not bad, "\n\n".join(v.describe() for v in bad)


def test_errors_agree(verdicts: list[Verdict]) -> None:
    bad = [v for v in verdicts[len(CASES) :] if v.kind != AGREE_ERROR]
    assert not bad, "\n\n".join(v.describe() for v in bad)


def test_error_messages_are_prometheus_messages(verdicts: list[Verdict]) -> None:
    for v in verdicts[len(CASES) :]:
        assert v.result.error is not None
        line = next(ln for ln in v.promtool.splitlines() if ", err: " in ln)
        theirs = line.split(", err: ", 1)[1]
        assert unordered_error(v.result.error) == unordered_error(theirs), v.describe()
