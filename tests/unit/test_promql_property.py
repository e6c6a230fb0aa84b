"""Property tests: the vectorised evaluator against a per-sample transcription of Prometheus.

Random scrapes of one target (series coming and going, explicit staleness markers, counter
resets, NaN and infinities, jittered scrape times) are fed to a Store; every range function
and the instant selector are then evaluated at a random time, both "live" (nothing newer than
the evaluation time has been ingested: the fast path) and after every scrape has been ingested
(the general path), and compared bit for bit with :func:`tests.helpers.promql.reference_range`.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kpimon.labels import Labels
from kpimon.promql import Vector, compile_expr, evaluate
from kpimon.store import STALE_NAN, Store
from tests.helpers.promql import reference_range

FUNCS = (
    "rate",
    "increase",
    "irate",
    "count_over_time",
    "sum_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
)
LOOKBACK_MS = 300_000

Step = tuple[int, list[float | None]]  # (time ms, value per series; None = not scraped)


@st.composite
def scrapes(draw: st.DrawFn) -> tuple[list[Step], int]:
    n_series = draw(st.integers(1, 3))
    n_steps = draw(st.integers(1, 30))
    interval = draw(st.sampled_from([15_000, 60_000]))
    counter = draw(st.booleans())
    specials = st.sampled_from([math.nan, math.inf, -math.inf, STALE_NAN])
    steps: list[Step] = []
    totals = [draw(st.floats(0, 1000, allow_nan=False)) for _ in range(n_series)]
    for i in range(n_steps):
        t = i * interval + draw(st.integers(0, interval // 4))
        row: list[float | None] = []
        for j in range(n_series):
            if draw(st.integers(0, 9)) == 0:
                row.append(None)  # not in this scrape
                continue
            if draw(st.integers(0, 19)) == 0:
                row.append(draw(specials))
                continue
            if counter:
                if draw(st.integers(0, 9)) == 0:
                    totals[j] = draw(st.floats(0, 50, allow_nan=False))  # reset
                else:
                    totals[j] += draw(st.floats(0, 100, allow_nan=False))
                row.append(totals[j])
            else:
                row.append(draw(st.floats(-1e6, 1e6, allow_nan=False)))
        steps.append((t, row))
    return steps, interval


def feed(steps: list[Step], until_ms: int | None, interval: int) -> Store:
    store = Store(retention_s=len(steps) * interval / 1000 + 900, min_interval_s=interval / 2000)
    for t, row in steps:
        if until_ms is not None and t > until_ms:
            break
        keys = [f'x{{s="{j}"}}'.encode() for j, v in enumerate(row) if v is not None]
        vals = np.array([v for v in row if v is not None], dtype=np.float64)
        store.ingest("target", (("job", "j"),), keys, vals, t / 1000)
    return store


def samples_of(steps: list[Step], j: int) -> list[tuple[int, float, bool]]:
    """(time, value, is a staleness marker) of series j, markers included, as the store sees it:
    a series missing from a scrape right after being present gets a marker."""
    out: list[tuple[int, float, bool]] = []
    present = False
    for t, row in steps:
        v = row[j]
        if v is None:
            if present:
                out.append((t, math.nan, True))
            present = False
            continue
        stale = np.float64(v).tobytes() == np.float64(STALE_NAN).tobytes()
        out.append((t, v, stale))
        present = not stale
    return out


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def results(store: Store, expr: str, at_ms: int) -> dict[Labels, float]:
    res = evaluate(compile_expr(expr), store, at_ms / 1000)
    assert isinstance(res, Vector)
    return dict(zip(res.labels, res.values.tolist(), strict=True))


@settings(max_examples=150, deadline=None)
@given(
    data=scrapes(),
    func=st.sampled_from(FUNCS),
    range_ms=st.sampled_from([30_000, 60_000, 90_500, 300_000, 600_000]),
    at=st.integers(0, 40 * 60_000),
    offset_ms=st.sampled_from([0, 0, 60_000]),
)
def test_range_functions_match_prometheus(
    data: tuple[list[Step], int], func: str, range_ms: int, at: int, offset_ms: int
) -> None:
    steps, interval = data
    at = at % (len(steps) * interval + 2 * interval)
    offset = f" offset {offset_ms // 1000}s" if offset_ms else ""
    expr = f"{func}(x[{range_ms}ms]{offset})"
    hi = at - offset_ms
    n_series = len(steps[0][1])
    expected: dict[Labels, float] = {}
    for j in range(n_series):
        pts = [(t, v) for t, v, stale in samples_of(steps, j) if not stale]
        ref = reference_range(func, pts, hi - range_ms, hi)
        if ref is not None:
            expected[(("job", "j"), ("s", str(j)))] = ref
    for until in (at, None):
        got = results(feed(steps, until, interval), expr, at)
        assert got.keys() == expected.keys(), (until, got, expected)
        for lab, value in expected.items():
            assert same(got[lab], value), (until, lab, got[lab], value)


@settings(max_examples=100, deadline=None)
@given(data=scrapes(), at=st.integers(0, 40 * 60_000))
def test_instant_selector_matches_prometheus(data: tuple[list[Step], int], at: int) -> None:
    steps, interval = data
    at = at % (len(steps) * interval + 2 * interval)
    n_series = len(steps[0][1])
    expected: dict[Labels, float] = {}
    for j in range(n_series):
        seen = [(t, v, stale) for t, v, stale in samples_of(steps, j) if t <= at]
        if seen and seen[-1][0] >= at - LOOKBACK_MS and not seen[-1][2]:
            expected[(("__name__", "x"), ("job", "j"), ("s", str(j)))] = seen[-1][1]
    for until in (at, None):
        got = results(feed(steps, until, interval), "x", at)
        assert got.keys() == expected.keys(), (until, got, expected)
        assert all(same(got[k], v) for k, v in expected.items())
