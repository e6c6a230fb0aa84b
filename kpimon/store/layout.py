"""The store's data layout: sample markers, the read-only view, sizing and array helpers.

Owns the bit patterns (Prometheus' staleness marker, kpimon's "no sample"), :class:`StoreView`
(what readers such as the evaluator may see) and small numpy helpers; no state, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from kpimon.labels import Labels

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

STALE_BITS = 0x7FF0000000000002
"""Bit pattern of Prometheus' staleness marker, a NaN distinct from the NaN a target can expose."""
ABSENT_BITS = 0x7FF0000000000003
"""Bit pattern kpimon uses internally for "no sample in this row" (never exported)."""

STALE_NAN: float = np.array([STALE_BITS], dtype=np.int64).view(np.float64)[0].item()
ABSENT: float = np.array([ABSENT_BITS], dtype=np.int64).view(np.float64)[0].item()
NO_TIME = np.iinfo(np.int64).min // 4
"""Stands for "never" in the millisecond time arrays (far enough from int64's edge to subtract)."""

Scrape = tuple[str, Labels, list[bytes], NDArray[np.float64], float]
"""One successful scrape for :meth:`Store.ingest_many`: (target, target_labels, keys, values, t)."""


def is_stale(values: F64) -> NDArray[np.bool_]:
    """Which of ``values`` are staleness markers (by bit pattern, not by NaN-ness)."""
    out: NDArray[np.bool_] = values.view(np.int64) == STALE_BITS
    return out


def capacity_for(retention_s: float, min_interval_s: float) -> int:
    """Rows per target needed to hold ``retention_s`` of samples taken every ``min_interval_s``."""
    if retention_s <= 0 or min_interval_s <= 0:
        raise ValueError("retention and interval must be positive")
    return max(2, math.ceil(retention_s / min_interval_s) + 2)


@dataclass(frozen=True, slots=True)
class StoreView:
    """The store's arrays, for readers in this process (the evaluator); read-only by convention.

    Valid until the next call that mutates the store (arrays are replaced when they grow).

    Attributes:
        capacity: rows per target ring.
        values: ``[capacity, allocated columns]`` ring rows (C-contiguous; columns past the
            ones in use are spare); a cell holds a value, :data:`STALE_NAN` or :data:`ABSENT`.
        row_times: ``[targets, capacity]`` Unix milliseconds of each target's rows.
        rows_written: ``[targets]`` rows ever written per target (the newest row is
            ``(rows_written - 1) % capacity``).
        column_target: ``[columns]`` target slot of each column (-1 for a free column).
        last_value: newest real (non-stale) value of each column.
        last_ms: its time (:data:`NO_TIME` when none).
        stale_ms: time of the newest staleness marker of each column.
        gap_ms: time of the newest row of the column's target without a real sample for it
            (rows written before the column existed count as such rows).
        reset_ms: time of the newest real sample whose value is below the previous real one.
    """

    capacity: int
    values: F64
    row_times: I64
    rows_written: I64
    column_target: I64
    last_value: F64
    last_ms: I64
    stale_ms: I64
    gap_ms: I64
    reset_ms: I64


_A = TypeVar("_A", bound=np.generic)


def any_(mask: NDArray[np.bool_]) -> bool:
    """``mask.any()``, cheaper: ``count_nonzero`` has no ufunc machinery (runs on every ingest)."""
    return bool(np.count_nonzero(mask))


FLOAT64 = np.dtype(np.float64)


def at(cols: I64 | slice, mask: NDArray[np.bool_]) -> I64:
    """The columns where ``mask`` is set (``cols`` may be a slice)."""
    if isinstance(cols, slice):
        out: I64 = np.flatnonzero(mask) + (cols.start or 0)
        return out
    return cols[mask]


def grown(a: NDArray[_A], size: int, fill: float) -> NDArray[_A]:
    """``a`` extended to ``size`` elements filled with ``fill``."""
    b = np.full(size, fill, dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


def as_span(cols: I64) -> slice | None:
    """``cols`` as a slice when they are contiguous and increasing, else None."""
    contiguous = cols.size and int(cols[-1]) - int(cols[0]) + 1 == cols.size
    if contiguous and (cols.size == 1 or bool(np.all(np.diff(cols) == 1))):
        return slice(int(cols[0]), int(cols[-1]) + 1)
    return None
