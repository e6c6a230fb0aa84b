"""SLOs through the real engine and store: hand-computed SLI, burn rates and budgets.

The counters are sampled every 15 s on a grid that starts exactly one long window before the
evaluation, so ``increase()`` over each window is the counters' difference, with no
extrapolation: the numbers below are what a person computes on paper.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kpimon.config.loader import build_config
from kpimon.kpi.engine import Engine
from kpimon.labels import format_key
from kpimon.slo.tracker import SloTracker
from kpimon.store import Store

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # on the hour, so 5-minute buckets line up
STEP = 15.0

RATIO_SLO = """
slos:
  - name: checkout
    owner: payments
    objective: 99.9
    sli:
      error_query: sum(increase(http_requests_total{code=~"5.."}[{{.window}}]))
      total_query: sum(increase(http_requests_total[{{.window}}]))
    alerts:
      - {severity: critical, long: 1h, short: 5m, factor: 14.4}
      - {severity: warning, long: 1h, short: 30m, factor: 1}
"""


class Rig:
    """An engine and an SLO tracker over one store, fed with two counters."""

    def __init__(self, tmp_path, rules: str) -> None:  # type: ignore[no-untyped-def]
        (tmp_path / "rules.yaml").write_text(rules)
        self.cfg = build_config("rule_files: [rules.yaml]\n", str(tmp_path / "kpimon.yml"))
        self.store = Store(retention_s=self.cfg.retention_s(), min_interval_s=STEP)
        self.engine = Engine(self.cfg.kpis, self.store, interval_s=STEP)
        self.tracker = SloTracker(self.cfg.slos)

    def run(self, good_per_step: list[float], bad_per_step: list[float]) -> float:
        """Scrape cumulative counters (one step's increments per list item, the first sample
        at 0) and evaluate after each scrape; returns the last tick's time."""
        good = bad = 0.0
        t = T0
        for i, (g, b) in enumerate(zip([0.0, *good_per_step], [0.0, *bad_per_step], strict=True)):
            good, bad = good + g, bad + b
            t = T0 + i * STEP
            keys = [
                format_key("http_requests_total", {"code": "200"}),
                format_key("http_requests_total", {"code": "500"}),
            ]
            self.store.ingest(
                "t", (("instance", "i"), ("job", "j")), keys, np.array([good, bad]), t
            )
            self.engine.tick(t)
            self.tracker.update(t, self.store, interval_s=STEP)
        return t

    def value(self, kpi: str) -> float:
        st = self.engine.kpis[kpi].state
        assert len(st.value) == 1
        return float(st.value[0])

    def status(self, kpi: str) -> int:
        return int(self.engine.kpis[kpi].state.status[0])

    def window(self, seconds: float):  # type: ignore[no-untyped-def]
        (reading,) = self.tracker.readings()
        return {w.window_s: w for w in reading.windows}[seconds]


def hour(total: int, errors_at: dict[int, float]) -> tuple[list[float], list[float]]:
    """240 steps (1 hour) with ``total`` requests spread evenly; errors at the given steps."""
    per = total / 240
    bad = [errors_at.get(i, 0.0) for i in range(240)]
    good = [per - b for b in bad]
    return good, bad


def test_1000_requests_3_errors_at_99_9_is_sli_0_997_and_burn_3(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(tmp_path, RATIO_SLO)
    good, bad = hour(1000, {10: 1, 100: 1, 200: 1})  # none in the last 5 or 30 minutes
    rig.run(good, bad)
    one_hour = rig.window(3600.0)
    assert one_hour.events == pytest.approx(1000)
    assert one_hour.sli == pytest.approx(0.997)
    assert one_hour.burn_rate == pytest.approx(3.0)
    # The last 5 minutes have no error: burn 0, and min(3, 0) = 0: no page.
    assert rig.window(300.0).burn_rate == 0.0
    assert rig.value("checkout:burn_1h_5m") == 0.0
    assert rig.status("checkout:burn_1h_5m") == 0
    # The last 30 minutes (500 requests) hold the error of step 200: burn 1/500/0.001 = 2, and
    # min(3, 2) = 2 is above the ticket's 1x: warning.
    assert rig.window(1800.0).burn_rate == pytest.approx(2.0)
    assert rig.value("checkout:burn_1h_30m") == pytest.approx(2.0)
    assert rig.status("checkout:burn_1h_30m") == 1


def test_the_page_fires_only_when_both_windows_burn_above_14_4(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(tmp_path, RATIO_SLO)
    # 1,200 requests in the hour (5 per step); 20 errors in the last 5 minutes (20 steps):
    # 1h: 20/1200 = 1.667% → burn 16.67; 5m: 20/100 = 20% → burn 200. min = 16.67 > 14.4.
    good, bad = hour(1200, dict.fromkeys(range(220, 240), 1.0))
    rig.run(good, bad)
    assert rig.window(3600.0).burn_rate == pytest.approx(1000 / 60)
    assert rig.window(300.0).burn_rate == pytest.approx(200.0)
    assert rig.value("checkout:burn_1h_5m") == pytest.approx(1000 / 60)
    assert rig.status("checkout:burn_1h_5m") == 2  # critical: paged
    # The ticket (1h and 30m above 1x) fires too: 30m burns at 20/600/0.001 = 33.3.
    assert rig.value("checkout:burn_1h_30m") == pytest.approx(1000 / 60)
    assert rig.status("checkout:burn_1h_30m") == 1  # its one level is a warning


def test_a_burst_over_only_the_short_window_does_not_page(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(tmp_path, RATIO_SLO)
    # 17 errors of 1,200 in the hour: 1h burn 14.17 (below 14.4), 5m burn 170.
    good, bad = hour(1200, dict.fromkeys(range(223, 240), 1.0))
    rig.run(good, bad)
    assert rig.window(3600.0).burn_rate == pytest.approx(17 / 1.2)
    assert rig.value("checkout:burn_1h_5m") == pytest.approx(17 / 1.2)
    assert rig.status("checkout:burn_1h_5m") == 0


def test_min_events_keeps_a_low_traffic_burn_quiet(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules = RATIO_SLO.replace("    alerts:", "    min_events: 1000\n    alerts:")
    rig = Rig(tmp_path, rules)
    good, bad = hour(960, dict.fromkeys(range(200, 240), 1.0))  # 40 errors of 960: burn 41.7
    rig.run(good, bad)
    assert rig.window(3600.0).burn_rate == pytest.approx(40 / 0.96)
    assert rig.value("checkout:burn_1h_5m") == 0.0  # 960 < 1000 events: guarded
    assert rig.status("checkout:burn_1h_5m") == 0


def test_min_events_lets_enough_traffic_through(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules = RATIO_SLO.replace("    alerts:", "    min_events: 1000\n    alerts:")
    rig = Rig(tmp_path, rules)
    good, bad = hour(1200, dict.fromkeys(range(200, 240), 1.0))
    rig.run(good, bad)
    assert rig.value("checkout:burn_1h_5m") == pytest.approx(40 / 1.2)
    assert rig.status("checkout:burn_1h_5m") == 2


def test_good_query_form_gives_the_same_numbers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules = RATIO_SLO.replace(
        'error_query: sum(increase(http_requests_total{code=~"5.."}[{{.window}}]))',
        'good_query: sum(increase(http_requests_total{code!~"5.."}[{{.window}}]))',
    )
    rig = Rig(tmp_path, rules)
    good, bad = hour(1200, dict.fromkeys(range(220, 240), 1.0))
    rig.run(good, bad)
    assert rig.window(3600.0).sli == pytest.approx(1 - 20 / 1200)
    assert rig.value("checkout:burn_1h_5m") == pytest.approx(1000 / 60)


def test_probe_sli_counts_each_probe_result_as_an_event(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules = """
slos:
  - name: website
    owner: web
    objective: 99
    sli: {probe: 'probe_success{probe="home"}'}
    alerts: [{severity: critical, long: 1h, short: 5m, factor: 10}]
"""
    rig = Rig(tmp_path, rules)
    t = T0
    for i in range(241):  # 241 probe results in [T0, T0 + 1h]; the last 21 fail
        t = T0 + i * STEP
        key = [format_key("probe_success", {"probe": "home"})]
        value = np.array([0.0 if i >= 220 else 1.0])
        rig.store.ingest("p", (("job", "probe"),), key, value, t)
        rig.engine.tick(t)
        rig.tracker.update(t, rig.store, interval_s=STEP)
    one_hour = rig.window(3600.0)
    assert one_hour.events == 241
    assert one_hour.sli == pytest.approx(220 / 241)
    assert one_hour.burn_rate == pytest.approx(21 / 241 / 0.01)
    assert rig.window(300.0).sli == 0.0  # all 21 results of [t - 5m, t] failed
    assert rig.value("website:burn_1h_5m") == pytest.approx(21 / 241 / 0.01)
    assert rig.status("website:burn_1h_5m") == 0  # 8.7 < 10


def test_no_data_kpi_is_0_with_data_and_fires_after_its_for_without(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(
        tmp_path, RATIO_SLO.replace("    alerts:", "    no_data_alert: {for: 2m}\n    alerts:")
    )
    good, bad = hour(1200, {})
    t = rig.run(good[:40], bad[:40])
    assert rig.value("checkout:sli_no_data") == 0.0
    # The counters stop being scraped: after the 5m window empties, the KPI reads 1; it fires
    # 2 minutes later.
    fired_at = None
    for k in range(1, 60):
        now = t + k * STEP
        rig.engine.tick(now)
        if fired_at is None and rig.status("checkout:sli_no_data") == 2:
            fired_at = now - t
    assert fired_at is not None
    assert 300 + 120 <= fired_at <= 300 + 120 + 2 * STEP


def test_the_slo_window_comes_from_the_ledger_and_gives_the_budget(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(tmp_path, RATIO_SLO)
    good, bad = hour(1200, {10: 1.0, 130: 1.0})  # 2 errors of 1,200 over the hour
    rig.run(good, bad)
    (reading,) = rig.tracker.readings()
    window = rig.window(30 * 86400.0)
    # 12 five-minute buckets (the first tick's bucket has a single sample: no increase).
    assert reading.coverage == pytest.approx(12 / 8640)
    assert window.events == pytest.approx(1200, rel=1e-3)  # buckets extrapolate a little
    assert window.burn_rate == pytest.approx(2 / 1200 / 0.001, rel=1e-3)
    assert reading.budget_remaining == pytest.approx(1 - 2 / 1.2, rel=1e-3)
    assert reading.budget_remaining < 0  # overspent: 1.67 budgets' worth of errors so far


def test_no_requests_give_nan_sli_and_no_page(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(tmp_path, RATIO_SLO)
    rig.run([0.0] * 240, [0.0] * 240)
    assert math.isnan(rig.window(3600.0).sli)
    assert math.isnan(rig.value("checkout:burn_1h_5m"))
    assert rig.status("checkout:burn_1h_5m") == 0
    assert rig.value("checkout:sli_no_data") == 0.0  # counters present: data, no traffic


def test_an_error_counter_that_does_not_exist_yet_counts_zero(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Exporters create the code="500" series at the first failure: until then error_query has
    # no series, which must read as "no errors", not as "no data".
    rig = Rig(tmp_path, RATIO_SLO)
    for i in range(241):
        t = T0 + i * STEP
        key = [format_key("http_requests_total", {"code": "200"})]
        rig.store.ingest("t", (("job", "j"),), key, np.array([5.0 * i]), t)
        rig.engine.tick(t)
        rig.tracker.update(t, rig.store, interval_s=STEP)
    assert rig.window(3600.0).sli == 1.0
    assert rig.window(3600.0).burn_rate == 0.0
    assert rig.value("checkout:burn_1h_5m") == 0.0
    assert rig.status("checkout:burn_1h_5m") == 0  # ok, not no_data
    (reading,) = rig.tracker.readings()
    assert reading.budget_remaining == 1.0


def test_a_reload_keeps_the_ledger_of_an_unchanged_slo_and_drops_a_changed_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(tmp_path, RATIO_SLO)
    good, bad = hour(1200, {10: 1.0})
    t = rig.run(good[:80], bad[:80])  # 20 minutes: 4 five-minute buckets
    (before,) = rig.tracker.readings()
    assert before.coverage == 4 / 8640
    # A new objective keeps the ledger (it counts events, whatever the objective).
    (tmp_path / "rules.yaml").write_text(RATIO_SLO.replace("99.9", "99.5"))
    cfg = build_config("rule_files: [rules.yaml]\n", str(tmp_path / "kpimon.yml"))
    rig.tracker.reload(cfg.slos)
    rig.tracker.update(t, rig.store, interval_s=STEP)
    (kept,) = rig.tracker.readings()
    assert kept.coverage == 4 / 8640
    assert kept.slo.objective == 99.5
    # Another SLI starts a new ledger.
    (tmp_path / "rules.yaml").write_text(RATIO_SLO.replace('code=~"5.."', 'code="500"'))
    cfg = build_config("rule_files: [rules.yaml]\n", str(tmp_path / "kpimon.yml"))
    rig.tracker.reload(cfg.slos)
    rig.tracker.update(t + STEP, rig.store, interval_s=STEP)
    (fresh,) = rig.tracker.readings()
    assert fresh.coverage == 1 / 8640  # only the bucket it has just recorded
