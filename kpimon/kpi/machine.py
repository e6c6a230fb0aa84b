"""The sustained-threshold state machine of ARCHITECTURE §5, vectorised over series.

One :class:`KpiState` holds, for every series of one KPI and every level (warning, critical),
the phase (inactive, pending, firing, clearing) and its timers, as numpy arrays.
:meth:`KpiState.step` advances all of them to evaluation time ``t`` given the KPI's instant
vector at ``t`` and returns the transitions that happened, in a deterministic order (level,
then series).

This module is pure: no I/O, no asyncio, no clock. Time is the ``t`` passed to ``step`` (Unix
seconds of the evaluation tick), so the daemon, ``kpimon test`` and replays drive it identically.

Semantics per level (``above: x`` means value > x, ``below: x`` value < x; ``clear`` defaults to x):

- inactive, condition holds → pending since t (firing at once when ``for`` is 0);
- pending, condition holds for ``for`` → firing (notify); condition fails → inactive;
- firing, value back within ``clear`` → clearing since t (resolved at once when ``clear_for`` is 0);
- clearing, within ``clear`` for ``clear_for`` → inactive (notify resolved);
  beyond ``clear`` again → firing (no new notification);
- a series absent from the vector holds phase and timers for up to ``max_gap``; past it pending is
  dropped, but firing is not resolved by missing data: the series' status becomes no_data after
  ``no_data_after`` and the level resolves with reason "no data" after ``no_data_resolve_after``
  (with ``prometheus`` semantics an absent series resolves at once, as a Prometheus alert does);
  a clearing level whose series is missing past ``max_gap`` loses its ``clear_for`` timer and is
  firing again (no notification), as a pending level loses its ``for`` timer.

A level's threshold and clear value may depend on the time of day (:mod:`kpimon.kpi.schedule`):
the values in force are computed from ``t`` once per level and minute, never per series.

Flapping (notifications only, never phase or status) is Nagios' weighted state-change percentage
per series over its last :data:`FLAP_HISTORY` evaluations; see :meth:`KpiState._update_flapping`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import repeat
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from kpimon.kpi.schedule import Window, in_force
from kpimon.labels import Labels

INACTIVE, PENDING, FIRING, CLEARING = 0, 1, 2, 3
PHASES = ("inactive", "pending", "firing", "clearing")

STATUS_NO_DATA, STATUS_OK = -1, 0
STATUS_NAMES = {-1: "no_data", 0: "ok", 1: "warning", 2: "critical"}
SEVERITY = {"warning": 1, "critical": 2}

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]

FLAP_HISTORY = 21
"""Evaluations a series' flapping percentage looks back over (as Nagios): 20 possible changes."""
FLAP_CHANGES = FLAP_HISTORY - 1
FLAP_WEIGHT_OLDEST, FLAP_WEIGHT_NEWEST = 0.75, 1.25
"""Weights of the oldest and newest of the 20 changes, linear in between (Nagios Core's curve;
they average 1, so a series that changes at every evaluation scores 100%)."""
DEFAULT_FLAPPING_HIGH, DEFAULT_FLAPPING_LOW = 30.0, 25.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelRule:
    """One level of a KPI, ready for the machine."""

    name: str
    above: bool
    threshold: float
    clear: float
    for_s: float = 0.0
    clear_for_s: float = 0.0
    schedule: tuple[Window, ...] = ()
    """Time-of-day thresholds; the first window containing ``t`` overrides threshold/clear."""

    @property
    def severity(self) -> int:
        return SEVERITY[self.name]

    @property
    def comparison(self) -> str:
        return "above" if self.above else "below"


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineRule:
    """Everything the machine needs to know about a KPI."""

    levels: tuple[LevelRule, ...]
    max_gap_s: float = 0.0
    no_data_after_s: float = 300.0
    no_data_resolve_after_s: float = 3600.0
    prometheus: bool = False
    flapping_high: float = DEFAULT_FLAPPING_HIGH
    """A series starts flapping when its state-change percentage rises above this."""
    flapping_low: float = DEFAULT_FLAPPING_LOW
    """A flapping series stops flapping when its percentage falls below this."""

    @property
    def forget_after_s(self) -> float:
        """An absent series with every level inactive is forgotten after this long."""
        return max(self.no_data_after_s, self.no_data_resolve_after_s, self.max_gap_s)


class Transition(NamedTuple):
    """One phase change of one level of one series.

    Immutable like the frozen dataclasses elsewhere, but a tuple: a tick in which 1% of 100k
    series change phase builds thousands of these, and a tuple costs a tenth of a frozen
    dataclass to create (the same shape as prometheus_client's ``Sample``).
    """

    t: float
    labels: Labels
    level: str
    from_phase: int
    to_phase: int
    value: float
    threshold: float
    """The threshold in force at ``t`` (a level's ``schedule`` may change it by time of day)."""
    reason: str
    flapping: bool = False
    """Whether the series is flapping after this tick: a notifier holds the notification (it
    sends one "flapping" notice when flapping starts and the state once when it stops; see
    :class:`FlapEvent`)."""

    @property
    def notifies(self) -> bool:
        """True for the changes that reach people: firing, and resolved."""
        return (self.to_phase == FIRING and self.from_phase != CLEARING) or (
            self.to_phase == INACTIVE and self.from_phase in (FIRING, CLEARING)
        )


class FlapEvent(NamedTuple):
    """A series started (``flapping`` True) or stopped flapping at tick ``t``.

    For notifications only: a notifier sends one "flapping" notice when a series starts, holds
    the series' notifications while it flaps (their :attr:`Transition.flapping` is True), and
    sends one "settled" notice with the current state when it stops. ``firing`` names the levels
    firing (or clearing) at ``t``: the state to report.
    """

    t: float
    labels: Labels
    flapping: bool
    percent: float
    firing: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class LevelChanges:
    """The phase changes of one level of one KPI at one tick, as columns (row ``i`` is one
    :class:`Transition`).

    A tick in which 1% of 100k series change phase changes thousands of rows; building a
    :class:`Transition` per row costs more than the whole machine, and most changes (entering
    and leaving pending) only go to the journal, which stores columns. So the machine hands on
    columns; :meth:`notifying` and iteration build :class:`Transition`\\ s for those who need
    them. The arrays are owned by this object: never modified after construction.
    """

    t: float
    level: str
    rows: npt.NDArray[np.intp]
    """The rows of the state that changed."""
    series: list[Labels]
    """The state's label sets when the rows changed (``series[rows[i]]`` is row ``i``'s): the
    state's own list, which only ever grows (forgetting series makes a new list)."""
    from_phase: I8
    to_phase: I8
    value: F64
    threshold: float
    reason_code: npt.NDArray[np.int8]
    reasons: tuple[str, ...]
    """The reason text of each code of :attr:`reason_code`."""
    flapping: npt.NDArray[np.bool_] | None = None
    """Per row, whether the series is flapping after this tick (None: no row is)."""

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> list[Labels]:
        """Each row's label set."""
        return list(map(self.series.__getitem__, self.rows.tolist()))

    def __iter__(self) -> Iterator[Transition]:
        return iter(self.select(None))

    def notifying_mask(self) -> npt.NDArray[np.bool_]:
        """Rows that reach people (:attr:`Transition.notifies`)."""
        fr, to = self.from_phase, self.to_phase
        mask: npt.NDArray[np.bool_] = ((to == FIRING) & (fr != CLEARING)) | (
            (to == INACTIVE) & ((fr == FIRING) | (fr == CLEARING))
        )
        return mask

    def notifying(self) -> list[Transition]:
        """The :class:`Transition`\\ s of the rows that reach people."""
        return self.select(self.notifying_mask())

    def select(self, mask: npt.NDArray[np.bool_] | None) -> list[Transition]:
        """The :class:`Transition`\\ s of the rows where ``mask`` is True (None: every row),
        built by C-level iteration (map/zip)."""
        if mask is None:
            rows: Sequence[int] | None = None
            labels: Sequence[Labels] = self.labels
        else:
            rows = np.flatnonzero(mask).tolist()
            if not rows:
                return []
            labels = list(map(self.series.__getitem__, self.rows[rows].tolist()))

        def col(a: npt.NDArray[np.generic]) -> list[Any]:
            out: list[Any] = a.tolist() if rows is None else a[rows].tolist()
            return out

        flags: Iterable[bool] = repeat(False) if self.flapping is None else col(self.flapping)
        return list(
            map(
                _new_transition,
                zip(
                    repeat(self.t),
                    labels,
                    repeat(self.level),
                    col(self.from_phase),
                    col(self.to_phase),
                    col(self.value),
                    repeat(self.threshold),
                    map(self.reasons.__getitem__, col(self.reason_code)),
                    flags,
                    strict=False,  # repeat() is endless; the columns have one length
                ),
            )
        )


class KpiState:
    """Phases and timers of every series of one KPI (mutable; owned by the engine)."""

    SERIES_ARRAYS: ClassVar[tuple[str, ...]] = (
        "value",
        "present",
        "last_seen",
        "status",
        "status_since",
        "flap_history",
        "flap_eval",
        "flapping",
    )
    """Per-series state arrays, shape ``[series]``."""
    LEVEL_ARRAYS: ClassVar[tuple[str, ...]] = (
        "phase",
        "active_at",
        "fired_at",
        "clearing_since",
        "breaches",
        "breach_s",
    )
    """Per-level-and-series state arrays, shape ``[levels, series]``."""
    STATE_ARRAYS: ClassVar[tuple[str, ...]] = SERIES_ARRAYS + LEVEL_ARRAYS
    """Every per-series array (row ``i`` belongs to ``labels[i]``): what persisting a state
    must save, and what :meth:`_grow` and :meth:`_forget` extend and filter."""
    STATE_SCALARS: ClassVar[tuple[str, ...]] = ("last_t", "evaluations")
    """The scalars that belong with :data:`STATE_ARRAYS` (``flap_eval`` counts in
    ``evaluations``)."""
    PERSISTED_ARRAYS: ClassVar[tuple[str, ...]] = tuple(a for a in STATE_ARRAYS if a != "value")
    """What the journal saves per series: every state array but the latest value (the next
    step has it). A row is saved again when :attr:`dirty`, so code that changes a row of one
    of these arrays without a phase or status change must set ``dirty[row]``."""

    def __init__(self, rule: MachineRule) -> None:
        self.rule = rule
        n_levels = len(rule.levels)
        self.labels: list[Labels] = []
        self.index: dict[Labels, int] = {}
        self.value: F64 = np.empty(0)
        self.present: npt.NDArray[np.bool_] = np.empty(0, dtype=bool)
        self.last_seen: F64 = np.empty(0)
        self.status: I8 = np.empty(0, dtype=np.int8)
        self.status_since: F64 = np.empty(0)
        self.phase: I8 = np.empty((n_levels, 0), dtype=np.int8)
        self.active_at: F64 = np.empty((n_levels, 0))  # pending/firing episode start
        self.fired_at: F64 = np.empty((n_levels, 0))
        self.clearing_since: F64 = np.empty((n_levels, 0))
        self.breaches: I64 = np.empty((n_levels, 0), dtype=np.int64)
        self.breach_s: F64 = np.empty((n_levels, 0))
        # Flapping: bit k of flap_history is 1 when the series' notified state (which levels
        # are firing or clearing) changed k evaluations before evaluation flap_eval. Rows are
        # brought up to date only when they change or flap, never all at once.
        self.flap_history: I32 = np.empty(0, dtype=np.int32)
        self.flap_eval: I64 = np.empty(0, dtype=np.int64)
        self.flapping: npt.NDArray[np.bool_] = np.empty(0, dtype=bool)
        self.evaluations = 0
        """Evaluations (steps) so far; the clock of ``flap_eval``."""
        self.flap_events: list[FlapEvent] = []
        """The flapping starts and stops of the last :meth:`step`."""
        self.thresholds: list[tuple[float, float]] = [
            (lv.threshold, lv.clear) for lv in rule.levels
        ]
        """Per level, the (threshold, clear) in force at the last step (the level's own before
        the first step)."""
        self._schedule_minute: list[float | None] = [None] * n_levels
        self.last_t: float | None = None
        self._last_labels: Sequence[Labels] | None = None
        self._last_rows: npt.NDArray[np.intp] = np.empty(0, dtype=np.intp)
        self._rows_identity = False
        # Persistence (kpimon/journal/): rows whose persisted arrays changed since the journal
        # last saved them, and series forgotten since then. The journal clears both.
        self.dirty: npt.NDArray[np.bool_] = np.empty(0, dtype=bool)
        self.forgotten: list[Labels] = []
        self.grace_until = -np.inf
        """Up to this tick an absent series is not missing data (set by :meth:`resume`)."""
        self._n_absent = 0

    def __len__(self) -> int:
        return len(self.labels)

    # -- series bookkeeping -------------------------------------------------------------

    def _rows_for(self, labels: Sequence[Labels], t: float) -> npt.NDArray[np.intp]:
        if self._last_labels is not None and (
            labels is self._last_labels or labels == self._last_labels
        ):
            return self._last_rows
        index = self.index
        new = [lab for lab in dict.fromkeys(labels) if lab not in index]
        if new:
            self._grow(new, t)
        rows = np.fromiter((index[lab] for lab in labels), dtype=np.intp, count=len(labels))
        self._last_labels = labels
        self._last_rows = rows
        # The usual case: the vector lists every series in row order (rows are made in the
        # order series are first seen), so whole-array copies replace 100k-element scatters.
        self._rows_identity = len(rows) == len(self.labels) and bool(
            (rows == np.arange(len(rows))).all()
        )
        return rows

    def _grow(self, new: list[Labels], t: float) -> None:
        k = len(new)
        for lab in new:
            self.index[lab] = len(self.labels)
            self.labels.append(lab)
        n_levels = len(self.rule.levels)
        fill: dict[str, float] = {
            "value": np.nan,
            "present": False,
            "last_seen": t,
            "status": STATUS_OK,
            "status_since": t,
            "flap_history": 0,
            "flap_eval": self.evaluations,
            "flapping": False,
            "phase": INACTIVE,
            "active_at": np.nan,  # pending/firing episode start
            "fired_at": np.nan,
            "clearing_since": np.nan,
            "breaches": 0,
            "breach_s": 0.0,
        }
        for name in self.SERIES_ARRAYS:
            a = getattr(self, name)
            setattr(self, name, np.concatenate([a, np.full(k, fill[name], dtype=a.dtype)]))
        for name in self.LEVEL_ARRAYS:
            a = getattr(self, name)
            more = np.full((n_levels, k), fill[name], dtype=a.dtype)
            setattr(self, name, np.concatenate([a, more], axis=1))
        self.dirty = np.concatenate([self.dirty, np.ones(k, dtype=bool)])

    def _forget(self, keep: npt.NDArray[np.bool_]) -> None:
        self.forgotten.extend(lab for lab, k in zip(self.labels, keep, strict=True) if not k)
        self.dirty = self.dirty[keep]
        self.labels = [lab for lab, k in zip(self.labels, keep, strict=True) if k]
        self.index = {lab: i for i, lab in enumerate(self.labels)}
        for name in self.SERIES_ARRAYS:
            setattr(self, name, getattr(self, name)[keep])
        for name in self.LEVEL_ARRAYS:
            setattr(self, name, getattr(self, name)[:, keep])
        self._last_labels = None

    # -- the machine --------------------------------------------------------------------

    def step(self, t: float, labels: Sequence[Labels], values: F64) -> list[Transition]:
        """:meth:`advance`, returning the transitions of this tick as :class:`Transition`\\ s,
        ordered by level then series."""
        return [tr for changes in self.advance(t, labels, values) for tr in changes]

    def advance(self, t: float, labels: Sequence[Labels], values: F64) -> list[LevelChanges]:
        """Advance every series to tick ``t`` given the KPI's vector at ``t``.

        ``labels[i]`` is the label set (without ``__name__``) of ``values[i]``; label sets must
        be unique. Returns the phase changes of this tick as columns, one
        :class:`LevelChanges` per level that changed, in level order (series in row order).

        Only the series that matter this tick are worked on one by one: those whose condition
        holds or whose level is not inactive, and those missing from the vector. A tick where
        every series is quiet costs a handful of whole-array operations.
        """
        rule = self.rule
        rows = self._rows_for(labels, t)
        n = len(self.labels)
        if self._rows_identity:
            vals = np.array(values, dtype=np.float64)
            self.last_seen.fill(t)
        else:
            vals = np.full(n, np.nan)
            vals[rows] = values
            self.last_seen[rows] = t
        self.value = vals
        prev_present = self.present
        if len(rows) == n:
            self.present = np.ones(n, dtype=bool)
            missing = _NO_ROWS
        else:
            self.present = np.zeros(n, dtype=bool)
            self.present[rows] = True
            missing = np.flatnonzero(~self.present)
        present = self.present
        if len(missing) or self._n_absent or len(prev_present) != n:
            m = len(prev_present)  # rows added since are dirty already
            self.dirty[:m] |= prev_present != present[:m]
        self._n_absent = len(missing)
        if len(missing) and t <= self.grace_until and self.last_t is not None:
            # Just after a restart (ARCHITECTURE §5 "Restarts"): sources may not have been
            # scraped yet, so absence does not count towards max_gap or no_data.
            self.last_seen[missing] += max(0.0, t - self.last_t)
            self.dirty[missing] = True
        gap = t - self.last_seen[missing]
        lost = np.zeros(n, dtype=bool)
        expire = np.zeros(n, dtype=bool)
        if len(missing):
            lost[missing[gap > rule.max_gap_s]] = True
            if not rule.prometheus:
                expire[missing[gap >= rule.no_data_resolve_after_s]] = True
        dt = 0.0 if self.last_t is None else max(0.0, t - self.last_t)
        self.last_t = t
        self.evaluations += 1

        built: list[_LevelChanges] = []
        flipped: list[npt.NDArray[np.intp]] = []  # series whose notified state changed
        touched = [missing]
        for li, lv in enumerate(rule.levels):
            thr, clear = self._in_force(li, lv, t)
            ph_all = self.phase[li]
            cond_all = vals > thr if lv.above else vals < thr
            idx = np.flatnonzero(cond_all | (ph_all != INACTIVE))
            if not len(idx):
                continue
            ph = ph_all[idx]
            v = vals[idx]
            cond = cond_all[idx]
            beyond_clear = v > clear if lv.above else v < clear
            within_clear = present[idx] & ~beyond_clear
            lost_i = lost[idx]
            if rule.prometheus:
                # An absent series is a false condition, as for a Prometheus alert (which still
                # honours keep_firing_for, our clear_for).
                within_clear |= lost_i
            was_breaching = (ph == FIRING) | (ph == CLEARING)
            if dt:
                self.breach_s[li, idx[was_breaching]] += dt
            new = ph.copy()
            reason = np.zeros(len(idx), dtype=np.int8)
            active_at = self.active_at[li, idx]
            clearing_since = self.clearing_since[li, idx]

            # inactive -> pending (or firing when for is 0)
            m = (ph == INACTIVE) & cond
            active_at[m] = t
            new[m] = FIRING if lv.for_s <= 0 else PENDING
            reason[m] = _R_COND
            # pending -> firing / inactive
            pend = ph == PENDING
            m = pend & cond & (t - active_at >= lv.for_s)
            new[m] = FIRING
            reason[m] = _R_HELD
            m = pend & present[idx] & ~cond
            new[m] = INACTIVE
            reason[m] = _R_FAILED
            m = pend & lost_i
            new[m] = INACTIVE
            reason[m] = _R_LOST
            # firing -> clearing (or resolved when clear_for is 0)
            m = (ph == FIRING) & within_clear
            clearing_since[m] = t
            new[m] = INACTIVE if lv.clear_for_s <= 0 else CLEARING
            reason[m] = _R_CLEARED
            # clearing -> firing again / resolved
            clr = ph == CLEARING
            m = clr & beyond_clear
            new[m] = FIRING
            reason[m] = _R_AGAIN
            m = clr & within_clear & (t - clearing_since >= lv.clear_for_s)
            new[m] = INACTIVE
            reason[m] = _R_CLEARED
            if not rule.prometheus:
                # Past max_gap the clear_for timer is lost, as pending loses its for timer: the
                # level is firing again (no notification) and clearing starts over with data.
                m = clr & lost_i
                new[m] = FIRING
                reason[m] = _R_LOST_CLEARING
            # firing or clearing, data gone for too long
            m = was_breaching & expire[idx]
            new[m] = INACTIVE
            reason[m] = _R_NODATA

            fired = (new == FIRING) & ~was_breaching
            fired_at = self.fired_at[li, idx]
            fired_at[fired] = t
            self.breaches[li, idx[fired]] += 1
            ended = new == INACTIVE
            active_at[ended] = np.nan
            clearing_since[ended | (new == FIRING)] = np.nan
            fired_at[ended] = np.nan
            self.active_at[li, idx] = active_at
            self.clearing_since[li, idx] = clearing_since
            self.fired_at[li, idx] = fired_at
            self.phase[li, idx] = new
            changed = np.flatnonzero(new != ph)
            if not len(changed):
                continue
            rows_changed = idx[changed]
            touched.append(rows_changed)
            self.dirty[rows_changed] = True
            now_breaching = (new == FIRING) | (new == CLEARING)
            flipped.append(idx[was_breaching != now_breaching])
            # Transitions are built once flapping is known (it depends on every level).
            texts = _reason_texts(lv, thr, clear)
            built.append(
                (
                    lv.name,
                    rows_changed,
                    ph[changed],
                    new[changed],
                    v[changed],
                    thr,
                    texts,
                    reason[changed],
                )
            )

        # Status changes only where a phase changed, data is missing, or it was no_data.
        touched.append(np.flatnonzero(self.status == STATUS_NO_DATA))
        mark = np.zeros(n, dtype=bool)  # (a mask: np.unique is ~10x slower here)
        for rows_ in touched:
            mark[rows_] = True
        self._update_status(t, np.flatnonzero(mark))
        self._update_flapping(t, flipped)
        any_flapping = bool(built) and bool(self.flapping.any())
        out = [
            LevelChanges(
                t=t,
                level=name,
                rows=rows_changed,
                series=self.labels,
                from_phase=from_,
                to_phase=to,
                value=v,
                threshold=thr,
                reason_code=reason,
                reasons=texts,
                flapping=self.flapping[rows_changed] if any_flapping else None,
            )
            for name, rows_changed, from_, to, v, thr, texts, reason in built
        ]
        if len(missing):
            idle = missing[t - self.last_seen[missing] > rule.forget_after_s]
            idle = idle[(self.phase[:, idle] == INACTIVE).all(axis=0)]
            if len(idle):
                keep = np.ones(n, dtype=bool)
                keep[idle] = False
                self._forget(keep)
        return out

    def _in_force(self, li: int, lv: LevelRule, t: float) -> tuple[float, float]:
        """The (threshold, clear) of level ``li`` at ``t``; with a schedule, worked out once per
        minute (windows start and end on whole local minutes, and zone offsets are whole
        minutes), so never per series and rarely per tick."""
        if lv.schedule:
            minute = t // 60
            if self._schedule_minute[li] != minute:
                self._schedule_minute[li] = minute
                self.thresholds[li] = in_force(lv.schedule, t, lv.threshold, lv.clear)
        return self.thresholds[li]

    def _update_flapping(self, t: float, flipped: list[npt.NDArray[np.intp]]) -> None:
        """Record this evaluation in the flapping history; start and stop flapping.

        The state Nagios records per check is here the set of levels firing (or clearing), the
        state people are notified of: a change is a tick at which any level fired or resolved.
        Bit k of a row's ``flap_history`` is a change k evaluations before ``flap_eval``; only
        rows that changed now, or are flapping (their percentage can only fall without a new
        change), are brought up to date, so a quiet tick costs one ``any()``.
        """
        self.flap_events = []
        ev = self.evaluations
        changed = np.concatenate(flipped) if flipped else _NO_ROWS
        flapping = self.flapping
        if flapping.any():
            # (masks: union1d/isin sort, ~10x slower at 100k flapping series)
            is_changed = np.zeros(len(flapping), dtype=bool)
            is_changed[changed] = True
            rows = np.flatnonzero(is_changed | flapping)
            new_change = is_changed[rows]
        else:
            rows = np.unique(changed) if len(flipped) > 1 else changed
            new_change = np.ones(len(rows), dtype=bool)
        if not len(rows):
            return
        age = ev - self.flap_eval[rows]
        history = np.where(
            age < FLAP_CHANGES,
            self.flap_history[rows].astype(np.int64) << np.minimum(age, FLAP_CHANGES),
            0,
        )
        history |= new_change
        history &= _FLAP_MASK
        self.flap_history[rows] = history
        self.flap_eval[rows] = ev
        self.dirty[rows] = True
        # percent > high as score > high × 20 × unit / 100: integers, no rounding at a tie.
        score = _flap_score(history)
        per_percent = FLAP_CHANGES * _FLAP_UNIT / 100.0
        was = flapping[rows]
        start = ~was & (score > self.rule.flapping_high * per_percent)
        # A score of 0 (no change in the whole window) always settles, even with low: 0.
        stop = was & ((score < self.rule.flapping_low * per_percent) | (score == 0))
        if not (start.any() or stop.any()):
            return
        flapping[rows[start]] = True
        flapping[rows[stop]] = False
        levels = self.rule.levels
        for i in np.flatnonzero(start | stop).tolist():
            r = int(rows[i])
            phases = self.phase[:, r]
            firing = tuple(
                lv.name for lv, ph in zip(levels, phases.tolist(), strict=True) if ph >= FIRING
            )
            self.flap_events.append(
                FlapEvent(
                    t, self.labels[r], bool(start[i]), float(score[i]) * _PERCENT_PER_SCORE, firing
                )
            )

    def flap_percent(self) -> F64:
        """Every series' current weighted state-change percentage (0–100)."""
        age = self.evaluations - self.flap_eval
        history = np.where(
            age < FLAP_CHANGES,
            self.flap_history.astype(np.int64) << np.minimum(age, FLAP_CHANGES),
            0,
        )
        return flap_percent(history)

    def _update_status(self, t: float, rows: npt.NDArray[np.intp]) -> None:
        """Recompute the status of ``rows``; stamp ``status_since`` where it changed."""
        if not len(rows):
            return
        status = np.zeros(len(rows), dtype=np.int8)
        for li, lv in enumerate(self.rule.levels):
            ph = self.phase[li, rows]
            breaching = (ph == FIRING) | (ph == CLEARING)
            status[breaching] = np.maximum(status[breaching], lv.severity)
        no_data = ~self.present[rows] & (t - self.last_seen[rows] >= self.rule.no_data_after_s)
        status[no_data] = STATUS_NO_DATA
        changed = status != self.status[rows]
        self.status_since[rows[changed]] = t
        self.status[rows] = status
        self.dirty[rows[changed]] = True

    def pending_seconds(self, t: float) -> F64:
        """Per level and series: how long the condition has held while pending (else 0)."""
        held = np.where(self.phase == PENDING, t - self.active_at, 0.0)
        return np.nan_to_num(held, nan=0.0)

    # -- persistence (the journal saves and restores through these) ---------------------

    def load(
        self,
        labels: Sequence[Labels],
        arrays: Mapping[str, npt.NDArray[np.generic]],
        written_t: F64,
        scalars: Mapping[str, float | int | None],
    ) -> None:
        """Fill this new, empty state with saved series, as they were at ``scalars["last_t"]``.

        ``arrays`` maps names of :data:`PERSISTED_ARRAYS` to their saved rows (series in the
        order of ``labels``); a missing or misshapen array keeps a new series' defaults, so a
        journal written before an array existed still loads. ``written_t[i]`` is the tick at
        which row ``i`` was saved: rows are saved only when they change, so the breach seconds
        accrued since then are added here. No series is present until the next step; those
        present at the last one count as seen then.
        """
        if self.labels:
            raise ValueError("load() needs a new, empty KpiState")
        for name in self.STATE_SCALARS:
            if name in scalars:
                setattr(self, name, scalars[name])
        last_t = self.last_t
        self._grow(list(labels), 0.0 if last_t is None else last_t)
        for name in self.PERSISTED_ARRAYS:
            saved = arrays.get(name)
            current = getattr(self, name)
            if saved is not None and saved.shape == current.shape:
                current[...] = saved
        if last_t is not None:
            self.last_seen[self.present] = last_t
            breaching = (self.phase == FIRING) | (self.phase == CLEARING)
            accrued = np.maximum(last_t - written_t, 0.0)
            self.breach_s += np.where(breaching, accrued[np.newaxis, :], 0.0)
        self.present[:] = False
        self._n_absent = len(self.labels)

    def resume(self, t: float, *, outage_tolerance_s: float, grace_s: float) -> list[Transition]:
        """Carry a loaded state across kpimon's outage, from its ``last_t`` to ``t``.

        ARCHITECTURE §5 "Restarts": the outage is not missing data (``last_seen`` moves on by
        the outage) and neither is the first ``grace_s`` after ``t``. Within
        ``outage_tolerance_s``, ``for`` and ``clear_for`` timers move on by the outage too, so
        they continue as if kpimon had never stopped: a 45m ``for`` that had run 30m fires 15m
        after ``t``. Beyond it, pending levels restart (pending → inactive, returned as
        transitions) and clearing restarts its ``clear_for`` at ``t``; firing stays firing
        until evaluated. Either way a firing (or clearing) level's breach seconds include the
        outage.
        """
        self.grace_until = t + grace_s
        if self.last_t is None:
            return []
        outage = max(0.0, t - self.last_t)
        self.last_t = max(self.last_t, t)
        if not len(self.labels):
            return []
        self.last_seen += outage
        self.dirty[:] = True
        # A breach under way did not end while kpimon was down: its seconds count the outage,
        # so breach_seconds_total (exported up to the scrape time) never goes backwards.
        self.breach_s[(self.phase == FIRING) | (self.phase == CLEARING)] += outage
        pending = self.phase == PENDING
        clearing = self.phase == CLEARING
        if outage < outage_tolerance_s:
            self.active_at[pending] += outage
            self.clearing_since[clearing] += outage
            return []
        self.clearing_since[clearing] = t
        reason = (
            f"kpimon was down {outage:g}s, longer than outage_tolerance "
            f"({outage_tolerance_s:g}s): pending restarts"
        )
        out: list[Transition] = []
        for li, lv in enumerate(self.rule.levels):
            threshold = self.thresholds[li][0]
            for r in np.flatnonzero(pending[li]).tolist():
                out.append(
                    Transition(
                        t, self.labels[r], lv.name, PENDING, INACTIVE, np.nan, threshold, reason
                    )
                )
        self.phase[pending] = INACTIVE
        self.active_at[pending] = np.nan
        return out


_NO_ROWS: npt.NDArray[np.intp] = np.empty(0, dtype=np.intp)
# Transition from a tuple of its fields, all in C (NamedTuple._make is Python-level).
_new_transition = functools.partial(tuple.__new__, Transition)
_LevelChanges = tuple[
    str, npt.NDArray[np.intp], I8, I8, F64, float, tuple[str, ...], npt.NDArray[np.int8]
]
"""One level's phase changes of a tick: level, rows, from, to, values, threshold, reason
texts and codes."""
_R_COND, _R_HELD, _R_FAILED, _R_LOST, _R_CLEARED, _R_AGAIN, _R_NODATA, _R_LOST_CLEARING = range(
    1, 9
)
_R_LAST = _R_LOST_CLEARING


@functools.lru_cache(maxsize=256)
def _reason_texts(lv: LevelRule, threshold: float, clear: float) -> tuple[str, ...]:
    """The reason text of every reason code for level ``lv`` with the threshold and clear value
    in force (index = code)."""
    return tuple(_reason_text(code, lv, threshold, clear) for code in range(_R_LAST + 1))


def _reason_text(code: int, lv: LevelRule, threshold: float, clear: float) -> str:
    op = ">" if lv.above else "<"
    back = "<=" if lv.above else ">="
    if code == _R_COND:
        return f"value {op} {threshold:g}"
    if code == _R_HELD:
        return f"value {op} {threshold:g} held for {lv.for_s:g}s"
    if code == _R_FAILED:
        return f"value no longer {op} {threshold:g}"
    if code == _R_LOST:
        return "series missing longer than max_gap"
    if code == _R_CLEARED:
        return f"value {back} {clear:g}" + (f" for {lv.clear_for_s:g}s" if lv.clear_for_s else "")
    if code == _R_AGAIN:
        return f"value {op} {clear:g} again"
    if code == _R_NODATA:
        return "no data"
    if code == _R_LOST_CLEARING:
        return "series missing longer than max_gap while clearing"
    return "?"


def _flap_weights() -> tuple[list[int], int]:
    """Integer weights of the changes, newest first, and their unit: weight / unit is the
    weight of the change (exact, so a percentage exactly at a threshold compares exactly)."""
    oldest = Fraction(FLAP_WEIGHT_OLDEST).limit_denominator(1000)
    newest = Fraction(FLAP_WEIGHT_NEWEST).limit_denominator(1000)
    weights = [newest - (newest - oldest) * k / (FLAP_CHANGES - 1) for k in range(FLAP_CHANGES)]
    unit = math.lcm(*(w.denominator for w in weights))
    return [int(w * unit) for w in weights], unit


def _flap_table(weights: list[int]) -> I64:
    """The summed integer weight of each 10-bit pattern of ``weights``."""
    bits = (np.arange(1024)[:, None] >> np.arange(10)) & 1
    table: I64 = bits @ np.array(weights, dtype=np.int64)
    return table


_FLAP_WEIGHTS, _FLAP_UNIT = _flap_weights()
_FLAP_LOW_BITS, _FLAP_HIGH_BITS = _flap_table(_FLAP_WEIGHTS[:10]), _flap_table(_FLAP_WEIGHTS[10:])
_FLAP_MASK = (1 << FLAP_CHANGES) - 1
_PERCENT_PER_SCORE = 100.0 / (FLAP_CHANGES * _FLAP_UNIT)


def _flap_score(history: npt.NDArray[np.int64]) -> I64:
    """The integer weighted change count of flap histories (percent = score × 100 / (20 ×
    unit))."""
    h = history & _FLAP_MASK
    score: I64 = _FLAP_LOW_BITS[h & 1023] + _FLAP_HIGH_BITS[h >> 10]
    return score


def flap_percent(history: npt.NDArray[np.integer]) -> F64:
    """Nagios' weighted state-change percentage of flap histories (bit k: a change k
    evaluations ago), 0 to 100."""
    return np.asarray(_flap_score(history.astype(np.int64)) * _PERCENT_PER_SCORE, np.float64)
