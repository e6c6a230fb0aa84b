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
  (with ``prometheus`` semantics an absent series resolves at once, as a Prometheus alert does).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from kpimon.labels import Labels

INACTIVE, PENDING, FIRING, CLEARING = 0, 1, 2, 3
PHASES = ("inactive", "pending", "firing", "clearing")

STATUS_NO_DATA, STATUS_OK = -1, 0
STATUS_NAMES = {-1: "no_data", 0: "ok", 1: "warning", 2: "critical"}
SEVERITY = {"warning": 1, "critical": 2}

F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelRule:
    """One level of a KPI, ready for the machine."""

    name: str
    above: bool
    threshold: float
    clear: float
    for_s: float = 0.0
    clear_for_s: float = 0.0

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
    reason: str

    @property
    def notifies(self) -> bool:
        """True for the changes that reach people: firing, and resolved."""
        return (self.to_phase == FIRING and self.from_phase != CLEARING) or (
            self.to_phase == INACTIVE and self.from_phase in (FIRING, CLEARING)
        )


class KpiState:
    """Phases and timers of every series of one KPI (mutable; owned by the engine)."""

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
        self.last_t: float | None = None
        self._last_labels: Sequence[Labels] | None = None
        self._last_rows: npt.NDArray[np.intp] = np.empty(0, dtype=np.intp)

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
        return rows

    def _grow(self, new: list[Labels], t: float) -> None:
        k = len(new)
        for lab in new:
            self.index[lab] = len(self.labels)
            self.labels.append(lab)
        n_levels = len(self.rule.levels)

        def ext1(a: npt.NDArray[np.generic], fill: float) -> npt.NDArray[np.generic]:
            return np.concatenate([a, np.full(k, fill, dtype=a.dtype)])

        def ext2(a: npt.NDArray[np.generic], fill: float) -> npt.NDArray[np.generic]:
            return np.concatenate([a, np.full((n_levels, k), fill, dtype=a.dtype)], axis=1)

        self.value = ext1(self.value, np.nan)  # type: ignore[assignment]
        self.present = np.concatenate([self.present, np.zeros(k, dtype=bool)])
        self.last_seen = ext1(self.last_seen, t)  # type: ignore[assignment]
        self.status = ext1(self.status, STATUS_OK)  # type: ignore[assignment]
        self.status_since = ext1(self.status_since, t)  # type: ignore[assignment]
        self.phase = ext2(self.phase, INACTIVE)  # type: ignore[assignment]
        self.active_at = ext2(self.active_at, np.nan)  # type: ignore[assignment]
        self.fired_at = ext2(self.fired_at, np.nan)  # type: ignore[assignment]
        self.clearing_since = ext2(self.clearing_since, np.nan)  # type: ignore[assignment]
        self.breaches = ext2(self.breaches, 0)  # type: ignore[assignment]
        self.breach_s = ext2(self.breach_s, 0.0)  # type: ignore[assignment]

    def _forget(self, keep: npt.NDArray[np.bool_]) -> None:
        self.labels = [lab for lab, k in zip(self.labels, keep, strict=True) if k]
        self.index = {lab: i for i, lab in enumerate(self.labels)}
        for name in ("value", "present", "last_seen", "status", "status_since"):
            setattr(self, name, getattr(self, name)[keep])
        for name in ("phase", "active_at", "fired_at", "clearing_since", "breaches", "breach_s"):
            setattr(self, name, getattr(self, name)[:, keep])
        self._last_labels = None

    # -- the machine --------------------------------------------------------------------

    def step(self, t: float, labels: Sequence[Labels], values: F64) -> list[Transition]:
        """Advance every series to tick ``t`` given the KPI's vector at ``t``.

        ``labels[i]`` is the label set (without ``__name__``) of ``values[i]``; label sets must
        be unique. Returns the transitions of this tick, ordered by level then series.

        Only the series that matter this tick are worked on one by one: those whose condition
        holds or whose level is not inactive, and those missing from the vector. A tick where
        every series is quiet costs a handful of whole-array operations.
        """
        rule = self.rule
        rows = self._rows_for(labels, t)
        n = len(self.labels)
        vals = np.full(n, np.nan)
        vals[rows] = values
        self.value = vals
        self.last_seen[rows] = t
        if len(rows) == n:
            self.present = np.ones(n, dtype=bool)
            missing = _NO_ROWS
        else:
            self.present = np.zeros(n, dtype=bool)
            self.present[rows] = True
            missing = np.flatnonzero(~self.present)
        present = self.present
        gap = t - self.last_seen[missing]
        lost = np.zeros(n, dtype=bool)
        expire = np.zeros(n, dtype=bool)
        if len(missing):
            lost[missing[gap > rule.max_gap_s]] = True
            if not rule.prometheus:
                expire[missing[gap >= rule.no_data_resolve_after_s]] = True
        dt = 0.0 if self.last_t is None else max(0.0, t - self.last_t)
        self.last_t = t

        out: list[Transition] = []
        touched = [missing]
        for li, lv in enumerate(rule.levels):
            ph_all = self.phase[li]
            cond_all = vals > lv.threshold if lv.above else vals < lv.threshold
            idx = np.flatnonzero(cond_all | (ph_all != INACTIVE))
            if not len(idx):
                continue
            ph = ph_all[idx]
            v = vals[idx]
            cond = cond_all[idx]
            beyond_clear = v > lv.clear if lv.above else v < lv.clear
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
            texts = _reason_texts(lv)
            # Built by C-level iteration (map/zip/itemgetter): thousands per tick at 1% churn.
            out.extend(
                map(
                    _new_transition,
                    zip(
                        repeat(t),
                        map(self.labels.__getitem__, rows_changed.tolist()),
                        repeat(lv.name),
                        ph[changed].tolist(),
                        new[changed].tolist(),
                        v[changed].tolist(),
                        repeat(lv.threshold),
                        map(texts.__getitem__, reason[changed].tolist()),
                        strict=False,  # repeat() is endless; the lists have one length
                    ),
                )
            )

        # Status changes only where a phase changed, data is missing, or it was no_data.
        touched.append(np.flatnonzero(self.status == STATUS_NO_DATA))
        mark = np.zeros(n, dtype=bool)  # (a mask: np.unique is ~10x slower here)
        for rows_ in touched:
            mark[rows_] = True
        self._update_status(t, np.flatnonzero(mark))
        if len(missing):
            idle = missing[t - self.last_seen[missing] > rule.forget_after_s]
            idle = idle[(self.phase[:, idle] == INACTIVE).all(axis=0)]
            if len(idle):
                keep = np.ones(n, dtype=bool)
                keep[idle] = False
                self._forget(keep)
        return out

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

    def pending_seconds(self, t: float) -> F64:
        """Per level and series: how long the condition has held while pending (else 0)."""
        held = np.where(self.phase == PENDING, t - self.active_at, 0.0)
        return np.nan_to_num(held, nan=0.0)


_NO_ROWS: npt.NDArray[np.intp] = np.empty(0, dtype=np.intp)
# Transition from a tuple of its fields, all in C (NamedTuple._make is Python-level).
_new_transition = functools.partial(tuple.__new__, Transition)
_R_COND, _R_HELD, _R_FAILED, _R_LOST, _R_CLEARED, _R_AGAIN, _R_NODATA = range(1, 8)


@functools.lru_cache(maxsize=256)
def _reason_texts(lv: LevelRule) -> tuple[str, ...]:
    """The reason text of every reason code for level ``lv`` (index = code)."""
    return tuple(_reason_text(code, lv) for code in range(_R_NODATA + 1))


def _reason_text(code: int, lv: LevelRule) -> str:
    op = ">" if lv.above else "<"
    back = "<=" if lv.above else ">="
    if code == _R_COND:
        return f"value {op} {lv.threshold:g}"
    if code == _R_HELD:
        return f"value {op} {lv.threshold:g} held for {lv.for_s:g}s"
    if code == _R_FAILED:
        return f"value no longer {op} {lv.threshold:g}"
    if code == _R_LOST:
        return "series missing longer than max_gap"
    if code == _R_CLEARED:
        return f"value {back} {lv.clear:g}" + (
            f" for {lv.clear_for_s:g}s" if lv.clear_for_s else ""
        )
    if code == _R_AGAIN:
        return f"value {op} {lv.clear:g} again"
    if code == _R_NODATA:
        return "no data"
    return "?"
