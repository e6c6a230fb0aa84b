"""The HTTP endpoints over a real engine and store, served by aiohttp on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from kpimon.labels import format_key
from kpimon.web.render import CONTENT_TYPE
from tests.helpers.debian import promtool_check_metrics
from tests.helpers.web import T0, Daemon, daemon_with_rules, feed_queues, web_client

CONFIG = """
rule_files: [rules.yaml]
"""
RULES = """
kpis:
  - name: queue_depth
    help: 'Jobs waiting; "quoted" and a backslash \\ in help'
    owner: messaging-team
    unit: count
    expr: app_queue_depth
    target: {below: 10}
    levels:
      warning: {above: 10, for: 1m}
      critical: {above: 100}
"""


@pytest.fixture(name="daemon")
def _daemon(tmp_path) -> Daemon:  # type: ignore[no-untyped-def]
    return daemon_with_rules(tmp_path, RULES, config=CONFIG)


@pytest.fixture(name="client")
async def _client(daemon: Daemon) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with web_client(daemon) as client:
        yield client


def feed(daemon: Daemon, values: dict[str, float], t: float) -> None:
    feed_queues(daemon, values, t)
    daemon.ready = True


async def test_ready_only_after_the_first_evaluation(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/-/ready")
    assert resp.status == 503
    assert (await client.get("/-/healthy")).status == 200
    feed(daemon, {"mail": 1}, T0)
    assert (await client.get("/-/ready")).status == 200


async def test_api_kpis_and_one_kpi(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    feed(daemon, {"mail": 42, "sms": 3}, T0)
    feed(daemon, {"mail": 42, "sms": 3}, T0 + 30)
    doc = await (await client.get("/api/v1/kpis")).json()
    assert doc["status"] == "success"
    by_queue = {d["labels"]["queue"]: d for d in doc["data"]}
    mail = by_queue["mail"]
    assert mail["levels"]["warning"]["phase"] == "pending"
    assert mail["levels"]["warning"]["since"] == "2023-11-14T22:13:20Z"
    assert (mail["status"], mail["status_code"]) == ("ok", 0)
    assert mail["target"] == {"below": 10.0}
    assert mail["summary"] == (
        'queue_depth{instance="app:1", job="app", queue="mail"} = 42 — ok; '
        "warning pending 30s of 1m — owner messaging-team"
    )
    feed(daemon, {"mail": 42, "sms": 3}, T0 + 60)
    one = await (await client.get("/api/v1/kpis/queue_depth")).json()
    mail = {d["labels"]["queue"]: d for d in one["data"]}["mail"]
    assert (mail["status"], mail["since"]) == ("warning", "2023-11-14T22:14:20Z")
    assert "warning (above 10) for 1m" in mail["summary"]  # since the condition began


async def test_unknown_kpi_is_a_prometheus_style_error(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/v1/kpis/nope")
    assert resp.status == 404
    assert await resp.json() == {
        "status": "error",
        "errorType": "not_found",
        "error": 'no KPI named "nope"',
    }


async def test_a_bug_in_an_api_handler_answers_json_500(
    daemon: Daemon, client, monkeypatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    from kpimon.web import app as web_app

    def broken(rt):  # type: ignore[no-untyped-def]
        raise RuntimeError("injected")

    monkeypatch.setattr(web_app, "open_alerts", broken)
    daemon.engine.tick(daemon.now())
    resp = await client.get("/api/v1/alerts")
    assert resp.status == 500
    assert await resp.json() == {
        "status": "error",
        "errorType": "internal",
        "error": "internal error: RuntimeError: injected",
    }
    assert "internal error serving /api/v1/alerts" in caplog.text
    assert (await client.get("/-/healthy")).status == 200  # the server carries on


async def test_unknown_api_paths_answer_json(client) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/api/v1/nope")
    assert resp.status == 404
    assert (await resp.json())["errorType"] == "not_found"


async def test_reload_needs_the_lifecycle_flag(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    assert (await client.post("/-/reload")).status == 403
    assert daemon.reloads == []
    daemon.lifecycle_enabled = True
    assert (await client.post("/-/reload")).status == 200
    daemon.problems = ["rules.yaml:3:5: kpis[0]: owner is required"]
    resp = await client.post("/-/reload")
    assert resp.status == 500
    assert "rules.yaml:3:5" in await resp.text()
    assert (await client.get("/-/reload")).status == 405


async def test_metrics_content_type_and_escaping(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    feed(daemon, {'we"ird\\q\nname': 5}, T0)
    resp = await client.get("/metrics")
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    text = await resp.text()
    assert 'queue="we\\"ird\\\\q\\nname"' in text
    assert 'help="Jobs waiting; \\"quoted\\" and a backslash \\\\ in help"' in text


async def test_status_page_escapes_html(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    feed(daemon, {"<script>": 500}, T0)
    page = await (await client.get("/")).text()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "critical" in page


async def test_clashing_and_non_legacy_label_names_still_lint_clean(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    keys = [
        format_key("app_queue_depth", {"queue": "a", "level": "y", "exported_level": "z"}),
        format_key("app_queue_depth", {"queue": "b", "kpi": "x"}),
        format_key("app_queue_depth", {"queue": "c", "exported_kpi": "x"}),
        b'{"app_queue_depth", queue="d", "my.label"="v"}',
    ]
    target = (("instance", "app:1"), ("job", "app"))
    daemon.store.ingest("app", target, keys, np.array([1.0, 2.0, 3.0, 4.0]), T0)
    daemon.engine.tick(T0)
    body = await (await client.get("/metrics")).read()
    text = body.decode()
    # the scraped "level" is renamed past the scraped "exported_level", as Prometheus does
    assert 'exported_level="z",instance="app:1",job="app",exported_exported_level="y"' in text
    assert 'kpimon_kpi_status{kpi="queue_depth",exported_kpi="x",instance=' in text
    assert 'my_label="v"' in text
    lint = await asyncio.to_thread(promtool_check_metrics, body)
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b""), lint


async def test_api_json_is_strict_with_nan_and_infinities(daemon: Daemon, client) -> None:  # type: ignore[no-untyped-def]
    feed(daemon, {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")}, T0)
    raw = await (await client.get("/api/v1/kpis")).text()
    doc = json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    values = {d["labels"]["queue"]: d["value"] for d in doc["data"]}
    assert values == {"nan": "NaN", "inf": "+Inf", "ninf": "-Inf"}
