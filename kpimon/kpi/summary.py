"""Human-readable KPI summaries.

For example ``cpu_utilization{instance="db1"} = 72.4% — warning (above 70) for 47m``.

Pure functions over a KPI's state; used by the JSON API, the status page and (later) alerts.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from kpimon.config.durations import format_duration
from kpimon.kpi.engine import KpiRuntime
from kpimon.kpi.machine import CLEARING, FIRING, PENDING, PHASES, STATUS_NAMES
from kpimon.labels import Labels, format_labels

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_value(value: float, unit: str) -> str:
    """``value`` the way an operator reads it in ``unit``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "ratio":
        return f"{value:.4g}"
    if unit == "seconds":
        # Clock offsets and the like are negative; absurd values are shown as plain numbers.
        sign = "-" if value < 0 else ""
        if abs(value) >= 1e12:
            return f"{value:.4g}s"
        if abs(value) >= 1:
            return sign + format_duration(round(abs(value)))
        return f"{value * 1000:.3g}ms"
    if unit == "bytes":
        v, i = abs(value), 0
        while v >= 1024 and i < len(_BYTE_UNITS) - 1:
            v /= 1024
            i += 1
        return f"{'-' if value < 0 else ''}{v:.3g}{_BYTE_UNITS[i]}"
    return f"{value:.4g}"


def rfc3339(t: float) -> str:
    """Unix time as RFC 3339 in UTC."""
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def _ago(now: float, since: float) -> str:
    if math.isnan(since):
        return "?"
    return format_duration(max(0, round(now - since)))


@dataclass(frozen=True, slots=True)
class SeriesReport:
    """One KPI series as the API shows it."""

    kpi: str
    labels: Labels
    value: float | None
    status_code: int
    since: float
    summary: str
    levels: dict[str, dict[str, object]]

    @property
    def status(self) -> str:
        return STATUS_NAMES[self.status_code]


def series_reports(rt: KpiRuntime, now: float) -> list[SeriesReport]:
    """Every series of a KPI, with a one-line summary each."""
    st = rt.state
    kpi = rt.kpi
    out: list[SeriesReport] = []
    for i, labels in enumerate(st.labels):
        present = bool(st.present[i])
        value = float(st.value[i]) if present else None
        code = int(st.status[i])
        since = float(st.status_since[i])
        levels: dict[str, dict[str, object]] = {}
        notes: list[str] = []
        worst = None
        for li, lv in enumerate(rt.rule.levels):
            ph = int(st.phase[li, i])
            started = st.active_at[li, i] if ph == PENDING else st.fired_at[li, i]
            levels[lv.name] = {
                "phase": PHASES[ph],
                "threshold": st.thresholds[li][0],  # in force at the last tick (schedule)
                "comparison": lv.comparison,
                "since": rfc3339(float(started)) if not math.isnan(started) else None,
            }
            if ph in (FIRING, CLEARING):
                # "above 70 for 47m" counts from when the condition began to hold (the start
                # of pending), which is what an operator means, not from when it fired.
                worst = (lv, float(st.active_at[li, i]), ph, st.thresholds[li][0])
            elif ph == PENDING:
                notes.append(
                    f"{lv.name} pending {_ago(now, float(started))} of {format_duration(lv.for_s)}"
                )
        head = f"{kpi.name}{format_labels(labels) if labels else ''}"
        if value is None:
            text = f"{head} — no data for {_ago(now, float(st.last_seen[i]))}"
            if worst is not None:
                text += f"; {worst[0].name} still open"
        else:
            text = f"{head} = {format_value(value, kpi.unit)}"
            if worst is not None:
                lv, began, ph, threshold = worst
                text += f" — {lv.name} ({lv.comparison} {threshold:g}) for {_ago(now, began)}"
                if ph == CLEARING:
                    text += ", clearing"
            else:
                text += " — ok"
        if notes:
            text += "; " + "; ".join(notes)
        if rt.last_error is not None:
            text += f" — evaluation failing: {rt.last_error}"
        text += f" — owner {kpi.owner}"
        out.append(SeriesReport(kpi.name, labels, value, code, since, text, levels))
    return out
