"""Configuration: ``kpimon.yml`` and KPI rule files, parsed into frozen models with positions.

Modules: :mod:`.yamlload` (YAML with FILE:LINE:COL on every node), :mod:`.durations` (Prometheus
durations and byte sizes), :mod:`.fields` (typed reads collecting problems), :mod:`.models` (the
frozen dataclasses), :mod:`.rules` (rule files) and :mod:`.daemon` (``kpimon.yml``), both pure,
and :mod:`.loader` (:func:`load_config`, the only module that reads files). Every problem of
every file is reported at once, as :class:`kpimon.errors.ConfigError`.
"""

from __future__ import annotations

from kpimon.config.durations import format_duration, parse_duration
from kpimon.config.loader import build_config, default_config, load_config
from kpimon.config.models import (
    DaemonConfig,
    GlobalConfig,
    HostConfig,
    Kpi,
    Level,
    NoData,
    ScrapeConfig,
    StaticConfig,
    Threshold,
)
from kpimon.config.rules import parse_rules

__all__ = [
    "DaemonConfig",
    "GlobalConfig",
    "HostConfig",
    "Kpi",
    "Level",
    "NoData",
    "ScrapeConfig",
    "StaticConfig",
    "Threshold",
    "build_config",
    "default_config",
    "format_duration",
    "load_config",
    "parse_duration",
    "parse_rules",
]
