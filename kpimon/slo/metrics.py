"""The ``kpimon_slo_*`` and ``kpimon_service_*`` families of ``/metrics`` (text format 0.0.4).

Called by :mod:`kpimon.web.render` with the SLO readings of the last tick
(:mod:`kpimon.slo.tracker`) and the services' health (:mod:`kpimon.slo.health`). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from kpimon.config.durations import format_duration
from kpimon.labels import label_body
from kpimon.slo.health import ServiceHealth
from kpimon.slo.tracker import SloReading
from kpimon.textfmt import exposition_number, family_header


def render_families(
    slos: Sequence[SloReading], services: Sequence[ServiceHealth], out: list[str]
) -> None:
    """Append the SLO and service families to ``out`` (nothing when there are none)."""
    if slos:
        _slo_families(slos, out)
    if services:
        _service_families(services, out)


def _family(out: list[str], name: str, doc: str) -> None:
    out.append(family_header(name, doc))


def _slo_families(slos: Sequence[SloReading], out: list[str]) -> None:
    _family(out, "kpimon_slo_info", "SLO metadata: owner, SLO window and help text (always 1).")
    for r in slos:
        s = r.slo
        body = label_body(
            [
                ("help", s.help),
                ("owner", s.owner),
                ("slo", s.name),
                ("window", format_duration(s.window_s)),
            ]
        )
        out.append(f"kpimon_slo_info{{{body}}} 1\n")
    _family(out, "kpimon_slo_objective_ratio", "The SLO's objective: the share of good events.")
    for r in slos:
        out.append(
            f"kpimon_slo_objective_ratio{{{label_body([('slo', r.slo.name)])}}} "
            f"{exposition_number(r.slo.objective_ratio)}\n"
        )
    _family(
        out,
        "kpimon_slo_sli_ratio",
        "Share of good events over the window (alert windows from raw samples, the SLO "
        "window from 5-minute buckets); NaN when the window had no events.",
    )
    for r in slos:
        for w in r.windows:
            body = label_body([("slo", r.slo.name), ("window", format_duration(w.window_s))])
            out.append(f"kpimon_slo_sli_ratio{{{body}}} {exposition_number(w.sli)}\n")
    _family(
        out,
        "kpimon_slo_burn_rate",
        "Error budget burn rate over the window: error ratio / (1 - objective); 1 spends the "
        "budget exactly over the SLO window.",
    )
    for r in slos:
        for w in r.windows:
            body = label_body([("slo", r.slo.name), ("window", format_duration(w.window_s))])
            out.append(f"kpimon_slo_burn_rate{{{body}}} {exposition_number(w.burn_rate)}\n")
    _family(
        out,
        "kpimon_slo_error_budget_remaining_ratio",
        "Share of the SLO window's error budget left: 1 - burn rate over the SLO window "
        "(negative when overspent).",
    )
    for r in slos:
        if r.budget_remaining is not None:
            out.append(
                f"kpimon_slo_error_budget_remaining_ratio{{{label_body([('slo', r.slo.name)])}}} "
                f"{exposition_number(r.budget_remaining)}\n"
            )
    _family(
        out,
        "kpimon_slo_window_coverage_ratio",
        "Share of the SLO window kpimon has event counts for (less than 1 for a window "
        "after kpimon started).",
    )
    for r in slos:
        out.append(
            f"kpimon_slo_window_coverage_ratio{{{label_body([('slo', r.slo.name)])}}} "
            f"{exposition_number(r.coverage)}\n"
        )


def _service_families(services: Sequence[ServiceHealth], out: list[str]) -> None:
    _family(out, "kpimon_service_info", "Service metadata: owner and help text (always 1).")
    for h in services:
        s = h.service
        body = label_body([("help", s.help), ("owner", s.owner), ("service", s.name)])
        out.append(f"kpimon_service_info{{{body}}} 1\n")
    _family(
        out,
        "kpimon_service_health_score",
        "Splunk ITSI health score, 0-100: importance-weighted average of the KPIs' scores "
        "(ok 100, warning 50, critical 0); NaN when no scored KPI has data.",
    )
    for h in services:
        body = label_body([("service", h.service.name)])
        out.append(f"kpimon_service_health_score{{{body}}} {exposition_number(h.score)}\n")
    _family(
        out,
        "kpimon_service_status",
        "Service status from its health score: -1 no data, 0 ok, 1 warning, 2 critical.",
    )
    for h in services:
        body = label_body([("service", h.service.name)])
        out.append(f"kpimon_service_status{{{body}}} {h.status}\n")
