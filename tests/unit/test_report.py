"""The report's arithmetic on hand-made logs, and its calendar periods (docs/reports.md)."""

from __future__ import annotations

import datetime as dt

import pytest

from kpimon.journal import TransitionRecord
from kpimon.journal.reportlog import STATUS_GONE, StatusChange
from kpimon.labels import Labels
from kpimon.report.compute import KpiInfo, build_report
from kpimon.report.intervals import clip, union
from kpimon.report.period import Period, period_at
from kpimon.report.render import render_markdown

H = 3600.0
P0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()  # a Wednesday
DAY = Period("day", "UTC", P0, P0 + 24 * H, "2024-05-01", False)
A: Labels = (("instance", "a"),)
B: Labels = (("instance", "b"),)
INFO = KpiInfo(
    name="cpu",
    owner="team",
    group="team",
    unit="percent",
    levels=(("warning", "above", 70.0), ("critical", "above", 90.0)),
)
_seq = iter(range(1, 10**6))


def tr(t: float, level: str, frm: str, to: str, labels: Labels = A, value: float = 95.0):
    return TransitionRecord(
        next(_seq), t, "cpu", labels, level, frm, to, value, 90.0, "test", False
    )


def st(t: float, status: int, labels: Labels = A) -> StatusChange:
    return StatusChange(t, "cpu", labels, status)


def fire(t0: float, t1: float | None, level: str = "critical", labels: Labels = A):
    """A breach from ``t0`` to ``t1`` (None: still open) as transitions."""
    out = [
        tr(t0 - 60, level, "inactive", "pending", labels),
        tr(t0, level, "pending", "firing", labels),
    ]
    if t1 is not None:
        out.append(tr(t1, level, "firing", "inactive", labels, 50.0))
    return out


def report(statuses, transitions, runs=((P0 - 48 * H, P0 + 48 * H),), period=DAY):
    return build_report(period, runs, statuses, transitions, {"cpu": INFO})


def only(rep):
    (k,) = rep.kpis
    return k


def test_status_time_availability_and_a_breach_inside_the_period() -> None:
    k = only(
        report(
            [st(P0 - H, 0), st(P0 + 2 * H, 2), st(P0 + 3 * H, 0)],
            fire(P0 + 2 * H, P0 + 3 * H),
        )
    )
    assert dict(k.status_s) == {"ok": 23 * H, "warning": 0.0, "critical": H, "no_data": 0.0}
    assert k.availability == pytest.approx(23 / 24)
    crit = k.levels[1]
    assert (crit.breaches, crit.resolved, crit.open_at_end, crit.ongoing_at_start) == (1, 1, 0, 0)
    assert crit.longest_s == H
    assert crit.mttr_s == H
    assert crit.breach_s == H
    # ITIL MTBF: uptime / failures = 23h / 1
    assert crit.mtbf_s == 23 * H
    assert k.levels[0].breaches == 0
    assert k.levels[0].mtbf_s is None


def test_a_breach_that_started_before_the_period_counts_whole_for_mttr_but_not_as_begun() -> None:
    k = only(report([st(P0 - 2 * H, 2), st(P0 + H, 0)], fire(P0 - 2 * H, P0 + H)))
    crit = k.levels[1]
    assert (crit.breaches, crit.ongoing_at_start, crit.resolved) == (0, 1, 1)
    assert crit.mttr_s == 3 * H  # firing -> resolved, whole
    assert crit.longest_s == 3 * H
    assert crit.breach_s == H  # in the period
    assert crit.mtbf_s is None  # no failure began in the period
    assert dict(k.status_s)["critical"] == H  # the state at the start is the last change before


def test_a_breach_still_firing_at_the_end_is_open_and_not_in_mttr() -> None:
    k = only(report([st(P0, 0), st(P0 + 20 * H, 2)], fire(P0 + 20 * H, None)))
    crit = k.levels[1]
    assert (crit.breaches, crit.resolved, crit.open_at_end) == (1, 0, 1)
    assert crit.mttr_s is None
    assert crit.longest_s == 4 * H
    assert crit.longest_open
    assert crit.breach_s == 4 * H
    assert crit.mtbf_s == 20 * H


def test_an_open_breach_is_measured_up_to_the_last_covered_moment() -> None:
    k = only(
        report([st(P0, 0), st(P0 + 2 * H, 2)], fire(P0 + 2 * H, None), runs=[(P0, P0 + 6 * H)])
    )
    assert k.levels[1].longest_s == 4 * H
    assert k.levels[1].longest_open


def test_transitions_after_the_period_are_ignored() -> None:
    k = only(report([st(P0, 0), st(P0 + 23 * H, 2)], fire(P0 + 23 * H, P0 + 26 * H)))
    crit = k.levels[1]
    assert (crit.resolved, crit.open_at_end, crit.longest_s) == (0, 1, H)


def test_no_data_and_the_worst_series_make_the_kpi_timeline() -> None:
    statuses = [
        st(P0 - H, 0, A),
        st(P0 - H, 0, B),
        st(P0 + 1 * H, -1, B),  # b without data 1h..3h
        st(P0 + 3 * H, 0, B),
        st(P0 + 2 * H, 1, A),  # a warning 2h..4h: outranks b's no_data
        st(P0 + 4 * H, 0, A),
    ]
    k = only(report(statuses, []))
    assert dict(k.status_s) == {"ok": 21 * H, "warning": 2 * H, "critical": 0.0, "no_data": H}
    a, b = k.series
    assert dict(a.status_s)["warning"] == 2 * H
    assert dict(b.status_s)["no_data"] == 2 * H
    assert b.availability == 1.0  # no_data is not critical
    assert [s for _, _, s in k.timeline] == ["ok", "no_data", "warning", "ok"]


def test_restart_gaps_are_not_running_and_excluded_from_every_time() -> None:
    runs = [(P0 - H, P0 + 6 * H), (P0 + 8 * H, P0 + 12 * H)]
    rep = report([st(P0 - H, 0), st(P0 + 5 * H, 2), st(P0 + 10 * H, 0)],
                 fire(P0 + 5 * H, P0 + 10 * H), runs=runs)  # fmt: skip
    assert rep.coverage_s == 10 * H
    assert rep.coverage == pytest.approx(10 / 24)
    k = only(rep)
    assert dict(k.status_s) == {"ok": 7 * H, "warning": 0.0, "critical": 3 * H, "no_data": 0.0}
    assert k.availability == pytest.approx(7 / 10)  # of the covered time
    crit = k.levels[1]
    assert crit.breach_s == 3 * H  # 5h..6h and 8h..10h: the outage is not counted
    assert crit.mttr_s == 5 * H  # but the breach lasted 5h, outage included
    statuses = [s for _, _, s in k.timeline]
    assert statuses == ["ok", "critical", "not_running", "critical", "ok", "not_running"]
    md = render_markdown(rep)
    assert "kpimon was not running for 14h of the period" in md


def test_a_forgotten_series_stops_counting() -> None:
    k = only(report([st(P0 - H, 0, A), st(P0 - H, 0, B), st(P0 + 6 * H, STATUS_GONE, B)], []))
    a, b = k.series
    assert a.observed_s == 24 * H
    assert b.observed_s == 6 * H


def test_clearing_and_firing_again_is_one_breach() -> None:
    trs = [
        tr(P0 + H, "warning", "pending", "firing"),
        tr(P0 + 2 * H, "warning", "firing", "clearing"),
        tr(P0 + 2.5 * H, "warning", "clearing", "firing"),
        tr(P0 + 3 * H, "warning", "firing", "clearing"),
        tr(P0 + 3.5 * H, "warning", "clearing", "inactive"),
    ]
    warn = only(report([st(P0, 0)], trs)).levels[0]
    assert (warn.breaches, warn.resolved, warn.mttr_s) == (1, 1, 2.5 * H)


def test_breaches_pool_over_series_and_mtbf_uses_the_union() -> None:
    trs = fire(P0 + H, P0 + 3 * H, labels=A) + fire(P0 + 2 * H, P0 + 4 * H, labels=B)
    crit = only(report([st(P0, 0, A), st(P0, 0, B)], trs)).levels[1]
    assert crit.breaches == 2
    assert crit.mttr_s == 2 * H
    assert crit.breach_s == 3 * H  # 1h..4h on some series
    assert crit.mtbf_s == (24 - 3) * H / 2


def test_a_period_without_data_says_so() -> None:
    rep = report([], [], runs=[])
    assert rep.empty
    assert rep.coverage == 0
    assert "No data for this period" in render_markdown(rep)


def test_unknown_coverage_without_run_records() -> None:
    rep = report([st(P0, 0)], [], runs=None)
    assert rep.coverage_s == 24 * H
    assert not rep.coverage_known
    assert rep.notes


def test_a_kpi_only_in_the_journal_is_reported_with_an_unknown_owner() -> None:
    changes = [StatusChange(P0, "disk", A, 0)]
    rep = build_report(DAY, [(P0, P0 + 24 * H)], changes, [], {})
    (k,) = rep.kpis
    assert k.info.name == "disk"
    assert k.info.owner == "?"
    assert k.availability is None


def test_intervals() -> None:
    assert union([(3, 4), (1, 2), (2, 2.5), (5, 5)]) == [(1, 2.5), (3, 4)]
    assert clip([(0, 2), (3, 9)], 1, 4) == [(1, 2), (3, 4)]


@pytest.mark.parametrize(
    ("kind", "at", "tz", "start", "end", "label", "partial"),
    [
        ("day", "2024-05-01", "UTC", "2024-05-01T00:00:00+00:00", "2024-05-02T00:00:00+00:00",
         "2024-05-01", False),
        ("day", "2024-05-01T10:00:00Z", "UTC", "2024-05-01T00:00:00+00:00",
         "2024-05-01T10:00:00+00:00", "2024-05-01", True),
        ("week", "2024-05-01", "UTC", "2024-04-29T00:00:00+00:00", "2024-05-06T00:00:00+00:00",
         "2024-W18", False),
        ("month", "2024-02-10", "UTC", "2024-02-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00",
         "2024-02", False),
        ("month", "2024-12-31", "UTC", "2024-12-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00",
         "2024-12", False),
        # a zone's calendar, with the 23-hour day of the switch to summer time
        ("day", "2024-03-31", "Europe/Paris", "2024-03-30T23:00:00+00:00",
         "2024-03-31T22:00:00+00:00", "2024-03-31", False),
    ],
)  # fmt: skip
def test_periods(kind, at, tz, start, end, label, partial) -> None:
    p = period_at(kind, at, now=0.0, tz=tz)
    assert dt.datetime.fromtimestamp(p.start, dt.UTC).isoformat() == start
    assert dt.datetime.fromtimestamp(p.end, dt.UTC).isoformat() == end
    assert (p.label, p.partial) == (label, partial)


def test_period_defaults_to_now_so_far() -> None:
    now = dt.datetime(2024, 5, 1, 15, 30, tzinfo=dt.UTC).timestamp()
    p = period_at("week", None, now=now)
    assert p.end == now
    assert p.partial
    assert p.label == "2024-W18"


@pytest.mark.parametrize(("at", "tz"), [("yesterday", "UTC"), ("2024-13-01", "UTC"),
                                        ("2024-05-01", "Mars/Olympus")])  # fmt: skip
def test_bad_at_or_zone(at, tz) -> None:
    with pytest.raises(ValueError, match=r"invalid|unknown"):
        period_at("day", at, now=0.0, tz=tz)


def test_time_before_the_first_run_record_of_a_migrated_journal_counts_as_covered() -> None:
    rep = build_report(
        DAY, [(P0 + 12 * H, P0 + 20 * H)], [st(P0, 0)], [], {"cpu": INFO},
        unrecorded_before=P0 + 12 * H,
    )  # fmt: skip
    assert rep.coverage_s == 20 * H
    assert not rep.coverage_known
    assert "before 2024-05-01T12:00:00Z" in rep.notes[0]


def test_a_removed_or_redefined_kpi_ends_its_series() -> None:
    k = only(report([st(P0 - H, 0, A), st(P0 - H, 0, B), StatusChange(P0 + 6 * H, "cpu", (), -3),
                     st(P0 + 6 * H, 0, B)], []))  # fmt: skip
    a, b = k.series
    assert a.observed_s == 6 * H  # gone with the old definition
    assert b.observed_s == 24 * H  # in the new definition's first commit again


def test_a_kpi_of_the_rules_never_evaluated_has_no_availability() -> None:
    k = only(report([], []))
    assert k.availability is None
    assert dict(k.status_s)["no_data"] == 24 * H
