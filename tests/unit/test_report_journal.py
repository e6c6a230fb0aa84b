"""What the journal keeps for reports: the status log and the runs (kpimon.journal.reportlog).

A real Engine over a real Store journals to SQLite under tmp_path; time passed as numbers.
"""

from __future__ import annotations

from pathlib import Path

from kpimon.journal import Journal
from kpimon.journal.reportlog import STATUS_GONE, STATUS_KPI_GONE, read_runs, read_statuses
from tests.unit.test_journal import T0, feed, make_engine, run

RULES = """
kpis:
  - name: cpu
    owner: team
    expr: x
    levels: {critical: {above: 90}}
    no_data: {after: 2m, resolve_after: 5m}
"""
S1 = (("instance", "i"), ("job", "j"), ("s", "a"))
S2 = (("instance", "i"), ("job", "j"), ("s", "b"))


def statuses(j: Journal) -> list[tuple[float, tuple[tuple[str, str], ...], int]]:
    return [(c.t - T0, c.labels, c.status) for c in read_statuses(j.connection, T0 + 10**6)]


def test_status_changes_are_logged_once_each_including_no_data(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j, RULES)
    run(e, T0, T0 + 60, x={"a": 10, "b": 10})
    run(e, T0 + 120, T0 + 180, x={"a": 95, "b": 10})  # a critical at once (for 0)
    run(e, T0 + 240, T0 + 720, x={"a": 10})  # b missing: no_data after staleness + 2m
    log = statuses(j)
    assert log[:2] == [(0.0, S1, 0), (0.0, S2, 0)]  # the first commit logs every series
    assert (120.0, S1, 2) in log
    assert (240.0, S1, 0) in log
    no_data = [t for t, lab, s in log if lab == S2 and s == -1]
    assert len(no_data) == 1  # logged once, not at every tick it lasts
    # forgotten once absent and inactive for forget_after (max of no_data's durations)
    assert log[-1] == (540.0, S2, STATUS_GONE)
    assert len(log) == 6
    j.close()


def test_runs_and_a_restart_keep_the_log_complete(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j, RULES)
    run(e, T0, T0 + 120, x={"a": 95})
    j.close()
    j = Journal.open(tmp_path / "data")  # a new process, after an outage of 10 minutes
    e = make_engine(tmp_path, j, RULES)
    e.restore(T0 + 720, outage_tolerance_s=3600.0, grace_s=60.0)
    run(e, T0 + 720, T0 + 840, x={"a": 95})
    assert [(a - T0, b - T0) for a, b in read_runs(j.connection)] == [(0, 120), (720, 840)]
    log = statuses(j)
    # the restarted process logs every series' status again (same change, same time): a
    # report rebuilds the same timeline
    assert log == [(0.0, S1, 2), (0.0, S1, 2)]
    j.close()


def test_a_forgotten_series_is_logged_gone(tmp_path: Path) -> None:
    rules = RULES.replace("resolve_after: 5m}", "resolve_after: 5m}\n    max_gap: 1m")
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j, rules)
    run(e, T0, T0 + 60, x={"a": 10, "b": 10})
    t = T0 + 120
    state = e.kpis["cpu"].state
    while S2 in state.labels and t < T0 + 30 * 86400:
        feed(e, t, "x", a=10)
        e.tick(t)
        t += 3600.0
    assert S2 not in state.labels
    gone = [(lab, s) for _, lab, s in statuses(j) if s == STATUS_GONE]
    assert gone == [(S2, STATUS_GONE)]
    j.close()


def test_a_removed_kpi_is_logged_gone(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j, RULES)
    run(e, T0, T0 + 60, x={"a": 10})
    e2 = make_engine(tmp_path, j, RULES.replace("name: cpu", "name: cpu2"))
    run(e2, T0 + 120, T0 + 120, x={"a": 10})
    log = [(c.kpi, c.t - T0, c.labels, c.status) for c in read_statuses(j.connection, T0 + 10**6)]
    assert sorted(log) == [
        ("cpu", 0.0, S1, 0),
        ("cpu", 120.0, (), STATUS_KPI_GONE),
        ("cpu2", 120.0, S1, 0),
    ]
    # redefined (another threshold): its state starts afresh, so its old series are gone
    e3 = make_engine(tmp_path, j, RULES.replace("name: cpu", "name: cpu2").replace("90", "80"))
    run(e3, T0 + 180, T0 + 180, x={"a": 10})
    log = [(c.kpi, c.t - T0, c.labels, c.status) for c in read_statuses(j.connection, T0 + 10**6)]
    assert log[-2:] == [("cpu2", 180.0, (), STATUS_KPI_GONE), ("cpu2", 180.0, S1, 0)]
    j.close()
