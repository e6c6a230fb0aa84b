"""Why a KPI series has its status, and why a level is not firing (yet).

:func:`explain` reads one KPI's :class:`~kpimon.kpi.machine.KpiState` at time ``t`` and answers,
per series and level, the questions an operator asks at 3 a.m.: which condition is checked and
does it hold now, which phase is the level in and since when, how long has the condition held,
how long until it fires (pending: ``for`` − held) or resolves (clearing: ``clear_for`` − time
within ``clear``), and whether data is missing: for how long, how many evaluation ticks had no
sample, and how long until ``max_gap`` drops a pending level, ``no_data.after`` turns the status
to ``no_data`` or ``no_data.resolve_after`` resolves an open level. Each series and level also
gets one sentence, e.g. ``pending 31m of 45m; 2 samples missing`` or ``firing since
2026-11-22T10:02:00Z (47m); clears at or below 65 after 5m``.

Countdowns are exact in seconds from ``t``; the machine acts at the first evaluation tick at or
after the moment they reach 0, so the change itself can come up to one interval later.

Pure: no I/O, no asyncio, no clock; the result is frozen dataclasses. Served by
``GET /api/v1/kpis/{name}/explain`` and printed by ``kpimon explain``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from kpimon.config.durations import format_duration
from kpimon.config.models import Kpi
from kpimon.kpi.machine import (
    CLEARING,
    F64,
    FIRING,
    INACTIVE,
    PENDING,
    PHASES,
    STATUS_NAMES,
    STATUS_NO_DATA,
    KpiState,
    LevelRule,
)
from kpimon.kpi.schedule import DAY_NAMES, Window
from kpimon.kpi.summary import format_value, rfc3339
from kpimon.labels import Labels
from kpimon.textfmt import json_number
from kpimon.textfmt import plain_number as _n


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelExplanation:
    """One level of one series.

    Attributes:
        level: ``warning`` or ``critical``.
        phase: ``inactive``, ``pending``, ``firing`` or ``clearing``.
        condition: what starts a breach, e.g. ``value > 70``.
        clear_condition: what ends one, e.g. ``value <= 65``.
        threshold, clear, for_s, clear_for_s: the level's rule as in force at ``t``.
        schedule: the time-of-day schedule window that chose ``threshold`` and ``clear`` at
            ``t`` (``outside schedule`` when none does; None: the level has no schedule).
        condition_holds: whether the latest value meets ``condition`` (None: no value).
        since: when the current phase began (pending: the condition began to hold; firing:
            the level fired; clearing: the value came back within ``clear``); None if inactive.
        active_at: when the condition began to hold (start of this pending/firing episode).
        fired_at: when the level fired (firing and clearing).
        held_s: how long since the condition began to hold (``t - active_at``).
        fires_in_s: pending only: ``for`` − ``held_s`` (0: fires at the next tick if it holds).
        clearing_held_s: clearing only: how long the value has been within ``clear``.
        resolves_in_s: clearing only: ``clear_for`` − ``clearing_held_s``.
        timer_lost_in_s: pending or clearing with data missing: time left of ``max_gap``
            before the level's timer is lost (pending is dropped; clearing is firing again).
        no_data_resolve_in_s: firing or clearing with data missing: time left before
            ``no_data.resolve_after`` resolves the level with reason "no data".
        sentence: the explanation in one line.
    """

    level: str
    phase: str
    condition: str
    clear_condition: str
    threshold: float
    clear: float
    for_s: float
    clear_for_s: float
    schedule: str | None
    condition_holds: bool | None
    since: float | None
    active_at: float | None
    fired_at: float | None
    held_s: float | None
    fires_in_s: float | None
    clearing_held_s: float | None
    resolves_in_s: float | None
    timer_lost_in_s: float | None
    no_data_resolve_in_s: float | None
    sentence: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesExplanation:
    """One series of a KPI.

    Attributes:
        labels: the series' label set.
        value: the value at the latest tick (None: the series was absent from it).
        status, status_code, status_since: as in ``/api/v1/kpis`` and ``kpimon_kpi_status``.
        last_seen: the latest tick at which the series had a value.
        missing_s: how long the data has been missing at ``t`` (0 when present).
        samples_missing: evaluation ticks since ``last_seen`` at which it had no value.
        no_data_in_s: data missing, status not yet no_data: time left of ``no_data.after``.
        flapping: whether the series is flapping (its notifications are held).
        flap_percent: its weighted state-change percentage over the last 21 evaluations.
        levels: one per level of the KPI, least severe first.
        sentence: the explanation in one line.
    """

    labels: Labels
    value: float | None
    status: str
    status_code: int
    status_since: float
    last_seen: float
    missing_s: float
    samples_missing: int
    no_data_in_s: float | None
    flapping: bool
    flap_percent: float
    levels: tuple[LevelExplanation, ...]
    sentence: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiExplanation:
    """Every (selected) series of one KPI at time ``t``.

    Attributes:
        kpi: the KPI's name.
        t: the time explained (Unix seconds).
        last_evaluation: the latest tick the state has seen (None: not evaluated yet).
        evaluation_interval_s: used to count missed samples.
        semantics, max_gap_s, no_data_after_s, no_data_resolve_after_s: the KPI's rule.
        series: the series, in the state's order.
    """

    kpi: str
    unit: str
    t: float
    last_evaluation: float | None
    evaluation_interval_s: float
    semantics: str
    max_gap_s: float
    no_data_after_s: float
    no_data_resolve_after_s: float
    series: tuple[SeriesExplanation, ...]


def explain(
    kpi: Kpi,
    state: KpiState,
    t: float,
    evaluation_interval_s: float,
    select: Callable[[Labels], bool] | None = None,
) -> KpiExplanation:
    """Explain every series of ``kpi`` (those ``select`` accepts) at time ``t``.

    ``t`` is normally now (at or after the latest tick); durations are measured up to it.
    """
    rule = state.rule
    flap = state.flap_percent()
    series = tuple(
        _series(kpi, state, i, t, evaluation_interval_s, flap)
        for i, labels in enumerate(state.labels)
        if select is None or select(labels)
    )
    return KpiExplanation(
        kpi=kpi.name,
        unit=kpi.unit,
        t=t,
        last_evaluation=state.last_t,
        evaluation_interval_s=evaluation_interval_s,
        semantics="prometheus" if rule.prometheus else "default",
        max_gap_s=rule.max_gap_s,
        no_data_after_s=rule.no_data_after_s,
        no_data_resolve_after_s=rule.no_data_resolve_after_s,
        series=series,
    )


def schedule_in_force(lv: LevelRule, t: float) -> tuple[float, float, str | None]:
    """The ``(threshold, clear)`` of ``lv`` at ``t`` and the schedule that chose them.

    The description is None for a level without a ``schedule``, the window in force (``mon-fri
    08:00-18:00 Europe/Berlin``), or ``outside schedule`` when no window contains ``t``.
    """
    if not lv.schedule:
        return lv.threshold, lv.clear, None
    for window in lv.schedule:
        if window.contains(t):
            return window.threshold, window.clear, describe_window(window)
    return lv.threshold, lv.clear, "outside schedule"


def describe_window(window: Window) -> str:
    """``mon,wed-fri 08:00-18:00 Europe/Berlin``."""
    days = sorted(window.days)
    runs: list[str] = []
    i = 0
    while i < len(days):
        j = i
        while j + 1 < len(days) and days[j + 1] == days[j] + 1:
            j += 1
        first, last = DAY_NAMES[days[i]], DAY_NAMES[days[j]]
        runs.append(first if i == j else f"{first}-{last}")
        i = j + 1
    return f"{','.join(runs)} {_hhmm(window.start_min)}-{_hhmm(window.end_min)} {window.timezone}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# -- one series ---------------------------------------------------------------------------


def _series(
    kpi: Kpi, state: KpiState, i: int, t: float, interval_s: float, flap: F64
) -> SeriesExplanation:
    rule = state.rule
    present = bool(state.present[i])
    value = float(state.value[i]) if present else None
    last_seen = float(state.last_seen[i])
    code = int(state.status[i])
    missing_s = 0.0 if present else max(0.0, t - last_seen)
    samples_missing = 0
    if not present and state.last_t is not None:
        ticks = (state.last_t - last_seen) / interval_s if interval_s > 0 else 1.0
        samples_missing = max(1, round(ticks))
    no_data_in = None
    if not present and code != STATUS_NO_DATA:
        no_data_in = max(0.0, rule.no_data_after_s - missing_s)
    flapping = bool(state.flapping[i])
    flap_percent = float(flap[i])

    levels = [
        _level(kpi, state, li, lv, i, t, value, samples_missing)
        for li, lv in enumerate(rule.levels)
    ]
    status = STATUS_NAMES[code]
    head = f"{status} at {format_value(value, kpi.unit)}" if value is not None else status
    if value is None:
        head += f", no data for {_dur(missing_s)} ({_samples(samples_missing)} missing)"
    parts = [head]
    if no_data_in is not None:
        parts.append(f"status no_data in {_dur(no_data_in)} unless data returns")
    if flapping:
        parts.append(f"flapping ({flap_percent:.0f}% state changes): notifications held")
    active = [(lx, core) for lx, core in levels if lx.phase != "inactive"]
    if active:
        parts.extend(f"{lx.level} {core}" for lx, core in active)
    elif value is not None:
        parts.extend(
            f"{lx.level} needs {lx.condition}" + (f" for {_dur(lx.for_s)}" if lx.for_s > 0 else "")
            for lx, _ in levels
        )
    return SeriesExplanation(
        labels=state.labels[i],
        value=value,
        status=status,
        status_code=code,
        status_since=float(state.status_since[i]),
        last_seen=last_seen,
        missing_s=missing_s,
        samples_missing=samples_missing,
        no_data_in_s=no_data_in,
        flapping=flapping,
        flap_percent=flap_percent,
        levels=tuple(lx for lx, _ in levels),
        sentence="; ".join(parts),
    )


# -- one level ----------------------------------------------------------------------------


def _level(
    kpi: Kpi,
    state: KpiState,
    li: int,
    lv: LevelRule,
    i: int,
    t: float,
    value: float | None,
    samples_missing: int,
) -> tuple[LevelExplanation, str]:
    """The level's explanation, and its sentence without the "N samples missing" note (the
    series' sentence states that once)."""
    rule = state.rule
    thr, clear, schedule = schedule_in_force(lv, t)
    op, back_op, back = (">", "<=", "at or below") if lv.above else ("<", ">=", "at or above")
    condition = f"value {op} {_n(thr)}"
    ph = int(state.phase[li, i])
    active_at = _opt(float(state.active_at[li, i]))
    fired_at = _opt(float(state.fired_at[li, i]))
    clearing_since = _opt(float(state.clearing_since[li, i]))
    missing_s = 0.0 if value is not None else max(0.0, t - float(state.last_seen[i]))
    holds = None if value is None else (value > thr if lv.above else value < thr)
    shown = "" if value is None else format_value(value, kpi.unit)

    since: float | None = None
    held = fires_in = clearing_held = resolves_in = lost_in = nodata_resolve_in = None
    if active_at is not None and ph != INACTIVE:
        held = max(0.0, t - active_at)
    notes: list[str] = []
    if value is None and ph != INACTIVE:
        notes.append(f"{_samples(samples_missing)} missing")
    if ph == INACTIVE:
        core = "inactive (no data)" if value is None else f"inactive: {shown} is not {op} {_n(thr)}"
    elif ph == PENDING:
        since = active_at
        fires_in = max(0.0, lv.for_s - (held or 0.0))
        core = f"pending {_dur(held)} of {_dur(lv.for_s)}"
        if holds:
            core += f" ({shown} {op} {_n(thr)}); fires in {_dur(fires_in)} if it holds"
        elif value is not None:  # the threshold changed (schedule) since the latest tick
            core += f" ({shown} is no longer {op} {_n(thr)}); dropped at the next tick"
        else:
            lost_in = max(0.0, rule.max_gap_s - missing_s)
            notes.append(
                f"pending dropped in {_dur(lost_in)} (max_gap {_dur(rule.max_gap_s)}) "
                "unless data returns"
            )
    else:
        fired = f"{_stamp(fired_at)} ({_dur(t - fired_at)}" if fired_at is not None else ""
        if ph == FIRING:
            since = fired_at
            core = f"firing since {fired})" if fired else "firing"
            if lv.clear_for_s > 0:
                core += f"; clears {back} {_n(clear)} after {_dur(lv.clear_for_s)}"
            else:
                core += f"; resolves {back} {_n(clear)}"
        else:  # CLEARING
            since = clearing_since
            clearing_held = max(0.0, t - clearing_since) if clearing_since is not None else 0.0
            resolves_in = max(0.0, lv.clear_for_s - clearing_held)
            core = f"clearing {_dur(clearing_held)} of {_dur(lv.clear_for_s)}"
            if value is not None:
                core += f" ({shown} {back_op} {_n(clear)})"
            core += (
                f"; resolves in {_dur(resolves_in)} unless it goes {lv.comparison} "
                f"{_n(clear)} again"
            )
            if fired:
                core += f"; fired {fired} ago)"
        if value is None and rule.prometheus:
            notes.append(
                f"past max_gap ({_dur(rule.max_gap_s)}) a missing series counts as back within "
                "clear (semantics: prometheus)"
            )
        elif value is None:
            if ph == CLEARING:
                # Past max_gap the clear_for timer is lost: firing again (machine.py).
                lost_in = max(0.0, rule.max_gap_s - missing_s)
                notes.append(
                    f"clearing timer lost in {_dur(lost_in)} (max_gap {_dur(rule.max_gap_s)}) "
                    "unless data returns"
                )
            nodata_resolve_in = max(0.0, rule.no_data_resolve_after_s - missing_s)
            notes.append(
                f'resolves with reason "no data" in {_dur(nodata_resolve_in)} unless data returns'
            )
    if schedule is not None:
        core += f" [schedule: {schedule}]"
    explanation = LevelExplanation(
        level=lv.name,
        phase=PHASES[ph],
        condition=condition,
        clear_condition=f"value {back_op} {_n(clear)}",
        threshold=thr,
        clear=clear,
        for_s=lv.for_s,
        clear_for_s=lv.clear_for_s,
        schedule=schedule,
        condition_holds=holds,
        since=since,
        active_at=active_at if ph != INACTIVE else None,
        fired_at=fired_at if ph in (FIRING, CLEARING) else None,
        held_s=held,
        fires_in_s=fires_in,
        clearing_held_s=clearing_held,
        resolves_in_s=resolves_in,
        timer_lost_in_s=lost_in,
        no_data_resolve_in_s=nodata_resolve_in,
        sentence="; ".join([core, *notes]),
    )
    # The series' sentence says "N samples missing" once, not per level.
    return explanation, "; ".join([core, *notes[1:]])


# -- wording ------------------------------------------------------------------------------


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else x


def _stamp(t: float) -> str:
    """A time in a sentence: RFC 3339 to the second (the JSON fields keep the fraction)."""
    return rfc3339(math.floor(t))


def _dur(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return format_duration(max(0, round(seconds)))


def _samples(n: int) -> str:
    return f"{n} sample{'s' if n != 1 else ''}"


# -- JSON ---------------------------------------------------------------------------------


def explanation_doc(exp: KpiExplanation, evaluation_error: str | None = None) -> dict[str, object]:
    """``exp`` as the ``data`` of ``/api/v1/kpis/{name}/explain`` (strict JSON: no NaN).

    Times are RFC 3339 strings, durations numbers of seconds (``*_seconds``), absent values null.
    """
    return {
        "kpi": exp.kpi,
        "unit": exp.unit,
        "time": rfc3339(exp.t),
        "last_evaluation": _time(exp.last_evaluation),
        "evaluation_error": evaluation_error,
        "evaluation_interval_seconds": exp.evaluation_interval_s,
        "semantics": exp.semantics,
        "max_gap_seconds": exp.max_gap_s,
        "no_data": {
            "after_seconds": exp.no_data_after_s,
            "resolve_after_seconds": exp.no_data_resolve_after_s,
        },
        "series": [_series_doc(s) for s in exp.series],
    }


def _series_doc(s: SeriesExplanation) -> dict[str, object]:
    return {
        "labels": dict(s.labels),
        "value": json_number(s.value),
        "status": s.status,
        "status_code": s.status_code,
        "status_since": rfc3339(s.status_since),
        "last_seen": rfc3339(s.last_seen),
        "missing_seconds": s.missing_s,
        "samples_missing": s.samples_missing,
        "no_data_in_seconds": s.no_data_in_s,
        "flapping": s.flapping,
        "flap_percent": s.flap_percent,
        "sentence": s.sentence,
        "levels": {lx.level: _level_doc(lx) for lx in s.levels},
    }


def _level_doc(lx: LevelExplanation) -> dict[str, object]:
    return {
        "phase": lx.phase,
        "sentence": lx.sentence,
        "condition": lx.condition,
        "condition_holds": lx.condition_holds,
        "clear_condition": lx.clear_condition,
        "threshold": json_number(lx.threshold),
        "clear": json_number(lx.clear),
        "for_seconds": lx.for_s,
        "clear_for_seconds": lx.clear_for_s,
        "schedule": lx.schedule,
        "since": _time(lx.since),
        "active_at": _time(lx.active_at),
        "fired_at": _time(lx.fired_at),
        "held_seconds": lx.held_s,
        "fires_in_seconds": lx.fires_in_s,
        "clearing_held_seconds": lx.clearing_held_s,
        "resolves_in_seconds": lx.resolves_in_s,
        "timer_lost_in_seconds": lx.timer_lost_in_s,
        "no_data_resolve_in_seconds": lx.no_data_resolve_in_s,
    }


def _time(t: float | None) -> str | None:
    return None if t is None else rfc3339(t)
