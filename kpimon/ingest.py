"""Scrape results queued between evaluation ticks and written to the store in one batch.

Scrapes finish spread over the scrape interval, but their samples are only read at evaluation
ticks; writing each one as it arrives costs a fixed ~15 µs per target per scrape. The
:class:`IngestBuffer` stands between the scrape loops and the store: it records ``ingest``,
``mark_stale`` and ``drop_target`` in arrival order, and :meth:`IngestBuffer.flush` (called by
the evaluation loop right before each tick) replays them, runs of ingests through
:meth:`~kpimon.store.Store.ingest_many`. Samples keep their own scrape timestamps, so what the
evaluator sees is exactly what it would have seen with immediate writes.

No I/O, no awaiting.
"""

from __future__ import annotations

import contextlib
import logging
from typing import NamedTuple, cast

import numpy as np
import numpy.typing as npt

from kpimon.labels import Labels
from kpimon.store import Scrape, Store
from kpimon.store.tiers import Tiers

log = logging.getLogger("kpimon.scrape")


class _Stale(NamedTuple):
    target: str
    t: float
    drop: bool


class IngestBuffer:
    """A :class:`~kpimon.scheduler.SampleSink` that defers writes to the store until flushed."""

    def __init__(
        self, store: Store, max_pending: int = 10_000, *, tiers: Tiers | None = None
    ) -> None:
        """``store`` gets every scrape; with ``tiers`` (whose main store is ``store``), the long
        store also gets the series of the metrics it holds (:mod:`kpimon.store.tiers`)."""
        self.store = store
        self.tiers = tiers
        self.max_pending = max_pending
        self._ops: list[Scrape | _Stale] = []
        self._stale = 0  # how many of _ops are _Stale

    def __len__(self) -> int:
        return len(self._ops)

    def ingest(
        self,
        target: str,
        target_labels: Labels,
        keys: list[bytes],
        values: npt.NDArray[np.float64],
        t: float,
    ) -> None:
        if len(keys) != len(values):  # a source bug; reject it here so the batch stays whole
            log.error("scrape rejected target=%s keys=%d values=%d", target, len(keys), len(values))
            self.mark_stale(target, t)
            return
        self._ops.append((target, target_labels, keys, values, t))
        if len(self._ops) >= self.max_pending:  # evaluation is stalled or far apart: write now
            self.flush()

    def mark_stale(self, target: str, t: float) -> None:
        self._ops.append(_Stale(target, t, drop=False))
        self._stale += 1

    def drop_target(self, target: str, t: float) -> None:
        self._ops.append(_Stale(target, t, drop=True))
        self._stale += 1

    def flush(self) -> None:
        """Write everything queued, in arrival order."""
        ops, self._ops = self._ops, []
        stale, self._stale = self._stale, 0
        if not stale:  # the usual tick: scrapes only, one run
            self._write(cast(list[Scrape], ops))
            return
        run: list[Scrape] = []
        for op in ops:
            if isinstance(op, _Stale):
                self._write(run)
                run = []
                for store in self._stores():
                    if op.drop:
                        store.drop_target(op.target, op.t)
                    else:
                        store.mark_stale(op.target, op.t)
                if op.drop and self.tiers is not None:
                    self.tiers.forget(op.target)
            else:
                run.append(op)
        self._write(run)

    def _stores(self) -> list[Store]:
        return [self.store] if self.tiers is None else self.tiers.stores

    def _write(self, run: list[Scrape]) -> None:
        if not run:
            return
        self._write_to(self.store, run)
        long = None if self.tiers is None else self.tiers.long
        if long is not None:
            assert self.tiers is not None
            part = self.tiers.long_part
            long_run: list[Scrape] = []
            for target, labels, keys, values, t in run:
                kept, take = part(target, keys)
                if kept or long.has_target(target):  # (an emptied target's series go stale)
                    long_run.append(
                        (target, labels, kept, values if take is None else values[take], t)
                    )
            self._write_to(long, long_run)

    @staticmethod
    def _write_to(store: Store, run: list[Scrape]) -> None:
        if not run:
            return
        try:
            store.ingest_many(run)
        except Exception:
            # A store bug: the batch may be half written, and writing it again would be refused
            # as out of order. Count every scrape of it as failed (its series go stale) rather
            # than leave some targets silently holding old values.
            log.exception("writing scraped samples failed targets=%d", len(run))
            for target, *_, t in run:
                with contextlib.suppress(Exception):
                    store.mark_stale(target, t)
