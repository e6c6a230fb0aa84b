"""The replay driver: recorded samples through the daemon's store and engine on a simulated clock.

Ticks run every ``step`` from the start of the range to its end (both included when the range
is a whole number of steps), on the grid that starts at the range's start. Before each tick,
every sample not yet fed whose time is at or before the tick is written to the
:class:`~kpimon.store.Store` at its own timestamp, then
:meth:`Engine.tick <kpimon.kpi.engine.Engine.tick>` evaluates every KPI and steps its state
machine: the same calls, in the same order, as the daemon's evaluation loop. Samples before the
start are fed before the first tick (history for range functions such as ``rate``); samples
after the end are not fed.

Samples reach the store the way scrapes do. Series whose samples have exactly the same
timestamps form one synthetic target (a recorded scrape of one real target usually does): each
timestamp is one scrape of all of them, one row of the store, and a tick's scrapes are written
with one :meth:`~kpimon.store.Store.ingest_many` call. Every series of such a target has a
sample at every one of its rows, so a series without a sample at some time is simply "no sample"
there (its own target), never a staleness marker; a staleness marker comes only from the data.

``--restart-at T`` (:attr:`ReplayOptions.restarts`): the ticks before ``T`` run in one
"process", the ticks from ``T`` on in the next, which starts with an empty store (samples before
``T`` are gone with the old process) and the KPI state restored from the journal
(:mod:`kpimon.replay.restart`).

No I/O but the journal's (progress is reported through a callback).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kpimon.config.models import Kpi
from kpimon.kpi.engine import Engine
from kpimon.kpi.machine import PHASES, Transition
from kpimon.labels import EMPTY, Labels
from kpimon.promql import LOOKBACK_S
from kpimon.replay.data import Recording, rfc3339_ms
from kpimon.replay.restart import TEMPORARY_SYNCHRONOUS, Persistence
from kpimon.replay.summary import KpiSummary, SummaryBuilder
from kpimon.store import Scrape, Store

DEFAULT_STEP_S = 15.0
MIN_INTERVAL_S = 1.0
"""Samples of one series closer than this are not all kept for range functions (see
:func:`_store_for`): the store is sized for at most one row per second per target."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayOptions:
    """What to replay: the range (None: the data's first/last sample), the step, restarts."""

    start: float | None = None
    end: float | None = None
    step_s: float = DEFAULT_STEP_S
    restarts: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One transition of the timeline (a :class:`~kpimon.kpi.machine.Transition` of a KPI)."""

    t: float
    kpi: str
    labels: Labels
    level: str
    from_phase: str
    to_phase: str
    value: float
    threshold: float
    reason: str
    notifies: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayResult:
    """The timeline and the summary of a replay, and what was replayed."""

    start: float
    end: float
    step_s: float
    ticks: int
    restarts: tuple[float, ...]
    series: int
    samples: int
    events: tuple[Event, ...]
    summaries: tuple[KpiSummary, ...]
    resumed_after: float | None = None
    """The journal's last committed tick when the replay resumed from it: ``events`` then
    include the journal's earlier transitions, ``summaries`` status times only the ticks run."""


MAX_TICKS = 1_000_000
"""The most evaluation steps one replay runs (a year at 30 s): more is a mistake, not a plan."""


class ReplayError(ValueError):
    """Options that do not fit the data (an empty range, a restart outside it)."""


ProgressFn = Callable[[int, int], None]
"""Called after tick ``i`` (1-based) of ``n``."""


def replay(
    kpis: Sequence[Kpi],
    recording: Recording,
    options: ReplayOptions,
    *,
    progress: ProgressFn | None = None,
    persistence: Persistence | None = None,
) -> ReplayResult:
    """Replay ``recording`` through ``kpis``.

    ``persistence``: the journal to commit every tick to (``--storage.path``); when it holds
    progress of this replay, the replay resumes after its last committed tick. Without one,
    restarts go through a temporary journal.

    Raises:
        ReplayError: the data is empty, the range is empty or inverted, the step is not
            positive, a restart lies outside the range, or the journal holds progress that is
            not on this replay's ticks.
        JournalError: the journal cannot be used.
    """
    if persistence is None and options.restarts:
        with tempfile.TemporaryDirectory(prefix="kpimon-replay-") as tmp:
            temporary = Persistence(tmp, synchronous=TEMPORARY_SYNCHRONOUS)
            try:
                return replay(kpis, recording, options, progress=progress, persistence=temporary)
            finally:
                temporary.close()
    if not len(recording):
        raise ReplayError("the data holds no samples")
    step_ms = round(options.step_s * 1000)
    if step_ms < 1000:
        # As evaluation_interval: the store keeps samples at most once a second.
        raise ReplayError(f"the step must be at least 1s (got {step_ms}ms)")
    start_ms = recording.start_ms if options.start is None else round(options.start * 1000)
    end_ms = recording.end_ms if options.end is None else round(options.end * 1000)
    if end_ms < start_ms:
        raise ReplayError(
            f"the range ends ({end_ms / 1000:g}) before it starts ({start_ms / 1000:g})"
        )
    restarts = sorted({round(r * 1000) for r in options.restarts})
    for r in restarts:
        if not start_ms < r <= end_ms:
            raise ReplayError(f"restart at {r / 1000:g} is outside the replayed range")
    n_ticks = (end_ms - start_ms) // step_ms + 1
    if n_ticks > MAX_TICKS:
        raise ReplayError(
            f"{n_ticks:,} evaluation steps ({(end_ms - start_ms) / 86_400_000:.1f} days at "
            f"{step_ms / 1000:g}s): more than {MAX_TICKS:,}; narrow --from/--to or raise --step"
        )
    feeder = _Feeder(recording, end_ms)
    store = _store_for(kpis, feeder, step_ms / 1000)
    summary = SummaryBuilder({k.name: [lv.name for lv in k.levels] for k in kpis})
    events: list[Event] = []
    first = 0
    if persistence is None:
        engine = Engine(kpis, store, interval_s=step_ms / 1000)
    else:
        engine = persistence.engine(kpis, store)
        engine.interval_s = step_ms / 1000
        first = _resume_tick(persistence.heartbeat, start_ms, end_ms, step_ms)
        if first:
            # Resuming after a crash of the replay itself: the data is all there, so the store
            # gets everything up to the last committed tick, and the run goes on as if never
            # interrupted.
            feeder.feed(store, start_ms + (first - 1) * step_ms)
            history = persistence.resume(engine)
            summary.transitions(history)
            events.extend(_event(name, tr) for name, tr in history)
    pending_restarts = [r for r in restarts if r > start_ms + (first - 1) * step_ms]
    for i in range(first, n_ticks):
        t_ms = start_ms + i * step_ms
        if pending_restarts and pending_restarts[0] <= t_ms:
            at = pending_restarts.pop(0)
            while pending_restarts and pending_restarts[0] <= t_ms:
                at = pending_restarts.pop(0)  # two restarts between ticks are one
            assert persistence is not None
            feeder.skip_before(at)  # scraped by the old process, lost with its store
            store = _store_for(kpis, feeder, step_ms / 1000)
            interval_s = max(feeder.max_interval_s, step_ms / 1000)
            engine, restored = persistence.restart(kpis, store, at / 1000, interval_s)
            engine.interval_s = step_ms / 1000
            summary.transitions(restored)
            events.extend(_event(name, tr) for name, tr in restored)
        feeder.feed(store, t_ms)
        t = t_ms / 1000
        transitions = engine.tick(t)
        if transitions:
            summary.transitions(transitions)
            events.extend(_event(name, tr) for name, tr in transitions)
        summary.observe(engine, min(step_ms, end_ms - t_ms) / 1000)
        if progress is not None:
            progress(i + 1, n_ticks)
    end = end_ms / 1000
    return ReplayResult(
        start=start_ms / 1000,
        end=end,
        step_s=step_ms / 1000,
        ticks=n_ticks,
        restarts=tuple(r / 1000 for r in restarts),
        series=len(recording.keys),
        samples=len(recording),
        events=tuple(events),
        summaries=summary.build(end),
        resumed_after=None if not first else (start_ms + (first - 1) * step_ms) / 1000,
    )


def _resume_tick(heartbeat: float | None, start_ms: int, end_ms: int, step_ms: int) -> int:
    """The index of the first tick after a journal's last committed one (0: start afresh)."""
    if heartbeat is None:
        return 0
    hb_ms = round(heartbeat * 1000)
    if not start_ms <= hb_ms <= end_ms or (hb_ms - start_ms) % step_ms:
        raise ReplayError(
            f"the journal holds the progress of another replay (its last tick, "
            f"{rfc3339_ms(hb_ms)}, is not a tick of this one); use an empty --storage.path"
        )
    return (hb_ms - start_ms) // step_ms + 1


def _event(kpi: str, tr: Transition) -> Event:
    return Event(
        t=tr.t,
        kpi=kpi,
        labels=tr.labels,
        level=tr.level,
        from_phase=PHASES[tr.from_phase],
        to_phase=PHASES[tr.to_phase],
        value=tr.value,
        threshold=tr.threshold,
        reason=tr.reason,
        notifies=tr.notifies,
    )


def _store_for(kpis: Sequence[Kpi], feeder: _Feeder, step_s: float) -> Store:
    """A store sized as the daemon sizes its own: the longest range any KPI reads, plus the
    lookback, plus the longest interval (of the data's targets, or the step)."""
    longest = max((k.expr.max_range_s for k in kpis), default=0.0)
    retention_s = longest + LOOKBACK_S + max(step_s, feeder.max_interval_s)
    return Store(retention_s=retention_s, min_interval_s=max(MIN_INTERVAL_S, feeder.min_interval_s))


@dataclass(slots=True, eq=False)
class _Target:
    """Series with the same sample times: one synthetic target (``values[row, series]``)."""

    name: str
    keys: list[bytes]
    values: npt.NDArray[np.float64]


class _Feeder:
    """Hands the store every sample up to a time, scrape by scrape (mutable)."""

    def __init__(self, rec: Recording, end_ms: int) -> None:
        bounds = np.flatnonzero(np.diff(rec.series)) + 1
        starts = np.concatenate([[0], bounds]).tolist()
        stops = [*starts[1:], len(rec.series)]
        by_times: dict[bytes, list[int]] = {}
        slices: list[tuple[int, int]] = []
        for i, (a, b) in enumerate(zip(starts, stops, strict=True)):
            # Samples after the end are never fed.
            b = a + int(np.searchsorted(rec.times_ms[a:b], end_ms, side="right"))
            slices.append((a, b))
            if b > a:
                by_times.setdefault(rec.times_ms[a:b].tobytes(), []).append(i)
        self.targets: list[_Target] = []
        times: list[npt.NDArray[np.int64]] = []
        owners: list[npt.NDArray[np.int32]] = []
        rows: list[npt.NDArray[np.int32]] = []
        smallest: list[float] = []  # per target, ms
        typical: list[float] = []
        for members in by_times.values():
            a, b = slices[members[0]]
            target_times = rec.times_ms[a:b]
            columns = [rec.values[slices[m][0] : slices[m][1]] for m in members]
            sids = [int(rec.series[slices[m][0]]) for m in members]
            self.targets.append(
                _Target(
                    name=f"replay-{len(self.targets)}",
                    keys=[rec.keys[s] for s in sids],
                    values=np.ascontiguousarray(np.column_stack(columns)),
                )
            )
            times.append(target_times)
            owners.append(np.full(b - a, len(self.targets) - 1, dtype=np.int32))
            rows.append(np.arange(b - a, dtype=np.int32))
            if b - a > 1:
                gaps = np.diff(target_times)
                smallest.append(float(gaps.min()))
                typical.append(float(np.median(gaps)))
        all_times = np.concatenate(times) if times else np.empty(0, np.int64)
        all_owners = np.concatenate(owners) if owners else np.empty(0, np.int32)
        all_rows = np.concatenate(rows) if rows else np.empty(0, np.int32)
        order = np.lexsort((all_owners, all_times))  # time order; a target's rows in order
        self.times = all_times[order]
        self.owners = all_owners[order]
        self.rows = all_rows[order]
        self.pos = 0
        self.min_interval_s = min(smallest, default=DEFAULT_STEP_S * 1000) / 1000
        self.max_interval_s = max(typical, default=0.0) / 1000

    def feed(self, store: Store, until_ms: int) -> None:
        """Write every sample at or before ``until_ms`` not yet written, in time order."""
        stop = int(np.searchsorted(self.times, until_ms, side="right"))
        if stop <= self.pos:
            return
        targets = self.targets
        batch: list[Scrape] = []
        append = batch.append
        for owner, row, ms in zip(
            self.owners[self.pos : stop].tolist(),
            self.rows[self.pos : stop].tolist(),
            self.times[self.pos : stop].tolist(),
            strict=True,
        ):
            tg = targets[owner]
            append((tg.name, EMPTY, tg.keys, tg.values[row], ms / 1000))
        self.pos = stop
        store.ingest_many(batch)

    def skip_before(self, ms: int) -> None:
        """Never write the samples before ``ms`` not yet written."""
        self.pos = max(self.pos, int(np.searchsorted(self.times, ms, side="left")))
