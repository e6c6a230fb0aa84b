"""Range-vector functions (rate, irate, increase, *_over_time) with Prometheus 2.x arithmetic.

Every function is computed for all series of a selector at once. The arithmetic follows
Prometheus 2.42's promql/functions.go operation for operation (extrapolatedRate with its
extrapolation limits and counter-reset handling, Kahan-compensated sum_over_time and
avg_over_time), so that results agree to the last bit with Prometheus on the same samples.

Two paths give the same numbers: fast ones for the daemon's case (no gap inside the window;
rate, increase, irate and count_over_time also need the window to end at the target's newest
scrape and, for rate/increase, no counter reset: then only the first and last sample of each
series are read; the other *_over_time functions read the window step by step in place, see
:mod:`~kpimon.promql.overtime`), and a general one that gathers every row of the window. This
module never does I/O and never awaits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kpimon.promql import overtime, plan
from kpimon.promql.instant import absent
from kpimon.promql.ops import Vec
from kpimon.promql.select import Match, Window, gather, target_rows
from kpimon.promql.tables import LabelTable
from kpimon.store import StoreView

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Mask = NDArray[np.bool_]

_FAST = frozenset({"rate", "increase", "irate", "count_over_time"})


def apply(
    func: str,
    view: StoreView,
    m: Match,
    lo_ms: int,
    hi_ms: int,
    range_ms: int,
    *,
    param: float | None = None,
    t_ms: int | None = None,
) -> tuple[Mask, F64]:
    """``func`` over the window [lo_ms, hi_ms] of every matched series: (has a result, value).

    ``param`` is the scalar argument of ``quantile_over_time`` and ``predict_linear``; ``t_ms``
    the evaluation time (``predict_linear`` predicts from it; default ``hi_ms``).
    """
    k = m.cols.size
    ok = np.zeros(k, dtype=bool)
    out = np.zeros(k)
    if not k:
        return ok, out
    slow = np.ones(k, dtype=bool)
    if func in _FAST:
        with np.errstate(all="ignore"):
            slow = _fast(func, view, m, lo_ms, hi_ms, range_ms, ok, out)
    elif func in overtime.FUNCS:
        steps = overtime.full_windows(view, m, lo_ms, hi_ms)
        if steps is not None:
            with np.errstate(all="ignore"):
                values, redo = overtime.reduce(func, steps)
            out[steps.at] = values
            ok[steps.at] = True
            slow[steps.at] = False
            if redo is not None:  # Inf, NaN or overflow: the general path's special cases
                slow[np.arange(k)[steps.at][redo]] = True
    idx = np.flatnonzero(slow) if slow.any() else slow[:0].nonzero()[0]
    if idx.size:
        w = gather(view, m.cols[idx], m.slots, m.slot_of[idx], lo_ms, hi_ms)
        with np.errstate(all="ignore"):  # NaN and Inf are values like any other here
            ok[idx], out[idx] = window_apply(
                func, w, lo_ms, hi_ms, range_ms, param=param, t_ms=hi_ms if t_ms is None else t_ms
            )
    return ok, out


def window_apply(
    func: str,
    w: Window,
    lo_ms: int,
    hi_ms: int,
    range_ms: int,
    *,
    param: float | None = None,
    t_ms: int = 0,
) -> tuple[Mask, F64]:
    """``func`` over a gathered window (any :class:`~kpimon.promql.select.Window`)."""
    if func in _MORE:
        with np.errstate(all="ignore"):
            return _more(func, compact(w), w, lo_ms, hi_ms, range_ms, param, t_ms)
    return _general(func, w, lo_ms, hi_ms, range_ms)


def _fast(
    func: str,
    view: StoreView,
    m: Match,
    lo_ms: int,
    hi_ms: int,
    range_ms: int,
    ok: Mask,
    out: F64,
) -> Mask:
    """Fill ``ok``/``out`` for the series the fast path can answer; returns the others.

    Fast: the window ends at the target's newest row and every row of the window holds a real
    sample of the series (for rate/increase also: no counter reset inside the window). Then the
    samples are the rows themselves: times, first and last row are per target, not per series.
    """
    cap = view.capacity
    newer, count, first_row = target_rows(view, m.slots, lo_ms, hi_ms)
    first_ms = view.row_times[m.slots, first_row]
    written = view.rows_written[m.slots]
    last_ms = view.row_times[m.slots, (written - 1) % cap]
    ix = m.index
    first_ms_s = m.per_series(first_ms)
    full = (view.gap_ms[ix] < first_ms_s) & m.per_series((newer == 0) & (count > 0))
    if func == "count_over_time":
        f = np.flatnonzero(full)
        out[f] = m.per_series(count.astype(np.float64))[f] if m.slots.size > 1 else count[0]
        ok[f] = True
        return np.asarray(~full, dtype=bool)
    if func == "irate":
        f = np.flatnonzero(full & m.per_series(count >= 2))  # one sample: no result either way
        prev_row = (written - 2) % cap
        s = m.slot_of[f]
        prev = view.values[prev_row[s], m.cols[f]]
        last = view.last_value[m.cols[f]]
        out[f] = _irate(prev, last, view.row_times[m.slots, prev_row][s], last_ms[s])
        ok[f] = True
        return np.asarray(~full, dtype=bool)
    fast = full & (view.reset_ms[ix] <= first_ms_s)
    # Per target: Prometheus' extrapolation quantities (identical for all its series).
    n = count.astype(np.float64)
    to_start = (first_ms - lo_ms).astype(np.float64) / 1000
    to_end = (hi_ms - last_ms).astype(np.float64) / 1000
    sampled = (last_ms - first_ms).astype(np.float64) / 1000
    average = sampled / (n - 1)
    threshold = average * 1.1
    end_part = np.where(to_end < threshold, to_end, average / 2)
    range_s = _go_seconds(range_ms) if func == "rate" else 1.0
    which: I64 | slice
    if fast.all():
        which = slice(None)
        spread = m.per_series
        if m.slots.size == 1:
            first = view.values[int(first_row[0]), ix]
        else:  # one flat gather beats a 2-D one
            flat = m.per_series(first_row) * view.values.shape[1] + m.cols
            first = view.values.reshape(-1)[flat]
        last = view.last_value[ix]
    else:
        which = np.flatnonzero(fast)
        slot_of = m.slot_of[which]
        cols = m.cols[which]
        first = view.values[first_row[slot_of], cols]
        last = view.last_value[cols]

        def spread(per_slot: NDArray[Any]) -> Any:
            return per_slot[slot_of]

    result = last - first
    sampled_s, to_start_s, threshold_s = spread(sampled), spread(to_start), spread(threshold)
    to_zero = sampled_s * (first / result)
    limited = (result > 0) & (first >= 0) & (to_zero < to_start_s)
    if not limited.any() and bool(np.all(to_start < threshold)):
        # The common case: extrapolate to both window edges, one factor per target.
        factor = (sampled + to_start + end_part) / sampled
        if func == "rate":
            factor = factor / range_s
        out[which] = result * spread(factor)
    else:
        start = np.where(limited, to_zero, to_start_s)
        interval = sampled_s + np.where(start < threshold_s, start, spread(average / 2))
        interval = interval + spread(end_part)
        factor_s = interval / sampled_s
        if func == "rate":
            factor_s = factor_s / range_s
        out[which] = result * factor_s
    ok[which] = spread(count >= 2)
    return np.asarray(~fast, dtype=bool)


def _general(func: str, w: Window, lo_ms: int, hi_ms: int, range_ms: int) -> tuple[Mask, F64]:
    real, v = w.real, w.v
    depth, k = v.shape
    cnt = real.sum(axis=0)
    has = cnt > 0
    cols = np.arange(k)
    if func == "count_over_time":
        return has, cnt.astype(np.float64)
    if func in ("max_over_time", "min_over_time"):
        # fmax/fmin skip (quiet) NaN unless all are: Prometheus' rule for NaN samples. Cells
        # that are not samples hold signalling NaNs, which fmax/fmin would not skip: mask them.
        red = np.fmax if func == "max_over_time" else np.fmin
        quiet = v if real.all() else np.where(real, v, np.nan)
        return has, red.reduce(quiet, axis=0) if depth else np.zeros(k)
    if func == "sum_over_time":
        return has, _kahan_sum(real, v)
    if func == "avg_over_time":
        return has, _kahan_avg(real, v)
    last_i = depth - 1 - np.argmax(real[::-1], axis=0) if depth else np.zeros(k, np.int64)
    if func == "irate":
        before = real & (np.arange(depth)[:, None] < last_i[None, :])
        prev_i = depth - 1 - np.argmax(before[::-1], axis=0) if depth else last_i
        ok = cnt >= 2
        out = np.zeros(k)
        if depth:
            out[ok] = _irate(
                v[prev_i, cols][ok],
                v[last_i, cols][ok],
                w.times_at(prev_i)[ok],
                w.times_at(last_i)[ok],
            )
        return ok, out
    # rate, increase
    first_i = np.argmax(real, axis=0) if depth else np.zeros(k, np.int64)
    ok = cnt >= 2
    if not depth:
        return ok, np.zeros(k)
    first, last = v[first_i, cols], v[last_i, cols]
    result = last - first
    prev = first.copy()
    for i in range(depth):
        step = real[i] & (i > first_i)
        cur = v[i]
        np.add(result, prev, out=result, where=step & (cur < prev))
        prev = np.where(step, cur, prev)
    val, _ = _extrapolate(
        result,
        first,
        w.times_at(first_i),
        w.times_at(last_i),
        cnt,
        lo_ms,
        hi_ms,
        range_ms,
        is_rate=func == "rate",
    )
    return ok, np.where(ok, val, 0.0)


def _extrapolate(
    result: F64,
    first: F64,
    first_ms: I64,
    last_ms: I64,
    n: I64,
    lo_ms: int,
    hi_ms: int,
    range_ms: int,
    *,
    is_rate: bool,
    is_counter: bool = True,
) -> tuple[F64, Mask]:
    """Prometheus' extrapolatedRate, given last - first (+ resets for counters) (``result``)."""
    has = n >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        to_start = (first_ms - lo_ms).astype(np.float64) / 1000
        to_end = (hi_ms - last_ms).astype(np.float64) / 1000
        sampled = (last_ms - first_ms).astype(np.float64) / 1000
        average = sampled / (n - 1).astype(np.float64)
        # Counters cannot go below zero: do not extrapolate the start past the zero point.
        to_zero = sampled * (first / result)
        limit = (result > 0) & (first >= 0) & (to_zero < to_start) & is_counter
        to_start = np.where(limit, to_zero, to_start)
        threshold = average * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, average / 2)
        interval = interval + np.where(to_end < threshold, to_end, average / 2)
        factor = interval / sampled
        if is_rate:
            factor = factor / _go_seconds(range_ms)
        return result * factor, has


def _irate(prev: F64, last: F64, prev_ms: I64, last_ms: I64) -> F64:
    """Per-second rate between the last two samples; a drop counts as a counter reset."""
    delta = np.where(last < prev, last, last - prev)
    return delta / ((last_ms - prev_ms).astype(np.float64) / 1000)


def _kahan_step(total: F64, comp: F64, inc: F64) -> tuple[F64, F64]:
    """One step of Prometheus' kahanSumInc (Neumaier's variant)."""
    t = total + inc
    big = np.abs(total) >= np.abs(inc)
    comp = comp + np.where(big, (total - t) + inc, (inc - t) + total)
    return t, comp


def _kahan_sum(real: Mask, v: F64) -> F64:
    depth, k = v.shape
    total, comp = np.zeros(k), np.zeros(k)
    every = bool(real.all())
    for i in range(depth):
        t, c = _kahan_step(total, comp, v[i])
        if every:
            total, comp = t, c
        else:
            total = np.where(real[i], t, total)
            comp = np.where(real[i], c, comp)
    return np.where(np.isinf(total), total, total + comp)


def _kahan_avg(real: Mask, v: F64) -> F64:
    depth, k = v.shape
    mean, comp, count = np.zeros(k), np.zeros(k), np.zeros(k)
    every = bool(real.all())
    careful = bool(np.isinf(v[real]).any())  # infinities need Prometheus' special cases
    for i in range(depth):
        x = v[i]
        count = count + real[i] if not every else np.full(k, float(i + 1))
        step: Mask | None = None if every else real[i]
        if careful:
            # An infinite mean stays as it is unless NaN or the opposite infinity arrives.
            keep = np.isinf(mean) & (
                (np.isinf(x) & ((mean > 0) == (x > 0))) | (~np.isinf(x) & ~np.isnan(x))
            )
            step = ~keep if step is None else step & ~keep
        t, c = _kahan_step(mean, comp, x / count - mean / count)
        if step is None:
            mean, comp = t, c
            careful = bool(np.isinf(mean).any())  # overflow: from now on, be careful
        else:
            mean = np.where(step, t, mean)
            comp = np.where(step, c, comp)
            careful = careful or bool(np.isinf(mean).any())
    return np.where(np.isinf(mean), mean, mean + comp)


def _go_seconds(ms: int) -> float:
    """Go's time.Duration.Seconds() for a whole number of milliseconds."""
    whole, rest = divmod(ms, 1000)
    return float(whole) + float(rest * 1_000_000) / 1e9


# --- the other range functions: over each series' samples packed to the top of the window ---

_MORE = frozenset(
    {
        "absent_over_time",
        "changes",
        "delta",
        "deriv",
        "idelta",
        "last_over_time",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "resets",
        "stddev_over_time",
        "stdvar_over_time",
    }
)


@dataclass(frozen=True, slots=True)
class Packed:
    """A window's samples packed per series: ``v[i, j]`` is series j's i-th sample (oldest
    first) at ``t[i, j]`` ms, for ``i < n[j]``; the cells below are meaningless."""

    v: F64
    t: I64
    n: I64

    def valid(self, i: int) -> Mask:
        """Which series have an ``i``-th sample."""
        out: Mask = self.n > i
        return out

    def last(self, back: int = 1) -> F64:
        """Each series' ``back``-th newest value (where it has that many)."""
        if not self.v.shape[0]:
            return np.zeros(self.n.size)
        row = np.maximum(self.n - back, 0)
        out: F64 = self.v[row, np.arange(self.n.size)]
        return out


def compact(w: Window) -> Packed:
    """The samples of ``w`` (staleness markers and padding left out) packed to the top."""
    real = w.real & w.inside
    depth, k = real.shape
    n = real.sum(axis=0).astype(np.int64)
    if bool(real.all()):
        rows: I64 = np.broadcast_to(np.arange(depth)[:, None], (depth, k))
        v = w.v
    else:
        rows = np.argsort(~real, axis=0, kind="stable")
        v = np.take_along_axis(w.v, rows, axis=0)
    t = np.empty((depth, k), dtype=np.int64)
    for i in range(depth):
        t[i] = w.times_at(np.ascontiguousarray(rows[i]))
    return Packed(v=np.asarray(v, dtype=np.float64), t=t, n=n)


def _more(
    func: str,
    p: Packed,
    w: Window,
    lo_ms: int,
    hi_ms: int,
    range_ms: int,
    param: float | None,
    t_ms: int,
) -> tuple[Mask, F64]:
    depth, k = p.v.shape
    has = p.n > 0
    if func in ("present_over_time", "absent_over_time"):
        return has, np.ones(k)
    if func == "last_over_time":
        return has, p.last()
    if func in ("changes", "resets"):
        cur, prev = p.v[1:], p.v[:-1]
        valid = np.arange(1, depth)[:, None] < p.n[None, :]
        same_nan = np.isnan(cur) & np.isnan(prev)
        hit = ((cur != prev) & ~same_nan) if func == "changes" else cur < prev
        return has, (hit & valid).sum(axis=0).astype(np.float64)
    two = p.n >= 2
    if func == "idelta":
        return two, np.where(two, p.last(1) - p.last(2), 0.0)
    if func == "delta":
        cols = np.arange(k)
        last_i = np.maximum(p.n - 1, 0)
        first = p.v[0] if depth else np.zeros(k)
        val, _ = _extrapolate(
            p.last() - first,
            first,
            p.t[0] if depth else np.zeros(k, np.int64),
            p.t[last_i, cols] if depth else np.zeros(k, np.int64),
            p.n,
            lo_ms,
            hi_ms,
            range_ms,
            is_rate=False,
            is_counter=False,
        )
        return two, np.where(two, val, 0.0)
    if func in ("deriv", "predict_linear"):
        at = p.t[0] if func == "deriv" and depth else np.full(k, t_ms, dtype=np.int64)
        slope, intercept = _regression(p, at)
        if func == "deriv":
            return two, np.where(two, slope, 0.0)
        assert param is not None
        return two, np.where(two, slope * param + intercept, 0.0)
    if func == "quantile_over_time":
        assert param is not None
        return has, _quantile_over_time(param, p)
    # stddev_over_time, stdvar_over_time
    var = _variance_over_time(p)
    return has, np.sqrt(var) if func == "stddev_over_time" else var


def _regression(p: Packed, at_ms: I64) -> tuple[F64, F64]:
    """Prometheus' linearRegression: Kahan-summed least squares, x in seconds from ``at_ms``."""
    depth, k = p.v.shape
    zeros = [np.zeros(k) for _ in range(8)]
    const = np.ones(k, dtype=bool)
    every = bool(np.all(p.n == depth))  # no series short of samples: no masking
    for i in range(depth):
        ok = p.valid(i)
        y = p.v[i]
        x = (p.t[i] - at_ms).astype(np.float64) / 1e3
        if i:
            const &= (y == p.v[0]) if every else (~ok | (y == p.v[0]))
        for acc, comp, inc in ((0, 1, x), (2, 3, y), (4, 5, x * y), (6, 7, x * x)):
            t, c = _kahan_step(zeros[acc], zeros[comp], inc)
            if every:
                zeros[acc], zeros[comp] = t, c
            else:
                zeros[acc] = np.where(ok, t, zeros[acc])
                zeros[comp] = np.where(ok, c, zeros[comp])
    sx, cx, sy, cy, sxy, cxy, sx2, cx2 = zeros
    n = p.n.astype(np.float64)
    sx, sy, sxy, sx2 = sx + cx, sy + cy, sxy + cxy, sx2 + cx2
    cov = sxy - sx * sy / n
    var = sx2 - sx * sx / n
    slope = cov / var
    intercept = sy / n - slope * sx / n
    first = p.v[0] if depth else np.zeros(k)
    inf = np.isinf(first)
    slope = np.where(const, np.where(inf, np.nan, 0.0), slope)
    intercept = np.where(const, np.where(inf, np.nan, first), intercept)
    return slope, intercept


def _quantile_over_time(q: float, p: Packed) -> F64:
    """Prometheus' quantile over each window's values: sorted with NaN first, interpolated."""
    depth, k = p.v.shape
    if math.isnan(q):
        return np.full(k, math.nan)
    if q < 0:
        return np.full(k, -math.inf)
    if q > 1:
        return np.full(k, math.inf)
    if not depth:
        return np.zeros(k)
    outside = np.arange(depth)[:, None] >= p.n[None, :]
    nan = np.isnan(p.v)
    order = np.lexsort((np.where(nan, 0.0, p.v), ~nan, outside), axis=0)
    v = np.take_along_axis(p.v, order, axis=0)
    n = p.n.astype(np.float64)
    rank = q * (n - 1)
    lower = np.maximum(0.0, np.floor(rank))
    upper = np.minimum(n - 1, lower + 1)
    weight = rank - np.floor(rank)
    cols = np.arange(k)
    lo = v[np.maximum(lower, 0).astype(np.int64), cols]
    hi = v[np.maximum(upper, 0).astype(np.int64), cols]
    out: F64 = lo * (1 - weight) + hi * weight
    return out


def _variance_over_time(p: Packed) -> F64:
    """Prometheus' stdvar_over_time: Welford's updates with Kahan-compensated sums."""
    depth, k = p.v.shape
    mean, c_mean, aux, c_aux = (np.zeros(k) for _ in range(4))
    every = bool(np.all(p.n == depth))  # no series short of samples: no masking
    for i in range(depth):
        x = p.v[i]
        delta = x - (mean + c_mean)
        m, cm = _kahan_step(mean, c_mean, delta / float(i + 1))
        a, ca = _kahan_step(aux, c_aux, delta * (x - (m + cm)))
        if every:
            mean, c_mean, aux, c_aux = m, cm, a, ca
            continue
        ok = p.valid(i)
        mean, c_mean = np.where(ok, m, mean), np.where(ok, cm, c_mean)
        aux, c_aux = np.where(ok, a, aux), np.where(ok, ca, c_aux)
    out: F64 = (aux + c_aux) / p.n.astype(np.float64)
    return out


def absent_over_time(node: plan.RangeCall, store: Any, *, present: bool) -> Vec:
    """``absent_over_time``'s result: 1 with the selector's labels when no series has a sample."""
    memo = plan.memo(node, store)
    table = memo.get("absent_table")
    if table is None:
        table = memo["absent_table"] = LabelTable([node.absent])
    return absent(table, present=present)
