"""A KPI's open alerts, as Prometheus' ``/api/v1/alerts`` lists them.

Each KPI series and level that is pending, firing or clearing is one alert. Its labels are the
series labels, then the KPI's ``labels``, then ``severity: <level>`` and ``alertname: <KPI
name>`` (ARCHITECTURE §6; later ones win, as a Prometheus alerting rule's labels override the
series'), so an alert here has the identity it has in ``kpimon test`` and in notifications. A
clearing level is still an open alert: its state is ``firing``.

Pure: reads a :class:`~kpimon.kpi.engine.KpiRuntime`, returns frozen dataclasses. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpimon.kpi.engine import KpiRuntime
from kpimon.kpi.machine import CLEARING, FIRING, INACTIVE, PENDING
from kpimon.labels import Labels, alert_labels
from kpimon.notify import templates


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One pending or firing level of one KPI series.

    Attributes:
        labels: the alert's identity (sorted by name).
        annotations: the KPI's annotations, rendered as the notifier renders them.
        state: ``pending`` or ``firing`` (a clearing level is firing).
        active_at: when the level's condition began to hold (Unix seconds).
        value: the latest value (NaN while the series has no data).
    """

    labels: Labels
    annotations: tuple[tuple[str, str], ...]
    state: str
    active_at: float
    value: float


def render_annotation(
    rt: KpiRuntime,
    li: int,
    row: int,
    labels: Labels,
    text: str,
    *,
    external_labels: Labels = (),
    external_url: str = "",
) -> str:
    """Annotation ``text`` of level ``li`` for series ``row`` of ``rt``, rendered at the last
    evaluation as the notifier renders it (``labels``: the alert's labels), failures included
    (:func:`~kpimon.notify.templates.render_or_explain`)."""
    kpi, state = rt.kpi, rt.state
    level = rt.rule.levels[li]
    context = templates.Context(
        kpi=kpi.name,
        level=level.name,
        labels=labels,
        value=float(state.value[row]),
        threshold=state.thresholds[li][0],
        direction=level.comparison,
        unit=kpi.unit,
        owner=kpi.owner,
        active_at=float(state.active_at[li, row]),
        now=state.last_t if state.last_t is not None else 0.0,
        external_labels=external_labels,
        external_url=external_url,
    )
    return templates.render_or_explain(text, context)[0]


def open_alerts(rt: KpiRuntime) -> list[Alert]:
    """Every pending, firing or clearing level of every series of ``rt``, level by level."""
    st = rt.state
    kpi = rt.kpi
    out: list[Alert] = []
    for li, lv in enumerate(rt.rule.levels):
        phases = st.phase[li]
        for i in np.flatnonzero(phases != INACTIVE).tolist():
            ph = int(phases[i])
            if ph not in (PENDING, FIRING, CLEARING):
                continue
            labels = alert_labels(kpi.name, kpi.labels, lv.name, st.labels[i])
            out.append(
                Alert(
                    labels=labels,
                    annotations=tuple(
                        (key, render_annotation(rt, li, i, labels, text))
                        for key, text in kpi.annotations
                    ),
                    state="pending" if ph == PENDING else "firing",
                    active_at=float(st.active_at[li, i]),
                    value=float(st.value[i]) if st.present[i] else float("nan"),
                )
            )
    return out
