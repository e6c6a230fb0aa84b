"""The engine: evaluation failures are counted and logged once, never fatal to other KPIs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kpimon.config.loader import build_config
from kpimon.kpi.engine import Engine
from kpimon.kpi.summary import series_reports
from kpimon.labels import format_key
from kpimon.store import Store


class FaultyStore(Store):
    """A real store with one fault injected: reading metric "boom" raises, as a bug would."""

    def name_generation(self, name: str) -> int:
        if name == "boom":
            raise RuntimeError("injected fault")
        return super().name_generation(name)


def engine(tmp_path, rules: str) -> Engine:  # type: ignore[no-untyped-def]
    """An engine over a real store with the KPIs of ``rules``."""
    (tmp_path / "rules.yaml").write_text(rules)
    cfg = build_config("rule_files: [rules.yaml]\n", str(tmp_path / "kpimon.yml"))
    return Engine(cfg.kpis, Store(retention_s=cfg.retention_s(), min_interval_s=15))


def feed(e: Engine, t: float, **series: float) -> None:
    keys = [format_key("x", {"s": k}) for k in series]
    e.store.ingest("t", (("instance", "i"), ("job", "j")), keys, np.array(list(series.values())), t)


def test_an_unexpected_error_in_one_kpi_spares_the_others(tmp_path, caplog):  # type: ignore[no-untyped-def]
    (tmp_path / "rules.yaml").write_text(
        """
kpis:
  - name: broken
    owner: team
    expr: boom
    levels: {warning: {above: 1}}
  - name: good
    owner: team
    expr: x
    levels: {warning: {above: 1}}
"""
    )
    cfg = build_config("rule_files: [rules.yaml]\n", str(tmp_path / "kpimon.yml"))
    e = Engine(cfg.kpis, FaultyStore(retention_s=cfg.retention_s(), min_interval_s=15))
    for t in (0.0, 15.0):
        feed(e, t, a=2.0)
        transitions = e.tick(t)
    assert e.kpis["broken"].failures_total == 2
    assert e.kpis["broken"].last_error == "internal error: RuntimeError: injected fault"
    assert e.kpis["good"].state.status.tolist() == [1]
    assert [name for name, _ in transitions] == []  # good fired at t=0 already
    assert caplog.text.count("KPI evaluation failed unexpectedly kpi=broken") == 1
    assert "Traceback" in caplog.text


def test_a_failing_kpi_is_counted_and_logged_once(tmp_path, caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    # A KPI whose vector holds the same label set twice once the metric name is dropped is an
    # evaluation error for that KPI alone.
    rules = """
kpis:
  - name: good
    owner: team
    expr: x
    levels: {warning: {above: 1}}
  - name: twice
    owner: team
    expr: '{__name__=~"x|y"}'
    levels: {warning: {above: 1}}
"""
    e = engine(tmp_path, rules)
    caplog.set_level(logging.INFO, logger="kpimon.engine")
    for t in (0.0, 15.0, 30.0):
        keys = [format_key("x", {"s": "a"}), format_key("y", {"s": "a"})]
        e.store.ingest("t", (("instance", "i"), ("job", "j")), keys, np.array([2.0, 3.0]), t)
        e.tick(t)
    twice, good = e.kpis["twice"], e.kpis["good"]
    assert twice.failures_total == 3
    assert "same label set" in (twice.last_error or "")
    assert good.failures_total == 0
    assert len(good.state) == 1
    assert caplog.text.count("KPI evaluation failed kpi=twice") == 1
    # recovery is logged once too
    e.store.ingest(
        "t", (("instance", "i"), ("job", "j")), [format_key("x", {"s": "a"})], np.array([2.0]), 45.0
    )
    e.tick(45.0)
    assert twice.last_error is None
    assert caplog.text.count("KPI evaluation recovered kpi=twice") == 1


def test_a_failing_kpi_turns_into_no_data_and_says_why(tmp_path):  # type: ignore[no-untyped-def]
    rules = """
kpis:
  - name: ratio
    owner: team
    expr: x / on (s) y
    levels: {warning: {above: 1}}
    no_data: {after: 1m, resolve_after: 2m}
"""
    e = engine(tmp_path, rules)
    labels = (("instance", "i"), ("job", "j"))
    keys = [format_key("x", {"s": "a"}), format_key("y", {"s": "a"})]
    e.store.ingest("t", labels, keys, np.array([5.0, 1.0]), 0.0)
    e.tick(0.0)
    rt = e.kpis["ratio"]
    assert rt.state.status.tolist() == [1]
    # A second y series with the same `s` makes the match many-to-one: an evaluation error.
    keys = [*keys, format_key("y", {"s": "a", "extra": "1"})]
    resolved = []
    for t in range(15, 181, 15):
        e.store.ingest("t", labels, keys, np.array([5.0, 1.0, 1.0]), float(t))
        resolved += [(t, tr.reason) for _, tr in e.tick(float(t))]
        if t == 60:
            assert rt.state.status.tolist() == [-1]  # no data after no_data.after, not "warning"
            (report,) = series_reports(rt, float(t))
            assert "— evaluation failing: found duplicate series" in report.summary
    assert rt.last_error is not None
    assert "many-to-many matching not allowed" in rt.last_error
    assert resolved == [(120, "no data")]  # resolved after resolve_after (2m), not at once
    assert len(rt.state) == 0  # and forgotten after that


def test_transitions_are_logged_once_pending_at_debug(tmp_path, caplog):  # type: ignore[no-untyped-def]
    rules = """
kpis:
  - name: k
    owner: team
    expr: x
    levels: {warning: {above: 1, for: 30s}}
"""
    e = engine(tmp_path, rules)
    caplog.set_level(logging.INFO, logger="kpimon.engine")
    for t, v in ((0, 2.0), (15, 2.0), (30, 2.0), (45, 2.0), (60, 0.0), (75, 0.0)):
        feed(e, float(t), a=v)
        e.tick(float(t))
    lines = [r for r in caplog.records if "KPI transition" in r.getMessage()]
    assert [(r.levelname, r.getMessage().split(" to=")[1].split()[0]) for r in lines] == [
        ("WARNING", "firing"),
        ("INFO", "inactive"),
    ]


# Prometheus 2.x ranges are closed at both ends: [300, 600] holds 300/step + 1 aligned steps.
@pytest.mark.parametrize(("interval_s", "steps"), [(60.0, 6.0), (30.0, 11.0), (15.0, 21.0)])
def test_subqueries_without_a_step_use_the_evaluation_interval(tmp_path, interval_s, steps):  # type: ignore[no-untyped-def]
    """As in Prometheus, ``x[5m:]`` steps by the evaluation interval (the daemon's, a replay's
    --step, a test file's evaluation_interval)."""
    e = engine(
        tmp_path,
        """
kpis:
  - name: steps
    owner: team
    expr: count_over_time(x[5m:])
    levels: {warning: {above: 1000}}
""",
    )
    e.interval_s = interval_s
    for t in range(0, 601, 15):
        feed(e, float(t), a=1.0)
    e.tick(600.0)
    assert e.kpis["steps"].state.value.tolist() == [steps]


class BrokenPlanner:
    """A notifier with a bug: planning raises."""

    def plan(self, t, transitions, flap_events, kpis):  # type: ignore[no-untyped-def]
        raise RuntimeError("planner bug")

    def committed(self, items):  # type: ignore[no-untyped-def]
        raise AssertionError("nothing was planned")

    def rolled_back(self) -> None:
        raise AssertionError("nothing was planned")


def test_a_planner_bug_does_not_cost_the_transitions_their_commit(tmp_path, caplog):  # type: ignore[no-untyped-def]
    from kpimon.journal import Journal

    rules = "kpis:\n  - {name: k, owner: team, expr: x, levels: {warning: {above: 1}}}\n"
    e = engine(tmp_path, rules)
    with Journal.open(tmp_path / "data") as journal:
        e.journal = journal
        e.notifier = BrokenPlanner()
        feed(e, 0.0, a=2.0)
        with caplog.at_level(logging.ERROR, logger="kpimon.engine"):
            out = e.tick(0.0)
        assert [(name, tr.level) for name, tr in out] == [("k", "warning")]
        assert [r.kpi for r in journal.transitions()] == ["k"]
    assert "planning the notifications of this tick failed" in caplog.text
