"""The parsed, validated configuration: frozen dataclasses only.

:class:`DaemonConfig` is what ``kpimon.yml`` plus its rule files become; :class:`Kpi` is one entry
of a rule file's ``kpis`` list. Every value here is already checked (types, ranges, consistency),
durations are in seconds (``*_s``), label maps are :data:`kpimon.labels.Labels`. A reload builds
a new object and swaps it; nothing here is ever mutated.

Parsing lives in :mod:`kpimon.config.daemon` and :mod:`kpimon.config.rules`; this module holds no
parsing and no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlencode

from kpimon.config.alerting import NO_ALERTING, AlertingConfig
from kpimon.config.probes import ProbeConfig
from kpimon.errors import Position
from kpimon.kpi.schedule import Window
from kpimon.labels import EMPTY, Labels
from kpimon.promql.compile import LOOKBACK_S, CompiledExpr
from kpimon.slo.model import Service, Slo

Direction = Literal["above", "below"]
LevelName = Literal["warning", "critical"]
Semantics = Literal["default", "prometheus"]

LEVEL_NAMES: Final[tuple[LevelName, ...]] = ("warning", "critical")
"""Level names, least severe first."""

UNITS: Final[tuple[str, ...]] = (
    "percent",
    "ratio",
    "seconds",
    "milliseconds",
    "bytes",
    "bytes_per_second",
    "bits_per_second",
    "per_second",
    "count",
    "celsius",
    "none",
)
"""Allowed values of a KPI's ``unit`` (what people and dashboards read the value as)."""

RESERVED_LABELS: Final[frozenset[str]] = frozenset({"alertname", "severity", "kpi"})
"""Label names kpimon sets itself on alerts and exported series; rules may not set them."""

DEFAULT_SCRAPE_INTERVAL_S: Final = 15.0
DEFAULT_SCRAPE_TIMEOUT_S: Final = 10.0
DEFAULT_EVALUATION_INTERVAL_S: Final = 15.0
DEFAULT_OUTAGE_TOLERANCE_S: Final = 3600.0
DEFAULT_BODY_SIZE_LIMIT: Final = 10 * 1024 * 1024
"""10 MiB: about 170 times a node_exporter payload; Prometheus' default is no limit (0)."""
DEFAULT_SAMPLE_SNAPSHOT_INTERVAL_S: Final = 300.0
"""5 minutes: a crash loses at most that much sample history (kpimon/snapshots.py)."""
DEFAULT_NO_DATA_AFTER_S: Final = 300.0
DEFAULT_NO_DATA_RESOLVE_AFTER_S: Final = 3600.0
DEFAULT_FLAPPING_HIGH: Final = 30.0
DEFAULT_FLAPPING_LOW: Final = 25.0


def _beyond(direction: Direction, value: float, threshold: float) -> bool:
    # NaN compares false both ways, so a NaN value never breaches (as in PromQL `NaN > x`).
    return value > threshold if direction == "above" else value < threshold


@dataclass(frozen=True, slots=True, kw_only=True)
class Threshold:
    """A KPI's objective: ``{below: 70}`` means "the value should stay below 70"."""

    direction: Direction
    value: float

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the objective (strictly on the ``direction`` side)."""
        return _beyond(self.direction, value, self.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Level:
    """One alert level of a KPI (``warning`` or ``critical``).

    Attributes:
        name: the level's name, also the ``severity`` label of its alerts.
        direction: ``above`` (breached when value > threshold) or ``below`` (value < threshold).
        threshold: the ``above``/``below`` value.
        for_s: how long the condition must hold before the level fires (0: at once).
        clear: while firing, the value must come back within this to start clearing; equal to
            ``threshold`` unless hysteresis was configured.
        clear_for_s: how long the value must stay within ``clear`` before the level resolves
            (``clear_for``, or its Prometheus name ``keep_firing_for``).
        schedule: time-of-day thresholds; at each tick the first window containing it replaces
            ``threshold`` and ``clear`` (:mod:`kpimon.kpi.schedule`).
        position: where the level is defined.
    """

    name: LevelName
    direction: Direction
    threshold: float
    for_s: float = 0.0
    clear: float
    clear_for_s: float = 0.0
    schedule: tuple[Window, ...] = ()
    position: Position

    def breached(self, value: float) -> bool:
        """Whether ``value`` meets the level's condition (``> threshold`` for ``above``)."""
        return _beyond(self.direction, value, self.threshold)

    def beyond_clear(self, value: float) -> bool:
        """Whether a firing level stays firing at ``value`` (``> clear`` for ``above``)."""
        return _beyond(self.direction, value, self.clear)


@dataclass(frozen=True, slots=True, kw_only=True)
class NoData:
    """What happens when a KPI series goes missing (ARCHITECTURE §5, "Missing data")."""

    after_s: float = DEFAULT_NO_DATA_AFTER_S
    resolve_after_s: float = DEFAULT_NO_DATA_RESOLVE_AFTER_S


@dataclass(frozen=True, slots=True, kw_only=True)
class Flapping:
    """Flap detection thresholds, in percent (Nagios/Icinga's weighted state-change percentage
    over the last 21 evaluations): a series starts flapping above ``high``, stops below ``low``.
    """

    high: float = DEFAULT_FLAPPING_HIGH
    low: float = DEFAULT_FLAPPING_LOW


@dataclass(frozen=True, slots=True, kw_only=True)
class Kpi:
    """One KPI of a rule file.

    Attributes:
        name: unique across every loaded rule file; the ``kpi`` label and ``alertname``.
        expr: the compiled expression (its ``text`` is the expression as written).
        levels: the configured levels, least severe first (a subset of :data:`LEVEL_NAMES`).
        annotations: in file order; values are templates, expanded when notifying.
        file: the rule file as named in ``rule_files`` (or on the command line).
        position: where the KPI's mapping starts; ``expr_position`` where its ``expr`` does.
    """

    name: str
    help: str = ""
    owner: str
    unit: str = "none"
    expr: CompiledExpr
    source: Literal["local"] = "local"
    target: Threshold | None = None
    levels: tuple[Level, ...]
    max_gap_s: float = 0.0
    no_data: NoData = NoData()
    flapping: Flapping = Flapping()
    semantics: Semantics = "default"
    labels: Labels = EMPTY
    annotations: tuple[tuple[str, str], ...] = ()
    file: str
    position: Position
    expr_position: Position

    def level(self, name: str) -> Level | None:
        """The level called ``name``, or None when the KPI does not define it."""
        for level in self.levels:
            if level.name == name:
                return level
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalConfig:
    """``global:`` defaults for every job, and the evaluation interval."""

    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S
    scrape_timeout_s: float = DEFAULT_SCRAPE_TIMEOUT_S
    evaluation_interval_s: float = DEFAULT_EVALUATION_INTERVAL_S
    external_labels: Labels = EMPTY
    outage_tolerance_s: float = DEFAULT_OUTAGE_TOLERANCE_S
    """After a restart within this, KPI timers continue as if kpimon had never stopped."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticConfig:
    """A group of targets (``host:port``) sharing labels."""

    targets: tuple[str, ...]
    labels: Labels = EMPTY
    position: Position


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeConfig:
    """One ``scrape_configs`` entry, with intervals and timeouts already resolved."""

    job_name: str
    static_configs: tuple[StaticConfig, ...] = ()
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    params: tuple[tuple[str, tuple[str, ...]], ...] = ()
    scrape_interval_s: float
    scrape_timeout_s: float
    sample_limit: int = 0
    """0: no limit."""
    body_size_limit: int = DEFAULT_BODY_SIZE_LIMIT
    """Bytes; 0: no limit."""
    position: Position

    def url(self, target: str) -> str:
        """The URL scraped for ``target`` (``http://host:port/metrics?param=value``)."""
        query = urlencode([(k, v) for k, values in self.params for v in values])
        return f"{self.scheme}://{target}{self.metrics_path}" + (f"?{query}" if query else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class HostConfig:
    """The built-in host collector (``job="host"``)."""

    enabled: bool = False
    interval_s: float = DEFAULT_SCRAPE_INTERVAL_S


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    """Everything ``kpimon run`` needs from its config and rule files.

    Attributes:
        path: the config file as given, or None for the embedded default.
        rule_files: the ``rule_files`` patterns as written.
        rule_paths: the rule files loaded, in load order (as displayed in messages).
        kpis: every KPI of every rule file, in load order.
    """

    path: str | None = None
    global_config: GlobalConfig = GlobalConfig()
    scrape_configs: tuple[ScrapeConfig, ...] = ()
    host: HostConfig = HostConfig()
    rule_files: tuple[str, ...] = ()
    rule_paths: tuple[str, ...] = ()
    kpis: tuple[Kpi, ...] = ()
    storage_path: str | None = None
    """``storage.path``: where the journal lives (``--storage.path`` overrides it)."""
    sample_snapshot_interval_s: float = DEFAULT_SAMPLE_SNAPSHOT_INTERVAL_S
    """``storage.sample_snapshot_interval``: how often the samples are saved under the storage
    path while kpimon runs (0: only at a clean shutdown; kpimon/snapshots.py)."""
    alerting: AlertingConfig = NO_ALERTING
    """``alerting:``: Alertmanagers and hooks (:mod:`kpimon.config.alerting`)."""
    probes: tuple[ProbeConfig, ...] = ()
    """``probes:``: blackbox-style HTTP(S)/TCP probes (:mod:`kpimon.config.probes`)."""
    slos: tuple[Slo, ...] = ()
    """``slos:`` of every rule file (their KPIs are in ``kpis`` too; docs/slo.md)."""
    services: tuple[Service, ...] = ()
    """``services:`` of every rule file: KPIs with importance weights (docs/slo.md)."""

    def wanted_metric_names(self) -> frozenset[str] | None:
        """The metric names any KPI reads; None when some KPI may read any name."""
        names: set[str] = set()
        for kpi in self.kpis:
            if kpi.expr.metric_names is None:
                return None
            names |= kpi.expr.metric_names
        return frozenset(names)

    def retention_s(self) -> float:
        """How much history the store must keep: the longest range any KPI reads, plus the
        lookback delta, plus the longest interval (so a range is full even just before a tick).
        """
        longest_range = max((kpi.expr.max_range_s for kpi in self.kpis), default=0.0)
        return longest_range + self.store_padding_s()

    def store_padding_s(self) -> float:
        """History a store keeps beyond the longest range read from it: the lookback delta and
        the longest interval."""
        intervals = [self.global_config.evaluation_interval_s, *self.scrape_intervals()]
        return LOOKBACK_S + max(intervals)

    def scrape_intervals(self) -> list[float]:
        """The interval of every scrape job and probe, and of the host collector when it is
        enabled."""
        intervals = [sc.scrape_interval_s for sc in self.scrape_configs]
        intervals.extend(p.interval_s for p in self.probes)
        if self.host.enabled:
            intervals.append(self.host.interval_s)
        return intervals
