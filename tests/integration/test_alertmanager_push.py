"""kpimon's Alertmanager hook against a real Alertmanager (Debian's prometheus-alertmanager)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from kpimon.config.alerting import AlertmanagerConfig
from kpimon.errors import Position
from kpimon.notify.alertmanager import AlertmanagerHook
from kpimon.notify.model import AlertEvent
from kpimon.testing import FakeClock
from tests.helpers.alertmanager import alertmanager, alerts, poll
from tests.unit.test_notify import firing

pytestmark = pytest.mark.debian


async def test_push_firing_then_resolved(tmp_path: Path) -> None:
    with alertmanager(tmp_path) as base:
        host_port = base.removeprefix("http://")
        cfg = AlertmanagerConfig(targets=(host_port,), timeout_s=5.0, position=Position("k", 1, 1))
        async with aiohttp.ClientSession() as session:
            # A real wall clock: Alertmanager compares endsAt with its own now.
            clock = FakeClock(start_wall=time.time())
            [hook] = AlertmanagerHook.from_config(
                cfg, session, clock=clock, evaluation_interval_s=15
            )
            now = clock.wall()
            event = firing(active_at=now - 600, fired_at=now - 60, now=now,
                           external_url="http://kpimon.example:8574")  # fmt: skip
            result = await hook.send([event])
            assert result.ok, result.reason

            def ours(found: list[dict]) -> list[dict]:
                return [a for a in found if a["labels"].get("alertname") == "cpu_utilization"]

            found = await asyncio.to_thread(
                poll, lambda: ours(alerts(base)), lambda found: len(found) == 1
            )
            [alert] = found
            assert alert["labels"] == dict(event.labels)
            assert alert["annotations"]["summary"] == event.summary
            assert alert["annotations"]["runbook_url"] == "https://runbooks.example/cpu"
            assert alert["generatorURL"].startswith("http://kpimon.example:8574/graph?g0.expr=")
            assert alert["status"]["state"] in ("active", "unprocessed")

            resolved = firing(active_at=now - 600, fired_at=now - 60, now=now + 1,
                              status="resolved", resolved_at=clock.wall() - 1)  # fmt: skip
            result = await hook.send([resolved])
            assert result.ok, result.reason
            # Alertmanager lists only unresolved alerts: a resolved one leaves the list.
            await asyncio.to_thread(poll, lambda: ours(alerts(base)), lambda found: found == [])


async def test_invalid_alert_and_wrong_path_are_permanent(tmp_path: Path) -> None:
    with alertmanager(tmp_path) as base:
        async with aiohttp.ClientSession() as session:
            hook = AlertmanagerHook(
                f"{base}/api/v2/alerts",
                session,
                clock=FakeClock(start_wall=time.time()),
                timeout_s=5,
                evaluation_interval_s=15,
            )
            now = time.time()
            invalid = AlertEvent(
                kpi="k",
                level="warning",
                status="firing",
                labels=(("0bad", "x"), ("alertname", "k")),
                active_at=now,
                fired_at=now,
            )
            result = await hook.send([invalid])
            assert (result.outcome, result.status) == ("permanent", 400), result.reason
            # endsAt is never sent before startsAt (Alertmanager would reject the alert).
            event = firing(status="resolved", fired_at=2_000_000_000.0, resolved_at=1.0)
            assert b'"endsAt":"2033' in hook.body([event], 0)
            wrong = AlertmanagerHook(
                f"{base}/api/v2/no-such-endpoint", session, clock=FakeClock(), timeout_s=5,
                evaluation_interval_s=15,
            )  # fmt: skip
            result = await wrong.send([event])
            assert result.outcome == "permanent"
            assert result.status == 404
