"""Functions of instant vectors and scalars, with Prometheus 2.42's semantics (promql/functions.go).

Owns ``abs ceil floor round exp ln log2 log10 sqrt sgn clamp clamp_min clamp_max``, ``time``,
``timestamp``, ``vector``, ``scalar``, ``absent``, ``label_replace``, ``label_join``, ``sort``,
``sort_desc``, ``histogram_quantile`` and the date functions (``minute hour day_of_week
day_of_month day_of_year days_in_month month year``, with or without an argument).

Functions that change a value drop ``__name__`` (``sort``, ``label_replace`` and ``label_join``
keep it); every result is checked for duplicate label sets, as Prometheus' rangeEval does. Label
work (``label_replace``, ``label_join``, ``histogram_quantile``'s bucket grouping) is done once
per label table and cached in it; each tick is numpy over the values, except
``histogram_quantile``, which walks each histogram's buckets (a few dozen per histogram).

Arithmetic follows Go's ``math`` package operation for operation where it is not correctly
rounded: ``ln`` is Go's fdlibm logarithm and ``exp`` Go's amd64 assembly (with FMA, emulated
exactly), ``log2`` and ``log10`` are Go's formulas over the logarithm, ``round`` is
``floor(x / to_nearest + 0.5)`` computed with the inverse as Prometheus does, ``math.Min`` and
``math.Max`` order signed zeros. The date functions reproduce Go's ``time`` conversion, including
its wrap-around for NaN, infinities and values beyond int64. This module never does I/O and
never awaits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from kpimon.labels import Labels
from kpimon.promql import plan, select
from kpimon.promql.ops import Vec
from kpimon.promql.tables import LabelTable
from kpimon.store import ABSENT_BITS, Store, StoreView

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

LOOKBACK_MS = 300_000


class Context(Protocol):
    """What a function needs from the evaluator: the store, its view and the evaluation time."""

    @property
    def store(self) -> Store: ...
    @property
    def view(self) -> StoreView: ...
    @property
    def ms(self) -> int: ...
    @property
    def root_ms(self) -> int: ...  # the query's time: start() and end() of "@"


Evaluate = Callable[[plan.Node, Any], "float | Vec"]

DATE_FUNCTIONS = frozenset(
    {
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "hour",
        "minute",
        "month",
        "year",
    }
)


def _inverse(text: str) -> float:
    """1 / the constant ``text``, rounded once, as Go evaluates constant expressions."""
    with localcontext() as ctx:
        ctx.prec = 80
        return float(Decimal(1) / Decimal(text))


_LN2 = "0.693147180559945309417232121458176568075500134360255254120680009493393621969694715605863"
_LN10 = "2.30258509299404568401799145468436420760110148862877297603332790096757260967735248023599"
INV_LN2 = _inverse(_LN2)
INV_LN10 = _inverse(_LN10)


def call(node: plan.Call, ctx: Context, evaluate: Evaluate) -> float | Vec:
    """Evaluate the function call ``node`` at ``ctx.ms``; ``evaluate`` evaluates its arguments."""
    f = node.func
    if f == "time":
        return ctx.ms / 1000
    if f in DATE_FUNCTIONS and not node.args:
        secs = np.array([_go_div(ctx.ms, 1000)], dtype=np.int64)
        return Vec(_table(node, ctx.store, ()), np.zeros(1, np.int64), _date(f, secs))
    if f == "timestamp" and isinstance(node.args[0], plan.Selector):
        return _timestamp_of_selector(node.args[0], ctx)
    args = [evaluate(a, ctx) for a in node.args]
    if f == "vector":
        (value,) = args
        assert isinstance(value, float)
        return Vec(_table(node, ctx.store, ()), np.zeros(1, np.int64), np.array([value]))
    if f == "scalar":
        (vec,) = args
        assert isinstance(vec, Vec)
        return float(vec.values[0]) if vec.values.size == 1 else math.nan
    if f == "absent":
        (vec,) = args
        assert isinstance(vec, Vec)
        return absent(_table(node, ctx.store, node.absent), present=bool(vec.idx.size))
    if f == "histogram_quantile":
        q, vec = args
        assert isinstance(q, float)
        assert isinstance(vec, Vec)
        return histogram_quantile(q, vec)
    vec = args[0]
    assert isinstance(vec, Vec)
    scalars = [float(a) for a in args[1:] if isinstance(a, float)]
    if f in ("sort", "sort_desc"):
        key = vec.values if f == "sort" else -vec.values
        order = np.argsort(key, kind="stable")  # NaN last either way, as Prometheus
        return Vec(vec.table, vec.idx[order], vec.values[order])
    if f in ("label_replace", "label_join"):
        table, rows = _relabelled(f, node.strings, vec.table)
        idx = rows[vec.idx]
        table.check_unique(idx)
        return Vec(table, idx, vec.values)
    if f == "timestamp":
        values = np.full(vec.values.size, ctx.ms / 1000)
    elif f in DATE_FUNCTIONS:
        values = _date(f, _go_int64(vec.values))
    elif f == "clamp":
        lo, hi = scalars
        if hi < lo:
            return Vec(vec.table.without_name(), vec.idx[:0], vec.values[:0])
        values = go_max(np.float64(lo), go_min(np.float64(hi), vec.values))
    else:
        with np.errstate(all="ignore"):
            values = _MATH[f](vec.values, *scalars)
    table = vec.table.without_name()
    table.check_unique(vec.idx)
    return Vec(table, vec.idx, np.asarray(values, dtype=np.float64))


def absent(table: LabelTable, *, present: bool) -> Vec:
    """``absent()``'s result: nothing if the argument had series, else 1 with ``table``'s labels."""
    if present:
        return Vec(table, table.all[:0], np.zeros(0))
    return Vec(table, table.all, np.ones(1))


def _table(node: plan.Call, store: Store, labels: Labels) -> LabelTable:
    """A one-row label table for ``node`` (the same object every tick)."""
    memo = plan.memo(node, store)
    table = memo.get("table")
    if table is None:
        table = memo["table"] = LabelTable([labels])
    assert isinstance(table, LabelTable)
    return table


# --- arithmetic as Go's math package does it -------------------------------------------------


def go_min(a: Any, b: Any) -> F64:
    """Go's math.Min: -Inf if either is -Inf, else NaN if either is NaN; -0 below +0."""
    out = np.minimum(a, b)
    zero = (a == 0) & (b == 0)
    if np.any(zero):
        neg = np.signbit(a) | np.signbit(b)
        out = np.where(zero, np.where(neg, -0.0, 0.0), out)
    out = np.where((a == -np.inf) | (b == -np.inf), -np.inf, out)
    return np.asarray(out, dtype=np.float64)


def go_max(a: Any, b: Any) -> F64:
    """Go's math.Max: +Inf if either is +Inf, else NaN if either is NaN; +0 above -0."""
    out = np.maximum(a, b)
    zero = (a == 0) & (b == 0)
    if np.any(zero):
        neg = np.signbit(a) & np.signbit(b)
        out = np.where(zero, np.where(neg, -0.0, 0.0), out)
    out = np.where((a == np.inf) | (b == np.inf), np.inf, out)
    return np.asarray(out, dtype=np.float64)


# fdlibm's log (as Go's amd64 assembly computes it): x = 2^k * f1 with f1 in (sqrt(2)/2,
# sqrt(2)], f = f1 - 1, s = f / (2 + f), and a minimax polynomial in s^2 for the remainder.
_HSQRT2 = 7.07106781186547524401e-01
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_L1, _L2, _L3, _L4, _L5, _L6, _L7 = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)


def go_log(x: F64) -> F64:
    """See :func:`_go_log` (NaN and infinities are values here: no floating-point warnings)."""
    with np.errstate(all="ignore"):
        return _go_log(x)


def _go_log(x: F64) -> F64:
    """Go's math.Log on amd64, to the bit (fdlibm's algorithm, operation for operation).

    The exponent is read from the bits without normalising subnormals, as Go's assembly does.
    """
    x = np.asarray(x, dtype=np.float64)
    bits = x.view(np.int64)
    f1 = ((bits & 0x000FFFFFFFFFFFFF) | 0x3FE0000000000000).view(np.float64)
    k = (((bits >> 52) & 0x7FF) - 0x3FE).astype(np.float64)
    small = f1 <= _HSQRT2
    k = k - small
    f1 = f1 * np.where(small, 2.0, 1.0)
    f = f1 - 1.0
    s = f / (2.0 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (((_L7 * s4 + _L5) * s4 + _L3) * s4 + _L1)
    t2 = s4 * ((_L6 * s4 + _L4) * s4 + _L2)
    r = t1 + t2
    hfsq = 0.5 * f * f
    out = k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)
    out = np.where(bits >= 0x7FF0000000000000, x, out)  # +Inf and NaN: themselves
    out = np.where(bits < 0, np.nan, out)  # negative (sign bit set): NaN
    out = np.where((bits & 0x7FFFFFFFFFFFFFFF) == 0, -np.inf, out)  # ±0: -Inf
    return np.asarray(out, dtype=np.float64)


def _log2(x: F64) -> F64:
    """Go's math.Log2: exact for powers of two, else Log(frac) * (1/Ln2) + exp."""
    frac, exp = np.frexp(x)
    out: F64 = np.where(frac == 0.5, (exp - 1).astype(np.float64), go_log(frac) * INV_LN2 + exp)
    return out


def _log10(x: F64) -> F64:
    """Go's math.Log10: Log(x) * (1/Ln10)."""
    out: F64 = go_log(x) * INV_LN10
    return out


def _sgn(x: F64) -> F64:
    out: F64 = np.where(x < 0, -1.0, np.where(x > 0, 1.0, x))
    return out


def _round(x: F64, to_nearest: float = 1.0) -> F64:
    inverse = np.float64(1.0) / np.float64(to_nearest)
    out: F64 = np.floor(x * inverse + 0.5) / inverse
    return out


_MATH: dict[str, Callable[..., F64]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": lambda x: go_exp(x),  # (defined below)
    "sqrt": np.sqrt,
    "ln": go_log,
    "log2": _log2,
    "log10": _log10,
    "sgn": _sgn,
    "round": _round,
    "clamp_min": lambda x, lo: go_max(np.float64(lo), x),
    "clamp_max": lambda x, hi: go_min(np.float64(hi), x),
}


# --- timestamps and dates --------------------------------------------------------------------


def _timestamp_of_selector(sel: plan.Selector, ctx: Context) -> Vec:
    """``timestamp(x)``: the time of each selected sample (not the evaluation time)."""
    m = select.match(sel, ctx.store)
    ref, lookback = select.timestamp_read(sel, ctx.ms, ctx.root_ms)  # "@" is special here
    if lookback < 0:
        return Vec(m.table.without_name(), m.table.all[:0], np.zeros(0))
    ok, _ = select.instant(ctx.view, m, ref, lookback)
    times = sample_times(ctx.view, m, ref, lookback)
    table = m.table.without_name()
    idx = np.flatnonzero(ok)
    table.check_unique(idx)
    return Vec(table, idx, times[idx].astype(np.float64) / 1000)


def sample_times(view: StoreView, m: select.Match, ref_ms: int, lookback_ms: int) -> I64:
    """Time (ms) of the newest sample in [ref - lookback, ref] of each matched series.

    Meaningful where :func:`kpimon.promql.select.instant` reports a sample.
    """
    times: I64 = np.array(view.last_ms[m.index], dtype=np.int64)
    live_slot = ref_ms >= select.newest_row_ms(view, m.slots)
    if live_slot.all():
        return times
    past = np.flatnonzero(~live_slot[m.slot_of])
    w = select.gather(view, m.cols[past], m.slots, m.slot_of[past], ref_ms - lookback_ms, ref_ms)
    if w.v.shape[0]:
        sample = w.inside & (w.v.view(np.int64) != ABSENT_BITS)
        newest = sample.shape[0] - 1 - np.argmax(sample[::-1], axis=0)
        times[past] = w.times_at(newest)
    return times


def _go_div(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _go_int64(x: F64) -> I64:
    """Go's int64(x) on amd64: truncation; NaN, ±Inf and out-of-range give the minimum int64."""
    out = np.full(x.shape, np.iinfo(np.int64).min, dtype=np.int64)
    fits = (x > -9.223372036854775808e18) & (x < 9.223372036854775808e18)
    out[fits] = x[fits].astype(np.int64)
    return out


_ABS_SHIFT = 9223371966579724800
"""Go's unixToInternal + internalToAbsolute: seconds from Go's absolute epoch to 1970."""
_SHIFT_DAYS = _ABS_SHIFT // 86400


def _date(func: str, secs: I64) -> F64:
    """A date function of Unix seconds, as Go's time package computes it in UTC.

    Go adds the (huge) offset of its absolute epoch in int64 and reads the sum as uint64, so
    the seconds are taken modulo 2^64 from that epoch: the minimum int64 lands in the far future.
    """
    absolute = secs.view(np.uint64) + np.uint64(_ABS_SHIFT)  # wraps as Go's arithmetic does
    days = (absolute // np.uint64(86400)).astype(np.int64) - _SHIFT_DAYS
    sod = (absolute % np.uint64(86400)).astype(np.int64)
    if func == "hour":
        return (sod // 3600).astype(np.float64)
    if func == "minute":
        return (sod % 3600 // 60).astype(np.float64)
    if func == "day_of_week":
        return ((days + 4) % 7).astype(np.float64)
    year, month, day = civil_from_days(days)
    if func == "year":
        return year.astype(np.float64)
    if func == "month":
        return month.astype(np.float64)
    if func == "day_of_month":
        return day.astype(np.float64)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    out: F64
    if func == "days_in_month":
        out = (_MONTH_DAYS[month - 1] + ((month == 2) & leap)).astype(np.float64)
    else:  # day_of_year
        out = (_DAYS_BEFORE[month - 1] + day + ((month > 2) & leap)).astype(np.float64)
    return out


_MONTH_DAYS: I64 = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_DAYS_BEFORE: I64 = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], np.int64)


def civil_from_days(days: I64) -> tuple[I64, I64, I64]:
    """(year, month, day) of days since 1970-01-01 in the proleptic Gregorian calendar.

    The classic era-based conversion (eras of 400 years starting on March 1st), in int64.
    """
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


# --- label_replace, label_join -----------------------------------------------------------------

_GROUP_NAME = re.compile(r"\w+")


def _relabelled(func: str, strings: tuple[str, ...], table: LabelTable) -> tuple[LabelTable, I64]:
    """The table ``func`` makes of ``table`` (row for row) and the row map (cached in ``table``)."""
    key = (func, strings)
    cached = table.derived.get(key)
    if cached is None:
        change = _replacer(strings) if func == "label_replace" else _joiner(strings)
        new_table = LabelTable([change(lab) for lab in table.labels])
        cached = table.derived[key] = (new_table, new_table.all)
    assert isinstance(cached, tuple)
    return cached


def _set_label(labels: Labels, name: str, value: str) -> Labels:
    """``labels`` with ``name`` set to ``value`` (removed when ``value`` is empty)."""
    kept = [p for p in labels if p[0] != name]
    if value:
        kept.append((name, value))
        kept.sort()
    return tuple(kept)


def _replacer(strings: tuple[str, ...]) -> Callable[[Labels], Labels]:
    dst, template, src, regex = strings
    pattern = re.compile(f"(?:{regex})")

    def change(labels: Labels) -> Labels:
        m = pattern.fullmatch(plan.label_value(labels, src))
        if m is None:
            return labels
        return _set_label(labels, dst, go_expand(template, m))

    return change


def _joiner(strings: tuple[str, ...]) -> Callable[[Labels], Labels]:
    dst, sep, *srcs = strings

    def change(labels: Labels) -> Labels:
        return _set_label(labels, dst, sep.join(plan.label_value(labels, s) for s in srcs))

    return change


def go_expand(template: str, m: re.Match[str]) -> str:
    """Go's Regexp.ExpandString: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``.

    A name is the longest run of letters, digits and underscores after ``$`` (so ``$1x`` is the
    group named ``1x``: empty); unknown groups expand to nothing; a malformed ``$`` is literal.
    """
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        j = template.find("$", i)
        if j < 0:
            break
        out.append(template[i:j])
        i = j + 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        brace = i < n and template[i] == "{"
        start = i + 1 if brace else i
        name_match = _GROUP_NAME.match(template, start)
        end = name_match.end() if name_match else start
        if end == start or (brace and (end >= n or template[end] != "}")):
            out.append("$")  # malformed: the dollar is literal text
            continue
        name = template[start:end]
        i = end + 1 if brace else end
        out.append(_group(m, name))
    out.append(template[i:])
    return "".join(out)


_NUMBER = re.compile(r"0|[1-9][0-9]{0,8}")


def _group(m: re.Match[str], name: str) -> str:
    if _NUMBER.fullmatch(name):  # a group number (Go: no leading zeros, below 1e9)
        num = int(name)
        return (m.group(num) or "") if num <= m.re.groups else ""
    if name in m.re.groupindex:
        return m.group(name) or ""
    return ""


# --- histogram_quantile ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Buckets:
    """How a table's rows form histograms: per row its histogram (-1: no valid ``le``) and bound."""

    group_of: I64
    upper: F64
    groups: LabelTable  # per histogram, its labels without __name__ and le


_FLOAT = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE
)
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+")


def parse_go_float(text: str) -> float | None:
    """Go's strconv.ParseFloat(text, 64), or None where it fails (syntax or out of range)."""
    if _FLOAT.fullmatch(text):
        value = float(text)
        word = text.lstrip("+-").lower()
        if math.isinf(value) and word not in ("inf", "infinity"):
            return None  # overflow: Go reports a range error
        return value
    if _HEX_FLOAT.fullmatch(text):
        try:
            return float.fromhex(text)
        except OverflowError:
            return None
    return None


def _buckets(table: LabelTable) -> _Buckets:
    cached = table.derived.get("histogram_buckets")
    if cached is None:
        keys: dict[Labels, int] = {}
        out_labels: list[Labels] = []
        group_of = np.full(len(table), -1, dtype=np.int64)
        upper = np.full(len(table), math.nan)
        for i, lab in enumerate(table.labels):
            le = parse_go_float(plan.label_value(lab, "le"))
            if le is None:
                continue
            key = tuple(p for p in lab if p[0] != "le")
            g = keys.get(key)
            if g is None:
                g = keys[key] = len(keys)
                out_labels.append(tuple(p for p in key if p[0] != "__name__"))
            group_of[i] = g
            upper[i] = le
        cached = table.derived["histogram_buckets"] = _Buckets(
            group_of, upper, LabelTable(out_labels)
        )
    assert isinstance(cached, _Buckets)
    return cached


def histogram_quantile(q: float, vec: Vec) -> Vec:
    """``histogram_quantile(q, vec)`` over classic histograms (``le`` buckets)."""
    b = _buckets(vec.table)
    group = b.group_of[vec.idx]
    use = np.flatnonzero(group >= 0)
    group, upper, counts = group[use], b.upper[vec.idx[use]], vec.values[use]
    if not group.size:
        return Vec(b.groups, group, np.zeros(0))
    order = np.argsort(group, kind="stable")
    group, upper, counts = group[order], upper[order], counts[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.size else group[:0]
    ends = np.r_[starts[1:], group.size]
    ub, cs = upper.tolist(), counts.tolist()
    values = [
        bucket_quantile(q, ub[s:e], cs[s:e])
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    idx = group[starts] if group.size else group
    b.groups.check_unique(idx)
    return Vec(b.groups, idx.astype(np.int64), np.array(values, dtype=np.float64))


def bucket_quantile(q: float, upper: list[float], counts: list[float]) -> float:
    """Prometheus' bucketQuantile over one histogram's (upper bound, cumulative count) pairs."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    pairs = sorted(zip(upper, counts, strict=True), key=lambda p: p[0])
    if pairs[-1][0] != math.inf:
        return math.nan
    bounds: list[float] = []
    cum: list[float] = []
    for bound, count in pairs:  # buckets with equal bounds are merged
        if bounds and bounds[-1] == bound:
            cum[-1] += count
        else:
            bounds.append(bound)
            cum.append(count)
    top = cum[0]
    for i in range(1, len(cum)):  # counts must not decrease (NaN compares false: left alone)
        if cum[i] > top:
            top = cum[i]
        elif cum[i] < top:
            cum[i] = top
    n = len(bounds)
    if n < 2:
        return math.nan
    observations = cum[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    lo, hi = 0, n - 1  # Go's sort.Search over the first n - 1 buckets
    while lo < hi:
        mid = (lo + hi) // 2
        if not cum[mid] >= rank:
            lo = mid + 1
        else:
            hi = mid
    b = lo
    if b == n - 1:
        return bounds[n - 2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], cum[b]
    if b > 0:
        start = bounds[b - 1]
        count -= cum[b - 1]
        rank -= cum[b - 1]
    return _fdiv_mul(start, end, rank, count)


def _fdiv_mul(start: float, end: float, rank: float, count: float) -> float:
    """``start + (end - start) * (rank / count)`` with IEEE division (Python raises on zero)."""
    with np.errstate(all="ignore"):
        r = np.float64(rank) / np.float64(count)
        return float(np.float64(start) + (np.float64(end) - np.float64(start)) * r)


# --- Go's math.Exp on amd64 (with FMA) --------------------------------------------------------

_SPLIT = 134217729.0  # 2^27 + 1: Veltkamp's splitting constant for doubles


def _two_prod(a: F64, b: F64) -> tuple[F64, F64]:
    """``a * b`` as an unevaluated sum ``p + e``, exactly (Dekker), barring over/underflow."""
    p = a * b
    ca, cb = _SPLIT * a, _SPLIT * b
    ah, bh = ca - (ca - a), cb - (cb - b)
    al, bl = a - ah, b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _two_sum(a: F64, b: F64) -> tuple[F64, F64]:
    """``a + b`` as ``s + e``, exactly (Knuth)."""
    s = a + b
    z = s - a
    return s, (a - (s - z)) + (b - z)


def fma(a: F64, b: F64, c: F64) -> F64:
    """``a * b + c`` rounded once, as the FMA instruction computes it.

    Boldo and Melquiond's emulation: the exact product and sum as unevaluated pairs, the low
    parts added with rounding to odd, then one rounding to nearest. Exact unless an
    intermediate overflows or underflows (not the case for the arguments Exp gives it).
    """
    ph, pl = _two_prod(a, b)
    sh, sl = _two_sum(c, ph)
    vh, vl = _two_sum(sl, pl)
    # Round vh + vl to odd: when inexact and vh's last bit is even, step towards vl.
    even = (vh.view(np.int64) & 1) == 0
    fix = (vl != 0) & even
    if np.any(fix):
        vh = np.where(fix, np.nextafter(vh, np.where(vl > 0, np.inf, -np.inf)), vh)
    out: F64 = sh + vh
    return out


_EXP_LOG2E = float("1.4426950408889634073599246810018920")
_EXP_LN2U = float("0.69314718055966295651160180568695068359375")
_EXP_LN2L = float("0.28235290563031577122588448175013436025525412068e-12")
_EXP_OVERFLOW = 7.09782712893384e02
_EXP_TAYLOR = tuple(
    float(c)
    for c in (
        "2.4801587301587301587e-5",
        "1.9841269841269841270e-4",
        "1.3888888888888888889e-3",
        "8.3333333333333333333e-3",
        "4.1666666666666666667e-2",
        "1.6666666666666666667e-1",
        "0.5",
        "1.0",
    )
)


def go_exp(x: F64) -> F64:
    """See :func:`_go_exp` (NaN and infinities are values here: no floating-point warnings)."""
    with np.errstate(all="ignore"):
        return _go_exp(x)


def _go_exp(x: F64) -> F64:
    """Go's math.Exp as its amd64 assembly computes it on a CPU with FMA, to the bit.

    ``x = e * ln 2 + r`` with ``e`` the nearest integer to ``x / ln 2`` (ln 2 in two parts, fused
    multiply-subtract), ``r / 16`` through a degree-8 Taylor polynomial (fused multiply-adds),
    squared back four times as ``y * (y + 2)``, then scaled by ``2^e`` (in two steps for
    subnormal results; 0 below 2^-1075, +Inf above the double range).
    """
    x = np.asarray(x, dtype=np.float64)
    scaled = x * _EXP_LOG2E
    fits = np.abs(scaled) < 2.0**31  # (else CVTSD2SL's "integer indefinite": underflow)
    e = np.where(fits, np.rint(np.where(fits, scaled, 0.0)), -(2.0**31))
    r = np.where(np.isfinite(x), x, 0.0)
    r = fma(-e, np.full_like(r, _EXP_LN2U), r)
    r = fma(-e, np.full_like(r, _EXP_LN2L), r)
    r = r * 0.0625
    p = np.full_like(r, _EXP_TAYLOR[0])
    for c in _EXP_TAYLOR[1:]:
        p = fma(p, r, np.full_like(r, c))
    y = r * p
    for _ in range(3):
        y = y * (y + 2.0)
    y = fma(y, y + 2.0, np.ones_like(y))
    biased = e.astype(np.int64) + 0x3FF
    scale = (np.clip(biased, 1, 0x7FE) << 52).view(np.float64)
    out = np.where(biased >= 0x7FF, np.inf, y * scale)
    # Results below the normal range: scaled in two steps, by 2^(e + 1022) then by 2^-1022.
    tiny = (biased <= 0) & (biased >= -52)
    if np.any(tiny):
        first = (np.clip(biased + 0x3FE, 1, 0x7FE) << 52).view(np.float64)
        out = np.where(tiny, (y * first) * 2.0**-1022, out)
    out = np.where(biased < -52, 0.0, out)
    out = np.where(x > _EXP_OVERFLOW, np.inf, out)
    out = np.where(np.isnan(x) | (x == np.inf), x, out)
    out = np.where(x == -np.inf, 0.0, out)
    return np.asarray(out, dtype=np.float64)
