"""Evaluate a compiled expression over the store at one instant, as Prometheus 2.42 would.

Owns the result types (:class:`Vector`, :class:`Scalar`) and the walk over the plan; selectors
are read by :mod:`~kpimon.promql.select`, range functions computed by
:mod:`~kpimon.promql.functions`, operators and aggregations by :mod:`~kpimon.promql.ops`.

The evaluation time is passed in (any time, not only "now": tests and replays evaluate in the
past). This module never does I/O and never awaits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kpimon.errors import EvaluationError
from kpimon.labels import Labels
from kpimon.promql import aggregations, functions, instant, ops, plan, select, subquery
from kpimon.promql.compile import LOOKBACK_S, CompiledExpr
from kpimon.promql.tables import DUPLICATE_LABELSET, LabelTable, labels_at
from kpimon.store import Store, StoreView

__all__ = ["Scalar", "Vector", "evaluate"]

_LOOKBACK_MS = round(LOOKBACK_S * 1000)


@dataclass(frozen=True, slots=True)
class Vector:
    """An instant vector: ``values[i]`` is the value of the series labelled ``labels[i]``.

    ``labels`` keeps ``__name__`` where PromQL keeps it. While the result's series are the same
    from one evaluation to the next, ``labels`` is the very same object, so callers can cache
    what they derive from it by identity. Read-only by convention.
    """

    labels: Sequence[Labels]
    values: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Scalar:
    """A scalar result."""

    value: float


@dataclass(frozen=True, slots=True)
class _Context:
    """Where an evaluation stands: the step ``ms`` being computed, among the steps
    ``start_ms``..``end_ms`` of the evaluator (one step at the top, a subquery's steps inside
    one); ``root_ms`` is the query's time (``start()`` and ``end()`` of an instant query)."""

    store: Store
    view: StoreView
    ms: int
    root_ms: int = 0
    start_ms: int = 0
    end_ms: int = 0
    default_step_ms: int = 60_000
    subqueries: dict[Any, Any] = field(default_factory=dict)  # evaluated once per evaluation
    tracker: _Tracker | None = None  # inside a subquery: series produced over all its steps
    at_shift_ms: int = 0  # see subquery.grid


def evaluate(
    expr: CompiledExpr, store: Store, t: float, *, interval_s: float = 60.0
) -> Vector | Scalar:
    """Evaluate ``expr`` over ``store`` at Unix time ``t``.

    ``interval_s`` is the evaluation interval: the step of subqueries written without one
    (``x[1h:]``), as in Prometheus (promtool: the test file's ``evaluation_interval``).

    Raises:
        kpimon.errors.EvaluationError: the expression fails as it would in Prometheus (e.g.
            duplicate series in a vector matching, or two series with one label set in a result).
    """
    ms = round(t * 1000)
    ctx = _Context(
        store=store,
        view=store.view(),
        ms=ms,
        root_ms=ms,
        start_ms=ms,
        end_ms=ms,
        default_step_ms=round(interval_s * 1000),
    )
    root = expr.plan
    result = _eval(root, ctx)
    if isinstance(result, float):
        return Scalar(result)
    assert not isinstance(root, plan.Number)  # a number is always a scalar
    memo = plan.memo(root, store)
    last = memo.get("output")
    if (
        last is not None
        and last[0] is result.table
        and (last[1] is result.idx or np.array_equal(last[1], result.idx))
    ):
        labels = last[2]
    else:
        labels = labels_at(result.table, result.idx)
        memo["output"] = (result.table, result.idx, labels)
    return Vector(labels=labels, values=result.values)


def _eval(node: plan.Node, ctx: _Context) -> float | ops.Vec:
    if isinstance(node, plan.Number):
        return node.value
    if isinstance(node, plan.Selector):
        m = select.match(node, ctx.store)
        ref = select.reference_ms(node.at, node.offset_ms, ctx.ms, ctx.root_ms, ctx.at_shift_ms)
        lookback = _LOOKBACK_MS
        if node.at is not None and ctx.at_shift_ms:
            # Prometheus loaded only the samples of [@ - offset - lookback, @ - offset].
            lookback -= abs(ctx.at_shift_ms)
            ref = min(ref, ref - ctx.at_shift_ms)
            if lookback < 0:
                ok = np.zeros(m.cols.size, dtype=bool)
                return _subset(m, ok, np.zeros(m.cols.size), keep_name=True)
        ok, values = select.instant(ctx.view, m, ref, lookback)
        return _subset(m, ok, values, keep_name=True)
    if isinstance(node, plan.SubqueryCall):
        return _subquery_call(node, ctx)
    if isinstance(node, plan.RangeCall):
        sel = node.selector
        m = select.match(sel, ctx.store)
        hi = select.reference_ms(sel.at, sel.offset_ms, ctx.ms, ctx.root_ms, ctx.at_shift_ms)
        lo = hi - node.range_ms
        if sel.at is not None and (ctx.at_shift_ms or node.func in MOVES_WITH_STEPS):
            lo, hi = _pinned_window(sel, node, ctx)
        param = _eval(node.param, ctx) if node.param is not None else None
        assert not isinstance(param, ops.Vec)
        ok, values = functions.apply(
            node.func, ctx.view, m, lo, hi, node.range_ms, param=param, t_ms=ctx.ms
        )
        if node.func == "absent_over_time":
            return functions.absent_over_time(node, ctx.store, present=bool(ok.any()))
        out = _subset(m, ok, values, keep_name=node.func == "last_over_time")
        if ctx.tracker is not None:
            _track(ctx.tracker, node, None, out)
        return out
    if isinstance(node, plan.Aggregate):
        inner = _eval(node.expr, ctx)
        assert isinstance(inner, ops.Vec)
        param = _eval(node.param, ctx) if node.param is not None else None
        assert not isinstance(param, ops.Vec)
        return aggregations.aggregate(node, inner, ctx.store, param)
    if isinstance(node, plan.Call):
        return instant.call(node, ctx, _eval)
    if isinstance(node, plan.Negate):
        inner = _eval(node.expr, ctx)
        if isinstance(inner, float):
            return -inner
        table = inner.table.without_name()
        table.check_unique(inner.idx)
        out = ops.Vec(table, inner.idx, -inner.values)
        if ctx.tracker is not None:
            _track(ctx.tracker, node, inner.table, out)
        return out
    return _binary(node, ctx)


MOVES_WITH_STEPS = frozenset({"predict_linear"})
"""Range functions Prometheus evaluates at every step even with ``@`` (it calls them unsafe):
their ``@`` window moves with the steps of a subquery (``@ T`` at its first step, ``T + step``
at the next...)."""


def _pinned_window(sel: plan.Selector, node: plan.RangeCall, ctx: _Context) -> tuple[int, int]:
    """The sample window of a range function over ``x[r] @ T offset o`` where Prometheus does
    not read ``[T - o - r, T - o]``: only those samples are loaded, but the window is moved by
    the subquery's @ quirk (``ctx.at_shift_ms``) or, for ``predict_linear``, by the step."""
    hi = select.reference_ms(sel.at, sel.offset_ms, ctx.ms, ctx.root_ms, ctx.at_shift_ms)
    if node.func in MOVES_WITH_STEPS:
        hi += ctx.ms - ctx.start_ms
    loaded = select.reference_ms(sel.at, sel.offset_ms, ctx.ms, ctx.root_ms)
    lo = max(hi, loaded) - node.range_ms
    return lo, max(min(hi, loaded), lo - 1)


def _subset(
    m: select.Match, ok: NDArray[np.bool_], values: NDArray[np.float64], *, keep_name: bool
) -> ops.Vec:
    table = m.table if keep_name else m.table.without_name()
    if ok.all():
        idx = table.all
        vals = values
    else:
        idx = np.flatnonzero(ok)
        vals = values[idx]
    if not keep_name:
        table.check_unique(idx)
    return ops.Vec(table, idx, vals)


def _binary(node: plan.Binary, ctx: _Context) -> float | ops.Vec:
    lhs = _eval(node.lhs, ctx)
    rhs = _eval(node.rhs, ctx)
    if isinstance(lhs, float) and isinstance(rhs, float):
        return ops.scalar_scalar(node.op, lhs, rhs)  # (a comparison is always "bool" here)
    if isinstance(lhs, float):
        assert isinstance(rhs, ops.Vec)
        return ops.vector_scalar(node, rhs, lhs)
    if isinstance(rhs, float):
        return ops.vector_scalar(node, lhs, rhs)
    return ops.vector_vector(node, lhs, rhs, ctx.store)


def _subquery_call(node: plan.SubqueryCall, ctx: _Context) -> ops.Vec:
    """A range function over a subquery, at ``ctx.ms``."""
    sq = node.subquery
    param = _eval(node.param, ctx) if node.param is not None else None
    assert not isinstance(param, ops.Vec)
    steps = subquery.grid(
        sq,
        ctx.ms,
        ctx.start_ms,
        ctx.end_ms,
        ctx.root_ms,
        ctx.default_step_ms,
        ctx.at_shift_ms,
        moving=node.func in MOVES_WITH_STEPS,
    )
    key = (sq, steps.start_ms, steps.end_ms, steps.step_ms, steps.at_shift_ms)
    matrix: subquery.Matrix | None = ctx.subqueries.get(key)
    if matrix is None and isinstance(sq.expr, plan.Selector) and sq.expr.at is None:
        sel = sq.expr  # every step at once: one read of the store
        m = select.match(sel, ctx.store)
        ok, values = select.instant_steps(ctx.view, m, steps.times() - sel.offset_ms, _LOOKBACK_MS)
        matrix = subquery.assemble_selector(sq, steps, m.table, ok, values, ctx.store)
        ctx.subqueries[key] = matrix
    if matrix is None:
        tracker: _Tracker = {}
        inner_ctx = replace(
            ctx,
            start_ms=steps.start_ms,
            end_ms=steps.end_ms,
            tracker=tracker,
            at_shift_ms=steps.at_shift_ms,
        )
        inner = [_eval(sq.expr, replace(inner_ctx, ms=t)) for t in steps.times().tolist()]
        _check_tracked(tracker)
        matrix = subquery.assemble(sq, steps, inner, ctx.store)
        ctx.subqueries[key] = matrix
    w, lo_ms, hi_ms = matrix.window(steps.lo_ms, steps.hi_ms)
    table = matrix.table if node.func == "last_over_time" else matrix.table.without_name()
    k = len(matrix.table)
    if not k:
        ok, values = np.zeros(0, dtype=bool), np.zeros(0)
    else:
        with np.errstate(all="ignore"):  # NaN and Inf are values like any other here
            ok, values = functions.window_apply(
                node.func, w, lo_ms, hi_ms, sq.range_ms, param=param, t_ms=ctx.ms
            )
    if node.func == "absent_over_time":  # a subquery gives absent() no labels
        memo = plan.memo(node, ctx.store)
        empty = memo.get("absent") or memo.setdefault("absent", LabelTable([()]))
        return instant.absent(empty, present=bool(ok.any()))
    idx = np.flatnonzero(ok)
    if table is not matrix.table:
        table.check_unique(idx)
    out = ops.Vec(table, idx, values[idx])
    if ctx.tracker is not None:
        _track(ctx.tracker, node, None, out)
    return out


_Tracker = dict[Any, list[tuple[LabelTable | None, ops.Vec]]]
"""Per node, what it produced at each step of a subquery: (its input's table, its output)."""


def _track(tracker: _Tracker, node: Any, source: LabelTable | None, out: ops.Vec) -> None:
    if out.idx.size:
        tracker.setdefault(node, []).append((source, out))


def _check_tracked(tracker: _Tracker) -> None:
    """Prometheus' check of a range function's or unary minus' whole range result.

    Over a range, these build one series per input series that has any point, names dropped,
    and fail if two have one label set, even when they never have points at the same step
    (other operations check each step only). ``source`` (unary minus) is the input's table:
    rows with equal label sets there are one series.
    """
    for entries in tracker.values():
        tables = {id(out.table) for _, out in entries}
        if len(tables) > 1:  # rare: e.g. a group_left's result table grew within the range
            series: dict[Any, Labels] = {}
            for source, out in entries:
                for i in out.idx.tolist():
                    key = source.labels[i] if source is not None else (id(out.table), i)
                    series[key] = out.table.labels[i]
            if len(set(series.values())) != len(series):
                raise EvaluationError(DUPLICATE_LABELSET)
            continue
        source, first = entries[0]
        rows = np.unique(np.concatenate([out.idx for _, out in entries]))
        ids = source.ids() if source is not None else None
        if ids is not None:  # one row per distinct input series
            _, keep = np.unique(ids[rows], return_index=True)
            rows = rows[keep]
        first.table.check_unique(rows)
