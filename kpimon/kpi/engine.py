"""The engine: every evaluation tick, evaluate each KPI's expression and step its state machine.

The engine owns one :class:`~kpimon.kpi.machine.KpiState` per KPI and nothing else; it is the
board the web layer reads. It does no I/O and never awaits: the app calls :meth:`Engine.tick`
from its evaluation loop with the tick's Unix time, ``kpimon test``/replays call it with simulated
time. Transitions are logged once, when they happen (logger ``kpimon.engine``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kpimon.config.models import Kpi
from kpimon.errors import EvaluationError
from kpimon.kpi.machine import (
    F64,
    FIRING,
    PENDING,
    PHASES,
    KpiState,
    LevelRule,
    MachineRule,
    Transition,
)
from kpimon.labels import Labels, format_labels, without_name
from kpimon.promql.evaluate import Scalar, evaluate
from kpimon.store import Store

log = logging.getLogger("kpimon.engine")


def machine_rule(kpi: Kpi) -> MachineRule:
    """The state machine's view of a KPI's configuration."""
    levels = tuple(
        LevelRule(
            name=lv.name,
            above=lv.direction == "above",
            threshold=lv.threshold,
            clear=lv.clear,
            for_s=lv.for_s,
            clear_for_s=lv.clear_for_s,
        )
        for lv in kpi.levels
    )
    return MachineRule(
        levels=levels,
        max_gap_s=kpi.max_gap_s,
        no_data_after_s=kpi.no_data.after_s,
        no_data_resolve_after_s=kpi.no_data.resolve_after_s,
        prometheus=kpi.semantics == "prometheus",
    )


@dataclass(slots=True)
class KpiRuntime:
    """A KPI with its live state (mutable, owned by the engine)."""

    kpi: Kpi
    rule: MachineRule
    state: KpiState
    last_error: str | None = None
    failures_total: int = 0
    in_labels: Sequence[Labels] | None = None
    out_labels: Sequence[Labels] = field(default_factory=list)


def _definition(kpi: Kpi) -> object:
    """What makes two KPI definitions the same for the purpose of keeping state on reload."""
    # The parsed expression, not its text: re-indenting a rule file keeps the state.
    return (kpi.name, str(kpi.expr.ast), machine_rule(kpi))


class Engine:
    """Evaluates every KPI each tick and keeps their state."""

    def __init__(self, kpis: Sequence[Kpi], store: Store) -> None:
        self.store = store
        self.kpis: dict[str, KpiRuntime] = {}
        self.last_eval_wall: float | None = None
        self.last_eval_duration_s = 0.0
        self.ticks = 0
        self.reload(kpis)

    def reload(self, kpis: Sequence[Kpi]) -> None:
        """Swap in a new set of KPIs, keeping the state of those whose definition is unchanged."""
        old = self.kpis
        new: dict[str, KpiRuntime] = {}
        for kpi in kpis:
            prev = old.get(kpi.name)
            if prev is not None and _definition(prev.kpi) == _definition(kpi):
                prev.kpi = kpi  # owner, help, annotations may change without touching state
                new[kpi.name] = prev
            else:
                rule = machine_rule(kpi)
                new[kpi.name] = KpiRuntime(kpi=kpi, rule=rule, state=KpiState(rule))
        for name in old.keys() - new.keys():
            log.info("KPI removed kpi=%s", name)
        self.kpis = new

    def tick(self, t: float) -> list[tuple[str, Transition]]:
        """Evaluate every KPI at Unix time ``t``; returns the transitions of this tick."""
        started = time.perf_counter()
        out: list[tuple[str, Transition]] = []
        for name, rt in self.kpis.items():
            # A KPI whose expression fails has no data this tick: max_gap and no_data apply,
            # so its series neither freeze at their last value nor resolve silently.
            try:
                labels, values = self._vector(rt, t)
            except EvaluationError as exc:
                self._failed(rt, str(exc))
                labels, values = _NO_LABELS, _NO_VALUES
            except Exception as exc:
                self._failed(rt, f"internal error: {type(exc).__name__}: {exc}", exc)
                labels, values = _NO_LABELS, _NO_VALUES
            else:
                if rt.last_error is not None:
                    log.info("KPI evaluation recovered kpi=%s", name)
                    rt.last_error = None
            try:
                transitions = rt.state.step(t, labels, values)
            except Exception as exc:  # a bug must not stop the other KPIs, nor the daemon
                self._failed(rt, f"internal error: {type(exc).__name__}: {exc}", exc)
                continue
            for tr in transitions:
                _log_transition(name, tr)
                out.append((name, tr))
        self.last_eval_duration_s = time.perf_counter() - started
        self.last_eval_wall = t
        self.ticks += 1
        return out

    @staticmethod
    def _failed(rt: KpiRuntime, error: str, exc: BaseException | None = None) -> None:
        """Count a failed evaluation; log it once per failure episode, not every tick."""
        rt.failures_total += 1
        if rt.last_error is None:
            if exc is not None:
                log.error(
                    "KPI evaluation failed unexpectedly kpi=%s err=%s",
                    rt.kpi.name,
                    error,
                    exc_info=exc,
                )
            else:
                log.error("KPI evaluation failed kpi=%s err=%s", rt.kpi.name, error)
        rt.last_error = error

    def _vector(self, rt: KpiRuntime, t: float) -> tuple[Sequence[Labels], F64]:
        """The KPI's series at ``t``: label sets without ``__name__``, and values."""
        result = evaluate(rt.kpi.expr, self.store, t)
        if isinstance(result, Scalar):
            return _SCALAR_LABELS, np.array([result.value], dtype=np.float64)
        if result.labels is not rt.in_labels:
            stripped = [without_name(lab) for lab in result.labels]
            if len(set(stripped)) != len(stripped):
                raise EvaluationError(
                    "vector contains series with the same label set after dropping the metric name"
                )
            rt.in_labels, rt.out_labels = result.labels, stripped
        return rt.out_labels, result.values


_SCALAR_LABELS: list[Labels] = [()]
_NO_LABELS: list[Labels] = []
_NO_VALUES: F64 = np.empty(0, dtype=np.float64)


def _log_level(tr: Transition) -> int:
    """WARNING when a level fires, INFO for the rest of a breach (clearing, resolved), DEBUG
    for entering and leaving pending: a value hovering at a threshold would flood the log."""
    if tr.to_phase == FIRING and tr.notifies:
        return logging.WARNING
    if PENDING in (tr.from_phase, tr.to_phase):
        return logging.DEBUG
    return logging.INFO


def _log_transition(kpi: str, tr: Transition) -> None:
    level = _log_level(tr)
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "KPI transition kpi=%s series=%s level=%s from=%s to=%s value=%s reason=%r",
        kpi,
        format_labels(tr.labels),
        tr.level,
        PHASES[tr.from_phase],
        PHASES[tr.to_phase],
        f"{tr.value:g}",
        tr.reason,
    )
