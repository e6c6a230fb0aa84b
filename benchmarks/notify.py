"""Notification latency and throughput (ARCHITECTURE §11, issue 5 item 8).

1. Latency, evaluation tick → a loopback webhook receiving the notification: a KPI series is
   (a new one at every tick) crosses its threshold; each tick runs as the daemon runs it
   (engine tick, planner, journal commit with synchronous=FULL, then the dispatcher woken; the
   heap frozen once ready, as ``kpimon run`` does: kpimon.heap), and
   the receiver (an aiohttp server in its own thread and event loop, as another process would
   be) stamps each request's arrival. p50/p99 against the budget: ≤ 100 ms p99 on loopback
   (anchor: Prometheus + Alertmanager notify no sooner than group_wait, 30 s).
2. Throughput: 1,000 alerts firing in one tick, to Alertmanager (Debian's
   prometheus-alertmanager on loopback when installed, else a loopback receiver answering as
   Alertmanager does): the tick (plan + commit) and the delivery (one POST of 1,000 alerts),
   against the same 100 ms budget, the POST beside the anchor (one POST ≈ 0.7 ms, a batch of
   1,000 ≈ 35 ms). Medians of 7 bursts (3 with --quick), each of new alerts; the range of
   the loopback figure is printed beside it.

    python benchmarks/notify.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kpimon import heap
from kpimon.clock import SYSTEM_CLOCK
from kpimon.config.loader import build_config
from kpimon.config.models import DaemonConfig
from kpimon.journal import Journal
from kpimon.kpi.engine import Engine
from kpimon.labels import format_key
from kpimon.notify.dispatch import Notifications, policy_for
from kpimon.notify.outbox import Outbox
from kpimon.notify.policy import Planner
from kpimon.notify.registry import build_hooks
from kpimon.store import Store

BUDGET_MS = 100.0
AM_POST_ANCHOR_MS = 35.0
RULES = """
kpis:
  - name: queue_depth
    owner: ops-team
    expr: app_queue_depth
    levels: {warning: {above: 10}}
"""


class ThreadReceiver:
    """An HTTP receiver in its own thread: answers ``status`` and stamps each request."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.arrivals: list[float] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.perf_counter())
        await request.read()
        return web.Response(status=self.status)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> ThreadReceiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def make(tmp: Path, alerting: str) -> tuple[DaemonConfig, Engine, Journal]:
    (tmp / "rules.yaml").write_text(RULES)
    cfg = build_config("rule_files: [rules.yaml]\nalerting:\n" + alerting, str(tmp / "k.yml"))
    journal = Journal.open(tmp / "data")
    e = Engine(cfg.kpis, Store(retention_s=cfg.retention_s(), min_interval_s=15), journal)
    return cfg, e, journal


def feed(e: Engine, t: float, values: dict[str, float]) -> None:
    keys = [format_key("app_queue_depth", {"queue": q}) for q in values]
    e.store.ingest(
        "app", (("instance", "app:1"), ("job", "app")), keys, np.array(list(values.values())), t
    )


async def service(
    cfg: DaemonConfig, e: Engine, journal: Journal, session: aiohttp.ClientSession
) -> Notifications:
    hooks = build_hooks(cfg.alerting, session, clock=SYSTEM_CLOCK, evaluation_interval_s=15)
    am = [h.name for h in hooks if h.name.startswith("alertmanager:")]
    outbox = Outbox.open(journal)
    n = Notifications(
        Planner(cfg.alerting, am),
        outbox,
        hooks,
        clock=SYSTEM_CLOCK,
        policies=policy_for(cfg.alerting),
    )
    e.notifier = n
    await n.start()
    return n


async def latency(ticks: int) -> list[float]:
    out: list[float] = []
    with ThreadReceiver() as rec, tempfile.TemporaryDirectory() as d:
        cfg, e, journal = make(
            Path(d),
            f"""
  hooks:
    - {{name: chat, type: webhook, url: "http://127.0.0.1:{rec.port}/hook"}}
""",
        )
        async with aiohttp.ClientSession() as session:
            n = await service(cfg, e, journal, session)
            t0 = time.time() - 15 * ticks  # a tick every 15 s, ending now
            heap.settle()  # as `kpimon run` does after its first evaluation
            firing: dict[str, float] = {}
            for i in range(ticks):
                t = t0 + 15 * i
                # a new series fires at every tick (one series going in and out would flap,
                # and a flapping series' notifications are held)
                firing[f"q{i}"] = 50.0
                feed(e, t, firing)
                started = time.perf_counter()
                e.tick(t)  # plan + commit (fsync) + wake, as the evaluation loop runs it
                while len(rec.arrivals) <= i:  # noqa: ASYNC110 (another thread's list)
                    await asyncio.sleep(0.0005)
                out.append((rec.arrivals[i] - started) * 1000)
                while n.busy():  # noqa: ASYNC110 (the answer, then the acknowledgement)
                    await asyncio.sleep(0.0005)
            await n.stop()
        journal.close()
    return out


@contextlib.contextmanager
def alertmanager(tmp: Path) -> Iterator[tuple[str, str]]:
    """A Debian Alertmanager on loopback if installed (else a loopback stand-in): its
    ``host:port`` and what it is."""
    exe = shutil.which("prometheus-alertmanager")
    if exe is None:
        with ThreadReceiver() as rec:
            yield f"127.0.0.1:{rec.port}", "loopback stand-in (prometheus-alertmanager absent)"
        return
    from tests.helpers.debian import free_port

    (tmp / "am.yml").write_text(
        'route: {receiver: "null", group_wait: 1h}\nreceivers: [{name: "null"}]\n'
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={tmp / 'am.yml'}",
            f"--storage.path={tmp / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        version = subprocess.run([exe, "--version"], capture_output=True, text=True)
        first = (version.stdout or version.stderr).splitlines()[0:1]
        yield f"127.0.0.1:{port}", f"Debian {first[0] if first else 'alertmanager'}"
    finally:
        proc.terminate()
        proc.wait(10)


def bare_tick(n_alerts: int) -> float:
    """The same tick without notifications (evaluation, machine, journal commit), in ms."""
    with tempfile.TemporaryDirectory() as d:
        _, e, journal = make(Path(d), "  hooks: []\n")
        t = time.time() - 15
        values = {f"q{i}": 1.0 for i in range(n_alerts)}
        feed(e, t, values)
        e.tick(t)
        feed(e, t + 15, dict.fromkeys(values, 50.0))
        started = time.perf_counter()
        e.tick(t + 15)
        took = time.perf_counter() - started
        journal.close()
    return took * 1000


async def burst(n_alerts: int, target: str | None, run: int = 0) -> tuple[float, float, float]:
    """(tick ms, tick → received ms, JSON body ms) for ``n_alerts`` firing in one tick.

    ``run`` names the series apart from other runs' (an Alertmanager then sees new alerts).

    ``target``: an Alertmanager's ``host:port``, and "received" is its answer; None: a
    loopback receiver answering as Alertmanager does, and "received" is when the whole
    request has arrived there (the §11 "hook receives it").
    """
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        rec = None
        if target is None:
            rec = stack.enter_context(ThreadReceiver())
            target = f"127.0.0.1:{rec.port}"
        cfg, e, journal = make(
            Path(d),
            f"""
  alertmanagers:
    - static_configs: [{{targets: ["{target}"]}}]
""",
        )
        async with aiohttp.ClientSession() as session:
            n = await service(cfg, e, journal, session)
            [worker_hook] = [w.hook for w in n._workers.values()]
            answers: list[float] = []
            send = worker_hook.send

            async def stamped(events: Any) -> Any:
                result = await send(events)
                answers.append(time.perf_counter())
                return result

            worker_hook.send = stamped  # type: ignore[method-assign]
            t = time.time() - 15
            values = {f"r{run}q{i}": 1.0 for i in range(n_alerts)}
            feed(e, t, values)
            e.tick(t)
            heap.settle()  # as `kpimon run` does after its first evaluation
            feed(e, t + 15, dict.fromkeys(values, 50.0))
            started = time.perf_counter()
            e.tick(t + 15)
            ticked = time.perf_counter()
            [name] = n.hook_names()
            while n.counters().get((name, "success"), 0) < n_alerts:
                assert not n.counters().get((name, "failed")), n.counters()
                await asyncio.sleep(0.0005)
            received = rec.arrivals[0] if rec is not None else answers[0]
            await n.stop()
            events = [ev for _, ev in n.planner.active(name, t + 15)]
            body_started = time.perf_counter()
            worker_hook.body(events, t + 15)  # type: ignore[attr-defined]
            body_ms = (time.perf_counter() - body_started) * 1000
        journal.close()
    return (ticked - started) * 1000, (received - started) * 1000, body_ms


def alertmanager_alone(target: str, n_alerts: int, rounds: int = 5) -> float:
    """Median ms for Alertmanager to answer one POST of ``n_alerts`` new alerts, the body
    built beforehand: its own share of a delivery on this machine, now."""
    took = []
    for r in range(rounds):
        alerts = [
            {
                "labels": {
                    "alertname": "alone",
                    "severity": "warning",
                    "round": str(r),
                    "i": str(i),
                },
                "annotations": {"summary": f"alert {i} of round {r}, posted alone"},
                "startsAt": "2026-01-01T00:00:00.000Z",
                "endsAt": "2099-01-01T00:00:00.000Z",
            }
            for i in range(n_alerts)
        ]
        body = json.dumps(alerts).encode()
        req = urllib.request.Request(
            f"http://{target}/api/v2/alerts",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        started = time.perf_counter()
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


def verdict(value: float, budget: float) -> str:
    return "PASS" if value <= budget else "MISS"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer ticks")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    ticks = 60 if args.quick else 400
    lat = sorted(await latency(ticks))
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    print(f"tick → loopback webhook, {ticks} notifications (journal synchronous=FULL):")
    print(
        f"  p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   budget p99 ≤ {BUDGET_MS:.0f} ms "
        f"{verdict(p99, BUDGET_MS)}   anchor: Prometheus + Alertmanager ≥ group_wait 30 s"
    )
    bursts = 3 if args.quick else 7
    bare = statistics.median(bare_tick(1000) for _ in range(bursts))
    local = [await burst(1000, None, r) for r in range(bursts)]
    tick_ms, received_ms, body_ms = (statistics.median(x) for x in zip(*local, strict=True))
    print(f"1,000 alerts firing in one tick → Alertmanager (medians of {bursts} bursts):")
    print(
        f"  tick {tick_ms:7.2f} ms (of which {bare:.2f} ms evaluation, machine and journal "
        f"without notifications; the rest plans 1,000 notifications and journals them)"
    )
    print(
        f"  tick → received {received_ms:7.2f} ms (a loopback receiver answering as "
        f"Alertmanager does has the whole POST; its JSON body {body_ms:.2f} ms; bursts "
        f"{min(r for _, r, _ in local):.2f}–{max(r for _, r, _ in local):.2f} ms)   "
        f"budget ≤ {BUDGET_MS:.0f} ms {verdict(received_ms, BUDGET_MS)}   "
        f"({1000 / (received_ms / 1000):,.0f} alerts/s)"
    )
    with tempfile.TemporaryDirectory() as d, alertmanager(Path(d)) as (target, what):
        remote = [await burst(1000, target, r) for r in range(bursts)]
        alone = alertmanager_alone(target, 1000, rounds=bursts)
    am_tick_ms, answered_ms, _ = (statistics.median(x) for x in zip(*remote, strict=True))
    print(
        f"  the same to {what}: tick {am_tick_ms:7.2f} ms, tick → answered "
        f"{answered_ms:7.2f} ms, of which Alertmanager's own answer to a prebuilt POST of "
        f"1,000 alerts {alone:.2f} ms (anchor: a batch of 1,000 ≈ {AM_POST_ANCHOR_MS:.0f} ms); "
        f"kpimon's share {answered_ms - alone:.2f} ms "
        f"{verdict(answered_ms - alone, BUDGET_MS)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
