"""The engine: every evaluation tick, evaluate each KPI's expression and step its state machine.

The engine owns one :class:`~kpimon.kpi.machine.KpiState` per KPI and nothing else; it is the
board the web layer reads. It does no I/O and never awaits: the app calls :meth:`Engine.tick`
from its evaluation loop with the tick's Unix time, ``kpimon test``/replays call it with simulated
time. Transitions are logged once, when they happen (logger ``kpimon.engine``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from kpimon.config.models import Kpi
from kpimon.errors import EvaluationError
from kpimon.kpi.changes import TickChanges
from kpimon.kpi.machine import (
    F64,
    FIRING,
    PENDING,
    PHASES,
    FlapEvent,
    KpiState,
    LevelChanges,
    LevelRule,
    MachineRule,
    Transition,
)
from kpimon.labels import Labels, format_labels, without_name
from kpimon.promql.evaluate import Scalar, evaluate
from kpimon.store import Store
from kpimon.store.tiers import Tiers

if TYPE_CHECKING:
    from kpimon.journal import Journal

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
            schedule=lv.schedule,
        )
        for lv in kpi.levels
    )
    return MachineRule(
        levels=levels,
        max_gap_s=kpi.max_gap_s,
        no_data_after_s=kpi.no_data.after_s,
        no_data_resolve_after_s=kpi.no_data.resolve_after_s,
        prometheus=kpi.semantics == "prometheus",
        flapping_high=kpi.flapping.high,
        flapping_low=kpi.flapping.low,
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
    fingerprint: str = ""
    """:func:`fingerprint` of the KPI: its journaled state is restored only into the same."""


def _definition(kpi: Kpi) -> object:
    """What makes two KPI definitions the same for the purpose of keeping state on reload."""
    # The parsed expression, not its text: re-indenting a rule file keeps the state.
    return (kpi.name, str(kpi.expr.ast), machine_rule(kpi))


def fingerprint(kpi: Kpi) -> str:
    """A stable digest of :func:`_definition`, saved with the KPI's state in the journal.

    Fields left at their default are omitted, so a kpimon that adds a field to the machine's
    rule (with a default that keeps today's behaviour) still restores yesterday's state.
    """
    return hashlib.sha256(repr(_canonical(_definition(kpi))).encode()).hexdigest()[:32]


def _canonical(obj: object) -> object:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return (
            type(obj).__name__,
            tuple(
                (f.name, _canonical(getattr(obj, f.name)))
                for f in dataclasses.fields(obj)
                if f.default is dataclasses.MISSING or getattr(obj, f.name) != f.default
            ),
        )
    if isinstance(obj, tuple | list):
        return tuple(_canonical(x) for x in obj)
    return obj


class Notifier(Protocol):
    """What the engine asks to plan a tick's notifications, before the journal commit."""

    def plan(
        self,
        t: float,
        transitions: Sequence[tuple[str, Transition]],
        flap_events: Sequence[tuple[str, FlapEvent]],
        kpis: Mapping[str, KpiRuntime],
    ) -> object | None: ...

    def committed(self, items: Sequence[object]) -> None:
        """Without a journal: the plans are final."""


class Engine:
    """Evaluates every KPI each tick and keeps their state."""

    def __init__(
        self,
        kpis: Sequence[Kpi],
        store: Store,
        journal: Journal | None = None,
        *,
        interval_s: float = 60.0,
        tiers: Tiers | None = None,
    ) -> None:
        self.store = store
        self.tiers = tiers
        """With long ranges, which store each KPI reads (:mod:`kpimon.store.tiers`; its main
        store is ``store``); None: every KPI reads ``store``."""
        self.interval_s = interval_s
        """The evaluation interval: the step of subqueries written without one (``x[1h:]``)."""
        self.journal = journal
        """Where each tick is committed before :meth:`tick` returns its transitions (None:
        nothing is saved, as in unit tests)."""
        self.kpis: dict[str, KpiRuntime] = {}
        self.last_eval_wall: float | None = None
        self.last_eval_duration_s = 0.0
        self.ticks = 0
        self.flap_events: list[tuple[str, FlapEvent]] = []
        """Series that started or stopped flapping at the last tick (for notifiers)."""
        self.notifier: Notifier | None = None
        """Plans each tick's notifications (:class:`kpimon.notify.dispatch.Notifications`);
        None: nothing is notified."""
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
                new[kpi.name] = KpiRuntime(
                    kpi=kpi, rule=rule, state=KpiState(rule), fingerprint=fingerprint(kpi)
                )
        for name in old.keys() - new.keys():
            log.info("KPI removed kpi=%s", name)
        self.kpis = new

    def tick(self, t: float) -> TickChanges:
        """Evaluate every KPI at Unix time ``t``; returns the transitions of this tick (as
        columns: :meth:`TickChanges.notifying` gives those that reach people)."""
        started = time.perf_counter()
        out = TickChanges()
        self.flap_events = []
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
                changes = rt.state.advance(t, labels, values)
            except Exception as exc:  # a bug must not stop the other KPIs, nor the daemon
                self._failed(rt, f"internal error: {type(exc).__name__}: {exc}", exc)
                continue
            for batch in changes:
                log_changes(name, batch)
                out.add(name, batch)
            for ev in rt.state.flap_events:
                log.info(
                    "KPI series %s flapping kpi=%s series=%s percent=%.1f",
                    "started" if ev.flapping else "stopped",
                    name,
                    format_labels(ev.labels),
                    ev.percent,
                )
                self.flap_events.append((name, ev))
        self.last_eval_duration_s = time.perf_counter() - started
        self.last_eval_wall = t
        self.ticks += 1
        plan = None
        if self.notifier is not None:
            # Planned now, journaled in the same commit as the transitions that cause it. A
            # planner bug must not cost the transitions their commit (nor the daemon its tick).
            try:
                plan = self.notifier.plan(t, out.notifying(), self.flap_events, self.kpis)
            except Exception:
                log.exception("planning the notifications of this tick failed")
        if self.journal is not None:
            # Commit before anything acts on the transitions; hand on only what is durable
            # (after a failed write, this tick's wait for the next one: nothing is lost).
            out = self.journal.commit(t, self._journal_entries(), out, plan)
        elif plan is not None and self.notifier is not None:
            self.notifier.committed([plan])
        return out

    def _journal_entries(self) -> list[tuple[str, str, KpiState]]:
        return [(name, rt.fingerprint, rt.state) for name, rt in self.kpis.items()]

    def restore(self, t: float, *, outage_tolerance_s: float, grace_s: float) -> TickChanges:
        """Load every KPI's journaled state and carry it across the outage up to ``t``.

        For start-up (and replays resuming from a journal): call once, before the first
        :meth:`tick`, with the current time. KPIs whose definition changed since they were
        journaled start afresh. Returns the transitions the restart itself caused (pending
        levels restarted after an outage longer than ``outage_tolerance_s``), committed.

        Raises:
            JournalError: the journaled state is unreadable.
        """
        journal = self.journal
        if journal is None or journal.heartbeat is None:
            return TickChanges()
        out: list[tuple[str, Transition]] = []
        restored = 0
        for name, rt in self.kpis.items():
            if len(rt.state):
                continue  # already running
            loaded = journal.load(name, rt.fingerprint, rt.state)
            if loaded is None:
                continue
            restored += 1
            last_t = rt.state.last_t
            for tr in rt.state.resume(t, outage_tolerance_s=outage_tolerance_s, grace_s=grace_s):
                _log_transition(name, tr)
                out.append((name, tr))
            log.debug(
                "KPI state restored kpi=%s series=%d outage_s=%.3f",
                name,
                loaded,
                0.0 if last_t is None else max(0.0, t - last_t),
            )
        log.info(
            "state restored from the journal kpis=%d outage_s=%.3f outage_tolerance_s=%g "
            "pending_restarted=%d",
            restored,
            max(0.0, t - journal.heartbeat),
            outage_tolerance_s,
            len(out),  # beyond the tolerance; each is also logged (at debug) and journaled
        )
        return journal.commit(t, self._journal_entries(), out)

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
        store = self.store if self.tiers is None else self.tiers.for_expr(rt.kpi.expr)
        result = evaluate(rt.kpi.expr, store, t, interval_s=self.interval_s)
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


def log_changes(kpi: str, changes: LevelChanges) -> None:
    """Log a batch of transitions as :func:`_log_transition` does, building the transition
    objects only for those logged (entering and leaving pending is logged at DEBUG)."""
    if log.isEnabledFor(logging.DEBUG):
        mask = None
    else:
        fires = changes.notifying_mask() & (changes.to_phase == FIRING)  # WARNING
        if log.isEnabledFor(logging.INFO):
            mask = fires | ((changes.from_phase != PENDING) & (changes.to_phase != PENDING))
        elif log.isEnabledFor(logging.WARNING):
            mask = fires
        else:
            return
    for tr in changes.select(mask):
        _log_transition(kpi, tr)


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
