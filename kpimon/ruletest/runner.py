"""Run rule unit tests: the daemon's store and engine driven by a simulated clock.

For each test group, as promtool 2.42 does (``cmd/promtool/unittest.go``): time starts at 0 and
ticks every ``evaluation_interval`` up to the group's latest ``eval_time``. At each tick the input
samples up to that time are written to a :class:`~kpimon.store.Store` (one target per input
series, so ``_`` is "no sample" and ``stale`` a staleness marker) and
:meth:`Engine.tick <kpimon.kpi.engine.Engine.tick>` evaluates every KPI, exactly as the daemon's
evaluation loop does, so ``for`` timers, ``max_gap`` and ``no_data`` behave as in production.

- ``alert_rule_test`` at ``eval_time`` is checked against the tick ``ts`` with
  ``ts <= eval_time < ts + evaluation_interval``. An alert is a KPI level that is firing or
  clearing (still open); pending levels are not alerts. Its labels are the series labels, then
  the KPI's ``labels``, ``severity: <level>`` and ``alertname: <KPI name>`` (ARCHITECTURE §6,
  :func:`kpimon.kpi.alerts.alert_labels`: the identity alerts have everywhere in kpimon); its
  annotations are the KPI's, with trivial Prometheus templates expanded
  (:func:`~kpimon.ruletest.render.expand_template`). Expected and got alerts are compared as
  sorted lists of (labels, annotations).
- ``promql_expr_test`` expressions are evaluated after the last tick, over the samples written up
  to it (promtool loads no sample after its last evaluation), sorted by labels and compared
  exactly: promtool 2.42 compares with ``reflect.DeepEqual``, so values must be equal as floats
  and an expected ``NaN`` never matches.
- After each tick, every open level (pending, firing or clearing) is written to the store as
  ``ALERTS{alertname, alertstate, ...} 1`` and ``ALERTS_FOR_STATE{...} <active since>``, as a
  Prometheus rule group writes them, so expressions (and KPIs) can read them.
- A KPI whose evaluation fails stops its group, reported like promtool's ``rule: ..., err: ...``.
- Each ``transition_test`` is a run of its own, from 0 to its ``to``, collecting every
  transition :meth:`Engine.tick <kpimon.kpi.engine.Engine.tick>` (and
  :meth:`~kpimon.kpi.engine.Engine.restore`) returns, compared by :mod:`.transcheck`. With
  ``restart_at`` or ``gap`` every tick is committed to a real journal in a temporary directory,
  and each restart is the one ``kpimon replay --restart-at`` simulates
  (:class:`kpimon.replay.restart.Persistence`): the journal closed and reopened, a new engine
  restored from it over a new, empty store; samples before the restart are lost with the old
  store. During a gap there are no ticks; the restart at its end restores across the outage
  (from the last tick to the restart, ``outage_tolerance`` applying), as the daemon does.

Pure but for the temporary journal of a ``transition_test`` with restarts; no asyncio; results
are frozen dataclasses holding promtool-like failure texts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kpimon.config.durations import format_duration
from kpimon.config.models import Kpi
from kpimon.errors import EvaluationError, JournalError
from kpimon.kpi.alerts import render_annotation
from kpimon.kpi.engine import Engine, KpiRuntime
from kpimon.kpi.machine import CLEARING, FIRING, INACTIVE, PENDING, Transition
from kpimon.labels import Labels, alert_labels, format_key, format_labels, without_name
from kpimon.promql import LOOKBACK_S, Scalar, evaluate
from kpimon.replay.restart import Persistence
from kpimon.ruletest.model import AlertTest, PromqlTest, TestFile, TestGroup, TransitionTest
from kpimon.ruletest.render import expand_template, go_float_e
from kpimon.ruletest.transcheck import check_transitions
from kpimon.store import Scrape, Store

_Alert = tuple[Labels, Labels]  # labels, annotations
_ALERTS_TARGET = "kpimon-test:alerts"
_ALERTS_NAMES = frozenset({"ALERTS", "ALERTS_FOR_STATE"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """One failed check (or a failed evaluation) of one test group, as promtool words it."""

    group: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FileResult:
    """The outcome of one test file.

    Attributes:
        groups: how many test groups ran.
        failures: every failure, in group order.
        notes: things worth knowing that are not failures (e.g. annotations compared as
            written because their templates are not trivial).
    """

    path: str
    groups: int
    failures: tuple[Failure, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures


def run_test_file(test_file: TestFile, kpis: Sequence[Kpi]) -> FileResult:
    """Run every test group of ``test_file`` against ``kpis`` (its rule files' KPIs)."""
    failures: list[Failure] = []
    notes: dict[str, None] = {}
    if test_file.group_eval_order:
        notes["group_eval_order is ignored: KPIs are not grouped, and no KPI reads another's "
              "result, so the order of evaluation cannot matter"] = None  # fmt: skip
    for group in test_file.tests:
        texts: list[str] = []
        if group.alert_tests or group.promql_tests or not group.transition_tests:
            texts = _GroupRun(group, kpis, test_file.evaluation_interval_ms, notes).run()
        known = {k.name for k in kpis}
        for test in group.transition_tests:
            for name in sorted({test.kpi, *(e.kpi for e in test.exp_transitions)} - {""}):
                if name not in known:  # a typo would only ever expect "no transition"
                    notes[f"kpi {name} in {test.title} is not the name of any KPI"] = None
            texts.extend(_transition_test(group, test, kpis, test_file.evaluation_interval_ms))
        failures.extend(Failure(group=group.title, text=t) for t in texts)
    return FileResult(
        path=test_file.path,
        groups=len(test_file.tests),
        failures=tuple(failures),
        notes=tuple(notes),
    )


def _transition_test(
    group: TestGroup, test: TransitionTest, kpis: Sequence[Kpi], evaluation_interval_ms: int
) -> list[str]:
    """Run one ``transition_test`` from time 0 on (through a temporary journal when it has
    restarts or gaps); returns its failure texts."""
    run = _GroupRun(group, kpis, evaluation_interval_ms, {}, until_ms=test.to_ms)
    if test.restarts:
        try:
            with Persistence.temporary(
                "kpimon-test-", outage_tolerance_s=test.outage_tolerance_s
            ) as persistence:
                got, errors = run.transitions(test, persistence)
        except (JournalError, OSError) as exc:  # e.g. no writable temporary directory
            return [f"    {test.title}: the journal failed: {exc}"]
    else:
        got, errors = run.transitions(test, None)
    if errors:
        return [f"    {test.title}:", *errors]
    failure = check_transitions(test, got)
    return [] if failure is None else [failure]


class _GroupRun:
    """The simulation of one test group (mutable while it runs)."""

    def __init__(
        self,
        group: TestGroup,
        kpis: Sequence[Kpi],
        evaluation_interval_ms: int,
        notes: dict[str, None],
        *,
        until_ms: int | None = None,
    ) -> None:
        """``until_ms``: the last tick (None: the group's latest ``eval_time``)."""
        self.group = group
        self.kpis = kpis
        self.eval_ms = evaluation_interval_ms
        self.notes = notes
        # Two input series with one label set: the later one wins, as in promtool.
        series: dict[Labels, tuple[float | None, ...]] = {}
        for s in group.input_series:
            series.pop(s.labels, None)
            series[s.labels] = s.values
        # One target per input series, so that "_" is no sample rather than a staleness marker;
        # each series' samples in one array (NaN where there is none, told apart by ``has``).
        self.series = [
            (
                f"series-{i}",
                [_key(labels)],
                np.array([np.nan if v is None else v for v in values], dtype=np.float64),
                [v is not None for v in values],
            )
            for i, (labels, values) in enumerate(series.items())
        ]
        self.steps = max((len(v) for _, _, v, _ in self.series), default=0)
        self.next_step = 0
        last_ms = group.max_eval_time_ms() if until_ms is None else until_ms
        self.last_tick_ms = last_ms // self.eval_ms * self.eval_ms
        exprs = [k.expr for k in kpis] + [p.expr for p in group.promql_tests]
        self.longest_s = max((e.max_range_s for e in exprs), default=0.0)
        # ALERTS are only written when some expression may read them.
        self.write_alerts = any(
            e.metric_names is None or not e.metric_names.isdisjoint(_ALERTS_NAMES) for e in exprs
        )
        self.store = self._new_store()
        self.engine = Engine(kpis, self.store, interval_s=self.eval_ms / 1000)
        self.alerts_written = False
        self.alert_keys: dict[tuple[str, int, Labels, bool], tuple[bytes, bytes]] = {}
        self.last_alert_keys: list[bytes] = []

    def _new_store(self) -> Store:
        interval_s = self.group.interval_ms / 1000
        # Everything fed stays in the store (no garbage collection, no ring overwrite), so that
        # expressions evaluated after the last tick see what promtool's storage holds.
        retention_s = self.last_tick_ms / 1000 + self.longest_s + LOOKBACK_S + 2 * interval_s
        if self.write_alerts:  # written every tick: the ring must hold a row per tick as well
            interval_s = min(interval_s, self.eval_ms / 1000)
        return Store(retention_s=retention_s, min_interval_s=interval_s)

    def run(self) -> list[str]:
        failures: list[str] = []
        alert_times = sorted({a.eval_time_ms for a in self.group.alert_tests})
        curr = 0
        for ts in range(0, self.last_tick_ms + 1, self.eval_ms):
            self._tick(ts)
            errors = self._errors(ts)
            if errors:
                return failures + errors
            while curr < len(alert_times) and ts <= alert_times[curr] < ts + self.eval_ms:
                for test in self.group.alert_tests:
                    if test.eval_time_ms == alert_times[curr]:
                        failures.extend(self._check_alerts(test))
                curr += 1
        for promql_test in self.group.promql_tests:
            failures.extend(self._check_promql(promql_test))
        return failures

    def _tick(self, ts: int) -> list[tuple[str, Transition]]:
        """One evaluation tick at ``ts``, as the daemon's evaluation loop makes it."""
        self._feed(ts)
        transitions = list(self.engine.tick(ts / 1000))
        self._write_alerts(ts)
        return transitions

    def _errors(self, ts: int) -> list[str]:
        """The KPIs whose evaluation failed at tick ``ts``, promtool-style."""
        return [
            f"    rule: {name}, time: {format_duration(ts / 1000)}, err: {rt.last_error}"
            for name, rt in self.engine.kpis.items()
            if rt.last_error is not None
        ]

    # -- transition tests -------------------------------------------------------------------

    def transitions(
        self, test: TransitionTest, persistence: Persistence | None
    ) -> tuple[list[tuple[str, Transition]], list[str]]:
        """Run from 0 to ``test.to_ms`` with its restarts and gaps; returns the transitions in
        the test's range (of its KPI) in order, and the evaluation errors that stopped the run.

        ``persistence``: the journal every tick is committed to (required with restarts).
        """
        made: list[tuple[str, Transition]] = []
        eval_s = self.eval_ms / 1000
        if persistence is not None:
            self.engine = persistence.engine(self.kpis, self.store)
            self.engine.interval_s = eval_s
        restarts: dict[int, bool] = dict.fromkeys(test.restart_at_ms, False)
        for gap in test.gaps:
            restarts[gap.to_ms] = True  # after an outage
        pending = sorted(restarts.items())
        for ts in range(0, self.last_tick_ms + 1, self.eval_ms):
            while pending and pending[0][0] <= ts:
                at, outage = pending.pop(0)
                assert persistence is not None
                made.extend(self._restart(persistence, at, outage=outage))
            if any(g.from_ms <= ts < g.to_ms for g in test.gaps):
                continue  # kpimon is not running
            made.extend(self._tick(ts))
            errors = self._errors(ts)
            if errors:
                return [], errors
        for at, outage in pending:  # a restart after the last tick, up to the test's end
            assert persistence is not None
            made.extend(self._restart(persistence, at, outage=outage))
        kept = [
            (name, tr)
            for name, tr in made
            if test.from_ms <= round(tr.t * 1000) <= test.to_ms and test.kpi in ("", name)
        ]
        return kept, []

    def _restart(
        self, persistence: Persistence, at_ms: int, *, outage: bool
    ) -> list[tuple[str, Transition]]:
        """A new kpimon process at ``at_ms``, as :mod:`kpimon.replay.restart` makes one for
        ``kpimon replay --restart-at``: the journal reopened, a new engine restored from it over
        a new, empty store; samples before ``at_ms`` were scraped by the old process (or by
        nobody, during an outage) and are lost with its store."""
        step_ms = self.group.interval_ms
        self.next_step = max(self.next_step, -(-at_ms // step_ms))
        self.store = self._new_store()
        self.alerts_written = False
        self.last_alert_keys = []
        # The first scrape interval after the start is "not yet scraped", not missing data.
        interval_s = max(step_ms, self.eval_ms) / 1000
        self.engine, restored = persistence.restart(
            self.kpis, self.store, at_ms / 1000, interval_s, outage=outage
        )
        self.engine.interval_s = self.eval_ms / 1000
        return restored

    def _feed(self, until_ms: int) -> None:
        """Write every input sample up to ``until_ms`` (inclusive), step by step."""
        batch: list[Scrape] = []
        step_ms = self.group.interval_ms
        while self.next_step < self.steps and self.next_step * step_ms <= until_ms:
            k = self.next_step
            t = k * step_ms / 1000
            for target, keys, values, has in self.series:
                if k < len(has) and has[k]:
                    batch.append((target, (), keys, values[k : k + 1], t))
            self.next_step += 1
        if batch:
            self.store.ingest_many(batch)

    def _write_alerts(self, ts: int) -> None:
        """Store ``ALERTS`` and ``ALERTS_FOR_STATE`` for every open level, as a Prometheus rule
        group writes them (a level that closed gets a staleness marker, as there)."""
        if not self.write_alerts:
            return
        keys: list[bytes] = []
        values: list[float] = []
        for name, rt in self.engine.kpis.items():
            state = rt.state
            for li, level in enumerate(rt.rule.levels):
                phase = state.phase[li]
                for row in np.flatnonzero(phase != INACTIVE).tolist():
                    pending = int(phase[row]) == PENDING
                    series = state.labels[row]
                    cached = self.alert_keys.get((name, li, series, pending))
                    if cached is None:
                        labels = alert_labels(name, rt.kpi.labels, level.name, series)
                        with_state = (*(p for p in labels if p[0] != "alertstate"),)
                        with_state += (("alertstate", "pending" if pending else "firing"),)
                        cached = (
                            format_key("ALERTS", with_state),
                            format_key("ALERTS_FOR_STATE", labels),
                        )
                        self.alert_keys[(name, li, series, pending)] = cached
                    keys.extend(cached)
                    values.extend((1.0, float(state.active_at[li, row])))
        if keys or self.alerts_written:
            if keys == self.last_alert_keys:
                keys = self.last_alert_keys  # the store recognises an unchanged list at once
            self.last_alert_keys = keys
            self.store.ingest(
                _ALERTS_TARGET, (), keys, np.array(values, dtype=np.float64), ts / 1000
            )
            self.alerts_written = True

    # -- alerts -----------------------------------------------------------------------------

    def _check_alerts(self, test: AlertTest) -> list[str]:
        rt = self.engine.kpis.get(test.alertname)
        if rt is None:  # promtool says nothing; a typo would quietly expect "nothing firing"
            self.notes[f"alertname {test.alertname} is not the name of any KPI"] = None
        got = sorted(self._alerts(rt)) if rt is not None else []
        exp = sorted((a.labels, a.annotations) for a in test.exp_alerts)
        if got == exp:
            return []
        return [
            f"    alertname: {test.alertname}, time: {format_duration(test.eval_time_ms / 1000)}, "
            f"\n        exp:{_indent(_alerts_text(exp), ' ' * 12)}, "
            f"\n        got:{_indent(_alerts_text(got), ' ' * 12)}"
        ]

    def _alerts(self, rt: KpiRuntime) -> list[_Alert]:
        """The open (firing or clearing) levels of a KPI as alerts."""
        kpi, state = rt.kpi, rt.state
        external = dict(self.group.external_labels)
        out: list[_Alert] = []
        for li, level in enumerate(rt.rule.levels):
            phase = state.phase[li]
            for row in np.flatnonzero((phase == FIRING) | (phase == CLEARING)).tolist():
                labels = alert_labels(kpi.name, kpi.labels, level.name, state.labels[row])
                series = dict(state.labels[row])
                annotations: list[tuple[str, str]] = []
                for key, text in kpi.annotations:
                    expanded = expand_template(
                        text,
                        labels=series,
                        value=float(state.value[row]),
                        external_labels=external,
                        external_url=self.group.external_url,
                    )
                    if expanded is None:  # kpimon's own (Jinja2) template
                        expanded = render_annotation(
                            rt,
                            li,
                            row,
                            labels,
                            text,
                            external_labels=self.group.external_labels,
                            external_url=self.group.external_url,
                        )
                    annotations.append((key, expanded))
                out.append((labels, tuple(sorted(annotations))))
        return out

    # -- PromQL -----------------------------------------------------------------------------

    def _check_promql(self, test: PromqlTest) -> list[str]:
        where = (
            f"    expr: {_go_quote(test.expr.text)}, "
            f"time: {format_duration(test.eval_time_ms / 1000)}"
        )
        try:
            result = evaluate(
                test.expr, self.store, test.eval_time_ms / 1000, interval_s=self.eval_ms / 1000
            )
        except EvaluationError as exc:
            return [f"{where}, err: {exc}"]
        got: list[tuple[Labels, float]]
        if isinstance(result, Scalar):
            got = [((), result.value)]
        else:
            got = list(zip(result.labels, result.values.tolist(), strict=True))
        exp = [(s.labels, s.value) for s in test.exp_samples]
        got.sort(key=lambda s: s[0])
        exp.sort(key=lambda s: s[0])
        # reflect.DeepEqual: labels equal, values equal as floats (so NaN never matches).
        same = len(got) == len(exp) and all(
            g[0] == e[0] and g[1] == e[1] for g, e in zip(got, exp, strict=True)
        )
        if same:
            return []
        return [f"{where},\n        exp: {_samples_text(exp)}\n        got: {_samples_text(got)}"]


def _key(labels: Labels) -> bytes:
    name = dict(labels).get("__name__", "")
    return format_key(name, without_name(labels))


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _samples_text(samples: list[tuple[Labels, float]]) -> str:
    if not samples:
        return "nil"
    return ", ".join(f"{format_labels(lab)} {go_float_e(v)}" for lab, v in samples)


def _alerts_text(alerts: list[_Alert]) -> str:
    if not alerts:
        return "[]"
    parts = [
        f"{i}:" + _indent(f"\nLabels:{format_labels(lab)}\nAnnotations:{format_labels(ann)}", "  ")
        for i, (lab, ann) in enumerate(alerts)
    ]
    return "[\n" + ",\n".join(parts) + "\n]"


def _indent(text: str, indent: str) -> str:
    """promtool's indentLines: every line but the first gets ``indent``."""
    return ("\n" + indent).join(text.split("\n"))
