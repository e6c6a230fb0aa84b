"""Subqueries: the steps Prometheus evaluates ``expr[range:step]`` at, and the range vector built
from the per-step results, as a :class:`~kpimon.promql.select.Window` for the range functions.

Prometheus 2.42 (promql/engine.go) evaluates a subquery over the whole range of the evaluator
that contains it: from the evaluator's first step minus offset and range, rounded *up* to a
multiple of the step in absolute time (steps are aligned to ``0``, not to the query), to its
last step minus the offset, one step apart; each step is an instant evaluation (its selectors
with the usual 5-minute lookback). A range function at time ``t`` then reads the steps in
``[t - offset - range, t - offset]`` (both ends included, as a range selector). With ``@ T``
the subquery does not follow the evaluation time: it is evaluated as at ``T`` (``start()`` and
``end()`` are the query's time). Steps with the same label set are one series of the range
vector, whichever part of the expression produced them.

This module never does I/O and never awaits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kpimon.labels import Labels
from kpimon.promql import plan
from kpimon.promql.ops import Vec
from kpimon.promql.select import Window
from kpimon.promql.tables import LabelTable
from kpimon.store import ABSENT

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Mask = NDArray[np.bool_]


def pinned_ms(at: plan.At | None, now_ms: int, root_ms: int) -> int:
    """The time an ``@`` modifier stands for (``now_ms`` without one)."""
    if at is None:
        return now_ms
    if isinstance(at, str):  # start() and end(): the query's time (an instant query)
        return root_ms
    return at


@dataclass(frozen=True, slots=True)
class Steps:
    """The steps a subquery is evaluated at (``start_ms`` to ``end_ms``, ``step_ms`` apart), the
    window ``[lo_ms, hi_ms]`` a range function reads at the current evaluation time, and the
    shift of ``@`` times inside (see :func:`grid`)."""

    start_ms: int
    end_ms: int
    step_ms: int
    lo_ms: int
    hi_ms: int
    at_shift_ms: int = 0

    def times(self) -> I64:
        """The step times, oldest first."""
        if self.end_ms < self.start_ms:
            return np.zeros(0, dtype=np.int64)
        return np.arange(self.start_ms, self.end_ms + 1, self.step_ms, dtype=np.int64)


def grid(
    sq: plan.Subquery,
    now_ms: int,
    start_ms: int,
    end_ms: int,
    root_ms: int,
    default_step_ms: int,
    at_shift_ms: int = 0,
    *,
    moving: bool = False,
) -> Steps:
    """The steps of ``sq`` inside an evaluator running ``start_ms``..``end_ms``, at ``now_ms``.

    ``at_shift_ms`` reproduces a quirk of Prometheus 2.42: it re-anchors the offsets it derives
    from ``@`` times when a subquery's first step differs from the enclosing evaluator's first
    step, and only then. When they coincide (a negative offset at least as long as the range),
    ``@`` times inside are read shifted by the subquery's offset (and by those of the enclosing
    subqueries that did not re-anchor either). ``moving``: the function over the subquery is
    one Prometheus evaluates at every step (``predict_linear``), for which ``@ T`` acts as an
    offset of ``start_ms - T``: the subquery follows the evaluator's steps.
    """
    step = sq.step_ms if sq.step_ms is not None else default_step_ms
    if sq.at is None:
        off_window = off_steps = sq.offset_ms
        inner = at_shift_ms + sq.offset_ms
    else:
        at = pinned_ms(sq.at, now_ms, root_ms)
        inner = off_window = sq.offset_ms + start_ms - at
        off_steps = off_window - at_shift_ms
        if not moving:  # evaluated once, as at the @ time, whatever the evaluator's steps
            now_ms = end_ms = start_ms
    first = start_ms - off_steps - sq.range_ms
    aligned = -(-first // step) * step  # the first multiple of the step at or after `first`
    hi = now_ms - off_window
    return Steps(
        start_ms=aligned,
        end_ms=end_ms - off_steps,
        step_ms=step,
        lo_ms=hi - sq.range_ms,
        hi_ms=hi,
        at_shift_ms=0 if aligned != start_ms else inner,
    )


@dataclass(frozen=True, slots=True)
class Matrix:
    """A subquery's result: ``values[i, j]`` of series ``table.labels[j]`` at ``times[i]``,
    where ``present[i, j]``."""

    table: LabelTable
    times: I64
    values: F64
    present: Mask

    def window(self, lo_ms: int, hi_ms: int) -> tuple[Window, int, int]:
        """The steps in ``[lo_ms, hi_ms]`` as a window of every series (and the window's ends)."""
        rows = np.flatnonzero((self.times >= lo_ms) & (self.times <= hi_ms))
        k = len(self.table)
        v = self.values[rows]
        real = self.present[rows]
        times = self.times[rows]
        w = Window(
            v=np.where(real, v, ABSENT),
            inside=np.ones(real.shape, dtype=bool),
            real=real,
            first_row=np.zeros(k, dtype=np.int64),
            times=(times if times.size else np.zeros(1, dtype=np.int64))[None, :],
            slot_of=np.zeros(k, dtype=np.int64),
        )
        return w, lo_ms, hi_ms


class _Series:
    """The series (label sets) a subquery has produced, append-only, with each label table's
    mapping onto them: the table stays the same object while no new label set appears."""

    __slots__ = ("columns", "index", "labels", "table")

    def __init__(self) -> None:
        self.labels: list[Labels] = []
        self.index: dict[Labels, int] = {}
        self.columns: dict[int, tuple[LabelTable, I64]] = {}
        self.table = LabelTable(())

    def columns_of(self, table: LabelTable) -> I64:
        cached = self.columns.get(id(table))
        if cached is not None and cached[0] is table:
            return cached[1]
        before = len(self.labels)
        cols = [self.index.setdefault(lab, len(self.index)) for lab in table.labels]
        if len(self.index) != before:
            self.labels = list(self.index)
            self.table = LabelTable(self.labels)
        out = np.array(cols, dtype=np.int64)
        if len(self.columns) > 64:  # tables come and go with the store's series set
            self.columns.clear()
        self.columns[id(table)] = (table, out)
        return out


def assemble(sq: plan.Subquery, steps: Steps, results: Sequence[float | Vec], store: Any) -> Matrix:
    """The range vector of the per-step results of ``sq`` (merged by label set)."""
    memo = plan.memo(sq, store)
    series: _Series | None = memo.get("series")
    if series is None:
        series = memo["series"] = _Series()
    placed: list[tuple[int, I64, F64]] = []
    for i, r in enumerate(results):
        assert isinstance(r, Vec)  # the parser allows subqueries of instant vectors only
        if r.idx.size:
            placed.append((i, series.columns_of(r.table)[r.idx], r.values))
    k = len(series.table)
    if k > 1024 + 4 * sum(cols.size for _, cols, _ in placed):
        del memo["series"]  # mostly series long gone: start afresh next time
    times = steps.times()
    values = np.zeros((times.size, k))
    present = np.zeros((times.size, k), dtype=bool)
    for i, cols, vals in placed:
        values[i, cols] = vals
        present[i, cols] = True
    return Matrix(table=series.table, times=times, values=values, present=present)


def assemble_selector(
    sq: plan.Subquery, steps: Steps, table: LabelTable, ok: Mask, values: F64, store: Any
) -> Matrix:
    """The range vector of a subquery of a plain selector, read at all steps at once
    (``ok``/``values``: ``[steps, series of table]``)."""
    memo = plan.memo(sq, store)
    series: _Series | None = memo.get("series")
    if series is None:
        series = memo["series"] = _Series()
    cols = series.columns_of(table)
    k = len(series.table)
    times = steps.times()
    if k == cols.size:  # the usual case: the table's series are the subquery's series
        order = np.empty(k, dtype=np.int64)
        order[cols] = np.arange(k)
        return Matrix(series.table, times, values[:, order], ok[:, order])
    out_values = np.zeros((times.size, k))
    present = np.zeros((times.size, k), dtype=bool)
    out_values[:, cols] = values
    present[:, cols] = ok
    return Matrix(table=series.table, times=times, values=out_values, present=present)
