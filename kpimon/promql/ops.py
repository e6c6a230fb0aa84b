"""Operators on instant vectors: arithmetic, comparison, set operators, vector matching,
aggregation.

Semantics are Prometheus 2.42's (promql/engine.go): arithmetic drops ``__name__`` (``atan2``
does not), a comparison without ``bool`` filters and keeps the left-hand label set and value,
``bool`` yields 0/1 and drops ``__name__``; ``^`` and ``atan2`` are Go's functions
(:mod:`~kpimon.promql.gomath`). Vector/vector operations match on all labels but ``__name__``,
on ``on(...)`` labels, or on all but ``ignoring(...)`` labels: one-to-one, or many-to-one /
one-to-many with ``group_left``/``group_right`` (the result has the "many" side's labels plus the
listed labels of the "one" side); ``and``/``or``/``unless`` keep whole series. They fail with
Prometheus' messages on duplicate series. Aggregations drop ``__name__`` and group by
``by``/``without`` labels, ``avg`` using Prometheus' incremental mean. Signatures, result label
sets and grouping indices are computed once per label table (see :mod:`kpimon.promql.tables`) and
cached on the plan node; each tick is numpy over index arrays (a group_x result table grows only
when a new pair of series meets).

This module never does I/O and never awaits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kpimon.errors import EvaluationError
from kpimon.labels import Labels
from kpimon.promql import gomath, plan
from kpimon.promql.tables import DUPLICATE_LABELSET, LabelTable, format_go, project

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
    "%": np.fmod,  # Go's math.Mod (exact, sign of the dividend), not Python's %
    "^": gomath.power,  # Go's math.Pow, not the C library's pow
    "atan2": gomath.atan2,
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
    """IEEE arithmetic as Go does it; NaN and Inf propagate silently."""
    with np.errstate(all="ignore"):
        return _ARITHMETIC[op](a, b)


def compare(op: str, a: Any, b: Any) -> Any:
    """The comparison as a boolean (array); NaN compares false except with ``!=``."""
    with np.errstate(all="ignore"):
        return _COMPARISON[op](a, b)


def scalar_scalar(op: str, a: float, b: float) -> float:
    """``a op b`` between two scalars (a comparison must be ``bool``: it yields 0 or 1)."""
    if op in plan.COMPARISON:
        return 1.0 if compare(op, a, b) else 0.0
    return float(arithmetic(op, np.float64(a), np.float64(b)))


def vector_scalar(node: plan.Binary, vec: Vec, scalar: float) -> Vec:
    """``vec op scalar`` (or ``scalar op vec`` when the scalar is the left operand).

    A filtering comparison keeps the vector's value and labels whichever side it is on.
    """
    lhs, rhs = (scalar, vec.values) if node.lhs_scalar else (vec.values, scalar)
    if node.op in plan.COMPARISON:
        cond = np.asarray(compare(node.op, lhs, rhs), dtype=bool)
        if not node.return_bool:
            if cond.all():  # every series passes (the usual case for a KPI): nothing to copy
                return vec
            keep = np.flatnonzero(cond)  # faster than a boolean mask on big, mixed vectors
            return Vec(vec.table, vec.idx[keep], vec.values[keep])
        table = vec.table.without_name()
        table.check_unique(vec.idx)
        return Vec(table, vec.idx, cond.astype(np.float64))
    values = np.asarray(arithmetic(node.op, lhs, rhs), dtype=np.float64)
    if node.op not in plan.DROPS_NAME:  # atan2 keeps the name
        return Vec(vec.table, vec.idx, values)
    table = vec.table.without_name()
    table.check_unique(vec.idx)
    return Vec(table, vec.idx, values)


@dataclass(frozen=True, slots=True)
class _Matching:
    lhs: LabelTable
    rhs: LabelTable
    lsig: I64  # signature code of each lhs label set
    rsig: I64
    codes: int
    signatures: list[Labels]
    result: LabelTable | None  # one-to-one: the result's label set for each lhs label set


def vector_vector(node: plan.Binary, lhs: Vec, rhs: Vec, store: Any) -> Vec:
    """``lhs op rhs`` between two vectors, with Prometheus' vector matching.

    Raises:
        EvaluationError: as Prometheus: duplicate series on the "one" side, several matches
            for one signature without ``group_left``/``group_right``, a grouping that does not
            give unique results, or two result series with one label set.
    """
    m = _matching(node, lhs.table, rhs.table, store)
    if node.card == "many-to-many":
        return _set_operation(node, m, lhs, rhs, store)
    swap = node.card == "one-to-many"
    many, one = (rhs, lhs) if swap else (lhs, rhs)
    msig, osig = (m.rsig, m.lsig) if swap else (m.lsig, m.rsig)
    if not lhs.idx.size or not rhs.idx.size:
        empty = lhs.idx[:0]
        if m.result is not None:
            return Vec(m.result, empty, lhs.values[:0])
        table = _grouped(node, many.table, one.table, empty, empty, store)[0]
        return Vec(table, empty, np.zeros(0))
    ocodes = osig[one.idx]
    pos = np.full(m.codes, -1, dtype=np.int64)
    pos[ocodes[::-1]] = np.arange(ocodes.size - 1, -1, -1)  # first occurrence wins
    if _repeats(ocodes, m.codes):
        later = int(np.flatnonzero(pos[ocodes] != np.arange(ocodes.size))[0])
        earlier = int(pos[ocodes[later]])
        raise EvaluationError(
            f"found duplicate series for the match group {format_go(m.signatures[ocodes[later]])}"
            f" on the {'left' if swap else 'right'} hand-side of the operation: "
            f"[{format_go(one.table.labels[one.idx[later]])}, "
            f"{format_go(one.table.labels[one.idx[earlier]])}]"
            ";many-to-many matching not allowed: matching labels must be unique on one side"
        )
    mcodes = msig[many.idx]
    j = pos[mcodes]
    mi = np.flatnonzero(j >= 0)
    oj = j[mi]
    mv, ov = many.values[mi], one.values[oj]
    vl, vr = (ov, mv) if swap else (mv, ov)
    if node.op in plan.COMPARISON:
        cond = np.asarray(compare(node.op, vl, vr), dtype=bool)
        if node.return_bool:
            values = cond.astype(np.float64)
        else:  # the value is the left-hand side's, even with group_right
            keep = np.flatnonzero(cond)
            mi, oj, values = mi[keep], oj[keep], vl[keep]
    else:
        values = np.asarray(arithmetic(node.op, vl, vr), dtype=np.float64)
    matched = mcodes[mi]
    if m.result is not None:  # one-to-one
        if _repeats(matched, m.codes):
            raise EvaluationError(
                "multiple matches for labels: many-to-one matching must be explicit "
                "(group_left/group_right)"
            )
        idx = many.idx[mi]
        m.result.check_unique(idx)
        return Vec(m.result, idx, values)
    table, rows = _grouped(node, many.table, one.table, many.idx[mi], one.idx[oj], store)
    if _repeats(rows, len(table)):  # (the same result twice within a match group is first)
        if _repeats(matched * len(table) + rows, m.codes * len(table)):
            raise EvaluationError(
                "multiple matches for labels: grouping labels must ensure unique matches"
            )
        raise EvaluationError(DUPLICATE_LABELSET)
    return Vec(table, rows, values)


def _repeats(values: I64, bound: int) -> bool:
    """Does a value occur twice in ``values`` (all in ``[0, bound)``)? (np.unique is slower.)"""
    if values.size < 2:
        return False
    if bound <= 4 * values.size + 1024:
        return bool(np.bincount(values, minlength=bound).max() > 1)
    ordered = np.sort(values)
    return bool((ordered[1:] == ordered[:-1]).any())


def _set_operation(node: plan.Binary, m: _Matching, lhs: Vec, rhs: Vec, store: Any) -> Vec:
    """``and``, ``or``, ``unless``: series kept whole (name included), matched by signature."""
    lcodes, rcodes = m.lsig[lhs.idx], m.rsig[rhs.idx]
    if node.op == "or":
        table = _union_table(node, lhs.table, rhs.table, store)
        seen = np.zeros(m.codes, dtype=bool)
        seen[lcodes] = True
        extra = np.flatnonzero(~seen[rcodes])
        idx = np.concatenate([lhs.idx, rhs.idx[extra] + len(lhs.table)])
        out = Vec(table, idx, np.concatenate([lhs.values, rhs.values[extra]]))
        table.check_unique(idx)
        return out
    if not lhs.idx.size or not rhs.idx.size:
        return lhs if node.op == "unless" else Vec(lhs.table, lhs.idx[:0], lhs.values[:0])
    present = np.zeros(m.codes, dtype=bool)
    present[rcodes] = True
    keep = present[lcodes]
    if node.op == "unless":
        keep = ~keep
    at = np.flatnonzero(keep)
    return Vec(lhs.table, lhs.idx[at], lhs.values[at])


def _union_table(node: plan.Binary, lt: LabelTable, rt: LabelTable, store: Any) -> LabelTable:
    memo = plan.memo(node, store)
    cached: tuple[LabelTable, LabelTable, LabelTable] | None = memo.get("union")
    if cached is not None and cached[0] is lt and cached[1] is rt:
        return cached[2]
    table = LabelTable(lt.labels + rt.labels)
    memo["union"] = (lt, rt, table)
    return table


def _matching(node: plan.Binary, lt: LabelTable, rt: LabelTable, store: Any) -> _Matching:
    memo = plan.memo(node, store)
    cached: _Matching | None = memo.get("matching")
    if cached is not None and cached.lhs is lt and cached.rhs is rt:
        return cached
    names = frozenset(node.matching) if node.on else frozenset({*node.matching, "__name__"})
    codes: dict[Labels, int] = {}
    lsig = [codes.setdefault(sig, len(codes)) for sig in project(lt.labels, names, keep=node.on)]
    rsig = [codes.setdefault(sig, len(codes)) for sig in project(rt.labels, names, keep=node.on)]
    drop_name = node.op in plan.DROPS_NAME or node.return_bool
    res: LabelTable | None = None
    if node.card != "one-to-one":
        pass  # set operators keep label sets whole; group_x results are built per pair
    elif node.on:  # on(...) keeps only its labels (the name only if listed and not dropped)
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


class _Pairs:
    """Result label sets of a many-to-one matching, per (many row, one row) pair met so far.

    Append-only: a pair seen for the first time adds its label set (if new) and a new table;
    while no new pair appears, the table is the same object tick after tick.
    """

    __slots__ = ("by_labels", "keys", "labels", "last", "many", "one", "rows", "table")

    def __init__(self, many: LabelTable, one: LabelTable) -> None:
        self.many, self.one = many, one
        self.keys: I64 = np.zeros(0, dtype=np.int64)  # sorted pair keys
        self.rows: I64 = np.zeros(0, dtype=np.int64)  # result row of each key
        self.labels: list[Labels] = []
        self.by_labels: dict[Labels, int] = {}
        self.table = LabelTable(())
        self.last: tuple[I64, I64] | None = None  # the last pairs looked up, and their rows


def _grouped(
    node: plan.Binary, mt: LabelTable, ot: LabelTable, mrows: I64, orows: I64, store: Any
) -> tuple[LabelTable, I64]:
    """The result table of a group_left/group_right operation and the rows of the given pairs."""
    memo = plan.memo(node, store)
    reg: _Pairs | None = memo.get("pairs")
    if reg is None or reg.many is not mt or reg.one is not ot:
        reg = memo["pairs"] = _Pairs(mt, ot)
    keys = mrows * max(len(ot), 1) + orows
    if reg.last is not None and np.array_equal(reg.last[0], keys):  # same pairs as last tick
        return reg.table, reg.last[1]
    pos = np.searchsorted(reg.keys, keys)
    found = pos < reg.keys.size
    found[found] = reg.keys[pos[found]] == keys[found]
    if not found.all():
        new = np.unique(keys[~found])
        new_rows = [_pair_row(node, reg, *divmod(int(k), max(len(ot), 1))) for k in new.tolist()]
        all_keys = np.concatenate([reg.keys, new])
        all_rows = np.concatenate([reg.rows, np.array(new_rows, dtype=np.int64)])
        order = np.argsort(all_keys, kind="stable")
        reg.keys, reg.rows = all_keys[order], all_rows[order]
        reg.table = LabelTable(reg.labels)
        pos = np.searchsorted(reg.keys, keys)
    rows = reg.rows[pos]
    reg.last = (keys, rows)
    return reg.table, rows


def _pair_row(node: plan.Binary, reg: _Pairs, mrow: int, orow: int) -> int:
    """Prometheus' resultMetric for a grouped match: the many side's labels (less the name for
    arithmetic and ``bool``) with each ``group_x`` label set from the one side (or removed)."""
    labels = dict(reg.many.labels[mrow])
    if node.op in plan.DROPS_NAME or node.return_bool:
        labels.pop("__name__", None)
    one = dict(reg.one.labels[orow])
    for name in node.include:
        value = one.get(name, "")
        if value:
            labels[name] = value
        else:
            labels.pop(name, None)
    if node.return_bool:
        labels.pop("__name__", None)
    key = tuple(sorted(labels.items()))
    row = reg.by_labels.get(key)
    if row is None:
        row = reg.by_labels[key] = len(reg.labels)
        reg.labels.append(key)
    return row


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
