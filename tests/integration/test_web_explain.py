"""``/api/v1/kpis/{name}/explain``, ``/api/v1/alerts`` and the per-series metrics, over a real
engine and store, served by aiohttp on 127.0.0.1 (port 0)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers.debian import promtool_check_metrics
from tests.helpers.web import T0, Daemon, daemon_with_rules, feed_queues, web_client

RULES = """
kpis:
  - name: queue_depth
    help: Jobs waiting per queue.
    owner: messaging-team
    unit: count
    expr: app_queue_depth
    levels:
      warning: {above: 10, for: 1m}
      critical: {above: 100, clear: 80, clear_for: 2m}
    labels: {team: messaging}
    annotations:
      summary: "Queue {{ labels.queue }} is deep"
      runbook_url: https://runbooks.example/queues
  - name: other
    owner: someone
    expr: app_queue_depth * 0
    levels:
      critical: {above: 1}
"""
STEP = 15.0


@pytest.fixture(name="daemon")
def _daemon(tmp_path) -> Daemon:  # type: ignore[no-untyped-def]
    return daemon_with_rules(tmp_path, RULES, min_interval_s=STEP, ready=True)


@pytest.fixture(name="client")
async def _client(daemon: Daemon) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with web_client(daemon) as client:
        yield client


feed = feed_queues


async def test_explain_pending_and_firing(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    feed(daemon, {"mail": 42, "sms": 3}, T0)
    feed(daemon, {"mail": 42, "sms": 3}, T0 + 30)
    daemon.t = T0 + 40
    resp = await client.get("/api/v1/kpis/queue_depth/explain")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["status"] == "success"
    data = doc["data"]
    assert (data["kpi"], data["time"], data["evaluation_interval_seconds"]) == (
        "queue_depth",
        "2023-11-14T22:14:00Z",
        15.0,
    )
    assert data["last_evaluation"] == "2023-11-14T22:13:50Z"
    by_queue = {s["labels"]["queue"]: s for s in data["series"]}
    mail = by_queue["mail"]
    warning = mail["levels"]["warning"]
    assert warning["phase"] == "pending"
    assert (warning["held_seconds"], warning["fires_in_seconds"]) == (40.0, 20.0)
    assert warning["since"] == "2023-11-14T22:13:20Z"
    assert warning["sentence"] == "pending 40s of 1m (42 > 10); fires in 20s if it holds"
    assert mail["levels"]["critical"]["sentence"] == "inactive: 42 is not > 100"
    assert by_queue["sms"]["sentence"] == (
        "ok at 3; warning needs value > 10 for 1m; critical needs value > 100"
    )


async def test_explain_filters_and_missing_samples(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    feed(daemon, {"mail": 500, "sms": 3}, T0)
    feed(daemon, {"sms": 3}, T0 + STEP)
    feed(daemon, {"sms": 3}, T0 + 2 * STEP)
    resp = await client.get("/api/v1/kpis/queue_depth/explain", params={"queue": "mail"})
    (mail,) = (await resp.json())["data"]["series"]
    assert (mail["value"], mail["samples_missing"], mail["missing_seconds"]) == (None, 2, 30.0)
    assert mail["status"] == "critical"
    assert mail["no_data_in_seconds"] == 270.0
    assert mail["sentence"].startswith(
        "critical, no data for 30s (2 samples missing); status no_data in 4m30s"
    )
    exact = '{instance="app:1",job="app",queue="sms"}'
    resp = await client.get("/api/v1/kpis/queue_depth/explain", params={"series": exact})
    assert [s["labels"]["queue"] for s in (await resp.json())["data"]["series"]] == ["sms"]
    resp = await client.get("/api/v1/kpis/queue_depth/explain", params={"series": '{queue="sms"}'})
    assert (await resp.json())["data"]["series"] == []  # a label set matches exactly
    resp = await client.get("/api/v1/kpis/queue_depth/explain", params={"series": "{queue="})
    assert resp.status == 400
    err = await resp.json()
    assert (err["status"], err["errorType"]) == ("error", "bad_data")


async def test_explain_unknown_kpi_is_a_json_404(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/v1/kpis/nope/explain")
    assert resp.status == 404
    assert await resp.json() == {
        "status": "error",
        "errorType": "not_found",
        "error": 'no KPI named "nope"',
    }


async def test_alerts_pending_firing_and_clearing(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/v1/alerts")
    assert resp.status == 200
    assert await resp.json() == {"status": "success", "data": {"alerts": []}}
    feed(daemon, {"mail": 42, "sms": 150}, T0)
    alerts = (await (await client.get("/api/v1/alerts")).json())["data"]["alerts"]
    by_key = {(a["labels"]["queue"], a["labels"]["severity"]): a for a in alerts}
    assert set(by_key) == {("mail", "warning"), ("sms", "warning"), ("sms", "critical")}
    sms = by_key[("sms", "critical")]
    assert sms == {
        "labels": {
            "alertname": "queue_depth",
            "severity": "critical",
            "team": "messaging",
            "instance": "app:1",
            "job": "app",
            "queue": "sms",
        },
        "annotations": {
            "summary": "Queue sms is deep",  # rendered as the notifier renders it
            "runbook_url": "https://runbooks.example/queues",
        },
        "state": "firing",
        "activeAt": "2023-11-14T22:13:20Z",
        "value": "1.5e+02",
    }
    assert by_key[("mail", "warning")]["state"] == "pending"
    assert by_key[("mail", "warning")]["value"] == "4.2e+01"
    # critical back within clear (80): clearing, which is still an open, firing alert
    feed(daemon, {"mail": 42, "sms": 50}, T0 + STEP)
    alerts = (await (await client.get("/api/v1/alerts")).json())["data"]["alerts"]
    states = {(a["labels"]["queue"], a["labels"]["severity"]): a["state"] for a in alerts}
    assert states == {
        ("mail", "warning"): "pending",
        ("sms", "warning"): "pending",
        ("sms", "critical"): "firing",
    }


async def test_per_series_metrics_types_and_running_breach(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    feed(daemon, {"sms": 150}, T0)
    feed(daemon, {"sms": 150}, T0 + STEP)
    daemon.t = T0 + STEP + 5  # between ticks: the running breach counts up to now
    body = await (await client.get("/metrics")).read()
    text = body.decode()
    sms = 'kpi="queue_depth",instance="app:1",job="app",queue="sms"'
    assert "# TYPE kpimon_kpi_breaches_total counter" in text
    assert "# TYPE kpimon_kpi_breach_seconds_total counter" in text
    assert "# TYPE kpimon_kpi_pending_seconds gauge" in text
    assert "# TYPE kpimon_kpi_status_since_timestamp_seconds gauge" in text
    assert "# TYPE kpimon_kpi_flapping gauge" in text
    assert f'kpimon_kpi_breach_seconds_total{{{sms},level="critical"}} 20.0' in text
    assert f'kpimon_kpi_breaches_total{{{sms},level="critical"}} 1.0' in text
    assert f'kpimon_kpi_pending_seconds{{{sms},level="warning"}} 20.0' in text
    assert f"kpimon_kpi_status_since_timestamp_seconds{{{sms}}} {T0!r}" in text
    assert f"kpimon_kpi_flapping{{{sms}}} 0" in text
    # the counter never goes back: at the next tick the machine has added the same 15 s
    feed(daemon, {"sms": 150}, T0 + 2 * STEP)
    text = (await (await client.get("/metrics")).read()).decode()
    assert f'kpimon_kpi_breach_seconds_total{{{sms},level="critical"}} 30.0' in text
    lint = await asyncio.to_thread(promtool_check_metrics, body)
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b""), lint
