"""SLO and service definitions as parsed from rule files: frozen dataclasses, no parsing, no I/O.

An :class:`Slo` is what a ``slos:`` entry becomes; :mod:`kpimon.slo.compile` turns it into
ordinary KPIs. A :class:`Service` is a ``services:`` entry: KPI names with ITSI importance
weights, scored by :mod:`kpimon.slo.health`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from kpimon.errors import Position
from kpimon.labels import EMPTY, Labels

Severity = Literal["warning", "critical"]
SliKind = Literal["errors", "good", "probe"]

WINDOW_PLACEHOLDER: Final = re.compile(r"\{\{\s*\.window\s*\}\}")
"""Sloth's ``{{.window}}`` placeholder in ``error_query``/``good_query``/``total_query``."""

SLO_LABEL: Final = "slo"
"""Label every KPI generated from an SLO carries (on its alerts): the SLO's name."""

DEFAULT_WINDOW_S: Final = 30 * 86400.0
DEFAULT_NO_DATA_FOR_S: Final = 600.0
LEDGER_STEP_S: Final = 300.0
"""Bucket of the SLO-window ledger (:mod:`kpimon.slo.tracker`): 5 minutes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BurnAlert:
    """One multi-window burn-rate alert: fires when the burn rate over *both* windows exceeds
    ``factor`` (Google SRE workbook, chapter 5, "Multiwindow, Multi-Burn-Rate Alerts")."""

    severity: Severity
    long_s: float
    short_s: float
    factor: float
    for_s: float = 0.0


GOOGLE_ALERTS: Final[tuple[BurnAlert, ...]] = (
    BurnAlert(severity="critical", long_s=3600.0, short_s=300.0, factor=14.4),
    BurnAlert(severity="critical", long_s=6 * 3600.0, short_s=1800.0, factor=6.0),
    BurnAlert(severity="warning", long_s=3 * 86400.0, short_s=6 * 3600.0, factor=1.0),
)
"""The workbook's defaults for a 30-day SLO: page at 14.4× over 1h and 5m (2% of the budget in
an hour), page at 6× over 6h and 30m (5% in 6 hours), ticket at 1× over 3d and 6h (10% in 3
days)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sli:
    """How good and bad events are counted.

    ``errors``/``good``: ``query`` (error or good events) and ``total_query`` are PromQL
    templates with ``{{.window}}`` where the window goes. ``probe``: ``query`` is a selector of
    0/1 probe results (``probe_success{...}``); each sample is one event.
    """

    kind: SliKind
    query: str
    total_query: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Slo:
    """One ``slos:`` entry, validated.

    Attributes:
        objective: the target share of good events, a percentage in (0, 100).
        window_s: the SLO window (error budget period).
        min_events: burn-rate alerts stay quiet while the long window holds fewer events.
        alerts: the burn-rate alerts (:data:`GOOGLE_ALERTS` unless overridden).
        no_data_for_s: the SLI must be missing this long before the no-data alert fires.
        position: where the entry starts; ``sli_position`` where its ``sli`` is.
    """

    name: str
    help: str = ""
    owner: str
    objective: float
    window_s: float = DEFAULT_WINDOW_S
    sli: Sli
    min_events: float = 0.0
    alerts: tuple[BurnAlert, ...] = GOOGLE_ALERTS
    no_data_for_s: float = DEFAULT_NO_DATA_FOR_S
    no_data_severity: Severity = "critical"
    labels: Labels = EMPTY
    annotations: tuple[tuple[str, str], ...] = ()
    file: str
    position: Position
    sli_position: Position

    @property
    def budget(self) -> float:
        """The error budget as a fraction of events: 0.001 for a 99.9% objective.

        Rounded to 12 decimals so that 99.9 gives exactly 0.001, not 100 − 99.9's binary
        residue (0.0010000000000000009).
        """
        return round((100.0 - self.objective) / 100.0, 12)

    @property
    def objective_ratio(self) -> float:
        return round(self.objective / 100.0, 12)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceKpi:
    """A KPI of a service with its ITSI importance (0: shown, not scored; 11: a critical
    status makes the service critical)."""

    kpi: str
    importance: int
    position: Position


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """One ``services:`` entry."""

    name: str
    help: str = ""
    owner: str
    kpis: tuple[ServiceKpi, ...]
    labels: Labels = EMPTY
    file: str
    position: Position
