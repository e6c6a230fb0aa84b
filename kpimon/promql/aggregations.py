"""Aggregation operators beyond sum/avg/min/max/count, as Prometheus 2.42 computes them.

``group``, ``stddev``, ``stdvar``, ``topk``, ``bottomk``, ``quantile`` and ``count_values``, with
``by``/``without`` grouping (Prometheus' promql/engine.go ``aggregation``); ``sum``, ``avg``,
``min``, ``max`` and ``count`` stay in :func:`kpimon.promql.ops.aggregate`, whose grouping
(cached per label table) these reuse. Everything is vectorised across groups:

- ``stddev``/``stdvar``: Welford's running mean and variance per group, in input order, one
  numpy step per rank within the groups (no compensation, as Prometheus' aggregation);
- ``topk``/``bottomk``: one sort by (group, value), NaN ranking last either way; the result
  keeps the input series' labels, ``__name__`` included;
- ``quantile``: one sort by (group, value), NaN first, then Prometheus' interpolation;
- ``count_values``: the values formatted as Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` (once
  per distinct value), then counted per (group, value).

This module never does I/O and never awaits.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kpimon.errors import EvaluationError
from kpimon.labels import Labels
from kpimon.promql import ops, plan
from kpimon.promql.ops import Vec
from kpimon.promql.tables import LabelTable, project

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

BASIC = frozenset({"sum", "avg", "min", "max", "count"})


def aggregate(node: plan.Aggregate, vec: Vec, store: Any, param: float | None) -> Vec:
    """``node.op [by|without (...)] ([param,] vec)``."""
    if node.op in BASIC:
        return ops.aggregate(node, vec, store)
    if node.op == "count_values":
        return count_values(node, vec)
    if node.op in ("topk", "bottomk"):
        assert param is not None
        return top_bottom(node, vec, store, param)
    g = ops._grouping(node, vec.table, store)
    gi = g.group_of[vec.idx]
    present = np.unique(gi)
    out: F64
    if node.op == "group":
        out = np.ones(present.size)
    elif node.op == "quantile":
        assert param is not None
        out = _quantile(param, gi, vec.values)[present]
    else:  # stddev, stdvar: in the order Prometheus' storage returns series (by label set)
        order = np.argsort(_label_rank(vec.table)[vec.idx], kind="stable")
        var = _variance(gi[order], vec.values[order], len(g.groups))[present]
        with np.errstate(invalid="ignore"):
            out = np.sqrt(var) if node.op == "stddev" else var
    return Vec(g.groups, present.astype(np.int64), out)


def top_bottom(node: plan.Aggregate, vec: Vec, store: Any, param: float) -> Vec:
    """``topk``/``bottomk``: the k largest/smallest of each group, NaN counting as the worst."""
    if math.isnan(param) or not -9.223372036854775808e18 <= param <= 9.223372036854775807e18:
        raise EvaluationError(f"Scalar value {_go_v(param)} overflows int64")
    k = int(param)
    if k < 1 or not vec.idx.size:
        return Vec(vec.table, vec.idx[:0], vec.values[:0])
    g = ops._grouping(node, vec.table, store)
    gi = g.group_of[vec.idx]
    values = vec.values
    nan = np.isnan(values)
    key = -values if node.op == "topk" else values.copy()
    key[nan] = np.inf  # NaN ranks last either way (after an infinity that ranks last)
    order, rank, _ = _reorder(np.lexsort((nan, key, gi)), gi)
    keep = np.sort(order[rank < k])
    return Vec(vec.table, vec.idx[keep], values[keep])


def _quantile(q: float, gi: I64, values: F64) -> F64:
    """Prometheus' quantile per group: values sorted with NaN first, linear interpolation."""
    n_groups = int(gi.max()) + 1 if gi.size else 0
    if math.isnan(q):
        return np.full(n_groups, math.nan)
    if q < 0:
        return np.full(n_groups, -math.inf)
    if q > 1:
        return np.full(n_groups, math.inf)
    nan = np.isnan(values)
    key = np.where(nan, -math.inf, values)
    order = np.lexsort((key, ~nan, gi))  # NaN first, then ascending
    order, rank, size = _reorder(order, gi)
    sorted_values = values[order]
    starts = np.flatnonzero(rank == 0)
    n = size[starts].astype(np.float64)
    r = q * (n - 1)
    lower = np.maximum(0.0, np.floor(r))
    upper = np.minimum(n - 1, lower + 1)
    weight = r - np.floor(r)
    lo_v = sorted_values[starts + lower.astype(np.int64)]
    hi_v = sorted_values[starts + upper.astype(np.int64)]
    out = np.full(n_groups, math.nan)
    with np.errstate(all="ignore"):
        out[gi[order][starts]] = lo_v * (1 - weight) + hi_v * weight
    return out


def _reorder(order: I64, gi: I64) -> tuple[I64, I64, I64]:
    """Ranks within groups and group sizes for an ``order`` sorted by group first."""
    sorted_groups = gi[order]
    n = sorted_groups.size
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]) if n else gi[:0]
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    return order, rank, np.repeat(sizes, sizes)


def _label_rank(table: LabelTable) -> I64:
    """Each row's position when the table's label sets are sorted as Prometheus sorts series.

    Prometheus compares label sets pair by pair (name, then value), as tuples compare.
    """
    rank = table.derived.get("label_rank")
    if rank is None:
        order = sorted(range(len(table)), key=table.labels.__getitem__)
        rank = np.empty(len(table), dtype=np.int64)
        rank[np.array(order, dtype=np.int64)] = np.arange(len(table), dtype=np.int64)
        table.derived["label_rank"] = rank
    assert isinstance(rank, np.ndarray)
    return rank


def _variance(gi: I64, vals: F64, n_groups: int) -> F64:
    """Population variance per group with Welford's updates in input order (Prometheus')."""
    mean = np.zeros(n_groups)
    acc = np.zeros(n_groups)
    if not gi.size:
        return acc
    order = np.argsort(gi, kind="stable")
    order, rank, size = _reorder(order, gi)
    first = order[rank == 0]
    mean[gi[first]] = vals[first]
    counts = np.bincount(gi, minlength=n_groups).astype(np.float64)
    with np.errstate(all="ignore"):
        for r in range(1, int(size.max())):
            at = order[rank == r]
            g, x = gi[at], vals[at]
            delta = x - mean[g]
            mean[g] = mean[g] + delta / float(r + 1)
            acc[g] = acc[g] + delta * (x - mean[g])
        out: F64 = acc / np.maximum(counts, 1)
    return out


def count_values(node: plan.Aggregate, vec: Vec) -> Vec:
    """``count_values("label", v)``: how many series have each value, per group.

    Each distinct value is formatted once; the (group, value) pairs are counted with numpy.
    """
    name = node.value_label
    if not vec.idx.size:
        return Vec(LabelTable([]), vec.idx[:0], vec.values[:0])
    uniq, which = np.unique(vec.values.view(np.int64), return_inverse=True)
    text_id: dict[str, int] = {}
    ids = [text_id.setdefault(format_go_f(v), len(text_id)) for v in uniq.view(np.float64).tolist()]
    texts = list(text_id)  # (NaNs with different bits are one value: "NaN")
    base_of, bases = _bases(node, vec.table)
    # ``without`` removes the grouping labels and the name from the series, value label included.
    keep_value = not node.without or (name not in node.labels and name != "__name__")
    key = base_of[vec.idx]
    if keep_value:
        key = key * len(texts) + np.array(ids, dtype=np.int64)[which.ravel()]
    groups, counts = np.unique(key, return_counts=True)
    labels: list[Labels] = []
    for g in groups.tolist():
        if keep_value:
            base, t = divmod(g, len(texts))
            labels.append(tuple(sorted((*bases[base], (name, texts[t])))))
        else:
            labels.append(bases[g])
    table = LabelTable(labels)
    return Vec(table, table.all, counts.astype(np.float64))


def _bases(node: plan.Aggregate, table: LabelTable) -> tuple[I64, list[Labels]]:
    """Per row, the id of its grouping labels other than the value label; those label sets.

    Cached in the table.
    """
    key = ("count_values", node.without, node.labels, node.value_label)
    cached = table.derived.get(key)
    if cached is None:
        name = node.value_label
        if node.without:
            drop = frozenset({*node.labels, "__name__", name})
            per_row = project(table.labels, drop, keep=False)
        else:
            per_row = project(table.labels, frozenset(node.labels) - {name}, keep=True)
        seen: dict[Labels, int] = {}
        base_of = np.array([seen.setdefault(lab, len(seen)) for lab in per_row], dtype=np.int64)
        cached = table.derived[key] = (base_of, list(seen))
    assert isinstance(cached, tuple)
    return cached


def format_go_f(v: float) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return np.format_float_positional(v, unique=True, trim="-")


def _go_v(v: float) -> str:
    """Go's %v of a float64 (strconv's "g", -1): shortest digits, exponent below 1e-4, from 1e6."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    sign, digits, exponent = Decimal(repr(v)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    exp = len(text) + exponent - 1  # of the first digit
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    return ("-" if sign else "") + format_go_f(abs(v))
