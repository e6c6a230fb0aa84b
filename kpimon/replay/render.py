"""How ``kpimon replay`` prints its result: a text report or one JSON document.

Text: a header line (range, step, ticks, data, restarts), the transition timeline (one line per
transition: time, KPI and series, level, ``from → to``, value, reason), then the summary per
KPI. JSON: the same content as one object (times in RFC 3339 and Unix seconds, durations in
seconds, non-finite values as null). Pure: returns strings.
"""

from __future__ import annotations

import json
import math
from typing import Any

from kpimon.config.durations import format_duration
from kpimon.labels import Labels, format_labels
from kpimon.replay.data import rfc3339_ms
from kpimon.replay.driver import Event, ReplayResult
from kpimon.replay.summary import KpiSummary, LevelSummary


def rfc3339(t: float) -> str:
    """Unix seconds as RFC 3339 UTC (milliseconds shown only when there are some)."""
    return rfc3339_ms(round(t * 1000))


def number(value: float) -> str:
    """A sample value as people read it: ``93``, ``0.62``, ``NaN``, ``+Inf``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _series(kpi: str, labels: Labels) -> str:
    return kpi + (format_labels(labels) if labels else "")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_duration(max(0.0, seconds))


# -- text ------------------------------------------------------------------------------------


def render_text(result: ReplayResult) -> str:
    """The text report (ends with a newline)."""
    lines = [_header(result), ""]
    if result.events:
        lines.append("Transitions")
        lines.extend(_event_line(e) for e in result.events)
    else:
        lines.append("Transitions: none")
    lines.append("")
    lines.append("Summary")
    for s in result.summaries:
        lines.extend(_summary_lines(s, result.end - result.start))
    return "\n".join(lines) + "\n"


def _header(r: ReplayResult) -> str:
    text = (
        f"kpimon replay {rfc3339(r.start)} .. {rfc3339(r.end)}: step {_duration(r.step_s)}, "
        f"{r.ticks} ticks, {r.series} series, {r.samples} samples"
    )
    if r.restarts:
        text += ", restarts at " + ", ".join(rfc3339(t) for t in r.restarts)
    if r.resumed_after is not None:
        text += f", resumed from the journal after {rfc3339(r.resumed_after)}"
    return text


def _event_line(e: Event) -> str:
    return (
        f"{rfc3339(e.t)}  {_series(e.kpi, e.labels)}  {e.level}  "
        f"{e.from_phase} → {e.to_phase}  value={number(e.value)}  ({e.reason})"
    )


def _summary_lines(s: KpiSummary, span_s: float) -> list[str]:
    n = len(s.series)
    out = [f"{s.kpi}  ({n} series)" if n != 1 else f"{s.kpi}  (1 series)"]
    total = sum(v for _, v in s.status_s)
    parts = []
    for status, secs in s.status_s:
        share = f" ({100 * secs / total:.1f}%)" if total > 0 and secs > 0 else ""
        parts.append(f"{status} {_duration(secs)}{share}")
    out.append("  status: " + ", ".join(parts))
    for lv in s.levels:
        out.append(f"  {lv.level}: {_level_text(lv)}")
    if s.evaluation_failures:
        out.append(
            f"  evaluation failed at {s.evaluation_failures} ticks; last error: {s.last_error}"
        )
    return out


def _level_text(lv: LevelSummary) -> str:
    if not lv.breaches:
        return "no breaches"
    noun = "breach" if lv.breaches == 1 else "breaches"
    text = f"{lv.breaches} {noun} ({lv.resolved} resolved"
    text += f", {lv.open} open)" if lv.open else ")"
    text += f", longest {_duration(lv.longest_s)}"
    if lv.longest_open:
        text += " (still open)"
    text += f", MTTR {_duration(lv.mttr_s)}, total {_duration(lv.breach_s)}"
    return text


# -- JSON ------------------------------------------------------------------------------------


def render_json(result: ReplayResult) -> str:
    """The JSON document (one line per top-level key is not promised; ends with a newline)."""
    doc = {
        "range": {
            "start": rfc3339(result.start),
            "end": rfc3339(result.end),
            "start_timestamp": result.start,
            "end_timestamp": result.end,
            "step_seconds": result.step_s,
            "ticks": result.ticks,
        },
        "restarts": [rfc3339(t) for t in result.restarts],
        "resumed_after": None if result.resumed_after is None else rfc3339(result.resumed_after),
        "data": {"series": result.series, "samples": result.samples},
        "transitions": [_event_json(e) for e in result.events],
        "summary": [_summary_json(s) for s in result.summaries],
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _event_json(e: Event) -> dict[str, Any]:
    return {
        "time": rfc3339(e.t),
        "timestamp": e.t,
        "kpi": e.kpi,
        "labels": dict(e.labels),
        "level": e.level,
        "from": e.from_phase,
        "to": e.to_phase,
        "value": _finite(e.value),
        "threshold": _finite(e.threshold),
        "reason": e.reason,
        "notifies": e.notifies,
    }


def _level_json(lv: LevelSummary) -> dict[str, Any]:
    return {
        "breaches": lv.breaches,
        "resolved": lv.resolved,
        "open": lv.open,
        "longest_seconds": lv.longest_s,
        "longest_open": lv.longest_open,
        "mttr_seconds": lv.mttr_s,
        "breach_seconds": lv.breach_s,
    }


def _summary_json(s: KpiSummary) -> dict[str, Any]:
    return {
        "kpi": s.kpi,
        "status_seconds": dict(s.status_s),
        "levels": {lv.level: _level_json(lv) for lv in s.levels},
        "evaluation_failures": s.evaluation_failures,
        "last_error": s.last_error,
        "series": [
            {
                "labels": dict(series.labels),
                "status_seconds": dict(series.status_s),
                "levels": {lv.level: _level_json(lv) for lv in series.levels},
            }
            for series in s.series
        ],
    }
