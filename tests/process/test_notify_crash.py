"""A real ``python -m kpimon run`` killed between sending a notification and acknowledging it
re-sends that same notification (same dedup key) after the restart, and nothing else; and
SIGTERM stops it promptly even while a receiver hangs.

The receiver is an aiohttp server on 127.0.0.1 in the test's event loop that records each
request and then, as the test chooses, stalls its answer or answers 202 as PagerDuty does.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kpimon.journal import Journal
from tests.helpers.daemon import Kpimon, kpimon
from tests.helpers.notify import Receiver, receiver

RULES = """
kpis:
  - name: always
    owner: team
    expr: "1"
    levels: {warning: {above: 0}}
"""
ROUTING_KEY = "0123456789abcdef0123456789abcdef"


def write_config(tmp_path: Path, rec: Receiver, timeout: str = "60s") -> Path:
    (tmp_path / "rules.yaml").write_text(RULES)
    cfg = tmp_path / "kpimon.yml"
    cfg.write_text(f"""
global: {{evaluation_interval: 1s}}
rule_files: [rules.yaml]
alerting:
  hooks:
    - name: oncall
      type: pagerduty
      url: "{rec.url}"
      routing_key: "{ROUTING_KEY}"
      timeout: {timeout}
""")
    return cfg


async def until(k: Kpimon, what: str, check: Callable[[], Any], timeout_s: float = 60) -> Any:
    """Poll ``check`` without blocking the receiver's event loop; fail with kpimon's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert k.proc.poll() is None, f"kpimon exited waiting for {what}:\n{k.log()}"
        try:
            got = await asyncio.to_thread(check)
        except (OSError, AssertionError):
            got = None
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; log:\n{k.log()[-4000:]}")


def metric(k: Kpimon, name: str) -> float | None:
    status, body = k.get("/metrics")
    if status != 200:
        return None
    m = re.search(rf"^{re.escape(name)} (\S+)$", body.decode(), re.M)
    return None if m is None else float(m.group(1))


async def test_sigkill_between_send_and_ack_repeats_only_that_notification(
    tmp_path: Path,
) -> None:
    async with receiver() as rec:
        cfg = write_config(tmp_path, rec)
        args = (f"--config.file={cfg}", "--storage.path=data")
        rec.hang = True  # record the trigger, never answer: kpimon waits for the answer
        with kpimon(tmp_path, *args) as k:
            await until(k, "the trigger to arrive", lambda: len(rec.seen) == 1)
            k.signal(signal.SIGKILL)  # sent, not acknowledged
            assert await asyncio.to_thread(k.proc.wait, 30) == -signal.SIGKILL
        first = rec.seen[0]
        assert first["event_action"] == "trigger"

        rec.hang, rec.status = False, 202
        with kpimon(tmp_path, *args) as k:
            await until(k, "the re-send", lambda: len(rec.answered) == 1)
            success = 'kpimon_notifications_total{hook="oncall",result="success"}'
            await until(k, "the acknowledgement", lambda: metric(k, success) == 1)
            k.signal(signal.SIGTERM)
            assert await asyncio.to_thread(k.proc.wait, 30) == 0
            log = k.log()
        assert "Traceback" not in log, log
        again = rec.answered[0]
        assert again["dedup_key"] == first["dedup_key"]  # PagerDuty appends, never pages twice
        assert again == first  # the very same notification, from the journal

        # A third run: the alert still fires, nothing is pending, nothing is sent again.
        with kpimon(tmp_path, *args) as k:
            await until(k, "ready", lambda: k.get("/-/ready")[0] == 200)
            first_eval = metric(k, "kpimon_last_evaluation_timestamp_seconds")
            assert first_eval is not None
            await until(
                k,
                "two more evaluations",
                lambda: (
                    (metric(k, "kpimon_last_evaluation_timestamp_seconds") or 0) >= first_eval + 2
                ),
            )
            assert metric(k, 'kpimon_notification_queue_length{hook="oncall"}') == 0
            k.signal(signal.SIGTERM)
            assert await asyncio.to_thread(k.proc.wait, 30) == 0
        assert len(rec.seen) == 2

    with Journal.open(tmp_path / "data") as j:
        rows = j.connection.execute("SELECT hook, kind, state FROM outbox").fetchall()
        [(text,)] = j.connection.execute("SELECT event FROM outbox").fetchall()
    assert rows == [("oncall", "firing", "delivered")]
    assert json.loads(text)["kpi"] == "always"


async def test_sigterm_stops_within_five_seconds_while_a_receiver_hangs(tmp_path: Path) -> None:
    async with receiver() as rec:
        rec.hang = True
        cfg = write_config(tmp_path, rec, timeout="5m")
        with kpimon(tmp_path, f"--config.file={cfg}", "--storage.path=data") as k:
            await until(k, "the trigger to arrive", lambda: len(rec.seen) == 1)
            k.signal(signal.SIGTERM)
            started = time.monotonic()
            assert await asyncio.to_thread(k.proc.wait, 30) == 0
            assert time.monotonic() - started < 5, k.log()
            assert "Traceback" not in k.log()
    with Journal.open(tmp_path / "data") as j:
        [(state,)] = j.connection.execute("SELECT state FROM outbox").fetchall()
    assert state == "pending"  # abandoned in flight: sent again at the next start
