"""A :class:`~kpimon.report.compute.Report` as markdown (one table per KPI group) or JSON.

The JSON keys are a contract (docs/reports.md lists them); times are RFC 3339 in UTC, durations
seconds, ratios in [0, 1], unknowns ``null``. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from kpimon.config.durations import format_duration
from kpimon.kpi.summary import rfc3339
from kpimon.labels import format_labels
from kpimon.report.compute import (
    NOT_RUNNING,
    STATUS_ORDER,
    KpiStats,
    LevelStats,
    Report,
    SeriesStats,
)
from kpimon.report.slos import SloStats

ERROR_BUDGET_NOTE = (
    "error budget spent is given for SLOs, from the 5-minute ledgers kpimon saves in the "
    "journal: the period's bad events over those its objective allows for the period's events "
    "(100% = errors at exactly the allowed rate); a KPI not generated from an SLO has none (the "
    "journal holds its values only at transitions)"
)


def dur(seconds: float | None) -> str:
    """A duration for people: ``1h12m``; ``-`` for none."""
    return "-" if seconds is None else format_duration(round(max(0.0, seconds)))


def count(n: float | None) -> str:
    """An event count: whole numbers without decimals; ``-`` for none."""
    return "-" if n is None else f"{n:.0f}" if n == round(n) else f"{n:.2f}"


def pct(ratio: float | None) -> str:
    """A ratio as a percentage with enough digits for SLO-style numbers (99.95%)."""
    if ratio is None:
        return "-"
    text = f"{ratio * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def groups(report: Report) -> list[tuple[str, list[KpiStats]]]:
    """KPIs by group (their owner), groups and KPIs in name order."""
    out: dict[str, list[KpiStats]] = {}
    for k in report.kpis:
        out.setdefault(k.info.group, []).append(k)
    return sorted(out.items())


def not_running(report: Report) -> list[tuple[float, float]]:
    """The uncovered stretches of the period."""
    p = report.period
    out: list[tuple[float, float]] = []
    at = p.start
    for a, b in report.covered:
        if a > at:
            out.append((at, a))
        at = b
    if p.end > at:
        out.append((at, p.end))
    return out


def headline(report: Report) -> list[str]:
    """The lines every format starts with: the period, the coverage and the notes."""
    p = report.period
    lines = [
        f"Period: {p.kind} {p.label} ({p.tz}), {rfc3339(p.start)} .. {rfc3339(p.end)}"
        f" ({dur(p.length_s)}{', so far' if p.partial else ''})."
    ]
    unknown = "" if report.coverage_known else ", partly or wholly unknown (see the note)"
    lines.append(f"Data coverage: {pct(report.coverage)} ({dur(report.coverage_s)}){unknown}.")
    gaps = not_running(report)
    if gaps:
        shown = ", ".join(f"{rfc3339(a)} .. {rfc3339(b)}" for a, b in gaps[:5])
        more = f" and {len(gaps) - 5} more" if len(gaps) > 5 else ""
        lines.append(
            f"kpimon was not running for {dur(sum(b - a for a, b in gaps))} of the period "
            f"({shown}{more}); every number below covers only the time it ran."
        )
    if report.empty:
        lines.append("No data for this period: kpimon evaluated no KPI in it.")
    lines.extend(f"Note: {n}." for n in report.notes)
    return lines


def _breach_cell(levels: Sequence[LevelStats]) -> str:
    return " / ".join(f"{lv.breaches} {lv.level}" for lv in levels) or "-"


def _longest(lv: LevelStats) -> str:
    return dur(lv.longest_s) + (" (open)" if lv.longest_open else "")


def slo_cells(slo: SloStats) -> list[str]:
    """An SLO's row of the report's SLO table (markdown and HTML alike)."""
    return [
        slo.name,
        slo.owner,
        f"{slo.objective:g}%",
        count(slo.total),
        count(slo.bad),
        pct(slo.sli),
        pct(slo.budget_spent),
        pct(slo.coverage),
        slo.note or "-",
    ]


def kpi_cells(k: KpiStats) -> list[str]:
    """A KPI's row of its group's table: availability, time per status, breaches, and the top
    level's longest breach, MTTR and MTBF."""
    secs = dict(k.status_s)
    top = k.levels[-1] if k.levels else None
    return [
        k.info.name,
        pct(k.availability),
        *(dur(secs[s]) for s in STATUS_ORDER),
        _breach_cell(k.levels),
        _longest(top) if top else "-",
        dur(top.mttr_s) if top else "-",
        dur(top.mtbf_s) if top else "-",
    ]


def level_cells(lv: LevelStats, thresholds: dict[str, str]) -> list[str]:
    """A level's row of its KPI's level table (``thresholds``: level name to its text)."""
    return [
        lv.level,
        thresholds.get(lv.level, "?"),
        str(lv.breaches),
        str(lv.ongoing_at_start),
        str(lv.resolved),
        str(lv.open_at_end),
        _longest(lv),
        dur(lv.mttr_s),
        dur(lv.mtbf_s),
        dur(lv.breach_s),
    ]


def series_cells(s: SeriesStats) -> list[str]:
    """A series' row of its KPI's series table (its label set first, as text)."""
    secs = dict(s.status_s)
    return [
        format_labels(s.labels) if s.labels else "{}",
        pct(s.availability),
        *(dur(secs[st]) for st in STATUS_ORDER),
        _breach_cell(s.levels),
    ]


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_markdown(report: Report) -> str:
    """The report as markdown: a headline, then per group a table of its KPIs, then per KPI
    its levels and series."""
    p = report.period
    out = [f"# KPI report: {p.kind} {p.label}", ""]
    out.extend(line + "  " for line in headline(report))
    out[-1] = out[-1].rstrip()
    if report.slos:
        out += ["", "## SLOs", ""]
        out.append(
            "| SLO | owner | objective | events | bad | SLI | error budget spent | "
            "ledger coverage | note |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
        out.extend(_md_row(slo_cells(slo)) for slo in report.slos)
    for group, kpis in groups(report):
        out += ["", f"## {group}", ""]
        out.append(
            "| KPI | availability | ok | warning | critical | no data | breaches | "
            "longest (top level) | MTTR (top level) | MTBF (top level) |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
        out.extend(_md_row(kpi_cells(k)) for k in kpis)
        for k in kpis:
            out += ["", f"### {k.info.name}", ""]
            facts = [f"owner {k.info.owner}"]
            if k.info.help:
                facts.append(k.info.help.rstrip("."))
            if k.info.target is not None:
                facts.append(f"target {k.info.target[0]} {k.info.target[1]:g}")
            if k.info.slo is not None:
                facts.append(f"SLO {k.info.slo}")
            facts.append(
                f"availability = time not {k.availability_of}" if k.availability_of else
                "no levels"
            )  # fmt: skip
            if k.info.slo is not None:
                facts.append(f"error budget spent: {pct(report.budget_spent(k))}")
            out.append("; ".join(facts) + ".")
            if k.levels:
                out += [
                    "",
                    "| level | threshold | breaches | ongoing at start | resolved | open at end | "
                    "longest | MTTR | MTBF | time breaching |",
                    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
                ]
                thresholds = {n: f"{d} {v:g}" for n, d, v in k.info.levels}
                out.extend(_md_row(level_cells(lv, thresholds)) for lv in k.levels)
            if k.series:
                out += [
                    "",
                    "| series | availability | ok | warning | critical | no data | breaches |",
                    "|---|---:|---:|---:|---:|---:|---|",
                ]
                for s in k.series:
                    name, *rest = series_cells(s)
                    # A | in a label value would end the cell (even inside the code span).
                    name = name.replace("|", "\\|")
                    out.append(_md_row([f"`{name}`", *rest]))
    if report.kpis:
        out += ["", f"_Error budget: {ERROR_BUDGET_NOTE}._"]
    return "\n".join(out) + "\n"


def _level_json(lv: LevelStats) -> dict[str, object]:
    return {
        "breaches": lv.breaches,
        "ongoing_at_start": lv.ongoing_at_start,
        "resolved": lv.resolved,
        "open_at_end": lv.open_at_end,
        "longest_seconds": lv.longest_s,
        "longest_open": lv.longest_open,
        "mttr_seconds": lv.mttr_s,
        "mtbf_seconds": lv.mtbf_s,
        "breach_seconds": lv.breach_s,
    }


def report_json(report: Report) -> dict[str, object]:
    """The report as JSON-ready data (stable keys, docs/reports.md)."""
    p = report.period
    kpis: list[dict[str, object]] = []
    for k in report.kpis:
        info = k.info
        kpis.append(
            {
                "kpi": info.name,
                "owner": info.owner,
                "group": info.group,
                "unit": info.unit,
                "help": info.help,
                "slo": info.slo,
                "target": (
                    None
                    if info.target is None
                    else {"direction": info.target[0], "value": info.target[1]}
                ),
                "thresholds": {n: {"direction": d, "value": v} for n, d, v in info.levels},
                "availability": k.availability,
                "availability_of": k.availability_of,
                "status_seconds": dict(k.status_s),
                "error_budget_spent": report.budget_spent(k),
                "levels": {lv.level: _level_json(lv) for lv in k.levels},
                "timeline": [
                    {"start": rfc3339(a), "end": rfc3339(b), "status": s} for a, b, s in k.timeline
                ],
                "series": [
                    {
                        "labels": dict(s.labels),
                        "availability": s.availability,
                        "observed_seconds": s.observed_s,
                        "status_seconds": dict(s.status_s),
                        "levels": {lv.level: _level_json(lv) for lv in s.levels},
                    }
                    for s in k.series
                ],
            }
        )
    return {
        "period": {
            "kind": p.kind,
            "label": p.label,
            "tz": p.tz,
            "start": rfc3339(p.start),
            "end": rfc3339(p.end),
            "seconds": p.length_s,
            "partial": p.partial,
        },
        "coverage": {
            "known": report.coverage_known,
            "ratio": report.coverage,
            "covered_seconds": report.coverage_s,
            NOT_RUNNING: [{"start": rfc3339(a), "end": rfc3339(b)} for a, b in not_running(report)],
        },
        "empty": report.empty,
        "notes": list(report.notes),
        "error_budget_note": ERROR_BUDGET_NOTE,
        "slos": [
            {
                "slo": slo.name,
                "owner": slo.owner,
                "objective": slo.objective / 100.0,
                "events": slo.total,
                "bad_events": slo.bad,
                "sli": slo.sli,
                "error_budget_spent": slo.budget_spent,
                "ledger_coverage": slo.coverage,
                "note": slo.note,
            }
            for slo in report.slos
        ],
        "kpis": kpis,
    }


def render_json(report: Report) -> str:
    return json.dumps(report_json(report), indent=2, sort_keys=False) + "\n"


__all__ = ["render_json", "render_markdown", "report_json"]
