"""The parsed rule unit-test file (promtool's format): frozen dataclasses only.

Times are whole milliseconds from the start of the test (``*_ms``), as promtool counts them;
label sets are :data:`kpimon.labels.Labels`. Parsing lives in :mod:`kpimon.ruletest.loader`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kpimon.config.daemon import RulePattern
from kpimon.config.models import DEFAULT_OUTAGE_TOLERANCE_S
from kpimon.errors import Position
from kpimon.labels import EMPTY, Labels
from kpimon.promql.compile import CompiledExpr
from kpimon.ruletest.series import Values

DEFAULT_EVALUATION_INTERVAL_MS = 60_000
"""promtool's default ``evaluation_interval`` (1m)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputSeries:
    """One ``input_series`` entry: a series and its expanded values (one per ``interval``)."""

    labels: Labels
    values: Values
    position: Position


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpSample:
    """One expected sample of a ``promql_expr_test``."""

    labels: Labels
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PromqlTest:
    """A ``promql_expr_test``: ``expr`` evaluated at ``eval_time_ms`` gives ``exp_samples``."""

    expr: CompiledExpr
    eval_time_ms: int
    exp_samples: tuple[ExpSample, ...]
    position: Position


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpAlert:
    """One expected firing alert: ``exp_labels`` (alertname added) and ``exp_annotations``."""

    labels: Labels
    annotations: Labels


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertTest:
    """An ``alert_rule_test``: the alerts of ``alertname`` firing at ``eval_time_ms``."""

    eval_time_ms: int
    alertname: str
    exp_alerts: tuple[ExpAlert, ...]
    position: Position


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpTransition:
    """One expected transition of a ``transition_test``.

    Attributes:
        labels: the series labels, compared exactly (``{}``: a KPI without labels).
        from_phase, to_phase: phase names (:data:`kpimon.kpi.machine.PHASES`).
        notify: compared with :attr:`Transition.notifies <kpimon.kpi.machine.Transition.notifies>`
            when given.
        reason: a substring of the transition's reason, when given.
    """

    time_ms: int
    kpi: str
    labels: Labels = EMPTY
    level: str
    from_phase: str
    to_phase: str
    notify: bool | None = None
    reason: str | None = None
    position: Position


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap:
    """kpimon not running in ``[from_ms, to_ms)``: no ticks, then a restart at ``to_ms``."""

    from_ms: int
    to_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransitionTest:
    """A ``transition_test``: every transition in ``[from_ms, to_ms]``, in order.

    Attributes:
        index: the entry's index in ``transition_test``.
        kpi: only this KPI's transitions are compared ("" = every KPI's).
        restart_at_ms: simulated restarts without downtime.
        gaps: outages, each ended by a restart (sorted, not overlapping).
        outage_tolerance_s: ``global.outage_tolerance`` for the restarts after a gap.
    """

    __test__ = False

    index: int
    name: str = ""
    from_ms: int = 0
    to_ms: int
    kpi: str = ""
    restart_at_ms: tuple[int, ...] = ()
    gaps: tuple[Gap, ...] = ()
    outage_tolerance_s: float = DEFAULT_OUTAGE_TOLERANCE_S
    exp_transitions: tuple[ExpTransition, ...] = ()
    position: Position

    @property
    def title(self) -> str:
        """How reports name the test: ``transition_test[1]``, plus its name when it has one."""
        return f"transition_test[{self.index}]" + (f" ({self.name})" if self.name else "")

    @property
    def restarts(self) -> bool:
        """Whether the test goes through the journal (a restart or a gap)."""
        return bool(self.restart_at_ms or self.gaps)


@dataclass(frozen=True, slots=True, kw_only=True)
class TestGroup:
    """One entry of ``tests``: input series and the checks made over them.

    Attributes:
        index: the entry's index in ``tests`` (how failures name an unnamed group).
        interval_ms: the step of ``input_series`` (default: the file's evaluation interval).
    """

    __test__ = False  # not a pytest test class, whatever its name

    index: int
    name: str = ""
    interval_ms: int
    input_series: tuple[InputSeries, ...] = ()
    alert_tests: tuple[AlertTest, ...] = ()
    promql_tests: tuple[PromqlTest, ...] = ()
    transition_tests: tuple[TransitionTest, ...] = ()
    external_labels: Labels = EMPTY
    external_url: str = ""
    position: Position

    @property
    def title(self) -> str:
        """How reports name the group: ``tests[2]``, plus its name when it has one."""
        return f"tests[{self.index}]" + (f" ({self.name})" if self.name else "")

    def max_eval_time_ms(self) -> int:
        """The latest ``eval_time`` of any check (promtool evaluates up to it)."""
        times = [a.eval_time_ms for a in self.alert_tests]
        times += [p.eval_time_ms for p in self.promql_tests]
        return max(times, default=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class TestFile:
    """A whole rule unit-test file.

    Attributes:
        path: the file as named on the command line.
        rule_files: the ``rule_files`` entries (kpimon rule files, globs relative to ``path``).
        group_eval_order: accepted for compatibility; kpimon KPIs are not grouped.
    """

    __test__ = False

    path: str
    rule_files: tuple[RulePattern, ...] = ()
    evaluation_interval_ms: int = DEFAULT_EVALUATION_INTERVAL_MS
    group_eval_order: tuple[str, ...] = ()
    tests: tuple[TestGroup, ...] = ()
