"""Review of SLOs, probes, reports and store tiers: each test pins one defect found in review.

Tests marked ``xfail(strict=True)`` show a defect whose fix is larger than a local change; the
reason says what the fix is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from kpimon.app import Daemon, Options, _wanted, build_sources
from kpimon.config import load_config
from kpimon.config.loader import build_config
from kpimon.errors import ConfigError
from kpimon.ingest import IngestBuffer
from kpimon.journal import TransitionRecord
from kpimon.journal.reportlog import STATUS_KPI_GONE, StatusChange
from kpimon.labels import Labels, format_key
from kpimon.promql import compile_expr
from kpimon.promql.evaluate import Vector, evaluate
from kpimon.report.compute import KpiInfo, build_report
from kpimon.report.period import Period
from kpimon.report.slos import slo_stats
from kpimon.slo.metrics import render_families
from kpimon.slo.model import LEDGER_STEP_S
from kpimon.slo.tracker import Ledger, SloTracker
from kpimon.snapshots import SampleSnapshots
from kpimon.sources.probe import ProbeSource
from kpimon.store import Store, snapshot
from kpimon.store.core import replay
from kpimon.store.tiers import Tiers, plan
from kpimon.testing import FakeClock
from tests.unit.test_slo_engine import RATIO_SLO, STEP, T0, Rig

H = 3600.0
DAY_S = 86400.0
P0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()


# --- report: SLO budget spent per period (kpimon/report/slos.py) ----------------------------


def test_a_days_budget_counts_its_own_288_buckets_not_the_one_ending_at_midnight(
    tmp_path: Path,
) -> None:
    """The tracker records bucket b at the first tick of b (t = b × 5m) as ``increase()`` over
    the 5 minutes *before* t: bucket b holds the events of ((b − 1) × 5m, b × 5m]. The bucket
    ending at the period's start holds the 5 minutes before the period, so counting it makes
    two consecutive days count it twice (a day of 5-minute buckets is 288, not 289)."""
    slo = Rig(tmp_path, RATIO_SLO).cfg.slos[0]
    ledger = Ledger(window_s=slo.window_s)
    b0 = int(P0 // LEDGER_STEP_S)
    for b in range(b0 - 287, b0 + 2 * 288 + 1):  # three days of buckets, 100 events, 1 bad each
        ledger.record(b * LEDGER_STEP_S, 1.0, 100.0)
    data = {slo.name: ledger.pack()}
    day1 = Period("day", "UTC", P0, P0 + DAY_S, "2024-05-01", False)
    day2 = Period("day", "UTC", P0 + DAY_S, P0 + 2 * DAY_S, "2024-05-02", False)
    both = Period("week", "UTC", P0, P0 + 2 * DAY_S, "two days", False)
    (s1,) = slo_stats([slo], data, day1)
    (s2,) = slo_stats([slo], data, day2)
    (s12,) = slo_stats([slo], data, both)
    assert s1.total == 288 * 100.0
    assert s1.bad == 288.0
    assert s1.coverage == 1.0
    assert s1.budget_spent == 10.0  # 1% errors at 99.9%: ten times the allowed rate
    assert s1.total + s2.total == s12.total  # type: ignore[operator]


# --- report: breaches of a KPI removed or redefined while firing (kpimon/report/compute.py) --

A: Labels = (("instance", "a"),)
INFO = KpiInfo(name="cpu", owner="team", group="team", levels=(("critical", "above", 90.0),))


def _tr(seq: int, t: float, frm: str, to: str) -> TransitionRecord:
    return TransitionRecord(seq, t, "cpu", A, "critical", frm, to, 95.0, 90.0, "test", False)


def test_a_breach_open_when_its_kpi_is_redefined_ends_there_and_not_never() -> None:
    """A reload that changes a firing KPI's definition starts its state afresh: the journal
    logs "KPI gone" but no transition to inactive. The report must end the breach there; it
    left it open for ever, so every later report showed it open and breaching all period."""
    statuses = [
        StatusChange(P0 - H, "cpu", A, 0),
        StatusChange(P0 + H, "cpu", A, 2),
        StatusChange(P0 + 2 * H, "cpu", (), STATUS_KPI_GONE),  # redefined (or removed)
        StatusChange(P0 + 2 * H, "cpu", A, 0),  # the new definition: ok
    ]
    transitions = [_tr(1, P0 + H - 60, "inactive", "pending"), _tr(2, P0 + H, "pending", "firing")]
    runs = [(P0 - 48 * H, P0 + 48 * H)]
    day = Period("day", "UTC", P0, P0 + 24 * H, "2024-05-01", False)
    (k,) = build_report(day, runs, statuses, transitions, {"cpu": INFO}).kpis
    (crit,) = k.levels
    assert dict(k.status_s)["critical"] == H
    assert crit.open_at_end == 0
    assert crit.breach_s == H
    assert crit.longest_s == H
    next_day = Period("day", "UTC", P0 + 24 * H, P0 + 48 * H, "2024-05-02", False)
    (k2,) = build_report(next_day, runs, statuses, transitions, {"cpu": INFO}).kpis
    (crit2,) = k2.levels
    assert (crit2.ongoing_at_start, crit2.open_at_end, crit2.breach_s) == (0, 0, 0.0)


# --- SLO gauges: one series per window (kpimon/slo/tracker.py) ------------------------------


def test_an_alert_window_equal_to_the_slo_window_is_exported_once(tmp_path: Path) -> None:
    """``window: 3d`` with the default alerts (the ticket reads 3d, allowed: long ≤ window):
    the tracker gave both the 3d alert window (raw samples) and the SLO window (ledger) as
    ``window="3d"``, two samples of one series in /metrics."""
    rules = RATIO_SLO.replace("    alerts:", "    window: 3d\n    alerts:")
    rules = rules.replace("long: 1h, short: 30m", "long: 3d, short: 6h")
    rig = Rig(tmp_path, rules)
    rig.run([5.0] * 30, [0.0] * 30)  # a bucket recorded: the ledger has coverage
    out: list[str] = []
    render_families(rig.tracker.readings(), [], out)
    text = "".join(out)
    for family in ("kpimon_slo_sli_ratio", "kpimon_slo_burn_rate"):
        assert text.count(f'{family}{{slo="checkout",window="3d"}}') == 1, family


# --- probes: the 30-day window across a reload (kpimon/app.py, kpimon/sources/probe.py) ----


@asynccontextmanager
async def ok_server() -> AsyncIterator[str]:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/ok"
    finally:
        await runner.cleanup()


PROBE_RULE = """
kpis:
  - name: web_up
    owner: sre
    expr: probe_success
    levels: {critical: {below: 1}}
"""


async def test_a_reload_that_changes_other_kpis_keeps_a_probes_30_day_window(
    tmp_path: Path,
) -> None:
    """ProbeSource equality includes the wanted metric names, so a reload that adds a KPI
    over another metric replaced every probe by a fresh one: its 30-day window restarted
    from zero (and the next hourly save overwrote the journal's copy), though the probe's
    definition did not change (docs/probes.md: "a reload that leaves it unchanged keeps it")."""
    async with ok_server() as url, aiohttp.ClientSession() as session:
        (tmp_path / "rules.yaml").write_text(PROBE_RULE)
        path = tmp_path / "kpimon.yml"
        path.write_text(
            f"probes:\n  - {{name: web, interval: 1h, http: {{url: '{url}'}}}}\n"
            "rule_files: [rules.yaml]\n"
        )
        daemon = Daemon(load_config(str(path)), Options(config_file=str(path)), FakeClock())
        daemon.session = session
        try:
            await daemon.manager.update(build_sources(daemon.cfg, session, _wanted(daemon.cfg)))
            before = daemon.manager.sources()["probe/web"]
            assert isinstance(before, ProbeSource)
            for _ in range(3):
                await before.collect()
            (tmp_path / "rules.yaml").write_text(
                PROBE_RULE
                + "  - {name: web_status, owner: sre, expr: probe_http_status_code,"
                + " levels: {critical: {above: 399}}}\n"
            )
            assert await daemon.reload() == []
            after = daemon.manager.sources()["probe/web"]
            assert isinstance(after, ProbeSource)
            batch = await after.collect()
            got = dict(zip(batch.keys, batch.values.tolist(), strict=True))
            assert b"probe_http_status_code" in got  # the new KPI's metric is collected
        finally:
            await daemon.manager.stop()
    assert np.frombuffer(after.window_data(), dtype="<i8").reshape(-1, 3)[:, 1].sum() == 4


# --- SLO burn rates after a restart (kpimon/slo, kpimon/kpi/engine.py) ----------------------


def _feed(rig: Rig, t0: float, per_step: list[tuple[float, float]], start: tuple[float, float]):  # type: ignore[no-untyped-def]
    good, bad = start
    t = t0
    for i, (g, b) in enumerate(per_step):
        good, bad = good + g, bad + b
        t = t0 + i * STEP
        keys = [
            format_key("http_requests_total", {"code": "200"}),
            format_key("http_requests_total", {"code": "500"}),
        ]
        rig.store.ingest("t", (("instance", "i"), ("job", "j")), keys, np.array([good, bad]), t)
        rig.engine.tick(t)
        rig.tracker.update(t, rig.store, interval_s=STEP)
    return t, (good, bad)


def _assert_five_bad_minutes_burn_the_hour_at_8(
    second: Rig, t: float, counters: tuple[float, float]
) -> None:
    """After the restart at ``t``: 5 minutes of 10% errors burn the 5m window at 100 and,
    with the hour's earlier samples replayed, the 1h window at 8.3: no page."""
    steps = [(4.5, 0.5)] * 20  # 100 requests, 10 errors over 5 minutes
    _feed(second, t + STEP, [(0.0, 0.0), *steps], counters)
    assert second.window(300.0).burn_rate == pytest.approx(100.0)
    assert second.window(3600.0).burn_rate == pytest.approx(10 / 1200 / 0.001, rel=0.05)
    assert second.status("checkout:burn_1h_5m") == 0


async def test_the_1h_burn_rate_after_a_restart_is_the_hours_not_the_uptimes(
    tmp_path: Path,
) -> None:
    """55 minutes of clean traffic (5 requests a step), a crash, a restart without downtime,
    then 5 minutes with 10 errors in 100 requests. Over the hour: 10 / 1,200 = 0.83%, burn 8.3
    < 14.4: no page (5m: burn 100). A crash saves nothing, so before periodic snapshots the
    restarted kpimon computed the 1h window over the 5 minutes since the restart: burn 100,
    page. Now the first process wrote a sample snapshot every 5 minutes (kpimon/snapshots.py),
    the last 3 minutes before it crashed; the restarted one replays it, those 3 minutes are a
    gap, and the 1h window is the hour's."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Rig(tmp_path / "a", RATIO_SLO)
    path = tmp_path / "samples-main.npz"
    clock = FakeClock(start_wall=T0 - 180.0)  # started 3 minutes before the first sample
    snaps = SampleSnapshots(lambda: [(path, first.store)], clock, interval_s=300.0)
    writer = asyncio.create_task(snaps.run())
    await clock.advance(180.0)
    counters = (0.0, 0.0)
    for i in range(221):
        if i:
            await clock.advance(STEP)  # a snapshot at T0 + 2m, 7m, ..., 52m
            await snaps.idle()
        t, counters = _feed(first, T0 + i * STEP, [(5.0, 0.0)], counters)
    writer.cancel()  # the crash at 55m: nothing more is written
    assert snaps.failures_total == 0
    saved = {key: data for key, _, data in first.tracker.unsaved_ledgers()}
    second = Rig(tmp_path / "b", RATIO_SLO)  # the restarted process: empty store
    assert second.tracker.restore(lambda key, _fp: saved.get(key)) == 1
    saved_at, histories = snapshot.load(path)
    assert saved_at == T0 + 52 * 60
    assert histories[0].times_ms[-1] == (T0 + 52 * 60 - STEP) * 1000  # the last 3m are lost
    replay(histories, second.store)
    _assert_five_bad_minutes_burn_the_hour_at_8(second, t, counters)


def test_after_a_clean_restart_the_1h_burn_rate_is_the_hours(tmp_path: Path) -> None:
    """The same hour, restarted cleanly: the samples saved at shutdown are replayed at the
    start (kpimon/store/snapshot.py), so the 1h window is the hour's: burn 8.3, no page."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Rig(tmp_path / "a", RATIO_SLO)
    t, counters = _feed(first, T0, [(5.0, 0.0)] * 221, (0.0, 0.0))
    saved = {key: data for key, _, data in first.tracker.unsaved_ledgers()}
    snapshot.save(tmp_path / "samples.npz", first.store.history(None), t)
    second = Rig(tmp_path / "b", RATIO_SLO)  # the restarted process
    assert second.tracker.restore(lambda key, _fp: saved.get(key)) == 1
    saved_at, histories = snapshot.load(tmp_path / "samples.npz")
    assert saved_at == t
    replay(histories, second.store)
    _assert_five_bad_minutes_burn_the_hour_at_8(second, t, counters)


# --- SLO ledger with an evaluation interval longer than the bucket (kpimon/slo/tracker.py) --


def test_an_evaluation_interval_that_does_not_divide_5m_is_refused_with_slos(
    tmp_path: Path,
) -> None:
    """The ledger records one 5-minute increase per bucket at the first tick in it: with a
    10m interval it would count every other bucket, with 2m skip or double some stretches."""
    (tmp_path / "rules.yaml").write_text(RATIO_SLO)
    for interval in ("10m", "2m", "7m"):
        with pytest.raises(ConfigError) as info:
            build_config(
                f"global: {{evaluation_interval: {interval}}}\nrule_files: [rules.yaml]\n",
                str(tmp_path / "kpimon.yml"),
            )
        (problem,) = info.value.problems
        assert "needs global.evaluation_interval to divide 5m" in problem.message
        assert f"got {interval}" in problem.message
    for interval in ("15s", "1m", "5m", "100s"):
        build_config(
            f"global: {{evaluation_interval: {interval}}}\nrule_files: [rules.yaml]\n",
            str(tmp_path / "kpimon.yml"),
        )


# --- store tiers across a reload (kpimon/store/tiers.py) ------------------------------------

SHORT = compile_expr("rate(busy_total[5m])")
LONG = compile_expr("avg_over_time(probe_success[6h])")
PAD = 300.0 + 15.0


def test_a_reload_adding_a_long_kpi_answers_as_one_store_would() -> None:
    tiers = Tiers(plan([SHORT]), padding_s=PAD, min_interval_s=15.0)
    one = Store(retention_s=plan([SHORT]).main_range_s + PAD, min_interval_s=15.0)
    tiered, single = IngestBuffer(tiers.main, tiers=tiers), IngestBuffer(one)
    labels = (("instance", "a:1"), ("job", "j"))
    ks = [b"busy_total", b"probe_success"]

    def scrape(k: int) -> None:
        for sink in (tiered, single):
            sink.ingest("a", labels, ks, np.array([float(k), float(k % 2)]), 15.0 * k)
            sink.flush()

    for k in range(40):  # 10 minutes, probe_success alternating 0, 1
        scrape(k)
    new = plan([SHORT, LONG])
    tiers.reconfigure(new, padding_s=PAD, min_interval_s=15.0)
    assert new.long_range_s is not None
    one.reconfigure(new.long_range_s + PAD, 15.0)  # what the daemon did with one store
    scrape(40)
    t = 15.0 * 40 + 1
    got = evaluate(LONG, tiers.for_expr(LONG), t)
    want = evaluate(LONG, one, t)
    assert isinstance(got, Vector)
    assert isinstance(want, Vector)
    assert got.values.tolist() == want.values.tolist()


def test_a_breach_of_the_new_definition_at_the_reload_tick_stays_open() -> None:
    """The "KPI gone" record and the new definition's first transitions share a tick: only
    breaches begun before it end there."""
    statuses = [
        StatusChange(P0 + H, "cpu", A, 2),
        StatusChange(P0 + 2 * H, "cpu", (), STATUS_KPI_GONE),
        StatusChange(P0 + 2 * H, "cpu", A, 2),
    ]
    transitions = [
        _tr(1, P0 + H, "inactive", "firing"),
        _tr(2, P0 + 2 * H, "inactive", "firing"),  # the new definition fires at once (for 0)
    ]
    day = Period("day", "UTC", P0, P0 + 24 * H, "2024-05-01", False)
    (k,) = build_report(day, [(P0 - H, P0 + 48 * H)], statuses, transitions, {"cpu": INFO}).kpis
    (crit,) = k.levels
    assert (crit.breaches, crit.resolved, crit.open_at_end) == (2, 1, 1)
    assert crit.breach_s == 24 * H - H


# --- probe SLI ledger and late-arriving probe results (kpimon/slo/tracker.py) ---------------

PROBE_SLO = """
slos:
  - name: web
    owner: sre
    objective: 99
    sli: {probe: 'probe_success{probe="web"}'}
    alerts:
      - {severity: critical, long: 1h, short: 5m, factor: 14.4}
"""


def test_a_probe_result_that_straddles_a_bucket_tick_is_counted(tmp_path: Path) -> None:
    """A probe's result is stamped with its start but reaches the store when it ends; a slow
    one (a time-out: a failure) can straddle the tick that records a ledger bucket. With the
    tracker's probe delay (the longest timeout and a margin) each bucket ends that long
    before its tick, so every result is counted exactly once, one bucket later at most."""
    rig = Rig(tmp_path, PROBE_SLO)
    rig.tracker = SloTracker(rig.cfg.slos, probe_delay_s=11.0)
    labels = (("instance", "http://x/"), ("job", "probe"), ("probe", "web"))
    # A failing probe every 30 s, each timing out after 10 s: started at T0 + 30k + 22.
    starts = [T0 + 30 * k + 22 for k in range(120)]
    pending = list(starts)
    for j in range(241 + 40):  # an hour, then 10 minutes for the last buckets to be recorded
        tick = T0 + STEP * j
        while pending and pending[0] + 10 <= tick:  # results arrive when the probe ends
            s = pending.pop(0)
            rig.store.ingest("probe/web", labels, [b"probe_success"], np.array([0.0]), s)
        rig.tracker.update(tick, rig.store, interval_s=STEP)
    bad, total, _ = rig.tracker._tracked["web"].ledger.sums(T0 + H + 600)
    assert total == 120  # every probe, once
    assert bad == 120
    # Without the delay the straddling ones are lost (the defect this guards against).
    rig.tracker = SloTracker(rig.cfg.slos)
    rig.store = Store(retention_s=rig.cfg.retention_s(), min_interval_s=STEP)
    pending = list(starts)
    for j in range(241 + 40):
        tick = T0 + STEP * j
        while pending and pending[0] + 10 <= tick:
            s = pending.pop(0)
            rig.store.ingest("probe/web", labels, [b"probe_success"], np.array([0.0]), s)
        rig.tracker.update(tick, rig.store, interval_s=STEP)
    assert rig.tracker._tracked["web"].ledger.sums(T0 + H + 600)[1] < 120


# --- report markdown: label values with a pipe (kpimon/report/render.py) ------------------


def test_a_label_value_with_a_pipe_keeps_the_markdown_series_table_whole() -> None:
    """A series ``{route="/a|/b"}``: the unescaped ``|`` split the table cell in two (GitHub
    and most renderers split cells on ``|`` even inside a code span unless it is ``\\|``)."""
    from kpimon.report.render import render_markdown

    labels: Labels = (("route", "/a|/b"),)
    day = Period("day", "UTC", P0, P0 + 24 * H, "2024-05-01", False)
    rep = build_report(
        day, [(P0, P0 + 24 * H)], [StatusChange(P0, "cpu", labels, 0)], [], {"cpu": INFO}
    )
    (row,) = [line for line in render_markdown(rep).splitlines() if "/a" in line]
    header = next(line for line in render_markdown(rep).splitlines() if line.startswith("| series"))
    assert len(row.replace("\\|", "").split("|")) == len(header.split("|"))
    assert "\\|" in row
