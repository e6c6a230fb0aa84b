"""SLOs and services end to end in the daemon: rule file → generated KPIs → evaluation ticks →
``kpimon_slo_*`` / ``kpimon_service_*`` in /metrics (clean for ``promtool check metrics``) and
/api/v1/services, over aiohttp on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re

import numpy as np
from aiohttp.test_utils import TestClient, TestServer

from kpimon.app import Daemon, Options
from kpimon.config.loader import build_config
from kpimon.labels import format_key
from kpimon.testing import FakeClock
from kpimon.web.app import build_app
from tests.helpers.debian import promtool_check_metrics

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600
STEP = 15.0

RULES = """
slos:
  - name: checkout
    help: Checkout requests without a server error.
    owner: payments
    objective: 99.9
    sli:
      error_query: sum(increase(http_requests_total{code=~"5.."}[{{.window}}]))
      total_query: sum(increase(http_requests_total[{{.window}}]))
    min_events: 100
kpis:
  - {name: queue_depth, owner: payments, expr: app_queue_depth, levels: {warning: {above: 10}}}
services:
  - name: shop
    owner: payments
    kpis:
      - {kpi: "checkout:burn_1h_5m", importance: 11}
      - {kpi: queue_depth, importance: 5}
      - {kpi: "checkout:sli_no_data", importance: 0}
"""


def samples(body: str, name: str) -> dict[str, float]:
    """``{label body: value}`` of one metric in an exposition text."""
    out = {}
    for m in re.finditer(rf"^{name}\{{(.*)\}} (\S+)$", body, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


async def run_hour(daemon: Daemon, clock: FakeClock, errors_from_step: int) -> None:
    """One hour of 5 requests per 15 s; from ``errors_from_step`` on, one of them fails."""
    good = bad = 0.0
    for i in range(241):
        if i:
            failing = 1.0 if i >= errors_from_step else 0.0
            good, bad = good + 5 - failing, bad + failing
        t = clock.wall()
        keys = [
            format_key("http_requests_total", {"code": "200"}),
            format_key("http_requests_total", {"code": "500"}),
            format_key("app_queue_depth", {"queue": "mail"}),
        ]
        daemon.buffer.ingest("app", (("job", "app"),), keys, np.array([good, bad, 3.0]), t)
        daemon._evaluate()  # the evaluation loop's tick: flush, engine, then the SLO tracker
        if i < 240:
            await clock.advance(STEP)


async def test_slo_and_service_series_in_metrics_and_api(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rules.yaml").write_text(RULES)
    path = str(tmp_path / "kpimon.yml")
    (tmp_path / "kpimon.yml").write_text("rule_files: [rules.yaml]\n")
    cfg = build_config("rule_files: [rules.yaml]\n", path)
    clock = FakeClock(start_wall=T0)
    daemon = Daemon(cfg, Options(config_file=path), clock)
    # 1,200 requests in the hour, the last 20 failing: 1h burn 16.7, 5m burn 200 → page.
    await run_hour(daemon, clock, errors_from_step=221)
    async with TestClient(TestServer(build_app(daemon), host="127.0.0.1", port=0)) as client:
        body = (await (await client.get("/metrics")).read()).decode()
        services = await (await client.get("/api/v1/services")).json()
    assert samples(body, "kpimon_slo_objective_ratio") == {'slo="checkout"': 0.999}
    sli = samples(body, "kpimon_slo_sli_ratio")
    burn = samples(body, "kpimon_slo_burn_rate")
    assert set(sli) == {
        f'slo="checkout",window="{w}"' for w in ("5m", "30m", "1h", "6h", "3d", "30d")
    }
    assert sli['slo="checkout",window="1h"'] == 1 - 20 / 1200
    assert abs(burn['slo="checkout",window="1h"'] - 1000 / 60) < 1e-9
    assert abs(burn['slo="checkout",window="5m"'] - 200) < 1e-9
    # The 6h and 3d windows hold the same hour of data (nothing older was scraped).
    assert abs(burn['slo="checkout",window="3d"'] - 1000 / 60) < 1e-9
    # The SLO window: twelve 5-minute buckets of the ledger (its first had one sample only).
    assert abs(burn['slo="checkout",window="30d"'] - 1000 / 60) < 1e-9
    (remaining,) = samples(body, "kpimon_slo_error_budget_remaining_ratio").values()
    assert abs(remaining - (1 - 1000 / 60)) < 1e-9
    assert samples(body, "kpimon_slo_window_coverage_ratio") == {'slo="checkout"': 12 / 8640}
    # The generated KPIs are ordinary kpimon_kpi_* series too.
    status = samples(body, "kpimon_kpi_status")
    assert status['kpi="checkout:burn_1h_5m"'] == 2
    assert status['kpi="checkout:burn_6h_30m"'] == 2  # 30m burns at 20/600/0.001 = 33 too
    assert status['kpi="checkout:burn_3d_6h"'] == 1
    assert status['kpi="checkout:sli_no_data"'] == 0
    # The importance-11 page makes the service critical.
    assert samples(body, "kpimon_service_health_score") == {'service="shop"': 0.0}
    assert samples(body, "kpimon_service_status") == {'service="shop"': 2.0}
    assert services == {
        "status": "success",
        "data": [
            {
                "service": "shop",
                "owner": "payments",
                "help": "",
                "labels": {},
                "score": 0.0,
                "status": "critical",
                "status_code": 2,
                "kpis": [
                    {
                        "kpi": "checkout:burn_1h_5m",
                        "importance": 11,
                        "status": "critical",
                        "status_code": 2,
                    },
                    {"kpi": "queue_depth", "importance": 5, "status": "ok", "status_code": 0},
                    {
                        "kpi": "checkout:sli_no_data",
                        "importance": 0,
                        "status": "ok",
                        "status_code": 0,
                    },
                ],
            }
        ],
    }
    lint = await asyncio.to_thread(promtool_check_metrics, body.encode())
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b""), lint


async def test_a_healthy_hour_scores_100(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rules.yaml").write_text(RULES)
    path = str(tmp_path / "kpimon.yml")
    cfg = build_config("rule_files: [rules.yaml]\n", path)
    clock = FakeClock(start_wall=T0)
    daemon = Daemon(cfg, Options(config_file=path), clock)
    await run_hour(daemon, clock, errors_from_step=10**6)
    view = daemon.metrics_view()
    (health,) = view.services
    assert (health.score, health.status) == (100.0, 0)
    (reading,) = view.slos
    assert reading.budget_remaining == 1.0
    assert [w.sli for w in reading.windows] == [1.0] * 6
