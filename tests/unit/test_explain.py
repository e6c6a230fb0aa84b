"""``kpimon.kpi.explain``: the state machine's state read back as reasons, with hand-computed
numbers. Time is plain Unix seconds passed to ``step`` and ``explain`` (a fake clock)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kpimon.config.loader import build_config
from kpimon.config.models import Kpi
from kpimon.kpi.engine import machine_rule
from kpimon.kpi.explain import describe_window, explain, explanation_doc
from kpimon.kpi.machine import KpiState, LevelRule, MachineRule
from kpimon.kpi.schedule import Window
from kpimon.labels import Labels

RULES = """
kpis:
  - name: cpu_utilization
    owner: platform-team
    unit: percent
    expr: cpu_busy_percent
    levels:
      warning: {above: 70, for: 45m, clear: 65, clear_for: 5m}
      critical: {above: 90, for: 10m}
    max_gap: 1m
    no_data: {after: 5m, resolve_after: 1h}
"""
STEP = 15.0
DB1: Labels = (("instance", "db1"),)
FIRED = 1795341720.0  # 2026-11-22T10:02:00Z
T0 = FIRED - 45 * 60  # warning's condition starts to hold; it fires 45 minutes later


@pytest.fixture(name="kpi")
def _kpi(tmp_path: Path) -> Kpi:
    (tmp_path / "rules.yaml").write_text(RULES)
    cfg = build_config("rule_files: [rules.yaml]\n", str(tmp_path / "kpimon.yml"))
    (kpi,) = cfg.kpis
    return kpi


def drive(state: KpiState, ticks: list[tuple[float, float | None]]) -> None:
    """Step ``state`` at each ``(t, value)``; a None value is a tick where db1 is absent."""
    for t, value in ticks:
        if value is None:
            state.step(t, [], np.empty(0))
        else:
            state.step(t, [DB1], np.array([value]))


def test_ok_says_what_each_level_needs(kpi: Kpi) -> None:
    state = KpiState(machine_rule(kpi))
    drive(state, [(T0, 50.0)])
    (s,) = explain(kpi, state, T0 + 5, STEP).series
    assert (
        s.sentence
        == "ok at 50.0%; warning needs value > 70 for 45m; critical needs value > 90 for 10m"
    )
    warning, critical = s.levels
    assert (warning.phase, warning.condition, warning.condition_holds) == (
        "inactive",
        "value > 70",
        False,
    )
    assert warning.sentence == "inactive: 50.0% is not > 70"
    assert (critical.clear_condition, critical.held_s, critical.since) == (
        "value <= 90",
        None,
        None,
    )
    assert (s.samples_missing, s.missing_s, s.no_data_in_s, s.flapping) == (0, 0.0, None, False)


def test_pending_with_the_time_left(kpi: Kpi) -> None:
    state = KpiState(machine_rule(kpi))
    drive(state, [(T0, 72.0), (T0 + 1800, 72.0)])
    (s,) = explain(kpi, state, T0 + 1860, STEP).series  # 31 minutes after it began to hold
    warning = s.levels[0]
    assert warning.phase == "pending"
    assert (warning.since, warning.active_at, warning.held_s) == (T0, T0, 1860.0)
    assert warning.fires_in_s == 45 * 60 - 1860  # 14 minutes
    assert warning.condition_holds is True
    assert warning.sentence == "pending 31m of 45m (72.0% > 70); fires in 14m if it holds"
    assert s.sentence == (
        "ok at 72.0%; warning pending 31m of 45m (72.0% > 70); fires in 14m if it holds"
    )


def test_pending_with_samples_missing_counts_down_max_gap_and_no_data(kpi: Kpi) -> None:
    state = KpiState(machine_rule(kpi))
    # Seen last at T0+1830; the ticks at +1845 and +1860 have no sample: 2 missing.
    drive(state, [(T0, 72.0), (T0 + 1830, 72.0), (T0 + 1845, None), (T0 + 1860, None)])
    (s,) = explain(kpi, state, T0 + 1860, STEP).series
    assert (s.value, s.last_seen, s.missing_s, s.samples_missing) == (None, T0 + 1830, 30.0, 2)
    assert s.status == "ok"
    assert s.no_data_in_s == 270.0  # no_data.after 5m - 30s
    warning = s.levels[0]
    assert warning.phase == "pending"
    assert warning.condition_holds is None
    assert warning.timer_lost_in_s == 30.0  # max_gap 1m - 30s
    assert warning.sentence == (
        "pending 31m of 45m; 2 samples missing; "
        "pending dropped in 30s (max_gap 1m) unless data returns"
    )
    assert s.sentence == (
        "ok, no data for 30s (2 samples missing); status no_data in 4m30s unless data returns; "
        "warning pending 31m of 45m; pending dropped in 30s (max_gap 1m) unless data returns"
    )


def test_firing_since_and_how_it_clears(kpi: Kpi) -> None:
    state = KpiState(machine_rule(kpi))
    now = FIRED + 47 * 60
    drive(state, [(T0, 72.0), (FIRED, 72.0), (now, 72.0)])
    (s,) = explain(kpi, state, now, STEP).series
    assert (s.status, s.status_code, s.status_since) == ("warning", 1, FIRED)
    warning = s.levels[0]
    assert (warning.phase, warning.since, warning.fired_at) == ("firing", FIRED, FIRED)
    assert warning.held_s == 45 * 60 + 47 * 60
    assert (warning.fires_in_s, warning.resolves_in_s) == (None, None)
    assert warning.sentence == (
        "firing since 2026-11-22T10:02:00Z (47m); clears at or below 65 after 5m"
    )
    critical = s.levels[1]
    assert critical.sentence == "inactive: 72.0% is not > 90"
    assert s.sentence == (
        "warning at 72.0%; warning firing since 2026-11-22T10:02:00Z (47m); "
        "clears at or below 65 after 5m"
    )


def test_clearing_counts_down_clear_for(kpi: Kpi) -> None:
    state = KpiState(machine_rule(kpi))
    back = FIRED + 47 * 60  # the value comes back within clear (65) here
    drive(state, [(T0, 72.0), (FIRED, 72.0), (back, 60.0), (back + 120, 60.0)])
    (s,) = explain(kpi, state, back + 120, STEP).series
    warning = s.levels[0]
    assert (warning.phase, warning.since) == ("clearing", back)
    assert (warning.clearing_held_s, warning.resolves_in_s) == (120.0, 180.0)
    assert warning.condition_holds is False
    assert warning.sentence == (
        "clearing 2m of 5m (60.0% <= 65); resolves in 3m unless it goes above 65 again; "
        "fired 2026-11-22T10:02:00Z (49m ago)"
    )
    assert s.status == "warning"  # clearing still counts as firing


def test_no_data_countdown_then_resolve_countdown(kpi: Kpi) -> None:
    state = KpiState(machine_rule(kpi))
    drive(state, [(T0, 72.0), (FIRED, 72.0), (FIRED + 120, None)])
    (s,) = explain(kpi, state, FIRED + 120, STEP).series
    assert (s.status, s.missing_s, s.samples_missing) == ("warning", 120.0, 8)
    assert s.no_data_in_s == 180.0
    warning = s.levels[0]
    assert warning.phase == "firing"
    assert warning.timer_lost_in_s is None
    assert warning.no_data_resolve_in_s == 3600 - 120
    assert warning.sentence == (
        "firing since 2026-11-22T10:02:00Z (2m); clears at or below 65 after 5m; "
        '8 samples missing; resolves with reason "no data" in 58m unless data returns'
    )

    drive(state, [(FIRED + 300, None), (FIRED + 600, None)])
    (s,) = explain(kpi, state, FIRED + 610, STEP).series
    assert (s.status, s.status_code, s.status_since) == ("no_data", -1, FIRED + 300)
    assert s.no_data_in_s is None
    assert (s.missing_s, s.samples_missing) == (610.0, 40)  # 600 s of ticks since last seen
    assert s.levels[0].no_data_resolve_in_s == 3600 - 610
    assert s.sentence.startswith("no_data, no data for 10m10s (40 samples missing); warning firing")


def test_prometheus_semantics_says_missing_counts_as_cleared(kpi: Kpi) -> None:
    from dataclasses import replace

    state = KpiState(replace(machine_rule(kpi), prometheus=True, max_gap_s=60.0))
    drive(state, [(T0, 72.0), (FIRED, 72.0), (FIRED + 30, None)])
    exp = explain(kpi, state, FIRED + 30, STEP)
    assert exp.semantics == "prometheus"
    warning = exp.series[0].levels[0]
    assert warning.no_data_resolve_in_s is None
    assert "counts as back within clear (semantics: prometheus)" in warning.sentence


def test_schedule_in_force_is_explained(kpi: Kpi) -> None:
    office = Window(
        days=frozenset({0, 1, 2, 3, 4}),
        start_min=8 * 60,
        end_min=18 * 60,
        timezone="UTC",
        threshold=50.0,
        clear=45.0,
    )
    level = LevelRule(name="warning", above=True, threshold=70.0, clear=65.0, schedule=(office,))
    state = KpiState(MachineRule(levels=(level,)))
    monday_noon = 1795435200.0  # 2026-11-23T12:00:00Z, a Monday
    drive(state, [(monday_noon, 60.0)])
    (s,) = explain(kpi, state, monday_noon, STEP).series
    warning = s.levels[0]
    assert (warning.threshold, warning.clear) == (50.0, 45.0)
    assert warning.schedule == "mon-fri 08:00-18:00 UTC"
    assert warning.phase == "firing"  # for 0: fires at once
    assert warning.sentence.endswith("[schedule: mon-fri 08:00-18:00 UTC]")
    sunday = monday_noon - 86400
    state = KpiState(MachineRule(levels=(level,)))
    drive(state, [(sunday, 60.0)])
    warning = explain(kpi, state, sunday, STEP).series[0].levels[0]
    assert (warning.threshold, warning.schedule, warning.phase) == (
        70.0,
        "outside schedule",
        "inactive",
    )


def test_describe_window_groups_days() -> None:
    w = Window(
        days=frozenset({0, 2, 3, 4, 6}),
        start_min=22 * 60,
        end_min=6 * 60,
        timezone="Europe/Berlin",
        threshold=1.0,
        clear=1.0,
    )
    assert describe_window(w) == "mon,wed-fri,sun 22:00-06:00 Europe/Berlin"


def test_flapping_series_says_its_notifications_are_held(kpi: Kpi) -> None:
    level = LevelRule(name="warning", above=True, threshold=70.0, clear=70.0)
    state = KpiState(MachineRule(levels=(level,)))
    drive(state, [(T0 + k * STEP, 80.0 if k % 2 else 60.0) for k in range(22)])
    (s,) = explain(kpi, state, T0 + 21 * STEP, STEP).series
    assert s.flapping is True
    assert s.flap_percent > 30
    assert "state changes): notifications held" in s.sentence


def test_select_and_json_document(kpi: Kpi) -> None:
    state = KpiState(machine_rule(kpi))
    db2: Labels = (("instance", "db2"),)
    state.step(T0, [DB1, db2], np.array([72.0, float("nan")]))
    exp = explain(kpi, state, T0 + 60, STEP, select=lambda labels: labels == db2)
    assert [s.labels for s in exp.series] == [db2]
    doc = explanation_doc(exp, "boom")
    assert doc["evaluation_error"] == "boom"
    assert doc["time"] == "2026-11-22T09:18:00Z"
    (series,) = doc["series"]  # type: ignore[misc]
    assert series["value"] == "NaN"
    assert series["levels"]["warning"]["phase"] == "inactive"
    assert series["levels"]["critical"]["threshold"] == 90.0
    assert explain(kpi, KpiState(machine_rule(kpi)), T0, STEP).series == ()
