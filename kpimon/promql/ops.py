"""Operators on instant vectors: arithmetic, comparison, vector matching, aggregation.

Semantics are Prometheus 2.42's (promql/engine.go): arithmetic drops ``__name__``, a comparison
without ``bool`` filters and keeps the left-hand label set (and value), ``bool`` yields 0/1 and
drops ``__name__``; vector/vector operations match one-to-one on all labels but ``__name__``, on
``on(...)`` labels, or on all but ``ignoring(...)`` labels, and fail as Prometheus does on
duplicate series; aggregations drop ``__name__`` and group by ``by``/``without`` labels, ``avg``
using Prometheus' incremental mean. Grouping and matching indices are computed once per label
table (see :mod:`kpimon.promql.tables`); each tick is numpy over index arrays.

This module never does I/O and never awaits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kpimon.errors import EvaluationError
from kpimon.labels import Labels
from kpimon.promql import plan
from kpimon.promql.tables import LabelTable, format_go, project

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Mask = NDArray[np.bool_]

AVG_EXACT_MAX_GROUP = 64
"""Groups up to this size are averaged with Prometheus' exact incremental mean; larger ones as
sum / count (equal up to rounding in the last bits), which is vectorisable."""


@dataclass(frozen=True, slots=True)
class Vec:
    """An instant vector inside the evaluator: ``values[i]`` belongs to ``table.labels[idx[i]]``."""

    table: LabelTable
    idx: I64
    values: F64


_ARITHMETIC: dict[str, Any] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "%": np.fmod,  # Go's math.Mod, not Python's %
    "^": np.power,
}
_COMPARISON: dict[str, Any] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}


def arithmetic(op: str, a: Any, b: Any) -> Any:
    """IEEE arithmetic as Go does it (``%`` is fmod, ``^`` is pow); NaN/Inf propagate silently."""
    with np.errstate(all="ignore"):
        return _ARITHMETIC[op](a, b)


def compare(op: str, a: Any, b: Any) -> Any:
    """The comparison as a boolean (array); NaN compares false except with ``!=``."""
    with np.errstate(all="ignore"):
        return _COMPARISON[op](a, b)


def vector_scalar(node: plan.Binary, vec: Vec, scalar: float) -> Vec:
    """``vec op scalar`` (or ``scalar op vec`` when the scalar is the left operand)."""
    lhs, rhs = (scalar, vec.values) if node.lhs_scalar else (vec.values, scalar)
    if node.op in plan.COMPARISON:
        cond = np.asarray(compare(node.op, lhs, rhs), dtype=bool)
        if not node.return_bool:
            keep = np.flatnonzero(cond)  # faster than a boolean mask on big, mixed vectors
            return Vec(vec.table, vec.idx[keep], vec.values[keep])
        table = vec.table.without_name()
        table.check_unique(vec.idx)
        return Vec(table, vec.idx, cond.astype(np.float64))
    table = vec.table.without_name()
    table.check_unique(vec.idx)
    return Vec(table, vec.idx, np.asarray(arithmetic(node.op, lhs, rhs), dtype=np.float64))


@dataclass(frozen=True, slots=True)
class _Matching:
    lhs: LabelTable
    rhs: LabelTable
    lsig: I64  # signature code of each lhs label set
    rsig: I64
    codes: int
    signatures: list[Labels]
    result: LabelTable  # the result's label set for each lhs label set


def vector_vector(node: plan.Binary, lhs: Vec, rhs: Vec, store: Any) -> Vec:
    """``lhs op rhs`` with one-to-one vector matching."""
    m = _matching(node, lhs.table, rhs.table, store)
    if not lhs.idx.size or not rhs.idx.size:
        return Vec(m.result, lhs.idx[:0], lhs.values[:0])
    rcodes = m.rsig[rhs.idx]
    pos = np.full(m.codes, -1, dtype=np.int64)
    pos[rcodes[::-1]] = np.arange(rcodes.size - 1, -1, -1)  # first occurrence wins
    if np.unique(rcodes).size != rcodes.size:
        later = int(np.flatnonzero(pos[rcodes] != np.arange(rcodes.size))[0])
        earlier = int(pos[rcodes[later]])
        raise EvaluationError(
            f"found duplicate series for the match group {format_go(m.signatures[rcodes[later]])}"
            " on the right hand-side of the operation: "
            f"[{format_go(rhs.table.labels[rhs.idx[later]])}, "
            f"{format_go(rhs.table.labels[rhs.idx[earlier]])}]"
            ";many-to-many matching not allowed: matching labels must be unique on one side"
        )
    lcodes = m.lsig[lhs.idx]
    j = pos[lcodes]
    li = np.flatnonzero(j >= 0)
    rj = j[li]
    lv, rv = lhs.values[li], rhs.values[rj]
    if node.op in plan.COMPARISON:
        cond = np.asarray(compare(node.op, lv, rv), dtype=bool)
        if node.return_bool:
            values = cond.astype(np.float64)
        else:
            keep = np.flatnonzero(cond)
            li, values = li[keep], lv[keep]
    else:
        values = np.asarray(arithmetic(node.op, lv, rv), dtype=np.float64)
    matched = lcodes[li]
    if np.unique(matched).size != matched.size:
        raise EvaluationError(
            "multiple matches for labels: many-to-one matching must be explicit "
            "(group_left/group_right)"
        )
    idx = lhs.idx[li]
    m.result.check_unique(idx)
    return Vec(m.result, idx, values)


def _matching(node: plan.Binary, lt: LabelTable, rt: LabelTable, store: Any) -> _Matching:
    memo = plan.memo(node, store)
    cached: _Matching | None = memo.get("matching")
    if cached is not None and cached.lhs is lt and cached.rhs is rt:
        return cached
    names = frozenset(node.matching) if node.on else frozenset({*node.matching, "__name__"})
    codes: dict[Labels, int] = {}
    lsig = [codes.setdefault(sig, len(codes)) for sig in project(lt.labels, names, keep=node.on)]
    rsig = [codes.setdefault(sig, len(codes)) for sig in project(rt.labels, names, keep=node.on)]
    drop_name = node.op in plan.ARITHMETIC or node.return_bool
    if node.on:  # on(...) keeps only its labels (the name only if listed and not dropped)
        kept = set(node.matching) - ({"__name__"} if drop_name else set())
        res = LabelTable(project(lt.labels, frozenset(kept), keep=True))
    elif not node.matching:
        res = lt.without_name() if drop_name else lt
    else:
        dropped = {*node.matching, "__name__"} if drop_name else set(node.matching)
        res = LabelTable(project(lt.labels, frozenset(dropped), keep=False))
    out = _Matching(
        lhs=lt,
        rhs=rt,
        lsig=np.array(lsig, dtype=np.int64),
        rsig=np.array(rsig, dtype=np.int64),
        codes=len(codes),
        signatures=list(codes),
        result=res,
    )
    memo["matching"] = out
    return out


@dataclass(frozen=True, slots=True)
class _Grouping:
    table: LabelTable
    group_of: I64
    groups: LabelTable


def aggregate(node: plan.Aggregate, vec: Vec, store: Any) -> Vec:
    """``sum|avg|min|max|count [by|without (...)] (vec)``."""
    g = _grouping(node, vec.table, store)
    n_groups = len(g.groups)
    gi = g.group_of[vec.idx]
    counts = np.bincount(gi, minlength=n_groups)
    present = np.flatnonzero(counts)
    vals = vec.values
    out: F64
    if node.op == "sum":
        out = np.bincount(gi, weights=vals, minlength=n_groups).astype(np.float64, copy=False)
    elif node.op == "count":
        out = counts.astype(np.float64)
    elif node.op in ("max", "min"):
        out = np.full(n_groups, np.nan)
        (np.fmax if node.op == "max" else np.fmin).at(out, gi, vals)
    else:
        out = _average(gi, vals, counts, n_groups)
    idx = g.groups.all if present.size == n_groups else present
    return Vec(g.groups, idx, out[present])


def _grouping(node: plan.Aggregate, table: LabelTable, store: Any) -> _Grouping:
    memo = plan.memo(node, store)
    cached: _Grouping | None = memo.get("grouping")
    if cached is not None and cached.table is table:
        return cached
    names = frozenset({*node.labels, "__name__"}) if node.without else frozenset(node.labels)
    keys: dict[Labels, int] = {}
    group_of = [
        keys.setdefault(key, len(keys))
        for key in project(table.labels, names, keep=not node.without)
    ]
    out = _Grouping(
        table=table, group_of=np.array(group_of, dtype=np.int64), groups=LabelTable(list(keys))
    )
    memo["grouping"] = out
    return out


def _average(gi: I64, vals: F64, counts: I64, n_groups: int) -> F64:
    """Prometheus' incremental mean per group, in input order (vectorised across groups)."""
    n = gi.size
    if not n:
        return np.zeros(n_groups)
    biggest = int(counts.max())
    if biggest > AVG_EXACT_MAX_GROUP:
        with np.errstate(all="ignore"):
            total = np.bincount(gi, weights=vals, minlength=n_groups).astype(np.float64, copy=False)
            mean: F64 = total / np.maximum(counts, 1)
            return mean
    order = np.argsort(gi, kind="stable")
    sorted_groups = gi[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[starts, n])
    mean = np.zeros(n_groups)
    first = order[starts]
    mean[gi[first]] = vals[first]
    with np.errstate(all="ignore"):
        for rank in range(1, biggest):
            at = order[starts[sizes > rank] + rank]
            g, x = gi[at], vals[at]
            current = mean[g]
            count = float(rank + 1)
            # An infinite mean stays as it is unless NaN or the opposite infinity arrives.
            keep = np.isinf(current) & (
                (np.isinf(x) & ((current > 0) == (x > 0))) | (~np.isinf(x) & ~np.isnan(x))
            )
            mean[g] = np.where(keep, current, current + (x / count - current / count))
    return mean
