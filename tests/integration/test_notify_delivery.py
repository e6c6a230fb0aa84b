"""Notifications delivered over loopback: a receiver down for a simulated hour, the daemon
end to end, and a real Alertmanager.

Receivers are real aiohttp servers on 127.0.0.1. The hour runs on a FakeClock: retries and
backoff move with it, and only the hanging phase costs real time (the hook's 0.1 s timeout
per attempt).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kpimon.app import Daemon, Options
from kpimon.config import load_config
from kpimon.journal import Journal
from kpimon.notify.dispatch import Notifications, policy_for
from kpimon.notify.model import fingerprint
from kpimon.notify.outbox import Outbox
from kpimon.notify.policy import Planner
from kpimon.notify.registry import build_hooks
from kpimon.testing import FakeClock
from tests.helpers.alertmanager import alertmanager, alerts, poll
from tests.helpers.debian import promtool_check_metrics
from tests.helpers.notify import Receiver, config, engine, feed, receiver


async def settle(n: Notifications, clock: FakeClock) -> None:
    """Let the workers run until none waits for a receiver (real I/O on loopback)."""
    deadline = time.monotonic() + 30  # a guard against a hang, not a timing assertion
    while True:
        await clock.settle()
        if not n.busy():
            await clock.settle()
            if not n.busy():
                return
        assert time.monotonic() < deadline, "a send never finished"
        await asyncio.sleep(0.005)


def answered_alerts(rec: Receiver) -> list[tuple[str, str, str]]:
    """(fingerprint, status, startsAt) of every alert the receiver answered 2xx, in order."""
    return [
        (a["fingerprint"], a["status"], a["startsAt"])
        for body in rec.answered
        for a in body["alerts"]
    ]


async def test_a_receiver_down_for_an_hour_gets_everything_once_in_order(
    tmp_path: Path,
) -> None:
    """500s for 15 minutes, then refused connections, then hanging, then up: every
    notification arrives exactly once afterwards, in order per alert."""
    clock = FakeClock(start_wall=1_700_000_000.0)
    async with receiver() as rec, aiohttp.ClientSession() as session:
        cfg = config(
            tmp_path,
            f"""
hooks:
  - {{name: chat, type: webhook, url: "{rec.url}", timeout: 100ms}}
""",
        )
        journal = Journal.open(tmp_path / "data")
        e = engine(cfg, journal)
        outbox = Outbox.open(journal)
        hooks = build_hooks(cfg.alerting, session, clock=clock, evaluation_interval_s=60)
        n = Notifications(
            Planner(cfg.alerting),
            outbox,
            hooks,
            clock=clock,
            rand=random.Random(5).random,
            policies=policy_for(cfg.alerting),
        )
        e.notifier = n
        await n.start()
        rng = random.Random(11)
        depth = {f"q{i}": 0.0 for i in range(5)}
        seen_by_phase: dict[str, int] = defaultdict(int)
        rec.status = 500
        for minute in range(75):
            phase = ("500", "refused", "hang", "up", "up")[minute // 15]
            if phase == "refused" and minute % 15 == 0:
                await rec.down()
            if phase == "hang" and minute % 15 == 0:
                rec.hang = True
                await rec.start()
            if phase == "up" and minute == 45:
                rec.hang, rec.status = False, 200
            if minute < 60:  # alerts keep firing and resolving during the outage
                for q in depth:
                    depth[q] = max(0.0, depth[q] + rng.choice((-30.0, -10.0, 0.0, 10.0, 30.0)))
                feed(e, clock.wall(), **depth)
            before = len(rec.seen)
            for _ in range(12):
                await settle(n, clock)
                await clock.advance(5)
            await settle(n, clock)
            seen_by_phase[phase] += len(rec.seen) - before
        await clock.advance(3600)  # the longest backoff (5 min) has long passed
        await settle(n, clock)
        await n.stop()

        rows = journal.connection.execute(
            "SELECT key, kind, event, state FROM outbox WHERE hook = 'chat' ORDER BY id"
        ).fetchall()
        journal.close()
    assert len(rows) >= 20, len(rows)  # the walk crossed the thresholds again and again
    assert {state for *_, state in rows} == {"delivered"}
    # The receiver saw the outage as it should: 500s answered, nothing while refused, requests
    # that hung; the dispatcher retried.
    assert seen_by_phase["500"] > 0
    assert seen_by_phase["hang"] > 0
    assert seen_by_phase["refused"] == 0
    assert n.counters()[("chat", "retry")] > 0
    # Exactly once: the alerts answered are the rows, one for one...
    from kpimon.notify.model import event_from_json, rfc3339

    expected: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for _, _, text, _ in rows:
        ev = event_from_json(text)
        fp = fingerprint(ev.labels)
        expected[fp].append((fp, ev.status, rfc3339(ev.fired_at)))
    got: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for alert in answered_alerts(rec):
        got[alert[0]].append(alert)
    # ...and in order per alert (each firing before its resolve, episodes in order).
    assert got == expected
    assert sum(len(v) for v in got.values()) == len(rows)
    assert n.counters()[("chat", "success")] == len(rows)


RULES = """
kpis:
  - name: queue_depth
    owner: ops-team
    expr: app_queue_depth
    levels: {warning: {above: 10}}
    annotations: {runbook_url: "https://runbooks.example/queue"}
"""


async def test_the_daemon_notifies_a_webhook_end_to_end(tmp_path: Path) -> None:
    """A KPI over a loopback target fires → the webhook gets it → the value drops → the
    resolve arrives; /metrics carries the notification metrics and lints clean."""
    value = {"v": 50.0}

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=f'app_queue_depth{{queue="a"}} {value["v"]}\n')

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    async with TestServer(app, host="127.0.0.1", port=0) as target, receiver() as rec:
        (tmp_path / "rules.yaml").write_text(RULES)
        (tmp_path / "kpimon.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [rules.yaml]
scrape_configs:
  - job_name: app
    static_configs: [{{targets: ["127.0.0.1:{target.port}"]}}]
alerting:
  hooks:
    - {{name: chat, type: webhook, url: "{rec.url}"}}
""")
        path = str(tmp_path / "kpimon.yml")
        daemon = Daemon(
            load_config(path),
            Options(
                config_file=path, listen_address="127.0.0.1:0", storage_path=str(tmp_path / "data")
            ),
        )
        run = asyncio.create_task(daemon.run())
        try:

            async def until(check: Any) -> None:
                deadline = time.monotonic() + 30
                while not check():
                    assert not run.done(), run
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)

            await until(lambda: len(rec.answered) >= 1)
            [firing] = rec.answered[0]["alerts"]
            assert firing["status"] == "firing"
            assert firing["labels"]["alertname"] == "queue_depth"
            assert firing["labels"]["queue"] == "a"
            assert firing["annotations"]["runbook_url"] == "https://runbooks.example/queue"
            value["v"] = 1.0
            await until(lambda: len(rec.answered) >= 2)
            [resolved] = rec.answered[1]["alerts"]
            assert resolved["status"] == "resolved"
            assert resolved["fingerprint"] == firing["fingerprint"]
            assert daemon.site_address is not None
            host, port = daemon.site_address
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"http://{host}:{port}/metrics") as resp,
            ):
                body = await resp.read()
            text = body.decode()
            assert 'kpimon_notifications_total{hook="chat",result="success"} 2' in text
            assert 'kpimon_notification_queue_length{hook="chat"} 0.0' in text
            assert 'kpimon_notification_oldest_pending_age_seconds{hook="chat"} 0.0' in text
            assert "kpimon_notification_latency_seconds_count 2" in text
            assert "kpimon_notification_planning_failures_total 0" in text
            lint = await asyncio.to_thread(promtool_check_metrics, body)
            assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b""), lint
        finally:
            daemon.stop()
            assert await asyncio.wait_for(run, 30) == 0
    assert len(rec.answered) == 2  # nothing repeated


@pytest.mark.debian
async def test_a_real_alertmanager_gets_the_alert_then_its_resolve(tmp_path: Path) -> None:
    with alertmanager(tmp_path) as base:
        host_port = base.removeprefix("http://")
        cfg = config(
            tmp_path,
            f"""
alertmanagers:
  - static_configs: [{{targets: ["{host_port}"]}}]
""",
            rules=RULES,
        )
        # Alertmanager compares times with its own clock: start two minutes in the past, so
        # that after the simulated minute below the resolve's endsAt is still in its past.
        clock = FakeClock(start_wall=time.time() - 120)
        async with aiohttp.ClientSession() as session:
            e = engine(cfg)
            hooks = build_hooks(cfg.alerting, session, clock=clock, evaluation_interval_s=60)
            [am] = hooks
            planner = Planner(cfg.alerting, [am.name])
            n = Notifications(planner, Outbox.memory(), hooks, clock=clock)
            e.notifier = n
            await n.start()
            feed(e, clock.wall(), a=50)
            await settle(n, clock)

            def ours(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [a for a in found if a["labels"].get("alertname") == "queue_depth"]

            [alert] = await asyncio.to_thread(
                poll, lambda: ours(alerts(base)), lambda found: len(found) == 1
            )
            assert alert["labels"] == {
                "alertname": "queue_depth",
                "severity": "warning",
                "queue": "a",
                "instance": "app:1",
                "job": "app",
            }
            assert alert["annotations"]["runbook_url"] == "https://runbooks.example/queue"
            assert "has been at 50" in alert["annotations"]["summary"]
            # a minute later the active alert is re-sent (state-based, as Prometheus does)
            await clock.advance(60)
            await settle(n, clock)
            assert n.counters()[(am.name, "resent")] == 1
            await clock.advance(1)
            feed(e, clock.wall(), a=1)
            await settle(n, clock)
            await asyncio.to_thread(poll, lambda: ours(alerts(base)), lambda found: found == [])
            assert n.counters()[(am.name, "success")] == 2
            await n.stop()


async def test_a_reload_rebuilds_the_hooks_keeps_queued_rows_and_drops_a_removed_hook_s(
    tmp_path: Path,
) -> None:
    """The daemon's wiring: hooks built on its session, planner and workers reconfigured by a
    reload; rows of a hook that stays are delivered, those of a removed hook are dropped."""
    clock = FakeClock()
    async with receiver() as up, receiver() as down:
        await down.down()  # refuses connections: its rows stay queued
        (tmp_path / "rules.yaml").write_text(RULES)

        def write(hooks: str) -> str:
            (tmp_path / "kpimon.yml").write_text(
                "rule_files: [rules.yaml]\nalerting:\n  hooks:\n" + hooks
            )
            return str(tmp_path / "kpimon.yml")

        both = f"""\
    - {{name: keep, type: webhook, url: "{up.url}", continue: true}}
    - {{name: gone, type: webhook, url: "{down.url}", timeout: 1s}}
"""
        path = write(both)
        daemon = Daemon(load_config(path), Options(config_file=path), clock)
        async with aiohttp.ClientSession() as session:
            daemon.session = session
            n = await daemon._start_notifications(session)
            feed(daemon.engine, clock.wall(), a=50)
            await settle(n, clock)
            assert len(up.answered) == 1
            assert n.queue_length("gone") == 1
            path = write(both.splitlines(keepends=True)[0])
            assert await daemon.reload() == []
            assert n.hook_names() == ["keep"]
            assert n.counters()[("gone", "dropped")] == 1
            view = daemon.metrics_view().notifications
            assert view is not None
            assert dict(view.queue) == {"keep": 0}
            await clock.advance(60)
            feed(daemon.engine, clock.wall(), a=1)
            await settle(n, clock)
            assert [a["status"] for b in up.answered for a in b["alerts"]] == [
                "firing",
                "resolved",
            ]
            await daemon._stop_notifications()
