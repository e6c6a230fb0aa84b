"""Selecting series from the store and reading their samples with PromQL's time semantics.

Owns selector matching (cached per store generation), the 5-minute lookback of instant
selectors and the sample windows of range selectors, as Prometheus 2.x defines them: an instant
selector at time t takes the newest sample in [t - 5m, t] unless that sample is a staleness
marker; a range selector ``[r]`` takes the samples in [t - r, t] except staleness markers (both
ends included, as in Prometheus 2.x; Prometheus 3 excludes the left end).

Reads go through :meth:`kpimon.store.Store.view`. "Live" reads (the evaluation time is at or
after the target's newest row, the daemon's case) use the per-series scalars the store keeps;
other reads gather the rows of the window. This module never does I/O and never awaits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kpimon.labels import Labels
from kpimon.promql import plan
from kpimon.promql.tables import LabelTable
from kpimon.store import ABSENT, ABSENT_BITS, NO_TIME, STALE_BITS, Store, StoreView

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Mask = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Match:
    """The series a selector matched, valid while the store's generation is ``generation``.

    Attributes:
        table: their label sets (with ``__name__``).
        cols: their store columns.
        slots: the distinct target slots of those columns.
        slot_of: for each column, the index of its target slot in ``slots`` (series are sorted
            by target, so this is ``runs[i]`` times ``i`` for each slot ``i``).
        runs: how many of the series belong to each slot.
        index: ``cols`` as a slice when they are contiguous (reads are then views, not copies).
    """

    generation: int
    table: LabelTable
    cols: I64
    slots: I64
    slot_of: I64
    runs: I64
    index: I64 | slice

    def per_series(self, per_slot: NDArray[Any]) -> Any:
        """A per-target-slot array spread over the series (a scalar when there is one slot)."""
        return per_slot[0] if self.slots.size == 1 else np.repeat(per_slot, self.runs)


def match(sel: plan.Selector, store: Store) -> Match:
    """The series ``sel`` matches in ``store`` (cached until the relevant series set changes)."""
    gen = store.name_generation(sel.name) if sel.name is not None else store.generation
    memo = plan.memo(sel, store)
    cached: Match | None = memo.get("match")
    if cached is not None and cached.generation == gen:
        return cached
    if sel.name is not None:
        candidates: list[int] = store.columns(sel.name)
        matchers = sel.matchers
    else:
        on_name = [m for m in sel.matchers if m.name == "__name__"]
        matchers = tuple(m for m in sel.matchers if m.name != "__name__")
        candidates = [
            c
            for name in store.names()
            if all(m.matches(name) for m in on_name)
            for c in store.columns(name)
        ]
    for matcher in matchers:  # one pass per matcher: no generator per series
        test = matcher.matches_labels if matcher.regex is None else _memoised(matcher)
        labels = store.labels_of(candidates)
        candidates = [c for c, lab in zip(candidates, labels, strict=True) if test(lab)]
    cols = np.array(candidates, dtype=np.int64)
    target = store.view().column_target[cols]
    order = np.lexsort((cols, target))  # series of one target next to each other
    cols, target = cols[order], target[order]
    slots, runs = np.unique(target, return_counts=True)
    contiguous = cols.size > 0 and int(cols[-1]) - int(cols[0]) + 1 == cols.size
    if contiguous and cols.size > 1:
        contiguous = bool(np.all(np.diff(cols) == 1))
    result = Match(
        generation=gen,
        table=LabelTable(store.labels_of(cols.tolist())),
        cols=cols,
        slots=slots.astype(np.int64),
        slot_of=np.repeat(np.arange(slots.size, dtype=np.int64), runs),
        runs=runs.astype(np.int64),
        index=slice(int(cols[0]), int(cols[-1]) + 1) if contiguous else cols,
    )
    memo["match"] = result
    return result


def reference_ms(
    at: plan.At | None, offset_ms: int, now_ms: int, root_ms: int, at_shift_ms: int = 0
) -> int:
    """The time a selector reads at: the evaluation time ``now_ms`` or its ``@`` time (for
    ``start()``/``end()``, the query's time ``root_ms``), less the offset.

    ``at_shift_ms`` moves ``@`` times as Prometheus does in some subqueries (see
    :func:`kpimon.promql.subquery.grid`).
    """
    if at is None:
        return now_ms - offset_ms
    return (root_ms if isinstance(at, str) else at) + at_shift_ms - offset_ms


def timestamp_read(sel: plan.Selector, now_ms: int, root_ms: int) -> tuple[int, int]:
    """(time, lookback) at which ``timestamp(sel)`` reads (lookback < 0: nothing to read).

    Prometheus 2.42 special-cases ``timestamp`` of a selector with ``@ T``: it reads at ``T``,
    ignoring the offset, but only the samples of ``[T - offset - 5m, T - offset]`` were loaded.
    """
    if sel.at is None:
        return now_ms - sel.offset_ms, LOOKBACK_MS
    at = reference_ms(sel.at, 0, now_ms, root_ms)
    return min(at, at - sel.offset_ms), LOOKBACK_MS - abs(sel.offset_ms)


LOOKBACK_MS = 300_000


def _memoised(matcher: plan.Matcher) -> Callable[[Labels], bool]:
    """``matcher.matches_labels`` running each regex once per distinct label value."""
    seen: dict[str, bool] = {}
    name, matches = matcher.name, matcher.matches

    def test(labels: Labels) -> bool:
        value = plan.label_value(labels, name)
        hit = seen.get(value)
        if hit is None:
            hit = seen[value] = matches(value)
        return hit

    return test


def newest_row_ms(view: StoreView, slots: I64) -> I64:
    """Time of each target's newest row (:data:`NO_TIME` when it has none)."""
    written = view.rows_written[slots]
    t = view.row_times[slots, (written - 1) % view.capacity]
    return np.where(written > 0, t, NO_TIME)


def instant(view: StoreView, m: Match, ref_ms: int, lookback_ms: int) -> tuple[Mask, F64]:
    """For each matched series: has it a sample for an instant selector at ``ref_ms``, its value."""
    ix = m.index
    last_ms = view.last_ms[ix]
    ok = (last_ms > view.stale_ms[ix]) & (last_ms >= ref_ms - lookback_ms)
    values = np.array(view.last_value[ix])  # a copy: the store's array changes at next ingest
    live_slot = ref_ms >= newest_row_ms(view, m.slots)
    if live_slot.all():
        return ok, values
    past = np.flatnonzero(~live_slot[m.slot_of])
    w = gather(view, m.cols[past], m.slots, m.slot_of[past], ref_ms - lookback_ms, ref_ms)
    if w.v.shape[0]:
        sample = w.inside & (w.v.view(np.int64) != ABSENT_BITS)
        newest = sample.shape[0] - 1 - np.argmax(sample[::-1], axis=0)
        v = w.v[newest, np.arange(past.size)]
        ok[past] = sample.any(axis=0) & (v.view(np.int64) != STALE_BITS)
        values[past] = v
    else:
        ok[past] = False
    return ok, values


@dataclass(frozen=True, slots=True)
class Window:
    """The rows of a time window for some series, oldest first: ``[rows, series]`` arrays.

    ``inside`` tells which cells are rows of the window (series of different targets may have
    different numbers of rows; padding cells hold :data:`~kpimon.store.ABSENT`); ``real`` which
    cells hold a sample that is not a staleness marker. ``v`` may be a view of the store.
    Times are looked up only when needed (:meth:`times_at`).
    """

    v: F64
    inside: Mask
    real: Mask
    first_row: I64  # per series, the ring row of its window's first row
    times: I64  # [slots, capacity] row times of the targets involved
    slot_of: I64  # per series, its target's index in ``times``

    def times_at(self, step: I64) -> I64:
        """For each series ``j``: the time of its row number ``step[j]`` in the window."""
        row = (self.first_row + step) % self.times.shape[1]
        out: I64 = self.times[self.slot_of, row]
        return out


def target_rows(view: StoreView, slots: I64, lo_ms: int, hi_ms: int) -> tuple[I64, I64, I64]:
    """Per target slot: rows newer than ``hi_ms``, rows in [lo_ms, hi_ms], oldest one's ring row."""
    cap = view.capacity
    written = view.rows_written[slots]
    times = view.row_times[slots]
    valid = np.arange(cap)[None, :] < written[:, None]
    newer = ((times > hi_ms) & valid).sum(axis=1)
    count = np.maximum(((times >= lo_ms) & valid).sum(axis=1) - newer, 0)
    first_row = (written - newer - count) % cap
    return newer.astype(np.int64), count.astype(np.int64), first_row.astype(np.int64)


def gather(view: StoreView, cols: I64, slots: I64, slot_of: I64, lo_ms: int, hi_ms: int) -> Window:
    """The rows in [lo_ms, hi_ms] of the series in ``cols``.

    ``slots`` are target slots and ``slot_of[j]`` (non-decreasing) the index in ``slots`` of the
    target of ``cols[j]``. A target's window is a run of consecutive ring rows, so the window is
    copied as one 2-D block per target (or not copied at all for a single target).
    """
    cap = view.capacity
    _, count_s, first_s = target_rows(view, slots, lo_ms, hi_ms)
    count, first_row = count_s[slot_of], first_s[slot_of]
    depth = int(count.max()) if count.size else 0
    # Targets whose windows sit on the same ring rows are read together (usually there are a
    # few such groups: one per ring position in use).
    key = first_row * (cap + 1) + count
    groups, inverse = np.unique(key, return_inverse=True)
    span = _span(cols)
    if groups.size == 1 and span is not None and int(first_row[0]) + depth <= cap:
        r0 = int(first_row[0])
        v = view.values[r0 : r0 + depth, span]  # a view: nothing copied
    else:
        v = np.full((depth, cols.size), ABSENT)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(groups.size + 1))
        for g in range(groups.size):
            at = order[bounds[g] : bounds[g + 1]]
            r0, n = divmod(int(groups[g]), cap + 1)
            rows = (r0 + np.arange(n)) % cap
            v[:n, at] = view.values[rows[:, None], cols[at][None, :]]
    inside = np.arange(depth)[:, None] < count[None, :]
    real = ~np.isnan(v)
    odd = ~real & inside
    if odd.any():  # NaN cells: a real NaN is a sample, padding and staleness markers are not
        bits = v.view(np.int64)
        real |= odd & (bits != ABSENT_BITS) & (bits != STALE_BITS)
    return Window(
        v=v,
        inside=inside,
        real=real,
        first_row=first_row,
        times=view.row_times[slots],
        slot_of=slot_of,
    )


def _span(cols: I64) -> slice | None:
    contiguous = cols.size > 0 and int(cols[-1]) - int(cols[0]) + 1 == cols.size
    if contiguous and (cols.size == 1 or bool(np.all(np.diff(cols) == 1))):
        return slice(int(cols[0]), int(cols[-1]) + 1)
    return None


def instant_steps(view: StoreView, m: Match, refs_ms: I64, lookback_ms: int) -> tuple[Mask, F64]:
    """:func:`instant` at several times at once (a subquery's steps): ``[steps, series]``.

    One gather of the rows covering every step's lookback, then per step and series the newest
    row with a sample (staleness markers included: a marker hides the series) at or before the
    step, found with a running maximum over the rows: no per-step read of the store.
    """
    n, k = refs_ms.size, m.cols.size
    if not n or not k:
        return np.zeros((n, k), dtype=bool), np.zeros((n, k))
    w = gather(
        view, m.cols, m.slots, m.slot_of, int(refs_ms.min()) - lookback_ms, int(refs_ms.max())
    )
    depth = w.v.shape[0]
    if not depth:
        return np.zeros((n, k), dtype=bool), np.zeros((n, k))
    # Row times per target (the series of one target share them); padding never matches.
    first_of_slot = np.searchsorted(m.slot_of, np.arange(m.slots.size))
    ring_rows = (w.first_row[first_of_slot][None, :] + np.arange(depth)[:, None]) % w.times.shape[1]
    slot_times = w.times[np.arange(m.slots.size)[None, :], ring_rows]  # [depth, slots]
    slot_times[~w.inside[:, first_of_slot]] = np.iinfo(np.int64).max
    sample = w.inside & (w.v.view(np.int64) != ABSENT_BITS)
    # The newest row with a sample, so far: the row itself where every row has one (the usual
    # case), else a running maximum over the series with gaps only.
    newest = np.broadcast_to(np.arange(depth, dtype=np.int64)[:, None], (depth, k))
    gappy = np.flatnonzero(~sample.all(axis=0))
    if gappy.size:
        newest = np.array(newest)
        marks = np.where(sample[:, gappy], newest[:, gappy], -1)
        newest[:, gappy] = np.maximum.accumulate(marks, axis=0)
    upto = np.empty((n, m.slots.size), dtype=np.int64)
    for g in range(m.slots.size):
        upto[:, g] = np.searchsorted(slot_times[:, g], refs_ms, side="right") - 1
    row = upto[:, m.slot_of]  # [steps, series]: the last row at or before each step
    cols = np.arange(k)
    at = np.where(row >= 0, newest[np.maximum(row, 0), cols], -1)
    safe = np.maximum(at, 0)
    values = w.v[safe, cols]
    ok = (
        (at >= 0)
        & (slot_times[safe, m.slot_of] >= (refs_ms - lookback_ms)[:, None])
        & (values.view(np.int64) != STALE_BITS)
    )
    return ok, np.array(values, dtype=np.float64)
