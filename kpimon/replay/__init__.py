"""``kpimon replay``: KPI rules over recorded samples, on a simulated clock.

Recorded samples (:mod:`.openmetrics`: OpenMetrics text with timestamps; :mod:`.csvdata`:
``timestamp,series,value``) become a :class:`~.data.Recording`; :func:`~.driver.replay` feeds
them to the daemon's :class:`~kpimon.store.Store` and ticks its
:class:`~kpimon.kpi.engine.Engine` every step, exactly as the daemon's evaluation loop does
(ARCHITECTURE §2: one path for live runs, replays and tests), simulating restarts with
:mod:`.restart`; :mod:`.summary` sums up each KPI; :mod:`.render` prints the timeline and the
summary as text or JSON; :mod:`.command` is the command (the only module that reads files).
Nothing here awaits; every value crossing modules is a frozen dataclass.
"""

from __future__ import annotations

from kpimon.replay.command import Request, run_replay
from kpimon.replay.data import DataError, Recording, parse_time
from kpimon.replay.driver import Event, ReplayError, ReplayOptions, ReplayResult, replay
from kpimon.replay.summary import KpiSummary, LevelSummary, SeriesSummary

__all__ = [
    "DataError",
    "Event",
    "KpiSummary",
    "LevelSummary",
    "Recording",
    "ReplayError",
    "ReplayOptions",
    "ReplayResult",
    "Request",
    "SeriesSummary",
    "parse_time",
    "replay",
    "run_replay",
]
