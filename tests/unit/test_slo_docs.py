"""docs/slo.md: its YAML examples are valid, and its worked example's /metrics lines are what
kpimon computes for that traffic."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kpimon.config.loader import build_config
from kpimon.config.rules import parse_rules
from kpimon.kpi.engine import Engine
from kpimon.labels import format_key
from kpimon.slo.health import services_health
from kpimon.slo.metrics import render_families
from kpimon.slo.tracker import SloTracker
from kpimon.store import Store

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "slo.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(?:yaml)?\n(.*?)```", DOC, flags=re.S)


def block(start: str) -> str:
    (found,) = [b for b in BLOCKS if b.startswith(start)]
    return found


def test_reference_examples_are_valid() -> None:
    text = (
        block("slos:")
        + "kpis:\n  - {name: checkout_latency_p99, owner: o, expr: up, "
        + "levels: {warning: {above: 1}}}\n"
        + block("services:")
    )
    kpis, problems = parse_rules(text, "docs/slo.md")
    assert problems == []
    assert len(kpis) == 5


def test_the_worked_example_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "kpimon.yml").write_text("")
    rules = (ROOT / "rules" / "slo-example.yaml").read_text(encoding="utf-8")
    (tmp_path / "slo.yaml").write_text(rules)
    cfg = build_config("rule_files: [slo.yaml]\n", str(tmp_path / "kpimon.yml"))
    store = Store(retention_s=cfg.retention_s(), min_interval_s=300)
    engine = Engine(cfg.kpis, store, interval_s=300)
    tracker = SloTracker(cfg.slos)
    keys = [
        format_key("http_requests_total", {"job": "checkout", "code": "200"}),
        format_key("http_requests_total", {"job": "checkout", "code": "500"}),
    ]
    # The test data of rules/tests/slo_example_test.yaml, from Unix time 0: 500 good requests
    # per 5 minutes for 3 days, then 2 steps with 100 errors of 500.
    good = bad = 0.0
    steps = 866
    for i in range(steps + 1):
        if 0 < i <= 864:
            good += 500
        elif i > 864:
            good, bad = good + 400, bad + 100
        t = i * 300.0
        store.ingest("t", (("instance", "shop:80"),), keys, np.array([good, bad]), t)
        tracker.update(t, store, interval_s=300)
    engine.tick(steps * 300.0)
    out: list[str] = []
    render_families(tracker.readings(), services_health(cfg.services, engine.kpis), out)
    rendered = "".join(out)
    expected = block("kpimon_slo_objective_ratio").splitlines()
    for line in expected:
        if line.startswith("kpimon_kpi_value"):
            assert engine.kpis["checkout_availability:burn_1h_5m"].state.value.tolist() == [
                float(line.rsplit(" ", 1)[1])
            ]
        elif line.startswith("kpimon_kpi_status"):
            assert engine.kpis["checkout_availability:burn_1h_5m"].state.status.tolist() == [
                int(line.rsplit(" ", 1)[1])
            ]
        else:
            assert line + "\n" in rendered, line
