"""The README's example is what kpimon really produces: the host CPU KPI from rules/host.yaml,
its condition held 47 minutes (fired after its 45-minute `for`), rendered to /metrics and
summarised by the API."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kpimon.config.loader import default_config
from kpimon.kpi.engine import Engine
from kpimon.kpi.summary import series_reports
from kpimon.labels import format_key
from kpimon.store import Store
from kpimon.web.render import MetricsView, Renderer

README = Path(__file__).resolve().parents[2] / "README.md"
FIRED = 1795370400.0  # the wall time at which warning fires in the README
STEP = 15.0
BUSY = 0.724  # CPU share not idle


def _readme_metric_lines() -> list[str]:
    text = README.read_text()
    block = text.split("produces these lines", 1)[1].split("```", 2)[1]
    return [line for line in block.strip().splitlines() if line]


def test_readme_metrics_and_summary_come_from_the_code() -> None:
    cfg = default_config()
    cpu = [k for k in cfg.kpis if k.name == "cpu_utilization"]
    store = Store(retention_s=cfg.retention_s(), min_interval_s=STEP)
    engine = Engine(cpu, store)
    key = [format_key("node_cpu_seconds_total", {"cpu": "0", "mode": "idle"})]
    target = (("instance", "db1"), ("job", "node"))
    # pending starts at the second sample (rate needs two); warning fires 45 minutes later.
    t0 = FIRED - 45 * 60 - STEP
    idle = 1000.0
    t = t0
    while t <= FIRED + 2 * 60:
        store.ingest("db1", target, key, np.array([idle]), t)
        engine.tick(t)
        idle += (1 - BUSY) * STEP
        t += STEP
    now = t - STEP

    rt = engine.kpis["cpu_utilization"]
    body = (
        Renderer()
        .render(
            MetricsView(
                kpis=[rt],
                now=now,
                targets=[],
                last_eval_wall=now,
                last_eval_duration_s=0.0,
                store_series=store.series_count,
                reload_ok=True,
                reload_success_wall=t0,
                version="test",
            )
        )
        .decode()
    )
    rendered = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if not line.startswith("#")
    }
    for line in _readme_metric_lines():
        series, value = line.rsplit(" ", 1)
        assert series in rendered, series
        assert abs(rendered[series] - float(value)) < 1e-6 * max(1.0, abs(float(value))), line

    (report,) = series_reports(rt, now)
    summary = re.search(
        r"`(cpu_utilization\{[^`]*)`", README.read_text().split("/api/v1/kpis` carries", 1)[1]
    )
    assert summary is not None
    assert report.summary == summary.group(1)
