"""Each hook against a real local receiver (aiohttp on 127.0.0.1, port 0) or a real command.

The receivers answer as PagerDuty, Slack and webhook endpoints do: 202 with a dedup key, 200
``ok``, 429 with ``Retry-After``, 500, 400 "invalid event", or hang until the client gives up.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kpimon.config.alerting import AlertingConfig, HookConfig, Secret
from kpimon.config.daemon import parse_config
from kpimon.errors import Position
from kpimon.notify.exec_hook import ExecHook
from kpimon.notify.pagerduty import PagerDutyHook
from kpimon.notify.registry import HOOK_TYPES, build_hooks
from kpimon.notify.slack import SlackHook
from kpimon.notify.webhook import WebhookHook
from kpimon.testing import FakeClock
from tests.unit.test_notify import T0, firing

POS = Position("k.yml", 1, 1)
ROUTING_KEY = "0123456789abcdef0123456789abcdef"


@dataclass
class Receiver:
    """A recording HTTP receiver whose next answers the test chooses."""

    answers: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    hang: bool = False
    default: tuple[int, dict[str, str], str] = (200, {}, "ok")
    server: TestServer | None = None

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.path_qs, dict(request.headers), body))
        if self.hang:
            await asyncio.Event().wait()  # never answers; the client must give up
        status, headers, text = self.answers.pop(0) if self.answers else self.default
        return web.Response(status=status, headers=headers, text=text)


@pytest.fixture(name="receiver")
async def _receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    rec.server = server
    try:
        yield rec
    finally:
        await server.close()


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def config(kind: str, **kw: Any) -> HookConfig:
    return HookConfig(name=f"test_{kind}", kind=kind, position=POS, timeout_s=2.0, **kw)  # type: ignore[arg-type]


PD_OK = (202, {}, '{"status":"success","message":"Event processed","dedup_key":"k"}')


async def test_pagerduty_trigger_then_resolve(receiver: Receiver, session, clock: FakeClock):
    receiver.answers = [PD_OK, PD_OK]
    hook = PagerDutyHook(
        config("pagerduty", url=Secret(value=receiver.url("/v2/enqueue")),
               routing_key=Secret(value=ROUTING_KEY)),
        session,
        clock=clock,
    )  # fmt: skip
    event = firing(level="critical", value=95.0)
    result = await hook.send([event])
    assert result.ok
    assert result.status == 202
    resolved = await hook.send([firing(level="critical", status="resolved", resolved_at=T0)])
    assert resolved.ok
    (path, headers, body1), (_, _, body2) = receiver.requests
    assert path == "/v2/enqueue"
    assert headers["Content-Type"] == "application/json"
    trigger, resolve = json.loads(body1), json.loads(body2)
    assert trigger["event_action"] == "trigger"
    assert resolve["event_action"] == "resolve"
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["dedup_key"] == resolve["dedup_key"] == event.dedup_key
    assert trigger["payload"]["severity"] == "critical"


@pytest.mark.parametrize(
    ("answer", "outcome", "retry_after"),
    [
        ((429, {"Retry-After": "30"}, '{"status":"throttle event"}'), "retryable", 30.0),
        ((500, {}, "internal"), "retryable", None),
        ((502, {}, "bad gateway"), "retryable", None),
        ((400, {}, '{"status":"invalid event","message":"Event object is invalid",'
                   f'"errors":["bad key {ROUTING_KEY}"]}}'), "permanent", None),
    ],
)  # fmt: skip
async def test_pagerduty_failures(
    receiver: Receiver, session, clock: FakeClock, answer, outcome, retry_after
) -> None:
    receiver.answers = [answer]
    hook = PagerDutyHook(
        config(
            "pagerduty", url=Secret(value=receiver.url()), routing_key=Secret(value=ROUTING_KEY)
        ),
        session,
        clock=clock,
    )
    result = await hook.send([firing()])
    assert result.outcome == outcome
    assert result.retry_after_s == retry_after
    assert result.status == answer[0]
    assert ROUTING_KEY not in result.reason
    assert ROUTING_KEY not in repr(result)
    assert 'pagerduty hook "test_pagerduty"' in result.reason


async def test_hanging_receiver_times_out(receiver: Receiver, session, clock: FakeClock):
    receiver.hang = True
    hook = PagerDutyHook(
        HookConfig(
            name="slow", kind="pagerduty", url=Secret(value=receiver.url()),
            routing_key=Secret(value=ROUTING_KEY), timeout_s=0.3, position=POS,
        ),
        session,
        clock=clock,
    )  # fmt: skip
    started = time.monotonic()
    result = await hook.send([firing()])
    assert time.monotonic() - started < 2.0
    assert result.outcome == "retryable"
    assert "timed out after 0.3s" in result.reason


async def test_connection_refused_is_retryable(session, clock: FakeClock) -> None:
    from tests.helpers.debian import free_port

    url = f"http://127.0.0.1:{free_port()}/v2/enqueue"
    hook = PagerDutyHook(
        config("pagerduty", url=Secret(value=url), routing_key=Secret(value=ROUTING_KEY)),
        session,
        clock=clock,
    )
    result = await hook.send([firing()])
    assert result.outcome == "retryable"
    assert ROUTING_KEY not in result.reason


async def test_routing_key_file_missing_is_retryable_and_secret_free(
    receiver: Receiver, session, clock: FakeClock, tmp_path: Path
) -> None:
    hook = PagerDutyHook(
        config("pagerduty", url=Secret(value=receiver.url()),
               routing_key=Secret(file=str(tmp_path / "nope.key"))),
        session,
        clock=clock,
    )  # fmt: skip
    result = await hook.send([firing()])
    assert result.outcome == "retryable"
    assert "cannot read secret file" in result.reason
    assert receiver.requests == []


async def test_slack(receiver: Receiver, session, clock: FakeClock, tmp_path: Path) -> None:
    secret_path = "/services/T000/B000/sekrit-token"
    receiver.answers = [
        (200, {}, "ok"),
        (429, {"Retry-After": "7"}, "rate_limited"),
        (500, {}, "rollup_error"),
        (404, {}, "channel_not_found"),
    ]
    url_file = tmp_path / "slack.url"  # the usual way to give Slack's URL: a file
    url_file.write_text(receiver.url(secret_path) + "\n")
    hook = SlackHook(config("slack", url=Secret(file=str(url_file))), session, clock=clock)
    results = [await hook.send([firing()]) for _ in range(4)]
    assert [r.outcome for r in results] == ["ok", "retryable", "retryable", "permanent"]
    assert results[1].retry_after_s == 7.0
    assert "channel_not_found" in results[3].reason
    for r in results:
        assert "sekrit" not in r.reason
    path, _, body = receiver.requests[0]
    assert path == secret_path
    msg = json.loads(body)
    assert msg["text"].startswith("[FIRING] warning: cpu_utilization")
    assert msg["blocks"]


async def test_webhook_default_and_template_bodies(receiver: Receiver, session, clock):
    hook = WebhookHook(config("webhook", url=Secret(value=receiver.url())), session, clock=clock)
    events = [firing(), firing(status="resolved", resolved_at=T0, level="critical")]
    assert (await hook.send(events)).ok
    body = json.loads(receiver.requests[0][2])
    assert body["version"] == "4"
    assert body["receiver"] == "test_webhook"
    assert [a["status"] for a in body["alerts"]] == ["firing", "resolved"]
    templated = WebhookHook(
        config("webhook", url=Secret(value=receiver.url()), body=SUMMARY_BODY),
        session,
        clock=clock,
    )  # fmt: skip
    assert (await templated.send([firing()])).ok
    _, headers, raw = receiver.requests[1]
    assert headers["Content-Type"] == "application/json"
    assert json.loads(raw)["text"].endswith("— owner platform-team (firing)")
    receiver.answers = [(503, {}, "busy"), (401, {}, "no")]
    assert (await hook.send(events)).outcome == "retryable"
    assert (await hook.send(events)).outcome == "permanent"


SUMMARY_BODY = '{"text": {{ (alerts[0].annotations.summary ~ " (" ~ status ~ ")") | tojson }}}'
SCRIPT = """\
import json, os, sys, time
mode = sys.argv[1]
data = json.load(sys.stdin)
if mode == "record":
    with open(sys.argv[2], "w") as f:
        json.dump({"body": data, "argv": sys.argv[1:]}, f)
elif mode == "hang":
    import subprocess
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(sys.argv[2], "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
elif mode == "fail":
    print("upstream said no", file=sys.stderr)
    sys.exit(int(sys.argv[2]))
"""


async def test_exec_hook(tmp_path: Path, clock: FakeClock) -> None:
    script = tmp_path / "hook.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out.json"
    weird = "$(touch pwned); `id` > x"
    hook = ExecHook(
        config("exec", command=(sys.executable, str(script), "record", str(out), weird)),
        clock=clock,
    )
    result = await hook.send([firing()])
    assert result.ok, result.reason
    got = json.loads(out.read_text())
    assert got["argv"][-1] == weird  # passed as one argument, no shell
    assert not (tmp_path / "pwned").exists()
    assert got["body"]["version"] == "4"
    assert got["body"]["alerts"][0]["labels"]["instance"] == "db1"

    fail = ExecHook(config("exec", command=(sys.executable, str(script), "fail", "3")), clock=clock)
    result = await fail.send([firing()])
    assert (result.outcome, result.status) == ("retryable", 3)
    assert "exit status 3: upstream said no" in result.reason
    bad = ExecHook(config("exec", command=(sys.executable, str(script), "fail", "65")), clock=clock)
    assert (await bad.send([firing()])).outcome == "permanent"
    missing = ExecHook(config("exec", command=(str(tmp_path / "no-such"),)), clock=clock)
    assert (await missing.send([firing()])).outcome == "permanent"


async def test_exec_timeout_kills_process_group(tmp_path: Path, clock: FakeClock) -> None:
    script = tmp_path / "hook.py"
    script.write_text(SCRIPT)
    pidfile = tmp_path / "child.pid"
    hook = ExecHook(
        HookConfig(
            name="slow",
            kind="exec",
            command=(sys.executable, str(script), "hang", str(pidfile)),
            timeout_s=1.5,
            position=POS,
        ),
        clock=clock,
    )
    started = time.monotonic()
    result = await hook.send([firing()])
    assert time.monotonic() - started < 5
    assert result.outcome == "retryable"
    assert "timed out after 1.5s (killed)" in result.reason
    child = int(pidfile.read_text())
    # A pidfd becomes readable when the process has exited (Linux ≥ 5.3): no polling loop.
    try:
        fd = os.pidfd_open(child)
    except ProcessLookupError:
        return  # already gone and reaped
    try:
        ready, _, _ = await asyncio.to_thread(select.select, [fd], [], [], 5.0)
    finally:
        os.close(fd)
    assert ready, "the command's child survived the timeout"


async def test_exec_outcome_is_the_exit_status_not_stderr(clock: FakeClock) -> None:
    """A command that exits 0 but leaves a child holding stderr open was delivered: calling it
    a timeout would page again. A command that writes a lot to stderr must not block."""

    def hook(code: str) -> ExecHook:
        return ExecHook(
            HookConfig(
                name="x",
                kind="exec",
                command=(sys.executable, "-c", code),
                timeout_s=20,
                position=POS,
            ),
            clock=clock,
        )

    leaves_child = (
        "import subprocess, sys; sys.stdin.read(); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(8)']); sys.exit(0)"
    )
    started = time.monotonic()
    result = await hook(leaves_child).send([firing()])
    assert result.outcome == "ok", result
    assert time.monotonic() - started < 10  # not the 20 s timeout
    noisy = "import sys; sys.stdin.read(); sys.stderr.write('x' * 300000 + '\\nlast'); sys.exit(3)"
    result = await hook(noisy).send([firing()])
    assert result.outcome == "retryable", result
    assert result.reason.endswith("exit status 3: last")


async def test_build_hooks_from_config(session, clock: FakeClock) -> None:
    text = """\
global: {evaluation_interval: 30s}
alerting:
  alertmanagers:
    - static_configs: [{targets: ["127.0.0.1:9093", "127.0.0.1:9094"]}]
      path_prefix: /am/
  hooks:
    - {name: oncall, type: pagerduty, routing_key_env: PD_KEY, matchers: ['severity="critical"']}
    - {name: chat, type: slack, url_file: /etc/kpimon/slack.url}
    - {name: web, type: webhook, url: "http://127.0.0.1:1/x"}
    - {name: run, type: exec, command: [/bin/true]}
"""
    cfg, _, problems = parse_config(text, "k.yml")
    assert problems == []
    assert isinstance(cfg.alerting, AlertingConfig)
    hooks = build_hooks(cfg.alerting, session, clock=clock, evaluation_interval_s=30)
    assert [h.name for h in hooks] == [
        "alertmanager:127.0.0.1:9093",
        "alertmanager:127.0.0.1:9094",
        "oncall",
        "chat",
        "web",
        "run",
    ]
    assert hooks[0].url == "http://127.0.0.1:9093/am/api/v2/alerts"  # type: ignore[attr-defined]
    assert [h.max_batch for h in hooks] == [1000, 1000, 1, 1, 1000, 1000]
    assert set(HOOK_TYPES) == {"pagerduty", "slack", "webhook", "exec"}
    assert "<secret>" in repr(cfg.alerting.hooks[1])


async def test_retry_loop_until_delivered(receiver: Receiver, session, clock: FakeClock):
    """A caller's retry loop: 429 (Retry-After 20), 500, then 202; delays from the policy."""
    from kpimon.notify.retry import RetryPolicy, next_retry_delay

    receiver.answers = [(429, {"Retry-After": "20"}, "slow down"), (500, {}, "oops"), PD_OK]
    hook = PagerDutyHook(
        config(
            "pagerduty", url=Secret(value=receiver.url()), routing_key=Secret(value=ROUTING_KEY)
        ),
        session,
        clock=clock,
    )
    policy = RetryPolicy(initial_s=1, cap_s=300, max_duration_s=3600)
    first = clock.monotonic()
    delays: list[float] = []
    event = firing()
    for attempt in range(10):
        result = await hook.send([event])
        delay = next_retry_delay(
            result,
            attempt=attempt,
            first_attempt_at=first,
            now=clock.monotonic(),
            policy=policy,
            rand=lambda: 0.5,
        )
        if delay is None:
            break
        delays.append(delay)
        await clock.advance(delay)
    assert result.ok
    assert delays == [20.0, 1.0]  # Retry-After wins over 0.5 s of jitter; then 0.5 × 2
    bodies = [json.loads(b) for _, _, b in receiver.requests]
    assert len({b["dedup_key"] for b in bodies}) == 1  # every attempt is the same event


async def test_alertmanager_400_spoils_only_its_own_batch(
    receiver: Receiver, session, clock: FakeClock
) -> None:
    """Alertmanager answers 400 when some alert of a batch is invalid (it keeps the valid ones):
    the other batches must still be sent; a 5xx stops the send (it is retried whole)."""
    from kpimon.notify.alertmanager import AlertmanagerHook

    hook = AlertmanagerHook(
        receiver.url("/api/v2/alerts"),
        session,
        clock=clock,
        timeout_s=2.0,
        evaluation_interval_s=15.0,
    )
    hook.max_batch = 2
    events = [firing(value=float(i)) for i in range(5)]  # 3 batches
    receiver.answers = [(400, {}, "bad alert POSTs: [1]")]
    result = await hook.send(events)
    assert result.outcome == "permanent"
    assert len(receiver.requests) == 3
    receiver.requests.clear()
    receiver.answers = [(200, {}, ""), (503, {}, "")]
    result = await hook.send(events)
    assert result.outcome == "retryable"
    assert len(receiver.requests) == 2
