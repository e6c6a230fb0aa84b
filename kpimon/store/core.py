"""The Store class: ingest, staleness, garbage collection, reconfiguration, the read view.

See the package docstring (:mod:`kpimon.store`) for the layout. Pure: no I/O, never awaits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from kpimon.labels import Labels, decode_key
from kpimon.store import batch
from kpimon.store.layout import (
    ABSENT,
    ABSENT_BITS,
    F64,
    FLOAT64,
    I64,
    NO_TIME,
    STALE_BITS,
    STALE_NAN,
    Scrape,
    StoreView,
    as_span,
    capacity_for,
    grown,
)
from kpimon.store.targets import Target, attach_target_labels, forget_index, metric_name

_GC_PERIOD_MS = 60_000
_GROWTH_MIN = 64


@dataclass(frozen=True, slots=True)
class TargetHistory:
    """One target's rows (:meth:`Store.history`): ``values[i, j]`` is key ``j`` at
    ``times_ms[i]``, with the store's markers (:data:`ABSENT`, :data:`STALE_NAN`)."""

    name: str
    labels: Labels
    keys: list[bytes]
    times_ms: I64
    values: F64


def replay(histories: Iterable[TargetHistory], into: Store) -> None:
    """Ingest ``histories`` row by row into ``into``, as the original scrapes were: a series
    with no sample (or a staleness marker) in a row is left out of that row's scrape, so the
    store writes the same markers itself."""
    for h in histories:
        bits = h.values.view(np.int64)
        real = (bits != ABSENT_BITS) & (bits != STALE_BITS)
        for i, t_ms in enumerate(h.times_ms.tolist()):
            take = np.flatnonzero(real[i])
            keys = [h.keys[j] for j in take.tolist()]
            into.ingest(h.name, h.labels, keys, h.values[i, take], t_ms / 1000)


class Store:
    """Recent samples of every scraped series (see the module docstring for the layout)."""

    def __init__(self, retention_s: float, min_interval_s: float) -> None:
        """Keep at least ``retention_s`` of history for series sampled every ``min_interval_s``.

        Raises:
            ValueError: a non-positive retention or interval.
        """
        self._cap = capacity_for(retention_s, min_interval_s)
        self._retention_ms = round(retention_s * 1000)
        self._ncols = 0  # columns allocated (high-water mark)
        self._values: F64 = np.full((self._cap, 0), ABSENT)
        self._col_target: I64 = np.empty(0, np.int64)
        self._last_value: F64 = np.empty(0)
        self._last_ms: I64 = np.empty(0, np.int64)
        self._stale_ms: I64 = np.empty(0, np.int64)
        self._gap_ms: I64 = np.empty(0, np.int64)
        self._reset_ms: I64 = np.empty(0, np.int64)
        self._labels: list[Labels | None] = []
        self._free: list[int] = []
        self._row_times: I64 = np.zeros((0, self._cap), np.int64)
        self._rows_written: I64 = np.empty(0, np.int64)
        self._slots: list[Target | None] = []
        self._targets: dict[str, Target] = {}
        self._dropped: dict[str, Target] = {}
        self._by_name: dict[str, list[int]] = {}
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}
        self._name_gen: dict[str, int] = {}
        self._generation = 0
        self._now_ms = NO_TIME
        self._last_gc_ms = NO_TIME
        self._chunk = 0  # numbers the runs of scrapes of distinct targets in ingest_many
        self._plan: batch.Plan | None = None  # of the previous batch, reused while it fits
        self.index_rebuilds = 0
        """Times a target's positional index was rebuilt because its key list changed."""
        self.out_of_order_total = 0
        """Ingests ignored because their time was not after the target's previous one."""
        self.invalid_keys_total = 0
        """Series keys that could not be decoded (skipped)."""

    # -- public API -------------------------------------------------------------------------

    @property
    def series_count(self) -> int:
        """Series held (including stale ones not yet garbage-collected)."""
        return self._ncols - len(self._free)

    @property
    def capacity(self) -> int:
        """Rows kept per target."""
        return self._cap

    @property
    def generation(self) -> int:
        """Changes whenever a series is added or removed anywhere in the store."""
        return self._generation

    def history(self, names: frozenset[str] | None) -> Iterator[TargetHistory]:
        """Every live target's rows, oldest first, restricted to the series whose metric name
        is in ``names`` (None: all): what replaying them into another store through
        :func:`replay` needs to give it the same samples (a fresh store of metrics that
        became long-range at a reload: :mod:`kpimon.store.tiers`)."""
        cap = self._cap
        for tg in self._targets.values():
            col_key = {c: k for k, c in tg.key_to_col.items() if c in tg.members}
            chosen = [
                (k, c)
                for c, k in sorted(col_key.items())
                if names is None or metric_name(self._labels[c] or ()) in names
            ]
            if not chosen:
                continue
            written = int(self._rows_written[tg.slot])
            n = min(written, cap)
            rows = (written - n + np.arange(n)) % cap
            cols = np.array([c for _, c in chosen], dtype=np.int64)
            yield TargetHistory(
                name=tg.name,
                labels=tg.labels,
                keys=[k for k, _ in chosen],
                times_ms=self._row_times[tg.slot, rows].copy(),
                # two 1-D takes: 2.5x faster than one 2-D fancy index (the daemon copies every
                # target's history on its loop for each periodic sample snapshot)
                values=self._values.take(cols, axis=1).take(rows, axis=0),
            )

    def has_target(self, name: str) -> bool:
        """Whether ``name`` has been ingested (and not dropped)."""
        return name in self._targets

    def name_generation(self, name: str) -> int:
        """Changes whenever a series named ``name`` is added or removed."""
        return self._name_gen.get(name, 0)

    def names(self) -> list[str]:
        """Metric names that have at least one series."""
        return [n for n, cols in self._by_name.items() if cols]

    def columns(self, name: str) -> list[int]:
        """Columns of the series named ``name``, oldest first (do not modify)."""
        return self._by_name.get(name, [])

    def labels(self, column: int) -> Labels:
        """The label set (with ``__name__``) of the series in ``column``."""
        lab = self._labels[column]
        if lab is None:
            raise KeyError(column)
        return lab

    def labels_of(self, columns: list[int]) -> list[Labels]:
        """The label sets of several columns at once (all must hold series)."""
        labels = self._labels
        return [labels[c] for c in columns]  # type: ignore[misc]

    def view(self) -> StoreView:
        """The arrays, for the evaluator (see :class:`StoreView`)."""
        n = self._ncols
        return StoreView(
            capacity=self._cap,
            values=self._values,
            row_times=self._row_times,
            rows_written=self._rows_written,
            column_target=self._col_target[:n],
            last_value=self._last_value[:n],
            last_ms=self._last_ms[:n],
            stale_ms=self._stale_ms[:n],
            gap_ms=self._gap_ms[:n],
            reset_ms=self._reset_ms[:n],
        )

    def reconfigure(self, retention_s: float, min_interval_s: float) -> None:
        """Change how much history is kept (config reload); keeps the newest samples."""
        cap = capacity_for(retention_s, min_interval_s)
        self._retention_ms = round(retention_s * 1000)
        if cap == self._cap:
            return
        old_cap, old_values, old_times = self._cap, self._values, self._row_times
        values = np.full((cap, old_values.shape[1]), ABSENT)
        times = np.zeros((old_times.shape[0], cap), np.int64)
        for tg in self._slots:
            if tg is None:
                continue
            written = int(self._rows_written[tg.slot])
            keep = min(written, old_cap, cap)
            src = (written - keep + np.arange(keep)) % old_cap  # chronological
            times[tg.slot, :keep] = old_times[tg.slot, src]
            cols = np.fromiter(tg.members, np.int64, len(tg.members))
            values[:keep, cols] = old_values[src[:, None], cols[None, :]]
            self._rows_written[tg.slot] = keep
        self._cap, self._values, self._row_times = cap, values, times

    def ingest(
        self,
        target: str,
        target_labels: Labels,
        keys: list[bytes],
        values: F64,
        t: float,
    ) -> None:
        """Store one successful scrape of ``target`` taken at Unix time ``t``.

        ``keys[i]`` (a series key in exposition syntax) has value ``values[i]``; a value with the
        staleness marker's bit pattern is stored as a staleness marker. ``target_labels`` (job,
        instance, static labels) are attached to every series as Prometheus does with
        ``honor_labels: false``: a scraped label of the same name is kept as
        ``exported_<name>``. The store keeps a reference to ``keys`` to recognise an unchanged
        list at the next scrape: do not change a list after handing it over (one grown or
        shrunk in place is detected). Series of the target present in the previous scrape but
        missing from this one get a staleness marker at ``t``. Of two keys that decode to the
        same label set, the first wins. A batch not newer than the target's previous one is
        ignored.

        Raises:
            ValueError: ``keys`` and ``values`` differ in length.
        """
        self.ingest_many(((target, target_labels, keys, values, t),))

    def ingest_many(self, scrapes: Iterable[Scrape]) -> None:
        """Store several scrapes (``(target, target_labels, keys, values, t)`` each) at once.

        The same as calling :meth:`ingest` for each, in order (when one raises, the ones before
        it are stored), but the samples of all of them are written with a few vector operations:
        per scrape of a target whose key list is unchanged, only the key list is compared and a
        row claimed, which matters with many small targets. Garbage collection may run after
        each run of scrapes of distinct targets.
        """
        get = self._targets.get
        self._chunk += 1
        mark = self._chunk
        chunk: list[Target] = []
        vals_of: list[F64] = []
        times: list[int] = []
        t_prev, ms = None, 0
        for target, target_labels, keys, values, t in scrapes:
            tg = get(target)
            if tg is not None and tg.chunk == mark:  # a second scrape: write the first one before
                self._write(chunk, vals_of, times)
                chunk, vals_of, times = [], [], []
                self._chunk += 1
                mark = self._chunk
            if len(keys) != len(values):
                self._write(chunk, vals_of, times)
                raise ValueError(f"{len(keys)} keys but {len(values)} values")
            if t != t_prev:  # (float(): numpy's scalars round 20x slower)
                t_prev, ms = t, round(float(t) * 1000)
            if (
                tg is None
                or ms <= tg.last_ms
                or (keys is not tg.fast_keys and keys != tg.fast_keys)
                or len(keys) != tg.n_keys  # the same list object, changed in place
                or (target_labels is not tg.labels and target_labels != tg.labels)
            ):
                vals = self._prepare(target, target_labels, keys, values, ms)
                tg = self._targets[target]
                tg.chunk = mark
                if vals is not None:
                    chunk.append(tg)
                    vals_of.append(vals)
                    times.append(ms)
                continue
            # The common case, inline: same target labels and key list, nothing else to do.
            tg.chunk = mark
            if values.dtype is not FLOAT64:
                values = values.astype(np.float64)
            tg.last_ms = ms
            tg.present = tg.cols
            chunk.append(tg)
            vals_of.append(values)
            times.append(ms)
        self._write(chunk, vals_of, times)

    def _prepare(
        self, target: str, target_labels: Labels, keys: list[bytes], values: F64, ms: int
    ) -> F64 | None:
        """Index a scrape (its row is claimed by :meth:`_write`); its values in column order.

        None when the scrape is out of order (ignored).
        """
        tg = self._targets.get(target)
        if tg is None:
            tg = self._dropped.pop(target, None)
            if tg is not None and tg.labels == target_labels:
                tg.dropped = False
                self._targets[target] = tg
            else:
                if tg is not None:
                    self._dropped[target] = tg
                tg = self._new_target(target, target_labels)
        if ms <= tg.last_ms:
            self.out_of_order_total += 1
            return None
        if tg.labels != target_labels:
            # Other target labels make other series: the old ones go stale below.
            tg.labels = target_labels
            tg.key_to_col.clear()
            tg.labels_to_col.clear()
            forget_index(tg)
        was_present = tg.present
        rebuilt = (
            tg.keys is None or len(keys) != tg.n_keys or (keys is not tg.keys and keys != tg.keys)
        )
        if rebuilt:
            self._rebuild(tg, keys)
        vals = values if tg.take is None else values[tg.take]
        if vals.dtype is not FLOAT64:
            vals = vals.astype(np.float64)
        row = int(self._rows_written[tg.slot]) % self._cap
        tg.last_ms = ms
        absent = tg.absent
        if absent.size:
            self._values[row, absent] = ABSENT
            self._gap_ms[absent] = ms
            if rebuilt and was_present.size:
                newly = np.intersect1d(was_present, absent, assume_unique=True)
                if newly.size:
                    self._values[row, newly] = STALE_NAN
                    self._stale_ms[newly] = ms
        tg.present = tg.cols
        return vals

    def _write(self, chunk: list[Target], vals_of: list[F64], times: list[int]) -> None:
        """Claim the rows of scrapes of distinct targets and write their samples.

        ``chunk[i]`` gets ``vals_of[i]`` (in column order) in its next row, at ``times[i]``.
        Big contiguous targets are written one by one (slices); the others together, their
        columns and values concatenated (see :mod:`kpimon.store.batch`).
        """
        cap = self._cap
        if len(chunk) == 1:
            tg, ms = chunk[0], times[0]
            written = int(self._rows_written[tg.slot])
            row = written % cap
            self._row_times[tg.slot, row] = ms
            self._rows_written[tg.slot] = written + 1
            cols = tg.span if tg.span is not None else tg.cols
            batch.write_columns(self, chunk, cols, cols, row, ms, vals_of[0])
            self._finish(ms)
            return
        if not chunk:
            return
        plan = self._plan
        if plan is None or plan.rebuilds != self.index_rebuilds or plan.targets != chunk:
            order = batch.canonical(chunk)
            if order is not None:  # the order of targets does not matter: write in slot order
                chunk = [chunk[i] for i in order]
                vals_of = [vals_of[i] for i in order]
                times = [times[i] for i in order]
            if plan is None or plan.rebuilds != self.index_rebuilds or plan.targets != chunk:
                plan = self._plan = batch.make_plan(chunk, self.index_rebuilds)
        slots = plan.slots
        before = self._rows_written[slots]
        rows = before % cap
        ms_of = np.array(times, dtype=np.int64)
        self._row_times[slots, rows] = ms_of
        self._rows_written[slots] = before + 1
        for i in plan.alone:
            big = chunk[i]
            assert big.span is not None
            batch.write_columns(self, [big], big.span, big.span, int(rows[i]), times[i], vals_of[i])
        if plan.members:
            batch.write_columns(
                self,
                plan.members,
                plan.cols,
                plan.flat_cols,
                batch.spread(rows, plan.together, plan.counts),
                batch.spread(ms_of, plan.together, plan.counts),
                batch.values_of(vals_of, plan.together),
            )
        self._finish(int(ms_of.max()))

    def mark_stale(self, target: str, t: float) -> None:
        """A failed scrape of ``target`` at ``t``: staleness markers for all its present series."""
        tg = self._targets.get(target)
        if tg is None:
            return
        ms = round(t * 1000)
        if ms <= tg.last_ms or not tg.present.size:
            return  # nothing present: a row would only hold "no sample"
        row = self._start_row(tg, ms)
        members = np.fromiter(tg.members, np.int64, len(tg.members))
        self._values[row, members] = ABSENT
        self._values[row, tg.present] = STALE_NAN
        self._stale_ms[tg.present] = ms
        self._gap_ms[members] = ms
        tg.present = np.empty(0, np.int64)
        self._finish(ms)

    def drop_target(self, target: str, t: float) -> None:
        """``target`` left the configuration: mark its series stale and forget its index.

        Its samples stay readable until garbage collection; a target of the same name and
        labels that comes back continues the same series.
        """
        tg = self._targets.get(target)
        if tg is None:
            return
        self.mark_stale(target, t)
        del self._targets[target]
        tg.dropped = True
        forget_index(tg)
        if tg.members:
            self._dropped[target] = tg  # garbage collection frees it with its last series
        else:  # nothing of it to keep: free its slot now (GC would never visit it)
            self._slots[tg.slot] = None

    # -- internals --------------------------------------------------------------------------

    def _new_target(self, name: str, target_labels: Labels) -> Target:
        slot = next((i for i, s in enumerate(self._slots) if s is None), len(self._slots))
        if slot == len(self._slots):
            self._slots.append(None)
            if slot >= self._row_times.shape[0]:
                grow = max(_GROWTH_MIN, 2 * self._row_times.shape[0])
                times = np.zeros((grow, self._cap), np.int64)
                times[: self._row_times.shape[0]] = self._row_times
                written = np.zeros(grow, np.int64)
                written[: self._rows_written.shape[0]] = self._rows_written
                self._row_times, self._rows_written = times, written
        self._rows_written[slot] = 0
        tg = Target(name=name, slot=slot, labels=target_labels)
        self._slots[slot] = tg
        self._targets[name] = tg
        return tg

    def _start_row(self, tg: Target, ms: int) -> int:
        """Claim the target's next ring row for time ``ms``; returns the row index."""
        written = int(self._rows_written[tg.slot])
        row = written % self._cap
        self._row_times[tg.slot, row] = ms
        self._rows_written[tg.slot] = written + 1
        tg.last_ms = ms
        return row

    def _finish(self, ms: int) -> None:
        if ms > self._now_ms:
            self._now_ms = ms
            if ms - self._last_gc_ms >= _GC_PERIOD_MS:
                self._last_gc_ms = ms
                self.collect_garbage()

    def _rebuild(self, tg: Target, keys: list[bytes]) -> None:
        """Map each key of the batch to a column (new series get one); first duplicate wins."""
        self.index_rebuilds += 1
        key_to_col = tg.key_to_col
        cols: list[int] = []
        take: list[int] = []
        seen: set[int] = set()
        new: list[tuple[int, bytes, Labels]] = []  # (position, key, labels) of unseen label sets
        pending: dict[Labels, int] = {}
        for i, key in enumerate(keys):
            col = key_to_col.get(key)
            if col is None:
                try:
                    name, scraped = decode_key(key)
                except ValueError:
                    self.invalid_keys_total += 1
                    continue
                full = attach_target_labels(name, scraped, tg.labels, self._pairs)
                col = tg.labels_to_col.get(full)
                if col is None:
                    if full in pending:
                        continue  # duplicate of a new series earlier in this batch
                    pending[full] = len(new)
                    new.append((len(cols), key, full))
                    cols.append(-1)
                    take.append(i)
                    continue
                key_to_col[key] = col
            if col in seen:
                continue
            seen.add(col)
            cols.append(col)
            take.append(i)
        if new:
            fresh = self._alloc(len(new), tg)
            for (pos, key, full), col in zip(new, fresh, strict=True):
                cols[pos] = col
                key_to_col[key] = col
                tg.labels_to_col[full] = col
                self._add_series(col, full, tg)
        arr = np.array(cols, dtype=np.int64)
        tg.keys = keys
        tg.n_keys = len(keys)
        tg.cols = arr
        tg.take = None if take == list(range(len(keys))) else np.array(take, dtype=np.int64)
        tg.span = as_span(arr)
        present = set(cols)
        tg.absent = np.array(sorted(tg.members - present), dtype=np.int64)
        tg.fast_keys = keys if tg.take is None and not tg.absent.size else None

    def _alloc(self, n: int, tg: Target) -> list[int]:
        """``n`` free columns, as contiguous as possible, initialised as empty series of ``tg``."""
        out: list[int] = []
        if self._free:
            self._free.sort()
            out, self._free = self._free[:n], self._free[n:]
        if len(out) < n:
            start = self._ncols
            need = n - len(out)
            self._grow_columns(start + need)
            self._ncols = start + need
            out.extend(range(start, start + need))
        cols = np.array(out, dtype=np.int64)
        written = int(self._rows_written[tg.slot])
        before = int(self._row_times[tg.slot, (written - 1) % self._cap]) if written else NO_TIME
        self._values[:, cols] = ABSENT
        self._col_target[cols] = tg.slot
        self._last_value[cols] = np.nan
        self._last_ms[cols] = NO_TIME
        self._stale_ms[cols] = NO_TIME
        self._gap_ms[cols] = before
        self._reset_ms[cols] = NO_TIME
        return out

    def _grow_columns(self, needed: int) -> None:
        have = self._values.shape[1]
        if needed <= have:
            return
        size = max(needed, 2 * have, _GROWTH_MIN)
        values = np.full((self._cap, size), ABSENT)
        values[:, :have] = self._values
        self._values = values

        self._col_target = grown(self._col_target, size, -1)
        self._last_value = grown(self._last_value, size, np.nan)
        self._last_ms = grown(self._last_ms, size, NO_TIME)
        self._stale_ms = grown(self._stale_ms, size, NO_TIME)
        self._gap_ms = grown(self._gap_ms, size, NO_TIME)
        self._reset_ms = grown(self._reset_ms, size, NO_TIME)
        self._labels.extend([None] * (size - len(self._labels)))

    def _add_series(self, col: int, full: Labels, tg: Target) -> None:
        self._labels[col] = full
        tg.members.add(col)
        name = metric_name(full)
        self._by_name.setdefault(name, []).append(col)
        self._name_gen[name] = self._name_gen.get(name, 0) + 1
        self._generation += 1

    def collect_garbage(self) -> int:
        """Free the series whose newest sample is older than the retention; returns how many.

        Runs by itself about once a minute of ingested time; cheap (a few vector operations)
        when there is nothing to free.
        """
        n = self._ncols
        if not n:
            return 0
        horizon = self._now_ms - self._retention_ms
        newest = np.maximum(self._last_ms[:n], self._stale_ms[:n])
        dead = np.flatnonzero((newest < horizon) & (self._col_target[:n] >= 0))
        if not dead.size:
            return 0
        dead_set = {int(c) for c in dead}
        names: set[str] = set()
        touched: set[int] = set()
        for c in dead_set:
            full = self._labels[c]
            assert full is not None
            names.add(metric_name(full))
            touched.add(int(self._col_target[c]))
            self._labels[c] = None
        for name in names:
            self._by_name[name] = [c for c in self._by_name[name] if c not in dead_set]
            self._name_gen[name] = self._name_gen.get(name, 0) + 1
            if not self._by_name[name]:
                del self._by_name[name]
        for slot in touched:
            tg = self._slots[slot]
            assert tg is not None
            tg.members -= dead_set
            tg.key_to_col = {k: c for k, c in tg.key_to_col.items() if c not in dead_set}
            tg.labels_to_col = {k: c for k, c in tg.labels_to_col.items() if c not in dead_set}
            forget_index(tg)  # the positional index may name freed columns
            tg.present = np.setdiff1d(tg.present, dead, assume_unique=True)
            tg.absent = np.setdiff1d(tg.absent, dead, assume_unique=True)
            if tg.dropped and not tg.members:
                self._slots[slot] = None
                if self._dropped.get(tg.name) is tg:
                    del self._dropped[tg.name]
        self._col_target[dead] = -1
        self._free.extend(dead_set)
        if len(self._pairs) > 8 * self.series_count + 10_000:
            self._pairs.clear()  # forget label pairs of series long gone (new ones re-share)
        self._generation += 1
        return len(dead_set)
