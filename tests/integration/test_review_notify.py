"""Review of the notification pipeline: secrets in delivery errors, against real loopback
receivers (docs/alerting.md "Secrets": any text a receiver sends back is scrubbed of the
secret; errors name the receiver's scheme://host:port only)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kpimon.notify.dispatch import Notifications
from kpimon.notify.model import AlertEvent
from kpimon.notify.outbox import Outbox
from kpimon.notify.policy import Planner
from kpimon.notify.registry import build_hooks
from kpimon.testing import FakeClock
from tests.helpers.notify import T0, config, engine, feed

KEY = "R0UT1NGK3Y0123456789abcdefABCDEF"  # 32 characters, like a PagerDuty integration key
TOKEN = "xoxb5ecretT0kenQ7w9"
EVENT = AlertEvent(
    kpi="queue_depth",
    level="critical",
    status="firing",
    labels=(("alertname", "queue_depth"), ("severity", "critical")),
    active_at=T0,
    fired_at=T0,
)


@pytest.fixture
async def server() -> AsyncIterator[Callable[[Callable[[web.Request, bytes], web.Response]], str]]:
    """A loopback receiver answering as the test says; returns its base URL."""
    servers: list[TestServer] = []

    async def start(answer: Callable[[web.Request, bytes], web.Response]) -> str:
        async def handle(request: web.Request) -> web.Response:
            return answer(request, await request.read())

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        srv = TestServer(app, host="127.0.0.1", port=0)
        await srv.start_server()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.port}"

    yield start  # type: ignore[misc]
    for srv in servers:
        await srv.close()


async def _send(tmp_path: Path, hook_yaml: str) -> str:
    cfg = config(tmp_path, f"hooks:\n  - {hook_yaml}")
    async with aiohttp.ClientSession() as session:
        [hook] = build_hooks(cfg.alerting, session, clock=FakeClock(), evaluation_interval_s=60)
        result = await hook.send([EVENT])
    assert result.outcome == "permanent"
    return result.reason


async def test_a_secret_echoed_across_the_reason_s_cut_is_scrubbed(
    tmp_path: Path, server: Callable[..., object]
) -> None:
    """The reason keeps the first 300 characters of the answer, and the secret was scrubbed
    AFTER that cut: a key echoed across it left its first characters in the log line and in
    the outbox row's ``error`` column."""

    def invalid(_: web.Request, body: bytes) -> web.Response:
        key = json.loads(body)["routing_key"]
        head = '{"status":"invalid event","message":"Event object is invalid","errors":["'
        pad = "x" * (300 - len(head) - len(" routing_key ") - 20)
        text = f'{head}{pad} routing_key {key} is not a valid integration key"]}}'
        return web.Response(status=400, text=text, content_type="application/json")

    base = await server(invalid)  # type: ignore[operator]
    reason = await _send(
        tmp_path, f'{{name: oncall, type: pagerduty, url: "{base}/v2/enqueue", routing_key: {KEY}}}'
    )
    assert "HTTP 400" in reason
    assert KEY[:20] not in reason, reason


async def test_a_webhook_token_echoed_in_a_404_is_scrubbed(
    tmp_path: Path, server: Callable[..., object]
) -> None:
    """A webhook's URL path is the credential (docs). Web frameworks answer a wrong path with
    it (Express: "Cannot POST /hooks/..."; JSON encoders write "\\/hooks\\/..."): only the
    whole URL was scrubbed, so the token went to the log and the journal."""

    def not_found(request: web.Request, _: bytes) -> web.Response:
        escaped = json.dumps({"url": str(request.url)}).replace("/", "\\/")
        return web.Response(status=404, text=f"Cannot POST {request.path_qs} {escaped}")

    base = await server(not_found)  # type: ignore[operator]
    reason = await _send(
        tmp_path, f'{{name: ticket, type: webhook, url: "{base}/hooks/T01/B02/{TOKEN}?k={TOKEN}"}}'
    )
    assert "HTTP 404" in reason
    assert TOKEN not in reason, reason


async def test_two_alertmanagers_behind_one_host_port_both_get_the_alerts(
    tmp_path: Path, server: Callable[..., object]
) -> None:
    """Two Alertmanagers behind one proxy (``path_prefix`` /team-a and /team-b): every alert
    goes to every target (docs). Both hooks were named ``alertmanager:host:port`` (the prefix
    dropped), so the dispatcher kept one worker for the name and team-a heard nothing."""
    got: dict[str, int] = {}

    def am(request: web.Request, body: bytes) -> web.Response:
        got[request.path] = got.get(request.path, 0) + len(json.loads(body))
        return web.Response(status=200)

    base = await server(am)  # type: ignore[operator]
    host_port = base.removeprefix("http://")
    cfg = config(
        tmp_path,
        f"""
alertmanagers:
  - static_configs: [{{targets: ["{host_port}"]}}]
    path_prefix: /team-a
  - static_configs: [{{targets: ["{host_port}"]}}]
    path_prefix: /team-b
""",
    )
    clock = FakeClock()
    async with aiohttp.ClientSession() as session:
        hooks = build_hooks(cfg.alerting, session, clock=clock, evaluation_interval_s=60)
        names = [h.name for h in hooks if h.name.startswith("alertmanager:")]
        e = engine(cfg)
        n = Notifications(Planner(cfg.alerting, names), Outbox.memory(), hooks, clock=clock)
        e.notifier = n
        await n.start()
        feed(e, clock.wall(), a=50)
        for _ in range(200):  # real loopback I/O; a guard, not a timing assertion
            await clock.settle()
            if len(got) == 2 and not n.busy():
                break
            await asyncio.sleep(0.01)
        await n.stop()
    assert got == {"/team-a/api/v2/alerts": 1, "/team-b/api/v2/alerts": 1}
