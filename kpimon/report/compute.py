"""The report's arithmetic: per KPI and series, status times, availability, breaches, MTTR, MTBF.

Inputs are what the journal holds (docs/reports.md defines every number):

- the **runs** (:func:`kpimon.journal.reportlog.read_runs`): the time kpimon was running, whose
  share of the period is the *data coverage*. Every time below counts only covered time;
- the **status log** (:class:`~kpimon.journal.reportlog.StatusChange`): each series' status
  from each change on; the status at the period's start is the last change before it;
- the **transition log** (:class:`~kpimon.journal.TransitionRecord`): a breach of a level runs
  from the transition that fires it (from inactive or pending) to the one that resolves it
  (to inactive); firing → clearing → firing is one breach, as in ``kpimon replay``'s summary.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kpimon.journal.reportlog import STATUS_GONE, STATUS_KPI_GONE, StatusChange
from kpimon.journal.translog import TransitionRecord
from kpimon.kpi.machine import STATUS_NAMES
from kpimon.kpi.summary import rfc3339
from kpimon.labels import Labels
from kpimon.report.intervals import Interval, clip, length, overlap, pieces, union
from kpimon.report.period import Period
from kpimon.report.slos import SloStats

STATUS_ORDER = ("ok", "warning", "critical", "no_data")
"""The order in which reports list statuses."""
_RANK = {"ok": 0, "no_data": 1, "warning": 2, "critical": 3}
"""Worst first when a KPI's series disagree: a breach outranks not knowing, which outranks ok."""
_BY_RANK = sorted(_RANK, key=_RANK.__getitem__)
NOT_RUNNING = "not_running"
_BREACHING = ("firing", "clearing")


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiInfo:
    """What the rule files say about a KPI (a KPI only in the journal gets ``owner`` "?")."""

    name: str
    owner: str = "?"
    unit: str = "none"
    help: str = ""
    group: str = "?"
    levels: tuple[tuple[str, str, float], ...] = ()  # (name, above|below, threshold)
    target: tuple[str, float] | None = None
    slo: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelStats:
    """One level's breaches over the period (of one series, or pooled over a KPI's series).

    Attributes:
        breaches: breaches that began in the period.
        ongoing_at_start: breaches that began before the period and were open at its start.
        resolved: breaches (whenever they began) that resolved in the period.
        open_at_end: breaches still open at the period's end.
        longest_s: the longest breach overlapping the period, over its whole duration (an open
            one up to the end of the period's covered time); None without one.
            ``longest_open``: it was still open.
        mttr_s: mean duration (whole, firing → resolved) of the breaches resolved in the
            period; None when none resolved.
        mtbf_s: ITIL's MTBF, uptime / failures: covered time of the period with this level not
            breaching (on any series) divided by ``breaches``; None without a breach.
        breach_s: covered time of the period with this level breaching (on any series).
    """

    level: str
    breaches: int = 0
    ongoing_at_start: int = 0
    resolved: int = 0
    open_at_end: int = 0
    longest_s: float | None = None
    longest_open: bool = False
    mttr_s: float | None = None
    mtbf_s: float | None = None
    breach_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesStats:
    """One series: seconds per status (covered time while it existed), availability, levels."""

    labels: Labels
    status_s: tuple[tuple[str, float], ...]
    observed_s: float
    availability: float | None
    levels: tuple[LevelStats, ...]


@dataclass(frozen=True, slots=True)
class Point:
    """A transition in the period, for the chart: the value at it against its threshold."""

    t: float
    labels: Labels
    level: str
    to_phase: str
    value: float
    threshold: float


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiStats:
    """One KPI over the period.

    ``status_s`` is the KPI's status timeline (at each moment its worst series' status, or
    no_data while it has no series) in covered time, so it sums to the covered time;
    ``timeline`` is that timeline over the whole period as (start, end, status) with
    ``not_running`` for uncovered time. ``availability`` = 1 − time in ``availability_of``
    (its most severe level's status) / covered time.
    """

    info: KpiInfo
    status_s: tuple[tuple[str, float], ...]
    availability: float | None
    availability_of: str | None
    levels: tuple[LevelStats, ...]
    series: tuple[SeriesStats, ...]
    timeline: tuple[tuple[float, float, str], ...]
    points: tuple[Point, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """Everything a rendered report shows."""

    period: Period
    covered: tuple[Interval, ...]
    coverage_s: float
    coverage_known: bool
    kpis: tuple[KpiStats, ...]
    notes: tuple[str, ...] = field(default=())
    slos: tuple[SloStats, ...] = field(default=())
    """The SLOs of the rule files, from their journaled ledgers (:mod:`kpimon.report.slos`)."""

    def budget_spent(self, kpi: KpiStats) -> float | None:
        """The error budget spent of the SLO a KPI was generated from (None: not an SLO's, or
        unknown)."""
        if kpi.info.slo is None:
            return None
        return next((s.budget_spent for s in self.slos if s.name == kpi.info.slo), None)

    @property
    def coverage(self) -> float:
        return self.coverage_s / self.period.length_s if self.period.length_s > 0 else 0.0

    @property
    def empty(self) -> bool:
        """No data at all in the period: kpimon was not running, or nothing was evaluated."""
        return self.coverage_s <= 0 or not self.kpis


@dataclass(slots=True)
class _Breach:
    start: float
    end: float | None = None


def build_report(
    period: Period,
    runs: Sequence[Interval] | None,
    statuses: Iterable[StatusChange],
    transitions: Iterable[TransitionRecord],
    infos: Mapping[str, KpiInfo],
    *,
    unrecorded_before: float | None = None,
) -> Report:
    """The report of ``period``.

    ``runs`` (first tick, latest tick) of every kpimon process. ``unrecorded_before``: the
    journal kept no run records before this time (it was written by a kpimon older than schema
    6, from its first transition on); that time counts as covered, and a note says coverage is
    unknown there. ``runs`` None: no run records at all (the same, for the whole period).
    ``statuses`` and ``transitions`` in log order, at least up to the period's end (later ones
    are ignored). ``infos``: the KPIs of the rule files; KPIs of the journal not in it are
    reported too, with an unknown owner.
    """
    p0, p1 = period.start, period.end
    notes: list[str] = []
    if runs is None:
        runs, unrecorded_before = [], math.inf
    assumed = clip([(-math.inf, unrecorded_before or -math.inf)], p0, p1)
    if assumed and unrecorded_before == math.inf:
        notes.append(
            "the journal holds no run records (written by a kpimon before schema 6): data "
            "coverage is unknown, the whole period counted as covered"
        )
    elif assumed:
        notes.append(
            f"the journal holds no run records before {rfc3339(unrecorded_before or 0.0)} "
            "(written by a kpimon before schema 6): data coverage is unknown before then, "
            "counted as covered"
        )
    covered = clip(union([*runs, *assumed]), p0, p1)
    starts = [a for a, _ in covered]
    covered_s = length(covered)

    changes: dict[str, dict[Labels, list[tuple[float, int]]]] = defaultdict(dict)
    gone_at: dict[str, list[float]] = defaultdict(list)
    for ch in statuses:
        if ch.t >= p1:
            continue
        if ch.status == STATUS_KPI_GONE:  # removed or redefined: every series so far is gone
            gone_at[ch.kpi].append(ch.t)
            for seen in changes[ch.kpi].values():
                seen.append((ch.t, STATUS_GONE))
        else:
            changes[ch.kpi].setdefault(ch.labels, []).append((ch.t, ch.status))
    breaches: dict[str, dict[tuple[Labels, str], list[_Breach]]] = defaultdict(dict)
    points: dict[str, list[Point]] = defaultdict(list)
    levels_seen: dict[str, set[str]] = defaultdict(set)
    for tr in transitions:
        if tr.t >= p1:
            continue
        levels_seen[tr.kpi].add(tr.level)
        was = tr.from_phase in _BREACHING
        if tr.to_phase == "firing" and not was:
            breaches[tr.kpi].setdefault((tr.labels, tr.level), []).append(_Breach(tr.t))
        elif tr.to_phase == "inactive" and was:
            found = breaches[tr.kpi].get((tr.labels, tr.level))
            if found and found[-1].end is None:
                found[-1].end = tr.t
        if tr.t >= p0:
            points[tr.kpi].append(
                Point(tr.t, tr.labels, tr.level, tr.to_phase, tr.value, tr.threshold)
            )

    # A KPI removed or redefined starts afresh without a transition to inactive: its open
    # breaches end there (a new definition that still breaches fires a breach of its own).
    for kpi, times in gone_at.items():
        for found in breaches.get(kpi, {}).values():
            for br in found:
                if br.end is None:
                    br.end = next((g for g in sorted(times) if g > br.start), None)
    names = sorted(set(infos) | set(changes) | set(breaches))
    kpis: list[KpiStats] = []
    for name in names:
        info = infos.get(name) or KpiInfo(name=name)
        level_names = [lv for lv, _, _ in info.levels] or sorted(
            levels_seen.get(name, ()), key=lambda lv: (lv != "warning", lv)
        )
        by_series = changes.get(name, {})
        kpi_breaches = breaches.get(name, {})
        if not by_series and not kpi_breaches and name not in infos:
            continue
        worst = (
            "critical" if "critical" in level_names else (level_names[-1] if level_names else None)
        )
        series_out: list[SeriesStats] = []
        segments: list[tuple[float, float, str]] = []
        for labels in sorted(set(by_series) | {lab for lab, _ in kpi_breaches}):
            segs = _segments(by_series.get(labels, []), p0, p1)
            segments.extend(segs)
            secs = dict.fromkeys(STATUS_ORDER, 0.0)
            for a, b, s in segs:
                secs[s] += overlap(a, b, covered, starts)
            observed = sum(secs.values())
            series_out.append(
                SeriesStats(
                    labels=labels,
                    status_s=tuple(secs.items()),
                    observed_s=observed,
                    availability=(1.0 - secs[worst] / observed) if worst and observed else None,
                    levels=tuple(
                        _level_stats(
                            lv,
                            [kpi_breaches.get((labels, lv), [])],
                            period,
                            covered,
                            starts,
                            covered_s,
                        )
                        for lv in level_names
                    ),
                )
            )
        timeline, kpi_secs = _worst_timeline(segments, covered, p0, p1)
        # A KPI not evaluated in the period (no series, no breach) has no availability.
        evaluated = bool(segments or kpi_breaches)
        levels = tuple(
            _level_stats(
                lv,
                [bl for (_, lv_), bl in kpi_breaches.items() if lv_ == lv],
                period,
                covered,
                starts,
                covered_s,
            )
            for lv in level_names
        )
        kpis.append(
            KpiStats(
                info=info,
                status_s=tuple(kpi_secs.items()),
                availability=(
                    1.0 - kpi_secs[worst] / covered_s if worst and covered_s and evaluated else None
                ),
                availability_of=worst,
                levels=levels,
                series=tuple(series_out),
                timeline=tuple(timeline),
                points=tuple(points.get(name, ())),
            )
        )
    return Report(
        period=period,
        covered=tuple(covered),
        coverage_s=covered_s,
        coverage_known=not assumed,
        kpis=tuple(kpis),
        notes=tuple(notes),
    )


def _segments(
    changes: Sequence[tuple[float, int]], p0: float, p1: float
) -> list[tuple[float, float, str]]:
    """A series' statuses as (start, end, status) within ``[p0, p1)``; gone time left out."""
    ordered = sorted(changes, key=lambda c: c[0])  # stable: log order among equal times
    out: list[tuple[float, float, str]] = []
    for i, (t, status) in enumerate(ordered):
        end = ordered[i + 1][0] if i + 1 < len(ordered) else math.inf
        a, b = max(t, p0), min(end, p1)
        if b > a and status != STATUS_GONE:
            out.append((a, b, STATUS_NAMES.get(status, "no_data")))
    return out


def _worst_timeline(
    segments: Sequence[tuple[float, float, str]],
    covered: Sequence[Interval],
    p0: float,
    p1: float,
) -> tuple[list[tuple[float, float, str]], dict[str, float]]:
    """The KPI's worst status at every moment of the period (no series: no_data), cut by
    coverage (uncovered: ``not_running``); and the seconds per status in covered time."""
    events: list[tuple[float, int, int]] = []
    for a, b, s in segments:
        events.append((a, 1, _RANK[s]))
        events.append((b, -1, _RANK[s]))
    for a, b in covered:
        events.append((a, 0, -1))
        events.append((b, 0, -1))
    events.append((p0, 0, -1))
    events.append((p1, 0, -1))
    events.sort(key=lambda e: e[0])
    count = [0] * len(_RANK)
    cov_starts = [a for a, _ in covered]
    timeline: list[tuple[float, float, str]] = []
    secs = dict.fromkeys(STATUS_ORDER, 0.0)
    prev = p0
    i = 0
    while i < len(events):
        t = events[i][0]
        if t > prev:
            status = next((_BY_RANK[r] for r in range(3, -1, -1) if count[r] > 0), "no_data")
            for lo, hi, st in _cut(prev, min(t, p1), status, covered, cov_starts):
                if st != NOT_RUNNING:
                    secs[st] += hi - lo
                if timeline and timeline[-1][2] == st and timeline[-1][1] == lo:
                    timeline[-1] = (timeline[-1][0], hi, st)
                else:
                    timeline.append((lo, hi, st))
            prev = t
        while i < len(events) and events[i][0] == t:
            _, delta, rank = events[i]
            if rank >= 0:
                count[rank] += delta
            i += 1
    return timeline, secs


def _cut(
    a: float, b: float, status: str, covered: Sequence[Interval], starts: Sequence[float]
) -> list[tuple[float, float, str]]:
    out: list[tuple[float, float, str]] = []
    at = a
    for lo, hi in pieces(a, b, covered, starts):
        if lo > at:
            out.append((at, lo, NOT_RUNNING))
        out.append((lo, hi, status))
        at = hi
    if b > at:
        out.append((at, b, NOT_RUNNING))
    return out


def _level_stats(
    level: str,
    groups: Sequence[Sequence[_Breach]],
    period: Period,
    covered: Sequence[Interval],
    starts: Sequence[float],
    covered_s: float,
) -> LevelStats:
    p0, p1 = period.start, period.end
    overlapping = [b for g in groups for b in g if b.end is None or b.end >= p0]
    if not overlapping:
        return LevelStats(level=level)
    began = [b for b in overlapping if b.start >= p0]
    resolved = [b.end - b.start for b in overlapping if b.end is not None]
    # An open breach lasts up to the end of what is known: the period's end, or the last tick
    # kpimon ran in the period when it stopped before (it may have resolved since).
    horizon = covered[-1][1] if covered else p0
    whole = [
        ((b.end if b.end is not None else max(horizon, b.start)) - b.start, b.end is None)
        for b in overlapping
    ]
    longest_s, longest_open = max(whole, key=lambda w: (w[0], w[1]))
    breaching = union((max(b.start, p0), b.end if b.end is not None else p1) for b in overlapping)
    breach_s = sum(overlap(a, b, covered, starts) for a, b in breaching)
    return LevelStats(
        level=level,
        breaches=len(began),
        ongoing_at_start=len(overlapping) - len(began),
        resolved=len(resolved),
        open_at_end=sum(1 for b in overlapping if b.end is None),
        longest_s=longest_s,
        longest_open=longest_open,
        mttr_s=sum(resolved) / len(resolved) if resolved else None,
        mtbf_s=(covered_s - breach_s) / len(began) if began else None,
        breach_s=breach_s,
    )
