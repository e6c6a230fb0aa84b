"""Time-of-day thresholds (a level's ``schedule``): windows, DST, the machine and the exports."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

import kpimon.kpi.machine as machine
from kpimon.config.rules import parse_rules
from kpimon.kpi.engine import Engine, machine_rule
from kpimon.kpi.machine import FIRING, INACTIVE, PENDING, KpiState, LevelRule, MachineRule
from kpimon.kpi.schedule import Window, in_force, parse_time_of_day
from kpimon.kpi.summary import series_reports
from kpimon.store import Store
from kpimon.web.render import MetricsView, Renderer

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
BERLIN = "Europe/Berlin"


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def window(days=range(7), start="08:00", end="18:00", tz=BERLIN, threshold=60.0, clear=None):
    s, e = parse_time_of_day(start), parse_time_of_day(end)
    assert s is not None
    assert e is not None
    return Window(
        days=frozenset(days),
        start_min=s,
        end_min=e,
        timezone=tz,
        threshold=threshold,
        clear=threshold if clear is None else clear,
    )


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("00:00", 0), ("08:30", 510), ("23:59", 1439), ("24:00", 1440)],
)
def test_parse_time_of_day(text, minutes):
    assert parse_time_of_day(text) == minutes


@pytest.mark.parametrize("text", ["24:01", "25:00", "8:00", "08:60", "0800", "7pm", "", "٠٨:٠٠"])
def test_parse_time_of_day_rejects(text):
    assert parse_time_of_day(text) is None


def test_office_hours_follow_daylight_saving_time():
    w = window(days=[MON, TUE, WED, THU, FRI])
    # Winter (CET, UTC+1): Monday 2026-01-12, 08:00-18:00 local = 07:00-17:00 UTC
    assert not w.contains(utc(2026, 1, 12, 6, 59))
    assert w.contains(utc(2026, 1, 12, 7, 0))
    assert w.contains(utc(2026, 1, 12, 16, 59, 59))
    assert not w.contains(utc(2026, 1, 12, 17, 0))
    # Summer (CEST, UTC+2): Monday 2026-07-13, 06:00-16:00 UTC
    assert not w.contains(utc(2026, 7, 13, 5, 59))
    assert w.contains(utc(2026, 7, 13, 6, 0))
    assert not w.contains(utc(2026, 7, 13, 16, 0))
    # Saturday: not a listed day
    assert not w.contains(utc(2026, 7, 11, 10, 0))


def test_spring_forward_day_in_berlin():
    # Sunday 2026-03-29: at 01:00 UTC clocks jump from 02:00 CET to 03:00 CEST.
    early = window(days=[SUN], start="00:00", end="06:00")
    assert early.contains(utc(2026, 3, 29, 0, 59))  # 01:59 CET
    assert early.contains(utc(2026, 3, 29, 1, 0))  # 03:00 CEST
    assert early.contains(utc(2026, 3, 29, 3, 59))  # 05:59 CEST
    assert not early.contains(utc(2026, 3, 29, 4, 0))  # 06:00 CEST: the night was an hour short
    # A window inside the skipped hour is never reached that day.
    skipped = window(days=[SUN], start="02:00", end="03:00")
    for minute in range(0, 24 * 60, 5):
        assert not skipped.contains(utc(2026, 3, 29) + minute * 60)
    # One that straddles the jump starts when clocks reach 03:00.
    straddle = window(days=[SUN], start="02:30", end="03:30")
    assert not straddle.contains(utc(2026, 3, 29, 0, 59))
    assert straddle.contains(utc(2026, 3, 29, 1, 0))
    assert straddle.contains(utc(2026, 3, 29, 1, 29))
    assert not straddle.contains(utc(2026, 3, 29, 1, 30))
    # Office hours that Sunday are already in summer time: 06:00-16:00 UTC.
    office = window(days=[SUN])
    assert not office.contains(utc(2026, 3, 29, 5, 59))
    assert office.contains(utc(2026, 3, 29, 6, 0))


def test_fall_back_day_in_berlin():
    # Sunday 2026-10-25: at 01:00 UTC clocks go back from 03:00 CEST to 02:00 CET, so local
    # 02:00-03:00 happens twice; a window in that hour is in force both times.
    w = window(days=[SUN], start="02:00", end="02:30")
    assert not w.contains(utc(2026, 10, 24, 23, 59))  # 01:59 CEST
    assert w.contains(utc(2026, 10, 25, 0, 0))  # 02:00 CEST
    assert not w.contains(utc(2026, 10, 25, 0, 30))  # 02:30 CEST
    assert w.contains(utc(2026, 10, 25, 1, 0))  # 02:00 CET, the second time
    assert w.contains(utc(2026, 10, 25, 1, 29))
    assert not w.contains(utc(2026, 10, 25, 1, 30))
    night = window(days=[SAT], start="22:00", end="06:00")  # Saturday night: 9 hours long
    inside = [m for m in range(36 * 60) if night.contains(utc(2026, 10, 24, 12) + m * 60)]
    assert len(inside) == 9 * 60
    assert inside[0] == 8 * 60  # 22:00 CEST = 20:00 UTC
    assert inside[-1] == 17 * 60 - 1  # until 06:00 CET = 05:00 UTC


def test_window_crossing_midnight_starts_on_its_day():
    w = window(days=[FRI], start="22:00", end="06:00", tz="UTC")
    assert not w.contains(utc(2026, 1, 16, 21, 59))  # Friday
    assert w.contains(utc(2026, 1, 16, 22, 0))
    assert w.contains(utc(2026, 1, 17, 5, 59))  # Saturday morning
    assert not w.contains(utc(2026, 1, 17, 6, 0))
    assert not w.contains(utc(2026, 1, 17, 23, 0))  # Saturday night
    assert not w.contains(utc(2026, 1, 16, 3, 0))  # Friday morning belongs to Thursday
    assert not w.contains(utc(2026, 1, 15, 23, 0))  # Thursday night


def test_first_matching_window_wins_else_the_level_threshold():
    windows = (
        window(days=[MON], start="09:00", end="10:00", tz="UTC", threshold=50, clear=45),
        window(days=[MON], start="00:00", end="24:00", tz="UTC", threshold=60),
    )
    assert in_force(windows, utc(2026, 1, 12, 9, 30), 80, 75) == (50, 45)
    assert in_force(windows, utc(2026, 1, 12, 11, 0), 80, 75) == (60, 60)
    assert in_force(windows, utc(2026, 1, 13, 9, 30), 80, 75) == (80, 75)


def scheduled_rule(**kw) -> MachineRule:
    w = window(days=range(7), start="08:00", end="18:00", tz="UTC", threshold=60, clear=55)
    lv = LevelRule(name="warning", above=True, threshold=80, clear=80, schedule=(w,), **kw)
    return MachineRule(levels=(lv,))


def test_machine_uses_the_threshold_in_force_and_reports_it():
    s = KpiState(scheduled_rule())
    a = (("instance", "a"),)
    t0 = utc(2026, 1, 12, 7, 59)
    assert s.step(t0, [a], np.array([70.0])) == []  # 70 < 80 before the window
    assert s.thresholds[0] == (80, 80)
    tr = s.step(t0 + 60, [a], np.array([70.0]))  # 08:00: threshold 60
    assert [(x.to_phase, x.threshold, x.reason) for x in tr] == [(FIRING, 60, "value > 60")]
    assert s.thresholds[0] == (60, 55)
    tr = s.step(utc(2026, 1, 12, 18, 0), [a], np.array([70.0]))  # 18:00: back to 80
    assert [(x.to_phase, x.threshold, x.reason) for x in tr] == [(INACTIVE, 80, "value <= 80")]


def test_hysteresis_of_a_window():
    s = KpiState(scheduled_rule())
    a = (("instance", "a"),)
    t = utc(2026, 1, 12, 9, 0)
    assert [x.to_phase for x in s.step(t, [a], np.array([61.0]))] == [FIRING]
    assert s.step(t + 15, [a], np.array([56.0])) == []  # above clear 55: still firing
    assert [x.to_phase for x in s.step(t + 30, [a], np.array([55.0]))] == [INACTIVE]


def test_for_timer_runs_across_a_threshold_change():
    s = KpiState(scheduled_rule(for_s=120))
    a = (("instance", "a"),)
    t = utc(2026, 1, 12, 7, 59)
    assert [x.to_phase for x in s.step(t, [a], np.array([90.0]))] == [PENDING]
    assert s.step(t + 60, [a], np.array([65.0])) == []  # 08:00: 65 > 60 still holds
    assert [x.to_phase for x in s.step(t + 120, [a], np.array([65.0]))] == [FIRING]


def test_threshold_is_worked_out_once_per_minute(monkeypatch):
    calls = []
    real = machine.in_force

    def counting(*args):
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(machine, "in_force", counting)
    s = KpiState(scheduled_rule())
    labels = [(("i", str(i)),) for i in range(1000)]
    t = utc(2026, 1, 12, 9, 0)
    for k in range(8):  # 15 s ticks: two minutes
        s.step(t + 15 * k, labels, np.full(1000, 10.0))
    assert len(calls) == 2


RULES = """\
kpis:
  - name: api_latency
    owner: web
    expr: latency
    levels:
      warning:
        above: 0.5
        for: 10m
        clear: 0.45
        schedule:
          - {days: [mon, tue, wed, thu, fri], from: "08:00", to: 18:00, timezone: Europe/Berlin,
             above: 0.3, clear: 0.25}
          - {from: "22:00", to: "06:00", timezone: UTC, above: 0.8}
      critical: {above: 2}
"""


def test_rule_file_schedule():
    kpis, problems = parse_rules(RULES, "r.yaml")
    assert problems == []
    warning = kpis[0].levels[0]
    assert warning.threshold == 0.5
    assert warning.schedule == (
        Window(
            days=frozenset({MON, TUE, WED, THU, FRI}),
            start_min=480,
            end_min=1080,
            timezone=BERLIN,
            threshold=0.3,
            clear=0.25,
        ),
        Window(
            days=frozenset(range(7)),
            start_min=1320,
            end_min=360,
            timezone="UTC",
            threshold=0.8,
            clear=0.8,
        ),
    )
    assert machine_rule(kpis[0]).levels[0].schedule == warning.schedule
    assert kpis[0].levels[1].schedule == ()


def test_exports_report_the_threshold_in_force():
    kpis, problems = parse_rules(RULES, "r.yaml")
    assert problems == []
    engine = Engine(kpis, Store(retention_s=600.0, min_interval_s=15.0))
    rt = engine.kpis["api_latency"]
    t = utc(2026, 1, 12, 9, 0)  # Monday 10:00 in Berlin
    rt.state.step(t, [(("instance", "a"),)], np.array([0.1]))
    view = MetricsView(
        kpis=[rt],
        now=t,
        targets=[],
        last_eval_wall=t,
        last_eval_duration_s=0.0,
        store_series=0,
        reload_ok=True,
        reload_success_wall=t,
        version="test",
    )
    text = Renderer().render(view).decode()
    assert 'kpimon_kpi_threshold{kpi="api_latency",level="warning"} 0.3\n' in text
    assert 'kpimon_kpi_threshold{kpi="api_latency",level="critical"} 2.0\n' in text
    report = series_reports(rt, t)[0]
    assert report.levels["warning"]["threshold"] == 0.3
    rt.state.step(utc(2026, 1, 12, 23, 0), [(("instance", "a"),)], np.array([0.1]))
    text = Renderer().render(view).decode()
    assert 'kpimon_kpi_threshold{kpi="api_latency",level="warning"} 0.8\n' in text
