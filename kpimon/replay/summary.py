"""The per-KPI summary of a replay: breaches, time in each status, longest breach, MTTR.

:class:`SummaryBuilder` watches the replay tick by tick: after each tick it adds the tick's
duration (up to the next tick, or the end of the range) to the status each series is in, and it
follows each level's transitions to time its breaches. A *breach* runs from the tick a level
fires (from inactive or pending) to the tick it resolves (back to inactive); firing → clearing →
firing is one breach. The *mean time to recover* (MTTR) is the mean duration of the breaches
that resolved within the range; a breach still open at the end counts for the longest breach
(flagged open) but not for MTTR. Status times are series-seconds: a KPI with two series over one
hour has two hours of status time.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kpimon.kpi.engine import Engine
from kpimon.kpi.machine import CLEARING, FIRING, INACTIVE, Transition
from kpimon.labels import Labels

STATUSES = ("no_data", "ok", "warning", "critical")
"""Status names by status code + 1 (-1 no data, 0 ok, 1 warning, 2 critical)."""
SHOWN = ("ok", "warning", "critical", "no_data")
"""The order in which summaries list the statuses."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelSummary:
    """The breaches of one level (of one series, or of every series of a KPI).

    Attributes:
        breaches: how many times the level fired.
        resolved: how many of those breaches resolved within the range.
        longest_s: the longest breach (an open one counts up to the end of the range); None
            without breaches.
        longest_open: whether the longest breach was still open at the end.
        mttr_s: mean duration of the resolved breaches; None when none resolved.
        breach_s: total time breaching (firing or clearing).
    """

    level: str
    breaches: int = 0
    resolved: int = 0
    longest_s: float | None = None
    longest_open: bool = False
    mttr_s: float | None = None
    breach_s: float = 0.0

    @property
    def open(self) -> int:
        """Breaches still open at the end of the range."""
        return self.breaches - self.resolved


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesSummary:
    """One KPI series over the range: seconds per status, and its levels' breaches."""

    labels: Labels
    status_s: tuple[tuple[str, float], ...]  # (status, seconds) in SHOWN order
    levels: tuple[LevelSummary, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiSummary:
    """One KPI over the range: its series, and their totals.

    ``status_s`` sums the series' status times (series-seconds); ``levels`` pools the breaches
    of every series. ``evaluation_failures`` counts the ticks at which the KPI's expression
    failed; ``last_error`` is the last failure's message.
    """

    kpi: str
    status_s: tuple[tuple[str, float], ...]
    levels: tuple[LevelSummary, ...]
    series: tuple[SeriesSummary, ...]
    evaluation_failures: int = 0
    last_error: str | None = None


class _Breaches:
    """Breach durations of one (series, level), or pooled (mutable)."""

    __slots__ = ("durations", "open_since")

    def __init__(self) -> None:
        self.durations: list[float] = []
        self.open_since: float | None = None


class _KpiAcc:
    """Accumulators of one KPI (mutable)."""

    __slots__ = ("breaches", "failures", "index", "last_error", "row_of", "rows_for", "status_s")

    def __init__(self) -> None:
        self.index: dict[Labels, int] = {}  # series -> row of status_s
        self.status_s: npt.NDArray[np.float64] = np.zeros((0, len(STATUSES)))
        self.rows_for: tuple[list[Labels], int] | None = None  # the state's label list, length
        self.row_of: npt.NDArray[np.intp] = np.empty(0, dtype=np.intp)
        self.breaches: dict[tuple[Labels, str], _Breaches] = {}
        self.failures = 0
        self.last_error: str | None = None

    def rows(self, labels: list[Labels]) -> npt.NDArray[np.intp]:
        """Rows of ``status_s`` for the state's series (rebuilt when its label list changes)."""
        seen = self.rows_for
        if seen is not None and seen[0] is labels and seen[1] == len(labels):
            return self.row_of
        index = self.index
        for lab in labels:
            if lab not in index:
                index[lab] = len(index)
        if len(index) > len(self.status_s):
            grown = np.zeros((len(index), len(STATUSES)))
            grown[: len(self.status_s)] = self.status_s
            self.status_s = grown
        self.row_of = np.fromiter((index[lab] for lab in labels), np.intp, len(labels))
        self.rows_for = (labels, len(labels))
        return self.row_of


class SummaryBuilder:
    """Accumulates the summary while a replay runs (mutable)."""

    def __init__(self, levels: dict[str, Sequence[str]]) -> None:
        """``levels``: per KPI name, its level names (least severe first)."""
        self._levels = levels
        self._acc = {name: _KpiAcc() for name in levels}

    def transitions(self, events: Iterable[tuple[str, Transition]]) -> None:
        """Follow one tick's transitions."""
        for name, tr in events:
            acc = self._acc[name]
            key = (tr.labels, tr.level)
            b = acc.breaches.get(key)
            if b is None:
                b = acc.breaches[key] = _Breaches()
            breaching_before = tr.from_phase in (FIRING, CLEARING)
            if tr.to_phase == FIRING and not breaching_before:
                b.open_since = tr.t
            elif tr.to_phase == INACTIVE and breaching_before and b.open_since is not None:
                b.durations.append(tr.t - b.open_since)
                b.open_since = None

    def observe(self, engine: Engine, duration_s: float) -> None:
        """After a tick: every series spends ``duration_s`` in its current status."""
        for name, rt in engine.kpis.items():
            acc = self._acc.get(name)
            if acc is None:
                continue
            if rt.last_error is not None:
                acc.failures += 1
                acc.last_error = rt.last_error
            st = rt.state
            if not st.labels or duration_s <= 0:
                continue
            rows = acc.rows(st.labels)
            acc.status_s[rows, st.status.astype(np.intp) + 1] += duration_s

    def build(self, end: float) -> tuple[KpiSummary, ...]:
        """The summaries, breaches still open measured up to ``end``."""
        out: list[KpiSummary] = []
        for name, levels in self._levels.items():
            acc = self._acc[name]
            labels_seen = dict.fromkeys(acc.index)
            for lab, _ in acc.breaches:
                labels_seen.setdefault(lab, None)
            series: list[SeriesSummary] = []
            for lab in sorted(labels_seen):
                row = acc.index.get(lab)
                secs = acc.status_s[row] if row is not None else np.zeros(len(STATUSES))
                series.append(
                    SeriesSummary(
                        labels=lab,
                        status_s=_pairs(secs),
                        levels=tuple(
                            _level(lv, [acc.breaches.get((lab, lv))], end) for lv in levels
                        ),
                    )
                )
            total = acc.status_s.sum(axis=0) if len(acc.status_s) else np.zeros(len(STATUSES))
            pooled = tuple(
                _level(lv, [b for (_, name_), b in acc.breaches.items() if name_ == lv], end)
                for lv in levels
            )
            out.append(
                KpiSummary(
                    kpi=name,
                    status_s=_pairs(total),
                    levels=pooled,
                    series=tuple(series),
                    evaluation_failures=acc.failures,
                    last_error=acc.last_error,
                )
            )
        return tuple(out)


def _pairs(secs: npt.NDArray[np.float64]) -> tuple[tuple[str, float], ...]:
    by_name = dict(zip(STATUSES, secs.tolist(), strict=True))
    return tuple((s, float(by_name[s])) for s in SHOWN)


def _level(level: str, breaches: Sequence[_Breaches | None], end: float) -> LevelSummary:
    resolved: list[float] = []
    still_open: list[float] = []
    for b in breaches:
        if b is None:
            continue
        resolved.extend(b.durations)
        if b.open_since is not None:
            still_open.append(end - b.open_since)
    n = len(resolved) + len(still_open)
    if not n:
        return LevelSummary(level=level)
    longest_closed = max(resolved, default=-1.0)
    longest_open = max(still_open, default=-1.0)
    return LevelSummary(
        level=level,
        breaches=n,
        resolved=len(resolved),
        longest_s=max(longest_closed, longest_open),
        longest_open=longest_open > longest_closed,
        mttr_s=sum(resolved) / len(resolved) if resolved else None,
        breach_s=sum(resolved) + sum(still_open),
    )
