"""How :meth:`Store.ingest_many` writes the scrapes of many targets with a few vector operations.

Owns the write plan of a batch (which targets are written alone, which together, their columns
concatenated) and :func:`write_columns`, the write itself. The store keeps the plan of its
previous batch and reuses it while the same targets come with unchanged positional indices
(batches are written in slot order, whatever the order the scrapes arrived in): a batch then
costs, besides a few attribute reads per scrape, one concatenation of the values and a handful
of numpy operations over all of them. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from numpy.typing import NDArray

from kpimon.store.layout import ABSENT_BITS, F64, I64, STALE_BITS, any_, as_span, at
from kpimon.store.targets import Target

if TYPE_CHECKING:
    from kpimon.store.core import Store

_T = TypeVar("_T", bound=np.generic)

SPAN_MIN = 2048
"""Targets with at least this many series in contiguous columns are written by themselves.

Slices of the store's arrays cost ~1 ns per series plus ~12 µs per target and operation batch;
gathering and scattering concatenated columns costs ~8 ns per series: by themselves, targets
this big are cheaper than in the concatenation.
"""


@dataclass(slots=True, eq=False)
class Plan:
    """How to write a batch of scrapes of distinct targets (``targets``, in batch order).

    Attributes:
        rebuilds: the store's ``index_rebuilds`` when the plan was made (any rebuild since may
            have changed a target's columns).
        slots: target slots, in batch order.
        alone: positions (in the batch) of targets written by themselves (their columns are a
            slice).
        together: positions of the others (None: all of them), written as one.
        members: the targets at ``together``.
        cols: their columns, concatenated (a slice when contiguous).
        flat_cols: the same as an array.
        counts: the number of columns of each.
    """

    targets: list[Target]
    rebuilds: int
    slots: I64
    alone: list[int]
    together: list[int] | None
    members: list[Target]
    cols: I64 | slice
    flat_cols: I64
    counts: I64


def make_plan(targets: list[Target], rebuilds: int) -> Plan:
    """The write plan of a batch of distinct targets (best in :func:`canonical` order)."""
    flat_cols = concat([tg.cols for tg in targets], np.int64)
    span = as_span(flat_cols)
    alone: list[int] = []
    if span is None:
        alone = [
            i for i, tg in enumerate(targets) if tg.span is not None and tg.cols.size >= SPAN_MIN
        ]
    together: list[int] | None = None
    members = targets
    if alone:
        taken = set(alone)
        together = [i for i in range(len(targets)) if i not in taken]
        members = [targets[i] for i in together]
        flat_cols = concat([tg.cols for tg in members], np.int64)
        span = as_span(flat_cols)
    return Plan(
        targets=targets,
        rebuilds=rebuilds,
        slots=np.fromiter(map(_SLOT, targets), np.int64, len(targets)),
        alone=alone,
        together=together,
        members=members,
        cols=span if span is not None else flat_cols,
        flat_cols=flat_cols,
        counts=np.fromiter(map(len, [tg.cols for tg in members]), np.int64, len(members)),
    )


def canonical(targets: list[Target]) -> list[int] | None:
    """The order of ``targets`` by slot (None when they are in it already).

    Slots are given out as targets appear, and so are columns: in slot order, the columns of
    a batch are usually one slice, and the plan of a batch is the same whatever the order in
    which its scrapes arrived.
    """
    slots = np.fromiter(map(_SLOT, targets), np.int64, len(targets))
    if not np.count_nonzero(slots[1:] <= slots[:-1]):
        return None
    order: list[int] = np.argsort(slots, kind="stable").tolist()
    return order


_SLOT = attrgetter("slot")


def concat(arrays: Sequence[NDArray[_T]], dtype: type[_T]) -> NDArray[_T]:
    """``np.concatenate(arrays)`` for 1-D arrays of ``dtype``, faster for many small ones.

    ``bytes.join`` copies contiguous buffers with less overhead per array than numpy (~80 ns
    instead of ~220 ns); the result is read-only.
    """
    try:
        joined = b"".join(arrays)  # type: ignore[arg-type]  # numpy arrays are buffers
    except TypeError:  # an array that is not contiguous
        return np.concatenate(arrays)
    return np.frombuffer(joined, dtype=dtype)


def spread(per_target: I64, at: list[int] | None, counts: I64) -> I64 | int:
    """``per_target`` at ``at`` (all when None), each repeated ``counts[i]`` times; or the one
    value when all are equal."""
    picked = per_target if at is None else per_target[at]
    first = int(picked[0])
    if not np.count_nonzero(picked != first):
        return first
    out: I64 = np.repeat(picked, counts)
    return out


def values_of(arrays: list[F64], at: list[int] | None) -> F64:
    """The values of the scrapes at ``at`` (all when None), concatenated."""
    picked = arrays if at is None else [arrays[i] for i in at]
    return concat(picked, np.float64)


def write_columns(
    store: Store,
    chunk: list[Target],
    cols: I64 | slice,
    flat_cols: I64 | slice,
    rows: I64 | int,
    times: I64 | int,
    vals: F64,
) -> None:
    """Write ``vals`` to ``cols`` (``flat_cols`` is the same, an array unless ``rows`` is
    one row) at ``rows``/``times`` (per column, or one for all), and the per-column scalars.
    """
    stale_in: NDArray[np.bool_] | None = None
    if any_(np.isnan(vals)):  # look for staleness markers among the NaNs
        bits = vals.view(np.int64)
        stale_in = bits == STALE_BITS
        if any_(bits == ABSENT_BITS):  # not ours to receive: an ordinary NaN then
            vals = np.where(bits == ABSENT_BITS, np.nan, vals)
        if any_(stale_in):
            _fix_present(chunk, stale_in)
        else:
            stale_in = None
    if isinstance(rows, int):
        if isinstance(cols, slice):
            store._values[rows, cols] = vals
        else:  # a 1-D write into the row (a view) is ~4x faster than values[rows, cols]
            store._values[rows][cols] = vals
    else:
        flat = rows * store._values.shape[1]
        flat += flat_cols
        store._values.reshape(-1)[flat] = vals
    reset = vals < store._last_value[cols]
    if any_(reset):
        store._reset_ms[at(cols, reset)] = times if isinstance(times, int) else times[reset]
    if stale_in is None:
        store._last_value[cols] = vals
        store._last_ms[cols] = times
    else:
        real, stale = ~stale_in, at(cols, stale_in)
        store._last_value[at(cols, real)] = vals[real]
        store._last_ms[at(cols, real)] = times if isinstance(times, int) else times[real]
        store._stale_ms[stale] = times if isinstance(times, int) else times[stale_in]
        store._gap_ms[stale] = store._stale_ms[stale]


def _fix_present(chunk: list[Target], stale: NDArray[np.bool_]) -> None:
    """Series sent as staleness markers are not present at their target's new row."""
    start = 0
    for tg in chunk:
        part = stale[start : start + tg.cols.size]
        start += tg.cols.size
        if any_(part):
            tg.present = tg.cols[~part]
