"""Service health: Splunk ITSI's importance-weighted health score over a service's KPIs.

ITSI ("How service health scores work", "Set KPI importance values"): each KPI contributes a
score by severity (kpimon has three: ok 100, warning 50, critical 0), weighted by its
importance 1–11; importance 0 is not scored; a KPI with importance 11 that is critical makes
the service critical whatever the others say. ITSI leaves ``info``/N/A severities out of the
score; kpimon does the same for a KPI with no data. A KPI with several series (ITSI's
entity-split KPI with per-entity thresholds, "Include Entities") counts with its worst series.

Pure and clock-free: statuses in, score out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from kpimon.kpi.machine import STATUS_NAMES
from kpimon.slo.model import Service

if TYPE_CHECKING:
    from kpimon.kpi.engine import KpiRuntime

STATUS_NO_DATA, STATUS_OK, STATUS_WARNING, STATUS_CRITICAL = -1, 0, 1, 2
SCORE: Final[Mapping[int, float]] = {STATUS_OK: 100.0, STATUS_WARNING: 50.0, STATUS_CRITICAL: 0.0}
"""ITSI's score contribution per severity (Normal 100, Medium 50, Critical 0)."""
MIN_HEALTH_IMPORTANCE: Final = 11
OK_FROM: Final = 80.0
"""A score of at least this is ``ok``."""
CRITICAL_BELOW: Final = 20.0
"""A score below this is ``critical``; in between, ``warning``."""


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """A service's health at one tick.

    Attributes:
        score: 0–100, NaN when no scored KPI has data.
        status: the same codes as ``kpimon_kpi_status`` (-1 no data, 0 ok, 1 warning, 2
            critical).
        kpi_status: each member KPI's status (-1 when it has no data), in definition order.
    """

    service: Service
    score: float
    status: int
    kpi_status: tuple[tuple[str, int], ...]


def kpi_status(series_status: Iterable[int]) -> int:
    """A KPI's status from its series' statuses: the worst one; -1 when none has data."""
    worst = STATUS_NO_DATA
    for s in series_status:
        worst = max(worst, s)
    return worst


def health_score(members: Iterable[tuple[int, int]]) -> float:
    """ITSI's health score of (importance, status) pairs; NaN when nothing is scored.

    score = Σ importance × contribution / Σ importance over KPIs with data and importance ≥ 1,
    except that a critical importance-11 KPI makes it 0.
    """
    weighted = weights = 0.0
    for importance, status in members:
        if importance <= 0 or status == STATUS_NO_DATA:
            continue
        if importance >= MIN_HEALTH_IMPORTANCE and status == STATUS_CRITICAL:
            return 0.0
        weighted += importance * SCORE[status]
        weights += importance
    return weighted / weights if weights else math.nan


def score_status(score: float) -> int:
    """The status of a score: ok from 80, critical below 20, warning between; -1 for NaN."""
    if math.isnan(score):
        return STATUS_NO_DATA
    if score >= OK_FROM:
        return STATUS_OK
    return STATUS_CRITICAL if score < CRITICAL_BELOW else STATUS_WARNING


def service_health(service: Service, status_of: Mapping[str, int]) -> ServiceHealth:
    """``service``'s health given each KPI's status (a KPI missing from ``status_of`` counts
    as no data)."""
    statuses = tuple((m.kpi, status_of.get(m.kpi, STATUS_NO_DATA)) for m in service.kpis)
    score = health_score(
        (m.importance, s) for m, (_, s) in zip(service.kpis, statuses, strict=True)
    )
    return ServiceHealth(
        service=service, score=score, status=score_status(score), kpi_status=statuses
    )


def statuses(kpis: Mapping[str, KpiRuntime]) -> dict[str, int]:
    """Each KPI's status from the engine's state at its last tick (:func:`kpi_status`)."""
    out: dict[str, int] = {}
    for name, rt in kpis.items():
        status = rt.state.status
        out[name] = int(status.max()) if len(status) else STATUS_NO_DATA
    return out


def services_health(
    services: Iterable[Service], kpis: Mapping[str, KpiRuntime]
) -> list[ServiceHealth]:
    """Every service's health from the engine's KPIs."""
    status_of = statuses(kpis)
    return [service_health(s, status_of) for s in services]


def health_doc(h: ServiceHealth) -> dict[str, object]:
    """One service for ``/api/v1/services`` (the score is null when it is NaN)."""
    importance = {m.kpi: m.importance for m in h.service.kpis}
    return {
        "service": h.service.name,
        "owner": h.service.owner,
        "help": h.service.help,
        "labels": dict(h.service.labels),
        "score": None if math.isnan(h.score) else h.score,
        "status": STATUS_NAMES[h.status],
        "status_code": h.status,
        "kpis": [
            {
                "kpi": kpi,
                "importance": importance[kpi],
                "status": STATUS_NAMES[s],
                "status_code": s,
            }
            for kpi, s in h.kpi_status
        ],
    }
