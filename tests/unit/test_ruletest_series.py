"""promtool's series notation as kpimon reads it (kpimon.ruletest.series).

The same strings are checked against Debian's promtool in
tests/integration/test_ruletest_promtool.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kpimon.ruletest.series import SeriesError, expand_values, parse_metric
from kpimon.store import is_stale as _is_stale


def is_stale(v):
    return bool(_is_stale(np.array([v], dtype=np.float64))[0])


def _plain(values):
    """Values with the staleness marker as "stale" and NaN as "nan" (comparable with ==)."""
    out = []
    for v in values:
        if v is None:
            out.append(None)
        elif is_stale(v):
            out.append("stale")
        elif math.isnan(v):
            out.append("nan")
        else:
            out.append(v)
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 2 3", [1, 2, 3]),
        ("0+10x3", [0, 10, 20, 30]),
        ("-2+4x3", [-2, 2, 6, 10]),
        (" 1-2x4", [1, -1, -3, -5, -7]),
        ("1x4", [1, 1, 1, 1, 1]),
        ("1 _x3 stale", [1, None, None, None, "stale"]),
        ("_ _x0 2", [None, 2]),
        ("stale+1x2", ["stale", "nan", "nan"]),
        ("010 08 0.5 .5 1. 1e3 1E-2", [8, 8, 0.5, 0.5, 1, 1000, 0.01]),
        ("Inf -Inf +5 inf NaN nan INF", [math.inf, -math.inf, 5, math.inf, "nan", "nan", math.inf]),
        ("-Inf+1x2", [-math.inf, -math.inf, -math.inf]),
        ("1e308+1e308x1", [1e308, math.inf]),
        ("1\t2\n  3  ", [1, 2, 3]),
        ("", []),
        ("   ", []),
        ("5x03", [5, 5, 5, 5]),
    ],
)
def test_expand(text, expected):
    assert _plain(expand_values(text)) == expected


def test_expand_adds_cumulatively_like_prometheus():
    values = expand_values("0.1+0.1x9")
    acc, want = 0.1, [0.1]
    for _ in range(9):
        acc += 0.1
        want.append(acc)
    assert list(values) == want
    assert values[-1] != 1.0  # 0.1 added nine times, not 0.1 + 9 * 0.1


def test_stale_keeps_its_bits():
    assert all(is_stale(v) for v in expand_values("stale stale"))


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("1 2 abc", 4),
        ("1+2", 0),
        ("1x", 0),
        ("1x2.5", 2),
        ("1x-2", 0),
        ("1--2x3", 1),
        ("1_0", 0),
        ("1e", 0),
        ("Infx3", 0),
        ("stalex2", 0),  # one identifier to Prometheus' lexer, as Infx3
        ("Stale", 0),
        ("sum", 0),
        ("1 # 2", 2),
        ("_x", 0),
        ("1x99999999999", 2),
    ],
)
def test_expand_rejects(text, offset):
    with pytest.raises(SeriesError) as info:
        expand_values(text)
    assert info.value.offset == offset


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("up", (("__name__", "up"),)),
        ('up{job="a"}', (("__name__", "up"), ("job", "a"))),
        (
            " up { job = \"a\" , instance='b', } ",
            (("__name__", "up"), ("instance", "b"), ("job", "a")),
        ),
        ("{}", ()),
        ('{__name__="x", a="1"}', (("__name__", "x"), ("a", "1"))),
        ('x{a="\\n\\"\\\\\\x41\\u00e9\\101"}', (("__name__", "x"), ("a", '\n"\\AéA'))),
        ("x{a=`raw\\n`}", (("__name__", "x"), ("a", "raw\\n"))),
        ('x{a=""}', (("__name__", "x"),)),
        ('ns:rule:rate5m{by="x"}', (("__name__", "ns:rule:rate5m"), ("by", "x"))),
    ],
)
def test_parse_metric(text, labels):
    assert parse_metric(text) == labels


@pytest.mark.parametrize(
    "text",
    [
        "",
        "up{",
        'up{job="a"',
        'up{job=~"a"}',
        'up{job!="a"}',
        "up{job=a}",
        'up{job="a" x="b"}',
        'up{a="1", a="2"}',
        'up{job="a"} 1 2',
        '{job="a\\q"}',
        '1up{job="a"}',
    ],
)
def test_parse_metric_rejects(text):
    with pytest.raises(SeriesError):
        parse_metric(text)


def test_input_series_take_no_blank_before_the_brace():
    assert parse_metric('m {a="1"}') == (("__name__", "m"), ("a", "1"))
    with pytest.raises(SeriesError):
        parse_metric('m {a="1"}', input_series=True)
    assert parse_metric(' m{ a = "1" } ', input_series=True) == (("__name__", "m"), ("a", "1"))
