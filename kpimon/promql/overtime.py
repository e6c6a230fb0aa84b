"""sum/avg/min/max_over_time for windows without gaps, read one time step at a time.

The daemon's case: every row of a series' window holds a real sample (the store's ``gap_ms``
tells without reading the rows). Then the window needs no masks and no copy: step ``i`` is each
series' ``i``-th sample of the window, a row of the store (a view when the series are contiguous
and their targets' windows sit on the same ring rows, else one gather per step), and the
reductions run over it with preallocated buffers, in place.

The arithmetic gives the same bits as :func:`kpimon.promql.functions._general` (Prometheus'
operation order): the Kahan–Neumaier compensation is computed with Knuth's branch-free TwoSum,
which yields the same (exact) rounding error whenever the running sum stays finite; series whose
running sum does not (an Inf or NaN sample, an overflow) are reported back and left to the
general path. min/max apply ``fmax``/``fmin`` step by step in time order, as ``reduce`` does.
This module never does I/O and never awaits.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from kpimon.promql.select import Match, target_rows
from kpimon.store import StoreView

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Mask = NDArray[np.bool_]

FUNCS = frozenset({"sum_over_time", "avg_over_time", "min_over_time", "max_over_time"})


BLOCK = 32768
"""Series per block: the buffers of a block stay in the CPU's L2 cache over all the steps."""


class Steps:
    """The samples of some series of a selector, one time step at a time, by blocks of series.

    ``at`` are the positions (among the selector's series) of the ``size`` series covered; step
    ``i`` holds the ``i``-th sample of each one's window; a series with fewer than ``i + 1``
    samples is ``short`` at that step (its cell then holds anything).
    """

    def __init__(
        self,
        view: StoreView,
        at: I64 | slice,
        cols: I64 | slice,
        first_row: I64 | int,
        count: I64 | int,
        size: int,
    ) -> None:
        self.at = at
        self.size = size
        self.depth = int(np.max(count))
        self._view = view
        self._cols = cols
        self._first = first_row
        self._count = count

    def blocks(self) -> Iterator[tuple[slice, Iterator[tuple[F64, Mask | None]]]]:
        """(positions, steps) per block of series, the steps as :meth:`steps` yields them."""
        for start in range(0, self.size, BLOCK):
            block = slice(start, min(start + BLOCK, self.size))
            yield block, self.steps(block)

    def steps(self, block: slice) -> Iterator[tuple[F64, Mask | None]]:
        """(values, short) of the series in ``block`` for each step, oldest first.

        The values are valid until the next step (a view of the store or a reused buffer).
        """
        values, cap = self._view.values, self._view.capacity
        cols, first, count = self._cols, self._first, self._count
        if isinstance(cols, slice):
            cols = slice(cols.start + block.start, cols.start + block.stop)
        else:
            cols = cols[block]
        if not isinstance(count, int):
            count = count[block]
        least = count if isinstance(count, int) else int(np.min(count))
        buf = np.empty(block.stop - block.start)
        if isinstance(first, int):
            for i in range(self.depth):
                row = values[(first + i) % cap]
                # (mode="clip": with out=, take's default mode copies through a buffer)
                x = row[cols] if isinstance(cols, slice) else row.take(cols, mode="clip", out=buf)
                yield x, None if i < least else _short(count, i)
            return
        # Targets on different ring rows: one flat gather per step, the index moving a row on.
        flat, stride = values.reshape(-1), values.shape[1]
        end = cap * stride
        col_index = np.arange(cols.start, cols.stop) if isinstance(cols, slice) else cols
        index = first[block] * stride + col_index
        for i in range(self.depth):
            if i:
                np.add(index, stride, out=index)
                np.subtract(index, end, out=index, where=index >= end)
            x = flat.take(index, mode="clip", out=buf)
            yield x, None if i < least else _short(count, i)


def _short(count: I64 | int, i: int) -> Mask:
    assert not isinstance(count, int)  # a uniform count is never short
    out: Mask = count <= i
    return out


def full_windows(view: StoreView, m: Match, lo_ms: int, hi_ms: int) -> Steps | None:
    """The steps of the matched series with a real sample in every row of their window.

    None when there are none. Uses no rows: a window is full when the series' newest row
    without a real sample (``gap_ms``) is older than the window's first row.
    """
    _, count, first_row = target_rows(view, m.slots, lo_ms, hi_ms)
    first_ms = view.row_times[m.slots, first_row]
    full = (view.gap_ms[m.index] < m.per_series(first_ms)) & m.per_series(count > 0)
    n_full = int(np.count_nonzero(full))
    if not n_full:
        return None
    at: I64 | slice
    if n_full == m.cols.size:
        at, cols = slice(None), m.index
    else:
        at = np.flatnonzero(full)
        cols = m.cols[at]
    one_row = bool(np.all(first_row == first_row[0]))
    first: I64 | int = int(first_row[0]) if one_row else m.per_series(first_row)[at]
    same = bool(np.all(count == count[0]))
    cnt: I64 | int = int(count[0]) if same else m.per_series(count)[at]
    return Steps(view, at, cols, first, cnt, n_full)


def reduce(func: str, steps: Steps) -> tuple[F64, Mask | None]:
    """``func`` over the steps: (value per series, series to compute by the general path)."""
    out = np.empty(steps.size)
    if func in ("sum_over_time", "avg_over_time"):
        compensated = _sum if func == "sum_over_time" else _avg
        bad = np.zeros(steps.size, dtype=bool)
        n = min(steps.size, BLOCK)
        buffers = [np.empty(n) for _ in range(6)]
        for block, rows in steps.blocks():
            size = block.stop - block.start
            total, comp = compensated(rows, [b[:size] for b in buffers])
            np.isfinite(total, out=bad[block])
            np.add(total, comp, out=out[block])
        np.logical_not(bad, out=bad)
        return out, bad if bad.any() else None
    red = np.fmax if func == "max_over_time" else np.fmin
    for block, rows in steps.blocks():
        acc = out[block]
        for i, (x, short) in enumerate(rows):
            # Samples missing at the end of a short window: NaN, as in the general path's reduce.
            y = x if short is None else np.where(short, np.nan, x)
            if i:
                red(acc, y, out=acc)
            else:
                np.copyto(acc, y)
    return out, None


def _sum(rows: Iterator[tuple[F64, Mask | None]], buffers: list[F64]) -> tuple[F64, F64]:
    """Running sum and Neumaier compensation (the rounding errors, summed in order)."""
    total, comp, t, z, w, _ = buffers
    comp.fill(0.0)
    for i, (x, short) in enumerate(rows):
        # -0.0 is exactly neutral: it changes neither the sum nor the compensation.
        y = x if short is None else np.where(short, -0.0, x)
        if not i:  # 0 + x: exact, no error to compensate
            np.add(y, 0.0, out=total)
            continue
        _two_sum(total, y, t, z, w)
        np.add(comp, w, out=comp)
        total, t = t, total
    return total, comp


def _avg(rows: Iterator[tuple[F64, Mask | None]], buffers: list[F64]) -> tuple[F64, F64]:
    """Prometheus' incremental mean with Kahan compensation: (mean, compensation)."""
    mean, comp, inc, t, z, w = buffers
    comp.fill(0.0)
    for i, (x, short) in enumerate(rows):
        if not i:  # x/1 - 0/1 added to 0: x + 0, exact
            np.add(x, 0.0, out=mean)
            continue
        count = float(i + 1)
        np.divide(x, count, out=inc)
        np.divide(mean, count, out=w)
        np.subtract(inc, w, out=inc)
        if short is not None:
            np.copyto(inc, -0.0, where=short)
        _two_sum(mean, inc, t, z, w)
        np.add(comp, w, out=comp)
        mean, t = t, mean
    return mean, comp


def _two_sum(s: F64, x: F64, t: F64, z: F64, err: F64) -> None:
    """``t = s + x`` and ``err`` its exact rounding error (Knuth), without temporaries.

    Equal to kahanSumInc's branchy (Neumaier) error term for finite, non-overflowing sums.
    """
    np.add(s, x, out=t)
    np.subtract(t, s, out=z)
    np.subtract(t, z, out=err)
    np.subtract(s, err, out=err)
    np.subtract(x, z, out=z)
    np.add(err, z, out=err)
