"""The sample store: recent samples of every series, in numpy ring buffers, bounded in memory.

Owns series identity (a target's series key -> label set -> column), the ring buffers, staleness
markers, garbage collection of series nobody scrapes any more, and the generation counters that
tell readers when the set of series changed. It knows nothing about PromQL: lookback, ranges and
functions live in :mod:`kpimon.promql`, which reads the arrays through :meth:`Store.view`.

Layout. Every target has a ring of ``capacity`` *rows* (one row per ingest, i.e. per scrape, with
the row's Unix time in milliseconds); every series is a *column* of ``values[capacity, columns]``
and lives in the rows of its target. An ingest writes one row for all of the target's columns:
the scraped value, a staleness marker (Prometheus' special NaN) for series that disappeared since
the previous scrape, or :data:`ABSENT` (no sample) for series that were already gone. A few
per-column scalars (newest real value and its time, newest staleness marker, newest row without
a real sample, newest counter reset) let readers answer "now" questions without touching rows.

Fast ingest: per target, the positional column index of the previous key list is reused while the
key list is unchanged (identity, then list comparison), and is rebuilt through a dict when it
changes. A key is decoded (:func:`kpimon.labels.decode_key`) only the first time the target sends
it. :meth:`Store.ingest_many` writes a whole tick's scrapes at once: per unchanged scrape a few
attribute reads, then one concatenation and a handful of vector operations for all of them.

Modules: ``core`` (the :class:`Store`), ``batch`` (how a batch of scrapes is written),
``layout`` (markers, :class:`StoreView`, sizing), ``targets`` (per-target bookkeeping, target
labels). This package is pure: no I/O, never
awaits; times are passed in.
"""

from __future__ import annotations

from kpimon.store.core import Store
from kpimon.store.layout import (
    ABSENT,
    ABSENT_BITS,
    NO_TIME,
    STALE_BITS,
    STALE_NAN,
    Scrape,
    StoreView,
    capacity_for,
    is_stale,
)

__all__ = [
    "ABSENT",
    "ABSENT_BITS",
    "NO_TIME",
    "STALE_BITS",
    "STALE_NAN",
    "Scrape",
    "Store",
    "StoreView",
    "capacity_for",
    "is_stale",
]
