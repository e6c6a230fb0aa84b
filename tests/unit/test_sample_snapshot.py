"""Samples across a clean restart: saved at shutdown, replayed at start-up (store/snapshot.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from kpimon.app import SAMPLES_LONG, SAMPLES_MAIN, Daemon, Options
from kpimon.config import load_config
from kpimon.labels import format_key
from kpimon.promql import compile_expr
from kpimon.promql.evaluate import Vector, evaluate
from kpimon.store import snapshot
from kpimon.testing import FakeClock

RULES = """
kpis:
  - {name: busy, owner: team, expr: 'rate(busy_total[5m])', levels: {warning: {above: 100}}}
  - {name: up_2h, owner: team, expr: 'avg_over_time(up_ratio[2h])', levels: {warning: {below: 0.5}}}
"""
T0 = 1_700_000_000.0
EXPRS = [compile_expr(e) for e in ("rate(busy_total[5m])", "avg_over_time(up_ratio[2h])")]


def daemon(tmp_path: Path, clock: FakeClock) -> Daemon:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "kpimon.yml").write_text("rule_files: [rules.yaml]\n")
    cfg = load_config(str(tmp_path / "kpimon.yml"))
    opts = Options(config_file=str(tmp_path / "kpimon.yml"), storage_path=str(tmp_path / "data"))
    (tmp_path / "data").mkdir(exist_ok=True)
    return Daemon(cfg, opts, clock)


def values(d: Daemon, t: float) -> list[list[float]]:
    out = []
    for expr in EXPRS:
        got = evaluate(expr, d.tiers.for_expr(expr), t)
        assert isinstance(got, Vector)
        out.append(got.values.tolist())
    return out


def test_a_clean_restart_keeps_the_samples_of_both_stores(tmp_path: Path) -> None:
    clock = FakeClock(start_wall=T0)
    first = daemon(tmp_path, clock)
    assert first.tiers.long is not None  # the 2h range reads the long store
    keys = [format_key("busy_total", {"cpu": "0"}), format_key("up_ratio", {"probe": "web"})]
    labels = (("instance", "a:1"), ("job", "app"))
    for k in range(480):  # two hours of 15 s scrapes; up_ratio 0 for the first half hour
        first.buffer.ingest("a", labels, keys, np.array([10.0 * k, float(k >= 120)]), T0 + 15 * k)
    t = T0 + 15 * 479 + 1
    first.buffer.flush()
    before = values(first, t)
    first._save_samples()
    assert (tmp_path / "data" / SAMPLES_MAIN).exists()
    assert (tmp_path / "data" / SAMPLES_LONG).exists()
    second = daemon(tmp_path, clock)  # a new process on the same storage path
    assert values(second, t) == [[], []]
    second._restore_samples()
    assert values(second, t) == before
    assert before[1] == [pytest.approx(0.75, abs=0.01)]  # the long store's two hours came back


def test_a_damaged_snapshot_is_reported_and_ignored(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock(start_wall=T0)
    d = daemon(tmp_path, clock)
    (tmp_path / "data" / SAMPLES_MAIN).write_bytes(b"PK\x03\x04 not a zip at all")
    with caplog.at_level(logging.ERROR, logger="kpimon"):
        d._restore_samples()
    assert "sample snapshot ignored" in caplog.text
    assert d.store.series_count == 0
    with pytest.raises(snapshot.SnapshotError):
        snapshot.load(tmp_path / "data" / SAMPLES_MAIN)
