"""Evaluate a compiled expression over the store at one instant, as Prometheus 2.42 would.

Owns the result types (:class:`Vector`, :class:`Scalar`) and the walk over the plan; selectors
are read by :mod:`~kpimon.promql.select`, range functions computed by
:mod:`~kpimon.promql.functions`, operators and aggregations by :mod:`~kpimon.promql.ops`.

The evaluation time is passed in (any time, not only "now": tests and replays evaluate in the
past). This module never does I/O and never awaits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from kpimon.labels import Labels
from kpimon.promql import functions, ops, plan, select
from kpimon.promql.compile import LOOKBACK_S, CompiledExpr
from kpimon.promql.tables import labels_at
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
    store: Store
    view: StoreView
    ms: int


def evaluate(expr: CompiledExpr, store: Store, t: float) -> Vector | Scalar:
    """Evaluate ``expr`` over ``store`` at Unix time ``t``.

    Raises:
        kpimon.errors.EvaluationError: the expression fails as it would in Prometheus (e.g.
            duplicate series in a vector matching, or two series with one label set in a result).
    """
    ctx = _Context(store=store, view=store.view(), ms=round(t * 1000))
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
        ok, values = select.instant(ctx.view, m, ctx.ms - node.offset_ms, _LOOKBACK_MS)
        return _subset(m, ok, values, keep_name=True)
    if isinstance(node, plan.RangeCall):
        sel = node.selector
        m = select.match(sel, ctx.store)
        hi = ctx.ms - sel.offset_ms
        ok, values = functions.apply(node.func, ctx.view, m, hi - node.range_ms, hi, node.range_ms)
        return _subset(m, ok, values, keep_name=False)
    if isinstance(node, plan.Aggregate):
        inner = _eval(node.expr, ctx)
        assert isinstance(inner, ops.Vec)
        return ops.aggregate(node, inner, ctx.store)
    if isinstance(node, plan.Negate):
        inner = _eval(node.expr, ctx)
        if isinstance(inner, float):
            return -inner
        table = inner.table.without_name()
        table.check_unique(inner.idx)
        return ops.Vec(table, inner.idx, -inner.values)
    return _binary(node, ctx)


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
        if node.op in plan.COMPARISON:  # the parser insists on bool between scalars
            return 1.0 if ops.compare(node.op, lhs, rhs) else 0.0
        return float(ops.arithmetic(node.op, np.float64(lhs), np.float64(rhs)))
    if isinstance(lhs, float):
        assert isinstance(rhs, ops.Vec)
        return ops.vector_scalar(node, rhs, lhs)
    if isinstance(rhs, float):
        return ops.vector_scalar(node, lhs, rhs)
    return ops.vector_vector(node, lhs, rhs, ctx.store)
