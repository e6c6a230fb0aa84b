"""The numbers behind the ``kpimon_slo_*`` gauges, brought up to date once per tick.

Per SLO and per window of its burn-rate alerts (5m, 30m, 1h, 6h, 3d by default) the tracker
evaluates the SLI's bad and total event counts over the raw samples in the store, with the
same templates as the SLO's KPIs (:mod:`kpimon.slo.compile`). The SLO window (30d) is not read
from the store: a 30-day range would make the store keep 30 days of every series it holds
(172,800 rows of 15 s samples, for all series, because its ring buffers are sized by the
longest range any rule reads). Instead a **ledger** records the bad and total events of every
5-minute bucket (8,640 buckets for 30 days: two floats each per SLO) and sums the buckets of
the last window. The daemon saves each ledger in the journal once per bucket
(:meth:`SloTracker.unsaved_ledgers`, :mod:`kpimon.journal.auxstate`) and restores it at
start-up (:meth:`SloTracker.restore`); what the window lacks (a first start, an outage) is
shown by ``kpimon_slo_window_coverage_ratio`` (docs/slo.md).

Pure: time and store are passed in; no I/O, never awaits.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kpimon.errors import EvaluationError
from kpimon.promql.compile import CompiledExpr, compile_expr
from kpimon.promql.evaluate import Scalar, evaluate
from kpimon.slo.compile import events, window_text
from kpimon.slo.model import LEDGER_STEP_S, Slo
from kpimon.store import Store
from kpimon.store.tiers import Tiers

log = logging.getLogger("kpimon.slo")


@dataclass(frozen=True, slots=True)
class WindowReading:
    """The SLI over one window: ``sli`` = good / total events, ``burn_rate`` = (1 − sli) /
    (1 − objective); both NaN when the window had no events."""

    window_s: float
    sli: float
    burn_rate: float
    events: float


@dataclass(frozen=True, slots=True)
class SloReading:
    """What /metrics shows about one SLO at the last tick."""

    slo: Slo
    windows: tuple[WindowReading, ...]
    """One per alert window with data, shortest first, then the SLO window (from the ledger;
    not when an alert window is the SLO window: that one, from raw samples, is exported)."""
    budget_remaining: float | None
    """1 − burn rate over the SLO window (negative once overspent); None before any bucket."""
    coverage: float
    """Share of the SLO window the ledger has buckets for (0–1)."""


def burn(sli: float, budget: float) -> float:
    """Burn rate of an SLI: (1 − sli) / budget."""
    return (1.0 - sli) / budget


def reading(window_s: float, bad: float, total: float, budget: float) -> WindowReading:
    """The SLI and burn rate of ``bad`` out of ``total`` events over a window."""
    # From the error ratio, not from 1 − sli: 3 of 1,000 at 99.9% is a burn rate of exactly 3.
    ratio = bad / total if total > 0 else math.nan
    return WindowReading(window_s=window_s, sli=1.0 - ratio, burn_rate=ratio / budget, events=total)


@dataclass(slots=True)
class _EventPair:
    bad: CompiledExpr
    total: CompiledExpr


def _pair(slo: Slo, window: str, probe_offset: str = "") -> _EventPair:
    ev = events(slo.sli, window, probe_offset)
    return _EventPair(bad=compile_expr(ev.bad), total=compile_expr(ev.total))


@dataclass(slots=True)
class Ledger:
    """Bad and total events per ``step_s`` bucket over the last ``window_s``, in a ring."""

    window_s: float
    step_s: float = LEDGER_STEP_S
    size: int = 0
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    bad: np.ndarray = field(default_factory=lambda: np.empty(0))
    total: np.ndarray = field(default_factory=lambda: np.empty(0))
    last_id: int | None = None

    def __post_init__(self) -> None:
        self.size = max(1, math.ceil(self.window_s / self.step_s))
        self.ids = np.full(self.size, _NO_BUCKET, np.int64)
        self.bad = np.zeros(self.size)
        self.total = np.zeros(self.size)

    def due(self, t: float) -> bool:
        """Whether ``t`` is in a bucket not recorded yet."""
        return self.last_id != math.floor(t / self.step_s)

    def record(self, t: float, bad: float, total: float) -> None:
        """Record the events of the bucket ending at ``t``."""
        b = math.floor(t / self.step_s)
        slot = b % self.size
        self.ids[slot], self.bad[slot], self.total[slot] = b, bad, total
        self.last_id = b

    def skip(self, t: float) -> None:
        """Mark ``t``'s bucket as done without events (the SLI had no data)."""
        self.last_id = math.floor(t / self.step_s)

    def pack(self) -> bytes:
        """The buckets as bytes (little-endian records id, bad, total), for the journal."""
        rec = np.empty(self.size, dtype=_LEDGER_RECORD)
        rec["id"], rec["bad"], rec["total"] = self.ids, self.bad, self.total
        return rec.tobytes()

    def unpack(self, data: bytes) -> bool:
        """Take the buckets :meth:`pack` made (of a ledger of the same size); False, changing
        nothing, when ``data`` does not fit."""
        if len(data) != self.size * _LEDGER_RECORD.itemsize:
            return False
        rec = np.frombuffer(data, dtype=_LEDGER_RECORD)
        self.ids = rec["id"].astype(np.int64)
        self.bad = rec["bad"].astype(np.float64)
        self.total = rec["total"].astype(np.float64)
        newest = int(self.ids.max())
        self.last_id = newest if newest > _NO_BUCKET else None
        return True

    def sums(self, t: float) -> tuple[float, float, float]:
        """Bad and total events in the window ending at ``t``, and the window's coverage."""
        live = self.ids > math.floor(t / self.step_s) - self.size
        n = int(live.sum())
        return float(self.bad[live].sum()), float(self.total[live].sum()), n / self.size


_NO_BUCKET = -(2**62)
_LEDGER_RECORD = np.dtype([("id", "<i8"), ("bad", "<f8"), ("total", "<f8")])


@dataclass(slots=True)
class _Tracked:
    slo: Slo
    windows: list[tuple[float, _EventPair]]
    ledger_pair: _EventPair
    ledger: Ledger
    reading: SloReading | None = None
    last_error: str | None = None
    unsaved: bool = False  # the ledger recorded a bucket since it was last saved


def _bucket_range(slo: Slo) -> float:
    """The range a ledger bucket reads. Counters: the whole step, so that consecutive
    buckets' ``increase()`` share their boundary sample and add up to the counter's increase.
    Probe results are counted, not differenced: the range stops 1 ms short so that a result
    on the boundary is counted once."""
    return LEDGER_STEP_S - 0.001 if slo.sli.kind == "probe" else LEDGER_STEP_S


def _key(slo: Slo) -> object:
    return (slo.name, slo.sli, slo.window_s)


def ledger_records(data: bytes) -> np.ndarray | None:
    """A packed ledger (:meth:`Ledger.pack`) as records ``id``, ``bad``, ``total``, live
    buckets only; None when ``data`` is not a ledger."""
    if len(data) % _LEDGER_RECORD.itemsize:
        return None
    rec = np.frombuffer(data, dtype=_LEDGER_RECORD)
    return rec[rec["id"] > _NO_BUCKET]


LEDGER_KEY_PREFIX = "slo-ledger:"
"""Journal keys of the ledgers (:mod:`kpimon.journal.auxstate`): this plus the SLO's name."""


def ledger_fingerprint(slo: Slo) -> str:
    """Names what a ledger counts: a saved ledger is restored only into the same SLI, window
    and bucket size."""
    text = repr((slo.sli.kind, slo.sli.query, slo.sli.total_query, slo.window_s, LEDGER_STEP_S))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SloTracker:
    """Keeps each SLO's :class:`SloReading` up to date (call :meth:`update` after each tick)."""

    def __init__(self, slos: Sequence[Slo], *, probe_delay_s: float = 0.0) -> None:
        self._tracked: dict[str, _Tracked] = {}
        self.probe_delay_s = probe_delay_s
        """How long after its start a probe result may reach the store (the longest probe
        timeout, and a margin): a probe SLI's ledger bucket ends this long before the tick
        that records it, so that a slow probe (a time-out: a failure) that straddles the tick
        is counted in the next bucket instead of in none."""
        self.reload(slos)

    def reload(self, slos: Sequence[Slo], *, probe_delay_s: float | None = None) -> None:
        """Swap in new SLOs; an SLO whose name, SLI and window are unchanged keeps its ledger."""
        if probe_delay_s is not None:
            self.probe_delay_s = probe_delay_s
        delay = window_text(self.probe_delay_s) if self.probe_delay_s > 0 else ""
        old = self._tracked
        new: dict[str, _Tracked] = {}
        for slo in slos:
            prev = old.get(slo.name)
            windows = sorted({w for a in slo.alerts for w in (a.long_s, a.short_s)})
            tracked = _Tracked(
                slo=slo,
                windows=[(w, _pair(slo, window_text(w))) for w in windows],
                ledger_pair=_pair(slo, window_text(_bucket_range(slo)), delay),
                ledger=Ledger(window_s=slo.window_s),
            )
            if prev is not None and _key(prev.slo) == _key(slo):
                tracked.ledger = prev.ledger
            new[slo.name] = tracked
        self._tracked = new

    def unsaved_ledgers(self) -> list[tuple[str, str, bytes]]:
        """The ledgers that changed since they were last handed out here, as (journal key,
        fingerprint, data); handing them out marks them saved (a caller whose write fails calls
        :meth:`mark_unsaved`)."""
        out = []
        for name, tr in self._tracked.items():
            if tr.unsaved:
                out.append((LEDGER_KEY_PREFIX + name, ledger_fingerprint(tr.slo), tr.ledger.pack()))
                tr.unsaved = False
        return out

    def mark_unsaved(self) -> None:
        """Hand every ledger out again at the next :meth:`unsaved_ledgers`."""
        for tr in self._tracked.values():
            tr.unsaved = True

    def ledger_keys(self) -> list[str]:
        return [LEDGER_KEY_PREFIX + name for name in self._tracked]

    def restore(self, load: Callable[[str, str], bytes | None]) -> int:
        """Fill every SLO's empty ledger from ``load(key, fingerprint)`` (the journal's copy);
        returns how many were restored. The time kpimon was down is simply a run of buckets
        never recorded: it lowers the window's coverage, not its counts."""
        restored = 0
        for name, tr in self._tracked.items():
            if tr.ledger.last_id is not None:
                continue  # already counting
            data = load(LEDGER_KEY_PREFIX + name, ledger_fingerprint(tr.slo))
            if data is not None and tr.ledger.unpack(data):
                restored += 1
        return restored

    def expressions(self) -> list[CompiledExpr]:
        """Every expression :meth:`update` evaluates (to size the stores it reads)."""
        out: list[CompiledExpr] = []
        for tr in self._tracked.values():
            for _, pair in [*tr.windows, (0.0, tr.ledger_pair)]:
                out.extend((pair.bad, pair.total))
        return out

    def readings(self) -> list[SloReading]:
        """The latest reading of every SLO that has one, in definition order."""
        return [tr.reading for tr in self._tracked.values() if tr.reading is not None]

    def update(self, t: float, store: Store | Tiers, *, interval_s: float) -> None:
        """Evaluate every SLO's windows at ``t`` (and its ledger bucket when one is due), over
        ``store`` (with :class:`~kpimon.store.tiers.Tiers`, each expression over its tier)."""
        for tr in self._tracked.values():
            try:
                self._update(tr, t, store, interval_s)
            except EvaluationError as exc:
                if tr.last_error is None:
                    log.error("SLO evaluation failed slo=%s err=%s", tr.slo.name, exc)
                tr.last_error = str(exc)
            else:
                if tr.last_error is not None:
                    log.info("SLO evaluation recovered slo=%s", tr.slo.name)
                tr.last_error = None

    @staticmethod
    def _update(tr: _Tracked, t: float, store: Store | Tiers, interval_s: float) -> None:
        slo = tr.slo
        out: list[WindowReading] = []
        for window_s, pair in tr.windows:
            counts = _counts(pair, store, t, interval_s)
            if counts is not None:
                out.append(reading(window_s, counts[0], counts[1], slo.budget))
        ledger = tr.ledger
        if ledger.due(t):
            counts = _counts(tr.ledger_pair, store, t, interval_s)
            if counts is None:
                ledger.skip(t)
            else:
                ledger.record(t, *counts)
                tr.unsaved = True
        budget_remaining = None
        bad, total, coverage = ledger.sums(t)
        if coverage > 0:
            window = reading(slo.window_s, bad, total, slo.budget)
            if all(w != slo.window_s for w, _ in tr.windows):  # else one series: the raw one
                out.append(window)
            budget_remaining = 1.0 - window.burn_rate
        tr.reading = SloReading(
            slo=slo, windows=tuple(out), budget_remaining=budget_remaining, coverage=coverage
        )


def _counts(
    pair: _EventPair, store: Store | Tiers, t: float, interval_s: float
) -> tuple[float, float] | None:
    """(bad, total) events, each summed over its series; None when either has no series."""
    values = []
    for expr in (pair.bad, pair.total):
        src = store.for_expr(expr) if isinstance(store, Tiers) else store
        result = evaluate(expr, src, t, interval_s=interval_s)
        if isinstance(result, Scalar):
            values.append(result.value)
            continue
        if not len(result.values):
            return None
        values.append(float(np.sum(result.values)))
    return values[0], values[1]
