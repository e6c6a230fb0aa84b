"""The state journal: round trips, restarts within and beyond outage_tolerance, counters.

Real SQLite files under tmp_path, an Engine over a real Store, time passed as numbers.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from kpimon.config.loader import build_config
from kpimon.journal import Journal
from kpimon.kpi.engine import Engine, _canonical, _definition
from kpimon.kpi.machine import (
    CLEARING,
    FIRING,
    INACTIVE,
    PENDING,
    PHASES,
    KpiState,
    LevelRule,
    MachineRule,
    Transition,
)
from kpimon.labels import format_key
from kpimon.store import Store
from kpimon.web.render import breach_seconds

T0 = 1_700_000_000.0
IJ = '["instance","i"],["job","j"]'
HOUR = 3600.0

RULES = """
kpis:
  - name: cpu
    owner: team
    expr: x
    levels: {warning: {above: 70, for: 45m}}
  - name: disk
    owner: team
    expr: y
    levels: {critical: {above: 90, clear: 80, clear_for: 10m}}
"""


def make_engine(tmp_path: Path, journal: Journal | None, rules: str = RULES) -> Engine:
    (tmp_path / "rules.yaml").write_text(rules)
    cfg = build_config("rule_files: [rules.yaml]\n", str(tmp_path / "kpimon.yml"))
    return Engine(cfg.kpis, Store(retention_s=cfg.retention_s(), min_interval_s=15), journal)


def feed(e: Engine, t: float, metric: str = "x", **series: float) -> None:
    keys = [format_key(metric, {"s": k}) for k in series]
    e.store.ingest(
        f"target-{metric}",
        (("instance", "i"), ("job", "j")),
        keys,
        np.array(list(series.values())),
        t,
    )


def run(
    e: Engine, start: float, stop: float, step: float = 60.0, **values: dict[str, float]
) -> list[tuple[str, Transition]]:
    """Tick ``e`` from ``start`` to ``stop`` inclusive, feeding ``values[metric]`` each tick."""
    out: list[tuple[str, Transition]] = []
    t = start
    while t <= stop:
        for metric, series in values.items():
            feed(e, t, metric, **series)
        out.extend(e.tick(t))
        t += step
    return out


def fired_at(transitions: list[tuple[str, Transition]], kpi: str) -> list[float]:
    return [tr.t for name, tr in transitions if name == kpi and tr.to_phase == FIRING]


def restart(tmp_path: Path, journal: Journal, now: float, **kw: float) -> tuple[Engine, Journal]:
    journal.close()
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    kw.setdefault("outage_tolerance_s", HOUR)
    kw.setdefault("grace_s", 15.0)
    e.restore(now, **kw)
    return e, j


def test_state_round_trips_through_the_journal(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    out = run(e, T0, T0 + 600, x={"a": 80, "b": 10, "c": 75}, y={"a": 95, "b": 50})
    before = {name: rt.state for name, rt in e.kpis.items()}
    j.close()

    j = Journal.open(tmp_path / "data")
    assert j.heartbeat == T0 + 600
    e2 = make_engine(tmp_path, j)
    for name, rt in e2.kpis.items():
        assert j.load(name, rt.fingerprint, rt.state) == len(before[name])
        old, new = before[name], rt.state
        assert new.labels == old.labels
        assert new.last_t == old.last_t
        assert new.evaluations == old.evaluations
        for array in KpiState.PERSISTED_ARRAYS:
            if array == "present":
                continue  # nothing is present until the next evaluation
            assert np.array_equal(getattr(new, array), getattr(old, array), equal_nan=True), array
        assert not new.present.any()
    log = list(j.transitions())
    assert [r.seq for r in log] == list(range(1, len(out) + 1))
    assert [(r.kpi, r.labels, r.level, r.t) for r in log] == [
        (name, tr.labels, tr.level, tr.t) for name, tr in out
    ]
    assert log[0].from_phase == "inactive"
    notified = [r.seq for r in log if r.notifies]
    assert notified == [i + 1 for i, (_, tr) in enumerate(out) if tr.notifies]
    assert notified
    j.close()


def test_a_restart_within_outage_tolerance_continues_the_for_timer(tmp_path: Path) -> None:
    # A 45m `for` that had run 30m when kpimon stopped fires 15m of wall-clock after it starts
    # again: the outage (10m here) counts neither for nor against the timer.
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    out = run(e, T0, T0 + 30 * 60, x={"a": 80})
    assert fired_at(out, "cpu") == []
    assert e.kpis["cpu"].state.phase[0].tolist() == [PENDING]

    up = T0 + 40 * 60
    e, j = restart(tmp_path, j, up)
    out = run(e, up + 60, up + 30 * 60, x={"a": 80})
    assert fired_at(out, "cpu") == [up + 15 * 60]
    j.close()


def test_a_restart_beyond_outage_tolerance_restarts_pending_but_keeps_firing(
    tmp_path: Path,
) -> None:
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    run(e, T0, T0 + 30 * 60, x={"a": 80}, y={"a": 95})
    assert e.kpis["disk"].state.phase[0].tolist() == [FIRING]
    stopped = T0 + 30 * 60

    up = stopped + 2 * HOUR
    j.close()
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    restarted = e.restore(up, outage_tolerance_s=HOUR, grace_s=15.0)
    assert [(name, tr.from_phase, tr.to_phase, tr.t) for name, tr in restarted] == [
        ("cpu", PENDING, INACTIVE, up)
    ]
    assert "outage_tolerance" in restarted[0][1].reason
    # journaled like any other transition, before it is returned
    assert [r.to_phase for r in j.transitions()][-1] == "inactive"
    disk = e.kpis["disk"].state
    assert disk.phase[0].tolist() == [FIRING]
    assert disk.status.tolist() == [2]

    out = run(e, up + 60, up + 60 * 60, x={"a": 80}, y={"a": 95})
    assert fired_at(out, "cpu") == [up + 60 + 45 * 60]  # the for timer started over
    assert fired_at(out, "disk") == []  # still the same breach: nothing new to notify
    j.close()


def test_clear_for_continues_within_and_restarts_beyond_outage_tolerance(tmp_path: Path) -> None:
    for outage, resolves in ((5 * 60, 10 * 60), (2 * HOUR, 10 * 60 + 10 * 60)):
        path = tmp_path / str(outage)
        path.mkdir()
        j = Journal.open(path / "data")
        e = make_engine(path, j)
        run(e, T0, T0 + 600, y={"a": 95})
        run(e, T0 + 660, T0 + 660 + 5 * 60, y={"a": 50})  # clearing since T0 + 660, for 5m
        assert e.kpis["disk"].state.phase[0].tolist() == [CLEARING]
        stopped = T0 + 660 + 5 * 60
        up = stopped + outage
        e, j = restart(path, j, up)
        out = run(e, up + 60, up + 30 * 60, y={"a": 50})
        resolved = [tr.t for _, tr in out if tr.to_phase == INACTIVE]
        # within: 5m of clear_for left; beyond: clear_for starts over at the restart
        expected = up + 5 * 60 if outage < HOUR else up + 10 * 60
        assert resolved == [expected], (outage, resolves)
        j.close()


def test_counters_never_go_backwards_and_continue_exactly(tmp_path: Path) -> None:
    ref = make_engine(tmp_path, None)
    values = {"y": {"a": 95, "b": 95}}
    run(ref, T0, T0 + 20 * 60, **values)

    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    seen: list[tuple[list[int], list[float]]] = []

    def sample(engine: Engine) -> None:
        st = engine.kpis["disk"].state
        seen.append((st.breaches[0].tolist(), st.breach_s[0].tolist()))

    t = T0
    for stop in (T0 + 5 * 60, T0 + 9 * 60, T0 + 14 * 60, T0 + 20 * 60):
        run(e, t, stop, **values)
        sample(e)
        # restart with no outage: the journal's heartbeat is the last tick
        e, j = restart(tmp_path, j, stop)
        sample(e)
        t = stop + 60
    final = e.kpis["disk"].state
    assert final.breach_s.tolist() == ref.kpis["disk"].state.breach_s.tolist()
    assert final.breaches.tolist() == ref.kpis["disk"].state.breaches.tolist()
    for (b0, s0), (b1, s1) in itertools.pairwise(seen):
        assert b1 >= b0
        assert s1 >= s0

    # a second breach after a restart counts on from the saved count
    run(e, t, t + 11 * 60, y={"a": 10, "b": 95})  # resolved after clear_for (10m)
    run(e, t + 12 * 60, t + 13 * 60, **values)
    assert e.kpis["disk"].state.breaches[0].tolist() == [2, 1]
    j.close()


def test_the_outage_is_not_missing_data(tmp_path: Path) -> None:
    rules = """
kpis:
  - name: cpu
    owner: team
    expr: x
    max_gap: 2m
    no_data: {after: 5m}
    levels: {warning: {above: 70, for: 45m}}
"""
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j, rules)
    run(e, T0, T0 + 10 * 60, x={"a": 80})
    stopped = T0 + 10 * 60
    up = stopped + 30 * 60
    j.close()
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j, rules)
    e.restore(up, outage_tolerance_s=HOUR, grace_s=15.0)
    st = e.kpis["cpu"].state
    # No data at all yet: the first tick is within the first scrape interval (grace).
    e.tick(up + 10)
    assert st.phase[0].tolist() == [PENDING]
    assert st.status.tolist() == [0]
    # After the grace, max_gap counts from the last tick of the grace, not from the outage.
    e.tick(up + 70)
    e.tick(up + 130)
    assert st.phase[0].tolist() == [PENDING]
    out = e.tick(up + 190)  # 180s > max_gap
    assert [(tr.from_phase, tr.to_phase, tr.reason) for _, tr in out] == [
        (PENDING, INACTIVE, "series missing longer than max_gap")
    ]
    e.tick(up + 250)
    assert st.status.tolist() == [0]
    e.tick(up + 310)  # 300s without data after the grace: no_data
    assert st.status.tolist() == [-1]
    j.close()


def test_an_absent_series_in_the_first_scrape_interval_keeps_pending(tmp_path: Path) -> None:
    # max_gap 0 (the default): without the grace, the first tick after a restart, before any
    # scrape, would drop pending.
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    run(e, T0, T0 + 30 * 60, x={"a": 80})
    up = T0 + 30 * 60 + 120
    e, j = restart(tmp_path, j, up)
    assert e.tick(up + 5) == []
    out = run(e, up + 60, up + 20 * 60, x={"a": 80})
    assert fired_at(out, "cpu") == [up + 15 * 60]
    j.close()


def test_reload_drops_the_state_of_a_changed_kpi(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    run(e, T0, T0 + 120, x={"a": 80, "b": 80}, y={"a": 95})
    changed = RULES.replace("for: 45m", "for: 30m")
    (tmp_path / "rules.yaml").write_text(changed)
    cfg = build_config("rule_files: [rules.yaml]\n", str(tmp_path / "kpimon.yml"))
    e.reload(cfg.kpis)
    run(e, T0 + 180, T0 + 180, x={"c": 80}, y={"a": 95})
    rows = j._conn.execute(
        "SELECT k.name, c.full, c.labels FROM state_chunks c JOIN kpis k USING (kpi_id) "
        "ORDER BY k.name, c.chunk_id"
    ).fetchall()
    # the changed KPI's old chunks are gone; the other keeps its full chunk of the first tick
    assert rows == [("cpu", 1, f'[{IJ},["s","c"]]'), ("disk", 1, f'[{IJ},["s","a"]]')]
    j.close()

    # On restart, a KPI changed since it was journaled starts afresh.
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)  # back to for: 45m
    e.restore(T0 + 240, outage_tolerance_s=HOUR, grace_s=15.0)
    assert len(e.kpis["cpu"].state) == 0
    assert len(e.kpis["disk"].state) == 1
    j.close()


def test_a_removed_kpi_is_dropped_from_the_journal(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    run(e, T0, T0 + 60, x={"a": 80}, y={"a": 95})
    (tmp_path / "rules.yaml").write_text(RULES.split("  - name: disk")[0])
    cfg = build_config("rule_files: [rules.yaml]\n", str(tmp_path / "kpimon.yml"))
    e.reload(cfg.kpis)
    e.tick(T0 + 120)
    assert set(j.saved_kpis()) == {"cpu"}
    assert chunks(j, "disk") == []
    assert j._conn.execute("SELECT count(*) FROM state_chunks").fetchone()[0] == 1
    j.close()


def chunks(j: Journal, kpi: str) -> list[tuple[int, int]]:
    return j._conn.execute(
        "SELECT full, n FROM state_chunks JOIN kpis USING (kpi_id) WHERE name = ? "
        "ORDER BY chunk_id",
        (kpi,),
    ).fetchall()


def test_only_changed_rows_are_written_each_tick(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    series = {f"s{i:02d}": 10.0 for i in range(100)}
    run(e, T0, T0 + 60, x=series)
    st = e.kpis["cpu"].state
    assert chunks(j, "cpu") == [(1, 100)]  # every series, once
    feed(e, T0 + 120, "x", **{**series, "s07": 80.0})
    rows_before = j._conn.total_changes
    e.tick(T0 + 120)
    # one chunk of one record, the KPIs' scalars (x2), one transition, the heartbeat, the
    # run's latest tick (no status changed: nothing in the status log)
    assert j._conn.total_changes - rows_before == 1 + 2 + 1 + 1 + 1
    assert chunks(j, "cpu") == [(1, 100), (0, 1)]
    assert not st.dirty.any()
    # Chunks pile up until they would hold more records than the KPI has series; then one
    # full chunk replaces them all.
    most = 0
    for k in range(3, 60):
        flip = {f"s{i:02d}": 80.0 for i in range(k % 50, k % 50 + 2)}
        feed(e, T0 + 60 * k, "x", **{**series, **flip})
        e.tick(T0 + 60 * k)
        held = chunks(j, "cpu")
        assert held[0][0] == 1
        assert sum(n for full, n in held[1:]) < 100
        most = max(most, len(held))
    assert most > 10
    j.close()
    j = Journal.open(tmp_path / "data")
    e2 = make_engine(tmp_path, j)
    assert j.load("cpu", e2.kpis["cpu"].fingerprint, e2.kpis["cpu"].state) == 100
    for array in KpiState.PERSISTED_ARRAYS:
        if array != "present":
            assert np.array_equal(
                getattr(e2.kpis["cpu"].state, array), getattr(st, array), equal_nan=True
            ), array
    j.close()


def test_a_failed_write_is_counted_and_retried_without_losing_anything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="kpimon.journal")
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    series = {f"s{i}": 10.0 for i in range(50)}
    run(e, T0, T0 + 60, x=series)
    pages = j._conn.execute("PRAGMA page_count").fetchone()[0]
    j._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
    hot = dict.fromkeys(series, 80.0) | {f"n{i}" * 40: 80.0 for i in range(200)}
    out = run(e, T0 + 120, T0 + 180, x=hot)
    assert out == []  # nothing is handed on before it is journaled
    assert j.write_failures_total == 2
    assert j.pending_transitions == 250
    assert caplog.text.count("journal write failed") == 1  # logged once per episode
    j._conn.execute("PRAGMA max_page_count = 1000000")
    out = run(e, T0 + 240, T0 + 240, x=hot)
    assert len(out) == 250
    assert [tr.t for _, tr in out] == [T0 + 120] * 250
    assert "journal writes recovered" in caplog.text
    log = list(j.transitions())
    assert [r.seq for r in log] == list(range(1, 251))
    j.close()
    # and the state written after the failure restores
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    e.restore(T0 + 240, outage_tolerance_s=HOUR, grace_s=0.0)
    assert len(e.kpis["cpu"].state) == 250
    assert (e.kpis["cpu"].state.phase[0] == PENDING).all()
    j.close()


def test_a_journal_without_a_heartbeat_restores_nothing(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "data")
    assert j.heartbeat is None
    e = make_engine(tmp_path, j)
    assert e.restore(T0, outage_tolerance_s=HOUR, grace_s=15.0) == []
    j.close()


def test_an_engine_without_a_journal_behaves_as_before(tmp_path: Path) -> None:
    e = make_engine(tmp_path, None)
    out = run(e, T0, T0 + 60, y={"a": 95})
    assert fired_at(out, "disk") == [T0]
    assert e.restore(T0 + 60, outage_tolerance_s=HOUR, grace_s=15.0) == []


def test_exported_breach_seconds_never_go_backwards_across_an_outage(tmp_path: Path) -> None:
    # /metrics counts a running breach up to the scrape time; the last scrape before kpimon
    # stopped may be almost an interval past the last tick. A breach does not end while kpimon
    # is down, so the restored count includes the outage and the exported value only grows.
    j = Journal.open(tmp_path / "data")
    e = make_engine(tmp_path, j)
    run(e, T0, T0 + 600, y={"a": 95})
    last_scrape = breach_seconds(e.kpis["disk"].state, T0 + 659)[0, 0]
    assert last_scrape == 659.0
    for up in (T0 + 660, T0 + 600 + 2 * HOUR):
        e, j = restart(tmp_path, j, up)
        assert breach_seconds(e.kpis["disk"].state, up + 1)[0, 0] == up + 1 - T0
        assert e.kpis["disk"].state.breaches.tolist() == [[1]]
        run(e, up + 15, up + 15, y={"a": 95})
    j.close()


def test_forgotten_and_returning_series_restore_in_the_machines_order(tmp_path: Path) -> None:
    rule = MachineRule(
        levels=(LevelRule(name="warning", above=True, threshold=5.0, clear=5.0, for_s=30.0),),
        no_data_after_s=60.0,
        no_data_resolve_after_s=60.0,
    )
    state = KpiState(rule)
    a, b, c, d = ((("s", x),) for x in "abcd")
    plan = [[a, b, c], [a, b, c], [a, c], [a, c], [a, c], [a, c], [a, c, d], [a, c, d, b]]
    with Journal.open(tmp_path) as j:
        for k, present in enumerate(plan):
            t = T0 + 15 * k
            trs = state.step(t, present, np.full(len(present), 10.0 + k))
            j.commit(t, [("k", "fp", state)], [("k", tr) for tr in trs])
    assert state.labels == [a, c, d, b]  # b was forgotten after 60s, then came back
    with Journal.open(tmp_path) as j:
        restored = KpiState(rule)
        assert j.load("k", "fp", restored) == 4
    assert restored.labels == state.labels
    for array in KpiState.PERSISTED_ARRAYS:
        if array != "present":
            assert np.array_equal(getattr(restored, array), getattr(state, array), equal_nan=True)


def test_the_fingerprint_changes_with_the_definition_only(tmp_path: Path) -> None:
    a = make_engine(tmp_path, None).kpis
    b = make_engine(tmp_path, None, RULES.replace("owner: team", "owner: other-team")).kpis
    c = make_engine(tmp_path, None, RULES.replace("above: 70", "above: 71")).kpis
    assert a["cpu"].fingerprint == b["cpu"].fingerprint  # owner is not state
    assert a["cpu"].fingerprint != c["cpu"].fingerprint
    assert a["disk"].fingerprint == c["disk"].fingerprint
    # a rule field left at its default is not part of the fingerprint, so adding one to the
    # machine's rule later keeps yesterday's journal
    assert "flapping" not in repr(_canonical(_definition(a["cpu"].kpi)))


def test_partial_chunks_after_series_are_forgotten_restore_exactly(tmp_path: Path) -> None:
    """The journal caches each row's label text per state; forgetting series renumbers the
    rows, and the chunks written after that (partial: few rows change) must still name the
    right series."""
    rule = MachineRule(
        levels=(LevelRule(name="warning", above=True, threshold=5.0, clear=5.0, for_s=30.0),),
        no_data_after_s=60.0,
        no_data_resolve_after_s=60.0,
    )
    state = KpiState(rule)
    everyone = [(("s", f"{i:02d}"),) for i in range(40)]
    rng = np.random.default_rng(3)
    log = []
    partial = 0
    with Journal.open(tmp_path) as j:
        for k in range(30):
            t = T0 + 15 * k
            # series 0-4 vanish from tick 5 on (forgotten after 60 s), 2 come back at tick 20
            present = everyone[5:] if 5 <= k < 20 else everyone[2:] if k >= 20 else everyone
            values = np.where(rng.random(len(present)) < 0.05, 10.0, 1.0)
            trs = [("k", tr) for tr in state.step(t, present, values)]
            log += j.commit(t, [("k", "fp", state)], trs)
            if k > 10:
                partial += j._conn.execute(
                    "SELECT count(*) FROM state_chunks WHERE NOT full"
                ).fetchone()[0]
    assert partial > 3
    assert state.labels[-3:] == everyone[2:5]  # forgotten, then back at the end
    with Journal.open(tmp_path) as j:
        restored = KpiState(rule)
        assert j.load("k", "fp", restored) == len(state)
        assert [(r.labels, r.t, r.to_phase) for r in j.transitions()] == [
            (tr.labels, tr.t, PHASES[tr.to_phase]) for _, tr in log
        ]
    assert restored.labels == state.labels
    for array in KpiState.PERSISTED_ARRAYS:
        if array != "present":
            assert np.array_equal(getattr(restored, array), getattr(state, array), equal_nan=True)
