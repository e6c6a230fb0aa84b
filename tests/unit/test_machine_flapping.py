"""Flap detection (ARCHITECTURE §5 "Flapping"): Nagios' weighted state-change percentage."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpimon.kpi.machine import (
    FIRING,
    INACTIVE,
    FlapEvent,
    KpiState,
    LevelRule,
    MachineRule,
    flap_percent,
)

A = (("instance", "db1"),)
B = (("instance", "db2"),)


def level(name: str, threshold: float, **kw: float) -> LevelRule:
    return LevelRule(name=name, above=True, threshold=threshold, clear=threshold, **kw)


def nagios_percent(states: list[frozenset[str]]) -> Fraction:
    """Reference: the last 21 states, changes weighted linearly 0.75 (oldest) to 1.25 (newest),
    as a percentage of 20 changes (Nagios Core, base/flapping.c, read, not copied)."""
    last = states[-21:]
    total = Fraction(0)
    for i in range(1, len(last)):  # change i of 20, oldest first
        if last[i] != last[i - 1]:
            total += Fraction(3, 4) + Fraction(i - 1, 19) * Fraction(1, 2)
    return total * 100 / 20


def test_percent_of_histories():
    assert flap_percent(np.array([0])).tolist() == [0.0]
    assert flap_percent(np.array([(1 << 20) - 1])).tolist() == [100.0]
    # newest change alone: 1.25 / 20; oldest alone: 0.75 / 20
    assert flap_percent(np.array([1, 1 << 19])).tolist() == [6.25, 3.75]


def alternate(state: KpiState, ticks: int, start: int = 0) -> list[FlapEvent]:
    events = []
    for k in range(start, start + ticks):
        state.step(k * 15.0, [A, B], np.array([95.0 if k % 2 else 10.0, 10.0]))
        events += state.flap_events
    return events


def test_flapping_starts_above_high_and_stops_below_low():
    s = KpiState(MachineRule(levels=(level("warning", 70),)))
    events = alternate(s, 10)
    # changes at ticks 1..6, newest weighted 1.25, each older one 1/38 less: after 5 changes
    # 29.9% (not above 30), after 6 changes 35.5%
    assert [(e.t, e.labels, e.flapping) for e in events] == [(90.0, A, True)]
    history: list[frozenset[str]] = [frozenset()] * 21
    for k in range(7):
        history.append(frozenset({"warning"}) if k % 2 else frozenset())
    assert nagios_percent(history) > 30 > nagios_percent(history[:-1])
    assert events[0].percent == pytest.approx(float(nagios_percent(history)))
    assert events[0].percent == pytest.approx(5 / 76 * (95 * 6 - 6 * 5))
    assert bool(s.flapping[s.index[A]])
    assert not s.flapping[s.index[B]]
    # quiet again: the percentage decays and flapping stops once below 25%
    stops = []
    for k in range(10, 40):
        s.step(k * 15.0, [A, B], np.array([10.0, 10.0]))
        stops += s.flap_events
    assert len(stops) == 1
    assert not stops[0].flapping
    assert stops[0].percent < 25
    assert stops[0].firing == ()
    assert not s.flapping.any()


def test_transitions_carry_the_flapping_flag():
    s = KpiState(MachineRule(levels=(level("warning", 70),)))
    flags = []
    for k in range(12):
        tr = s.step(k * 15.0, [A], np.array([95.0 if k % 2 else 10.0]))
        flags += [(k, x.to_phase, x.flapping) for x in tr]
    # the transition at which flapping starts is already held
    assert flags[:6] == [
        (1, FIRING, False),
        (2, INACTIVE, False),
        (3, FIRING, False),
        (4, INACTIVE, False),
        (5, FIRING, False),
        (6, INACTIVE, True),
    ]
    assert all(f for _, _, f in flags[5:])


def test_flap_event_reports_the_state_to_notify():
    s = KpiState(MachineRule(levels=(level("warning", 70), level("critical", 90))))
    events = []
    for k in range(12):
        s.step(k * 15.0, [A], np.array([95.0 if k % 2 else 80.0]))
        events += s.flap_events
    assert events[0].flapping
    assert events[0].firing in (("warning",), ("warning", "critical"))


def test_high_100_disables_flapping():
    s = KpiState(MachineRule(levels=(level("warning", 70),), flapping_high=100))
    assert alternate(s, 60) == []
    assert not s.flapping.any()


def test_a_tick_with_several_level_changes_counts_once():
    s = KpiState(MachineRule(levels=(level("warning", 70), level("critical", 90))))
    s.step(0, [A], np.array([10.0]))
    s.step(15, [A], np.array([95.0]))  # warning and critical fire together: one change
    assert s.flap_percent()[0] == pytest.approx(6.25)


def test_pending_does_not_count_as_a_change():
    s = KpiState(MachineRule(levels=(level("warning", 70, for_s=60),)))
    for k in range(30):
        s.step(k * 15.0, [A], np.array([95.0 if k % 2 else 10.0]))
    assert s.flap_percent()[0] == 0.0
    assert not s.flapping.any()


def test_history_survives_forget_and_grow_of_other_series():
    rule = MachineRule(
        levels=(level("warning", 70),), no_data_after_s=15, no_data_resolve_after_s=30
    )
    s = KpiState(rule)
    for k in range(10):
        labels = [A, B] if k < 2 else [A]
        s.step(k * 15.0, labels, np.array([95.0 if k % 2 else 10.0, 10.0][: len(labels)]))
    assert B not in s.index
    assert bool(s.flapping[s.index[A]])


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.sampled_from([10.0, 80.0, 95.0]), min_size=1, max_size=80),
    high=st.sampled_from([30.0, 20.0, 45.0, 6.25, 100.0, 10.0]),
    low_gap=st.sampled_from([0.0, 5.0, 10.0, 3.75]),
)
def test_matches_nagios_reference(values, high, low_gap):
    low = high - low_gap
    s = KpiState(
        MachineRule(
            levels=(level("warning", 70), level("critical", 90)),
            flapping_high=high,
            flapping_low=low,
        )
    )
    history: list[frozenset[str]] = [frozenset()] * 21
    flapping = False
    for k, v in enumerate(values):
        s.step(k * 15.0, [A], np.array([v]))
        firing = frozenset(name for name, th in (("warning", 70), ("critical", 90)) if v > th)
        history.append(firing)
        pct = nagios_percent(history)
        changed = False
        if not flapping and pct > high:
            flapping = changed = True
        elif flapping and (pct < low or pct == 0):  # a window without change settles
            flapping, changed = False, True
        assert s.flap_percent()[0] == pytest.approx(float(pct)), k
        assert bool(s.flapping[0]) == flapping, k
        assert [e.flapping for e in s.flap_events] == ([flapping] if changed else []), k


def test_quiet_ticks_cost_no_per_series_work():
    """A tick without changes and without flapping series leaves the history untouched."""
    n = 1000
    labels = [(("i", str(i)),) for i in range(n)]
    s = KpiState(MachineRule(levels=(level("warning", 70),)))
    s.step(0, labels, np.full(n, 10.0))
    before = s.flap_eval.copy()
    s.step(15, labels, np.full(n, 10.0))
    assert (s.flap_eval == before).all()
    assert s.evaluations == 2


def test_engine_collects_flap_events(tmp_path, caplog):
    from kpimon.config.loader import build_config
    from kpimon.kpi.engine import Engine
    from kpimon.labels import format_key
    from kpimon.store import Store

    (tmp_path / "rules.yaml").write_text(
        "kpis:\n"
        "  - {name: k, owner: o, expr: x, levels: {warning: {above: 1}}, flapping: {high: 20}}\n"
    )
    cfg = build_config("rule_files: [rules.yaml]\n", str(tmp_path / "kpimon.yml"))
    e = Engine(cfg.kpis, Store(retention_s=cfg.retention_s(), min_interval_s=15))
    events = []
    with caplog.at_level("INFO", logger="kpimon.engine"):
        for k in range(8):
            t = k * 15.0
            key = format_key("x", {"s": "a"})
            e.store.ingest("t", (("job", "j"),), [key], np.array([2.0 if k % 2 else 0.0]), t)
            transitions = e.tick(t)
            events += e.flap_events
    assert [(name, ev.flapping, ev.labels) for name, ev in events] == [
        ("k", True, (("job", "j"), ("s", "a")))
    ]
    assert all(tr.flapping for _, tr in transitions)
    assert "KPI series started flapping kpi=k" in caplog.text


def test_low_zero_still_settles_after_a_quiet_window():
    """With flapping.low 0 the percentage can never fall below low; a whole window without
    a change (percentage 0) ends flapping anyway, or every notification would be held."""
    s = KpiState(MachineRule(levels=(level("warning", 70),), flapping_high=10, flapping_low=0))
    for k in range(8):
        s.step(k * 15.0, [A], np.array([95.0 if k % 2 else 10.0]))
    assert bool(s.flapping[0])
    for k in range(8, 40):
        s.step(k * 15.0, [A], np.array([10.0]))
    assert s.flap_percent()[0] == 0.0
    assert not s.flapping[0]
