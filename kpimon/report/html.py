"""A :class:`~kpimon.report.compute.Report` as one self-contained HTML file.

Inline CSS, one inline SVG per KPI, no JavaScript, no external fonts or images: the file can be
opened from disk or mailed. Each chart has two parts over the period's time axis:

- a status bar: the KPI's status timeline (its worst series' status), coloured ok / warning /
  critical / no_data, hatched grey where kpimon was not running;
- a value plot: the value at each transition in the period as a step line per series (the
  journal holds values only at transitions, so the line joins those points, it is not a sampled
  curve), with the levels' thresholds as dashed lines.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from html import escape

from kpimon.kpi.summary import format_value, rfc3339
from kpimon.labels import format_labels
from kpimon.report.compute import NOT_RUNNING, STATUS_ORDER, KpiStats, Report
from kpimon.report.render import (
    ERROR_BUDGET_NOTE,
    groups,
    headline,
    kpi_cells,
    level_cells,
    pct,
    series_cells,
    slo_cells,
)

COLOURS = {
    "ok": "#2e7d32",
    "warning": "#f9a825",
    "critical": "#c62828",
    "no_data": "#9e9e9e",
}
_LEVEL_COLOURS = {"warning": COLOURS["warning"], "critical": COLOURS["critical"]}
W, BAR_H, PLOT_H, PAD = 720, 14, 70, 4

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 60em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 1.6em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.4em 0 0.8em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
p.head { margin: 0.2em 0; } p.note { color: #555; font-size: 0.9em; }
svg { display: block; margin: 0.3em 0; }
.legend span { display: inline-block; margin-right: 1em; font-size: 0.85em; }
.legend i { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.3em;
  vertical-align: middle; }
"""


def render_html(report: Report) -> str:
    """The report as one HTML document."""
    p = report.period
    title = f"KPI report: {p.kind} {p.label}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
    ]
    out.extend(f'<p class="head">{escape(line)}</p>' for line in headline(report))
    out.append(
        '<p class="legend">'
        + "".join(f'<span><i style="background:{COLOURS[s]}"></i>{s}</span>' for s in STATUS_ORDER)
        + '<span><i style="background:#fff;border:1px solid #999"></i>kpimon not running</span>'
        "</p>"
    )
    if report.slos:
        out.append("<h2>SLOs</h2>")
        out.append(
            "<table><tr><th>SLO</th><th>owner</th><th>objective</th><th>events</th><th>bad</th>"
            "<th>SLI</th><th>error budget spent</th><th>ledger coverage</th><th>note</th></tr>"
        )
        out.extend(_html_row(slo_cells(slo)) for slo in report.slos)
        out.append("</table>")
    index = 0
    for group, kpis in groups(report):
        out.append(f"<h2>{escape(group)}</h2>")
        out.append(
            "<table><tr><th>KPI</th><th>availability</th>"
            + "".join(f"<th>{s}</th>" for s in STATUS_ORDER)
            + "<th>breaches</th><th>longest (top level)</th><th>MTTR (top level)</th>"
            "<th>MTBF (top level)</th></tr>"
        )
        out.extend(_html_row(kpi_cells(k)) for k in kpis)
        out.append("</table>")
        for k in kpis:
            index += 1
            out.extend(_kpi_section(report, k, index))
    if report.kpis:
        out.append(f'<p class="note">Error budget: {escape(ERROR_BUDGET_NOTE)}.</p>')
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _html_row(cells: list[str]) -> str:
    return "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def _kpi_section(report: Report, k: KpiStats, index: int) -> list[str]:
    info = k.info
    facts = [f"owner {info.owner}"]
    if info.help:
        facts.append(info.help.rstrip("."))
    if info.target is not None:
        facts.append(f"target {info.target[0]} {info.target[1]:g}")
    if info.slo is not None:
        facts.append(f"SLO {info.slo}")
        facts.append(f"error budget spent: {pct(report.budget_spent(k))}")
    out = [f'<h3 id="kpi-{escape(info.name)}">{escape(info.name)}</h3>']
    out.append(f'<p class="note">{escape("; ".join(facts))}.</p>')
    out.append(svg_chart(report, k, index))
    if k.levels:
        thresholds = {n: f"{d} {v:g}" for n, d, v in info.levels}
        out.append(
            "<table><tr><th>level</th><th>threshold</th><th>breaches</th>"
            "<th>ongoing at start</th><th>resolved</th><th>open at end</th><th>longest</th>"
            "<th>MTTR</th><th>MTBF</th><th>time breaching</th></tr>"
        )
        out.extend(_html_row(level_cells(lv, thresholds)) for lv in k.levels)
        out.append("</table>")
    if k.series:
        out.append(
            "<table><tr><th>series</th><th>availability</th>"
            + "".join(f"<th>{s}</th>" for s in STATUS_ORDER)
            + "<th>breaches</th></tr>"
        )
        out.extend(_html_row(series_cells(s)) for s in k.series)
        out.append("</table>")
    return out


def svg_chart(report: Report, k: KpiStats, index: int) -> str:
    """The KPI's chart: status bar over the period, then values at transitions and thresholds."""
    p = report.period
    span = p.length_s or 1.0

    def x(t: float) -> float:
        return round(PAD + (W - 2 * PAD) * (t - p.start) / span, 2)

    h = BAR_H + PLOT_H + 3 * PAD + 12
    pattern = f"nr{index}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" '
        f'viewBox="0 0 {W} {h}" role="img" aria-label="{escape(k.info.name)} over the period">',
        f'<defs><pattern id="{pattern}" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#bbb" stroke-width="2"/></pattern></defs>',
    ]
    for a, b, status in k.timeline:
        fill = f"url(#{pattern})" if status == NOT_RUNNING else COLOURS[status]
        parts.append(
            f'<rect x="{x(a)}" y="{PAD}" width="{max(0.0, round(x(b) - x(a), 2))}" '
            f'height="{BAR_H}" fill="{fill}"><title>{status} {rfc3339(a)} .. {rfc3339(b)}'
            "</title></rect>"
        )
    top = PAD * 2 + BAR_H
    parts.append(
        f'<rect x="{PAD}" y="{top}" width="{W - 2 * PAD}" height="{PLOT_H}" fill="none" '
        'stroke="#ddd"/>'
    )
    values = [pt.value for pt in k.points if math.isfinite(pt.value)]
    lines = [(n, v) for n, _, v in k.info.levels if math.isfinite(v)]
    known = values + [v for _, v in lines]
    if known:
        lo, hi = min(known), max(known)
        if hi == lo:
            lo, hi = lo - 1, hi + 1
        margin = (hi - lo) * 0.1
        lo, hi = lo - margin, hi + margin

        def y(v: float) -> float:
            return round(top + PLOT_H * (hi - v) / (hi - lo), 2)

        for name, v in lines:
            parts.append(
                f'<line x1="{PAD}" y1="{y(v)}" x2="{W - PAD}" y2="{y(v)}" '
                f'stroke="{_LEVEL_COLOURS.get(name, "#666")}" stroke-dasharray="4 3">'
                f"<title>{escape(name)} threshold {v:g}</title></line>"
            )
        by_series: dict[object, list[tuple[float, float]]] = defaultdict(list)
        for pt in k.points:
            if math.isfinite(pt.value):
                by_series[pt.labels].append((pt.t, pt.value))
        for pts in by_series.values():
            path = []
            for i, (t, v) in enumerate(pts):
                path.append(f"{'M' if i == 0 else 'H'}{x(t)}")
                if i == 0:
                    path[-1] += f" {y(v)}"
                else:
                    path.append(f"V{y(v)}")
            parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="#1565c0"/>')
        for pt in k.points:
            if math.isfinite(pt.value):
                colour = _LEVEL_COLOURS.get(pt.level, "#666")
                parts.append(
                    f'<circle cx="{x(pt.t)}" cy="{y(pt.value)}" r="2.5" fill="{colour}">'
                    f"<title>{rfc3339(pt.t)} {escape(format_labels(pt.labels))} {pt.level} "
                    f"→ {pt.to_phase} at {escape(format_value(pt.value, k.info.unit))}"
                    "</title></circle>"
                )
    else:
        parts.append(
            f'<text x="{W / 2}" y="{top + PLOT_H / 2}" text-anchor="middle" font-size="11" '
            'fill="#777">no transitions in the period</text>'
        )
    base = top + PLOT_H + 11
    parts.append(f'<text x="{PAD}" y="{base}" font-size="10" fill="#555">{rfc3339(p.start)}</text>')
    parts.append(
        f'<text x="{W - PAD}" y="{base}" font-size="10" fill="#555" text-anchor="end">'
        f"{rfc3339(p.end)}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["render_html", "svg_chart"]
