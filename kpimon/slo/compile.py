"""An SLO compiled into ordinary KPIs, so the whole KPI machinery (levels, ``for``, journal,
explain, alerts, ``kpimon test``, replays) applies to it unchanged.

Per SLO (docs/slo.md):

- one KPI per burn-rate alert, ``<slo>:burn_<long>_<short>``, whose value is the smaller of the
  burn rates over the alert's long and short windows (both exceed the factor exactly when the
  smaller one does) and whose one level (``critical`` for a page, ``warning`` for a ticket)
  is ``above: <factor>``. With ``min_events``, the value is 0 while the long window holds fewer
  events, so the level cannot fire on a handful of requests;
- one KPI ``<slo>:sli_no_data`` that is 1 while the SLI has no data over the shortest alert
  window (Pyrra's ``SLOMetricAbsent``; Sloth has none) and whose level fires after
  ``no_data_alert.for``.

Burn rate over a window w = error ratio over w / (1 − objective), the error ratio being
``error_query / total_query`` (or ``1 − good_query / total_query``, or ``1 − successes /
probes`` for a probe SLI). Pure: text in, compiled KPIs out.
"""

from __future__ import annotations

from dataclasses import dataclass

from kpimon.config.durations import format_duration
from kpimon.config.models import Kpi, Level
from kpimon.errors import PromQLError
from kpimon.labels import make as make_labels
from kpimon.promql.compile import CompiledExpr, compile_expr
from kpimon.slo.model import SLO_LABEL, WINDOW_PLACEHOLDER, BurnAlert, Sli, Slo
from kpimon.textfmt import plain_number


@dataclass(frozen=True, slots=True)
class EventExprs:
    """PromQL text counting bad and total events over one window (bad may be ``T - G``)."""

    bad: str
    total: str


def window_text(seconds: float) -> str:
    """A PromQL duration for ``seconds`` (``1h``, ``30m``, ``4m59s999ms``)."""
    return format_duration(seconds)


def fill(template: str, window: str) -> str:
    """``template`` with every ``{{.window}}`` replaced by ``window``."""
    return WINDOW_PLACEHOLDER.sub(window, template)


def events(sli: Sli, window: str, probe_offset: str = "") -> EventExprs:
    """Bad and total events of ``sli`` over ``window`` (a PromQL duration); a probe SLI's
    window ends ``probe_offset`` (a PromQL duration, "" for none) before the evaluation."""
    if sli.kind == "probe":
        off = f" offset {probe_offset}" if probe_offset else ""
        good = f"sum(sum_over_time({sli.query}[{window}]{off}))"
        total = f"sum(count_over_time({sli.query}[{window}]{off}))"
        return EventExprs(bad=f"{total} - {good}", total=total)
    total = f"({fill(sli.total_query, window)})"
    query = _or_zero(fill(sli.query, window), total)
    if sli.kind == "good":
        return EventExprs(bad=f"{total} - {query}", total=total)
    return EventExprs(bad=query, total=total)


def _or_zero(query: str, total: str) -> str:
    """``query``, or 0 for each series of ``total`` it has none for: a counter of errors
    that does not exist yet (no request has failed) counts 0, not "no data"."""
    return f"(({query}) or {total} * 0)"


def error_ratio(sli: Sli, window: str) -> str:
    """The share of bad events over ``window``."""
    if sli.kind == "probe":
        return (
            f"1 - sum(sum_over_time({sli.query}[{window}])) / "
            f"sum(count_over_time({sli.query}[{window}]))"
        )
    total = f"({fill(sli.total_query, window)})"
    query = _or_zero(fill(sli.query, window), total)
    if sli.kind == "good":
        return f"1 - {query} / {total}"
    return f"{query} / {total}"


def burn_rate(slo: Slo, window: str) -> str:
    """The burn rate over ``window``: error ratio / error budget (1 = spending exactly the
    budget over the SLO window)."""
    return f"({error_ratio(slo.sli, window)}) / {plain_number(slo.budget)}"


def burn_expr(slo: Slo, alert: BurnAlert) -> str:
    """The value of an alert's KPI: min(burn over long, burn over short), times the
    ``min_events`` guard."""
    long_w, short_w = window_text(alert.long_s), window_text(alert.short_s)
    b_long, b_short = burn_rate(slo, long_w), burn_rate(slo, short_w)
    # PromQL has no binary min: (a < b) or b is a where a < b, else b (same label sets).
    smaller = f"(({b_long}) < ({b_short})) or ({b_short})"
    if slo.min_events <= 0:
        return smaller
    total = events(slo.sli, long_w).total
    return f"({smaller}) * ({total} >= bool {plain_number(slo.min_events)})"


def no_data_window_s(slo: Slo) -> float:
    """The window over which the SLI must have data: the shortest alert window (5m if none)."""
    return min((a.short_s for a in slo.alerts), default=300.0)


def no_data_expr(slo: Slo) -> str:
    """1 while the SLI's total events have no data over :func:`no_data_window_s`, else 0."""
    total = events(slo.sli, window_text(no_data_window_s(slo))).total
    return f"sum(absent({total})) or vector(0)"


def alert_kpi_name(slo_name: str, alert: BurnAlert) -> str:
    return f"{slo_name}:burn_{window_text(alert.long_s)}_{window_text(alert.short_s)}"


def no_data_kpi_name(slo_name: str) -> str:
    return f"{slo_name}:sli_no_data"


def budget_share(slo: Slo, alert: BurnAlert) -> float:
    """Share of the SLO window's error budget an alert's factor spends in its long window
    (14.4 × 1h / 30d = 2%)."""
    return alert.factor * alert.long_s / slo.window_s


@dataclass(frozen=True, slots=True)
class Generated:
    """One KPI of an SLO, before compilation: its name, expression text and level."""

    name: str
    expr: str
    level: Level
    help: str
    summary: str


def generated(slo: Slo) -> list[Generated]:
    """The KPIs ``slo`` compiles into, as text (see the module docstring)."""
    out: list[Generated] = []
    window = window_text(slo.window_s)
    for alert in slo.alerts:
        long_w, short_w = window_text(alert.long_s), window_text(alert.short_s)
        factor = plain_number(alert.factor)
        share = plain_number(round(100 * budget_share(slo, alert), 4))
        kind = "page" if alert.severity == "critical" else "ticket"
        out.append(
            Generated(
                name=alert_kpi_name(slo.name, alert),
                expr=burn_expr(slo, alert),
                level=Level(
                    name=alert.severity,
                    direction="above",
                    threshold=alert.factor,
                    for_s=alert.for_s,
                    clear=alert.factor,
                    position=slo.position,
                ),
                help=(
                    f"SLO {slo.name} ({plain_number(slo.objective)}% over {window}): error "
                    f"budget burn rate over both {long_w} and {short_w} (the smaller of the two)."
                ),
                summary=(
                    f"SLO {slo.name}: error budget burning at {{{{ value }}}}x over both "
                    f"{long_w} and {short_w} ({kind} above {factor}x: {share}% of the "
                    f"{window} budget in {long_w})"
                ),
            )
        )
    no_data_w = window_text(no_data_window_s(slo))
    out.append(
        Generated(
            name=no_data_kpi_name(slo.name),
            expr=no_data_expr(slo),
            level=Level(
                name=slo.no_data_severity,
                direction="above",
                threshold=0.0,
                for_s=slo.no_data_for_s,
                clear=0.0,
                position=slo.position,
            ),
            help=f"1 while the SLI of SLO {slo.name} has no data over {no_data_w}, else 0.",
            summary=(
                f"SLO {slo.name}: the SLI has had no data for "
                f"{format_duration(slo.no_data_for_s)} (no events over {no_data_w}); "
                "burn-rate alerts cannot fire"
            ),
        )
    )
    return out


def compile_slo(slo: Slo) -> tuple[tuple[Kpi, ...], list[tuple[str, str]]]:
    """``slo``'s KPIs, and the (KPI name, error) of each expression that does not compile."""
    kpis: list[Kpi] = []
    errors: list[tuple[str, str]] = []
    labels = make_labels([*slo.labels, (SLO_LABEL, slo.name)])
    for gen in generated(slo):
        try:
            expr: CompiledExpr = compile_expr(gen.expr)
        except PromQLError as exc:
            errors.append((gen.name, exc.message))
            continue
        annotations = dict(slo.annotations)
        annotations.setdefault("summary", gen.summary)
        kpis.append(
            Kpi(
                name=gen.name,
                help=gen.help,
                owner=slo.owner,
                unit="none",
                expr=expr,
                levels=(gen.level,),
                labels=labels,
                annotations=tuple(annotations.items()),
                file=slo.file,
                position=slo.position,
                expr_position=slo.sli_position,
            )
        )
    return tuple(kpis), errors
