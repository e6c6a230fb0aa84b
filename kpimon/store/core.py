"""The Store class: ingest, staleness, garbage collection, reconfiguration, the read view.

See the package docstring (:mod:`kpimon.store`) for the layout. Pure: no I/O, never awaits.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from kpimon.labels import Labels, decode_key
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
    any_,
    as_span,
    at,
    capacity_for,
    grown,
)
from kpimon.store.targets import Target, attach_target_labels, metric_name

_GC_PERIOD_MS = 60_000
_CONCAT_MAX = 256  # scrapes with fewer series are written together in ingest_many
_GROWTH_MIN = 64


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
            tg.written = self._rows_written[tg.slot] = keep
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
        ``exported_<name>``. Series of the target present in the previous scrape but missing
        from this one get a staleness marker at ``t``. Of two keys that decode to the same label
        set, the first wins. A batch not newer than the target's previous one is ignored.

        Raises:
            ValueError: ``keys`` and ``values`` differ in length.
        """
        self.ingest_many(((target, target_labels, keys, values, t),))

    def ingest_many(self, scrapes: Iterable[Scrape]) -> None:
        """Store several scrapes (``(target, target_labels, keys, values, t)`` each) at once.

        The same as calling :meth:`ingest` for each, in order, but the samples of all of them
        are written with a few vector operations: per scrape only the key list is compared and
        a row claimed, which matters with many small targets.
        """
        chunk: list[tuple[Target, int, int, F64]] = []
        seen: set[str] = set()
        for target, target_labels, keys, values, t in scrapes:
            if len(keys) != len(values):
                raise ValueError(f"{len(keys)} keys but {len(values)} values")
            if target in seen:  # a second scrape of one target: write the first one before
                self._write(chunk)
                chunk, seen = [], set()
            seen.add(target)
            part = self._prepare(target, target_labels, keys, values, round(t * 1000))
            if part is not None:
                chunk.append(part)
        self._write(chunk)

    def _prepare(
        self, target: str, target_labels: Labels, keys: list[bytes], values: F64, ms: int
    ) -> tuple[Target, int, int, F64] | None:
        """Index a scrape and claim its row: (target, row, time, values in column order)."""
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
            tg.keys = None
        was_present = tg.present
        rebuilt = tg.keys is None or (keys is not tg.keys and keys != tg.keys)
        if rebuilt:
            self._rebuild(tg, keys)
        vals = values if tg.take is None else values[tg.take]
        if vals.dtype is not FLOAT64:
            vals = vals.astype(np.float64)
        row = self._start_row(tg, ms)
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
        return tg, row, ms, vals

    def _write(self, chunk: list[tuple[Target, int, int, F64]]) -> None:
        """Write the samples of prepared scrapes of distinct targets.

        Big scrapes are written one by one (their columns are usually one slice); small ones
        together, concatenated, so that many small targets cost a few vector operations.
        """
        if len(chunk) == 1:
            small = []
            single = chunk
        else:
            small = [part for part in chunk if part[0].cols.size < _CONCAT_MAX]
            single = [part for part in chunk if part[0].cols.size >= _CONCAT_MAX]
            if len(small) < 2:
                small, single = [], chunk
        for part in single:
            tg, row, ms, vals = part
            cols = tg.span if tg.span is not None else tg.cols
            self._write_columns([part], cols, row, ms, vals)
        if small:
            counts = [part[0].cols.size for part in small]
            ms_each = np.array([part[2] for part in small], dtype=np.int64)
            self._write_columns(
                small,
                np.concatenate([part[0].cols for part in small]),
                np.repeat(np.array([part[1] for part in small], dtype=np.int64), counts),
                np.repeat(ms_each, counts),
                np.concatenate([part[3] for part in small]),
            )
        if chunk:
            self._finish(max(part[2] for part in chunk))

    def _write_columns(
        self,
        parts: list[tuple[Target, int, int, F64]],
        cols: I64 | slice,
        rows: I64 | int,
        times: I64 | int,
        vals: F64,
    ) -> None:
        stale_in: NDArray[np.bool_] | None = None
        if any_(np.isnan(vals)):  # look for staleness markers among the NaNs
            bits = vals.view(np.int64)
            stale_in = bits == STALE_BITS
            if any_(bits == ABSENT_BITS):  # not ours to receive: an ordinary NaN then
                vals = np.where(bits == ABSENT_BITS, np.nan, vals)
            if any_(stale_in):
                self._fix_present(parts, stale_in)
            else:
                stale_in = None
        self._values[rows, cols] = vals
        reset = vals < self._last_value[cols]
        if any_(reset):
            self._reset_ms[at(cols, reset)] = times if isinstance(times, int) else times[reset]
        if stale_in is None:
            self._last_value[cols] = vals
            self._last_ms[cols] = times
        else:
            real, stale = ~stale_in, at(cols, stale_in)
            self._last_value[at(cols, real)] = vals[real]
            self._last_ms[at(cols, real)] = times if isinstance(times, int) else times[real]
            self._stale_ms[stale] = times if isinstance(times, int) else times[stale_in]
            self._gap_ms[stale] = self._stale_ms[stale]

    def _fix_present(
        self, chunk: list[tuple[Target, int, int, F64]], stale: NDArray[np.bool_]
    ) -> None:
        """Series sent as staleness markers are not present at their target's new row."""
        start = 0
        for tg, _, _, _ in chunk:
            part = stale[start : start + tg.cols.size]
            start += tg.cols.size
            if any_(part):
                tg.present = tg.cols[~part]

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
        tg.keys = None
        self._dropped[target] = tg

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
        written = tg.written
        row = written % self._cap
        self._row_times[tg.slot, row] = ms
        tg.written = self._rows_written[tg.slot] = written + 1
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
        tg.cols = arr
        tg.take = None if take == list(range(len(keys))) else np.array(take, dtype=np.int64)
        tg.span = as_span(arr)
        present = set(cols)
        tg.absent = np.array(sorted(tg.members - present), dtype=np.int64)

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
            tg.keys = None  # the positional index may name freed columns
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
