"""kpimon as operators run it: a subprocess, real sockets, real signals, real Prometheus tools."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.helpers.daemon import kpimon
from tests.helpers.debian import binary, fetch, free_port, promtool_check_metrics, running
from tests.helpers.web import exposition_target

EXPOSITION = b"""# HELP app_queue_depth Jobs waiting.
# TYPE app_queue_depth gauge
app_queue_depth{queue="mail"} 42
app_queue_depth{queue="sms"} 3
# HELP unrelated_metric Not read by any rule.
# TYPE unrelated_metric gauge
unrelated_metric 1
"""

RULES = """
kpis:
  - name: queue_depth
    help: Jobs waiting per queue.
    owner: messaging-team
    unit: count
    expr: app_queue_depth
    target: {below: 100}
    levels:
      warning: {above: 10}
      critical: {above: 1000, for: 5m}
"""

EXTRA_RULE = """
  - name: queue_total
    help: Jobs waiting in all queues.
    owner: messaging-team
    unit: count
    expr: sum(app_queue_depth)
    levels:
      warning: {above: 100}
"""


def write_config(tmp_path: Path, target: str, rules: str) -> Path:
    (tmp_path / "rules.yaml").write_text(rules)
    cfg = tmp_path / "kpimon.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: app\n"
        f"    static_configs: [{{targets: ['{target}'], labels: {{env: test}}}}]\n"
        "rule_files: [rules.yaml]\n"
    )
    return cfg


@pytest.fixture(name="target")
async def _target():
    async with exposition_target(EXPOSITION) as target:
        yield target


def kpis(k) -> dict[str, dict]:
    return {(d["kpi"], d["labels"].get("queue", "")): d for d in k.json("/api/v1/kpis")["data"]}


async def test_serve_reload_and_stop(tmp_path: Path, target: str) -> None:
    cfg = write_config(tmp_path, target, RULES)
    with kpimon(tmp_path, f"--config.file={cfg}") as k:
        await asyncio.to_thread(k.wait_for, "ready", lambda: k.get("/-/ready")[0] == 200)
        assert k.get("/-/healthy")[0] == 200
        docs = kpis(k)
        mail = docs[("queue_depth", "mail")]
        assert mail["status"] == "warning"
        assert mail["status_code"] == 1
        assert mail["value"] == 42
        assert mail["owner"] == "messaging-team"
        assert mail["labels"] == {"queue": "mail", "env": "test", "job": "app", "instance": target}
        assert mail["summary"].startswith('queue_depth{env="test", instance=')
        assert "warning (above 10)" in mail["summary"]
        assert docs[("queue_depth", "sms")]["status"] == "ok"
        status, body = k.get("/metrics")
        text = body.decode()
        assert status == 200
        assert 'kpimon_kpi_status{kpi="queue_depth",env="test",instance="' in text
        assert f'kpimon_target_up{{instance="{target}",job="app"}} 1' in text

        # SIGHUP with a valid config: the new KPI appears, the old one keeps its state.
        since = mail["since"]
        write_config(tmp_path, target, RULES + EXTRA_RULE)
        k.signal(signal.SIGHUP)
        docs = await asyncio.to_thread(
            k.wait_for, "reloaded KPI", lambda: (d := kpis(k)) and ("queue_total", "") in d and d
        )
        assert docs[("queue_depth", "mail")]["since"] == since
        assert "kpimon_config_last_reload_successful 1" in k.get("/metrics")[1].decode()

        # SIGHUP with an invalid config: keep running the old one, say so in the metrics and log.
        (tmp_path / "rules.yaml").write_text(RULES.replace("    owner: messaging-team\n", "", 1))
        k.signal(signal.SIGHUP)
        await asyncio.to_thread(
            k.wait_for,
            "failed reload",
            lambda: "kpimon_config_last_reload_successful 0" in k.get("/metrics")[1].decode(),
        )
        assert ("queue_total", "") in kpis(k)
        assert "rules.yaml:3:5: kpis[0]" in k.log()
        assert "owner" in k.log()

        started = time.monotonic()
        k.signal(signal.SIGTERM)
        code = await asyncio.to_thread(k.proc.wait, 10)
        assert code == 0
        assert time.monotonic() - started < 5
        assert "stopped" in k.log()


async def test_invalid_config_at_start_exits_1_with_positions(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, "127.0.0.1:1", RULES.replace("unit: count", "unit: count\n    for: 5m")
    )
    with kpimon(tmp_path, f"--config.file={cfg}") as k:
        code = await asyncio.to_thread(k.proc.wait, 30)
        assert code == 1
        assert "rules.yaml:7:5: kpis[0]" in k.log()


async def test_promtool_accepts_metrics_and_prometheus_scrapes_kpimon(
    tmp_path: Path, target: str
) -> None:
    cfg = write_config(tmp_path, target, RULES + EXTRA_RULE)
    with kpimon(tmp_path, f"--config.file={cfg}") as k:
        await asyncio.to_thread(k.wait_for, "ready", lambda: k.get("/-/ready")[0] == 200)
        body = k.get("/metrics")[1]
        lint = await asyncio.to_thread(promtool_check_metrics, body)
        assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b""), lint

        port = free_port()
        prom_cfg = tmp_path / "prometheus.yml"
        prom_cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: kpimon\n    static_configs: [{{targets: ['{k.base[7:]}']}}]\n"
        )
        args = [
            binary("prometheus"),
            f"--config.file={prom_cfg}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        base = f"http://127.0.0.1:{port}"
        with running(args, f"{base}/-/ready", timeout_s=60):
            query = urllib.parse.quote('kpimon_kpi_status{kpi="queue_depth"}')

            def seen():
                doc = json.loads(fetch(f"{base}/api/v1/query?query={query}"))
                return {r["metric"]["queue"]: r["value"][1] for r in doc["data"]["result"]} or None

            got = await asyncio.to_thread(k.wait_for, "Prometheus to see KPI series", seen)
            assert got == {"mail": "1", "sms": "0"}


async def test_embedded_default_monitors_this_host(tmp_path: Path) -> None:
    with kpimon(tmp_path) as k:  # no --config.file and no kpimon.yml in the working directory
        await asyncio.to_thread(k.wait_for, "ready", lambda: k.get("/-/ready")[0] == 200, 60)
        wanted = {"cpu_utilization", "memory_utilization", "disk_usage", "load_per_core", "uptime"}

        def all_kpis_have_series():
            # cpu_utilization is a rate: it needs a second host sample (one interval) first.
            return wanted <= {d["kpi"] for d in k.json("/api/v1/kpis")["data"]}

        await asyncio.to_thread(k.wait_for, "every host KPI", all_kpis_have_series, 90)
        text = k.get("/metrics")[1].decode()
        assert 'kpimon_target_up{instance="' in text
        assert 'job="host"' in text
        assert "(embedded default)" in k.log()
        frozen = re.search(r"ready kpis=\d+ heap_frozen_objects=(\d+)", k.log())
        assert frozen is not None, k.log()
        assert int(frozen.group(1)) > 1000  # kpimon.heap: ready, the heap is frozen
        k.signal(signal.SIGINT)
        assert await asyncio.to_thread(k.proc.wait, 10) == 0


async def test_a_clean_restart_replays_the_samples_it_saved(tmp_path: Path, target: str) -> None:
    """SIGTERM saves the scraped samples under the storage path; the next start replays them
    before its first scrape (kpimon/store/snapshot.py)."""
    cfg = write_config(tmp_path, target, RULES)
    with kpimon(tmp_path, f"--config.file={cfg}") as k:
        await asyncio.to_thread(k.wait_for, "ready", lambda: k.get("/-/ready")[0] == 200)
        k.signal(signal.SIGTERM)
        assert await asyncio.to_thread(k.proc.wait, 10) == 0
        assert "samples saved" in k.log()
    assert (tmp_path / "data" / "samples-main.npz").is_file()
    with kpimon(tmp_path, f"--config.file={cfg}") as k:
        line = await asyncio.to_thread(k.log_line, "samples restored")
        assert "targets=1" in line
        await asyncio.to_thread(k.wait_for, "ready", lambda: k.get("/-/ready")[0] == 200)
        k.signal(signal.SIGTERM)
        assert await asyncio.to_thread(k.proc.wait, 10) == 0
