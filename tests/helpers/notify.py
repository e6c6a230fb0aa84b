"""Notification test helpers: an engine over rules and an ``alerting:`` config, fed by hand;
a planner that records its plans; a hook whose answers the test scripts; loopback receivers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from kpimon.config.loader import build_config
from kpimon.config.models import DaemonConfig
from kpimon.journal import Journal
from kpimon.kpi.engine import Engine, KpiRuntime
from kpimon.kpi.machine import FlapEvent, Transition
from kpimon.labels import format_key
from kpimon.notify.model import AlertEvent, SendResult
from kpimon.notify.policy import Notification, Plan, Planner
from kpimon.store import Store

T0 = 1_700_000_000.0

RULES = """
kpis:
  - name: queue_depth
    owner: ops-team
    expr: app_queue_depth
    levels:
      warning: {above: 10}
      critical: {above: 100}
    labels: {team: ops}
"""


def config(tmp_path: Path, alerting: str = "", rules: str = RULES, extra: str = "") -> DaemonConfig:
    (tmp_path / "rules.yaml").write_text(rules)
    text = "rule_files: [rules.yaml]\n" + extra
    if alerting:
        text += "alerting:\n" + "".join(f"  {line}\n" for line in alerting.strip().splitlines())
    return build_config(text, str(tmp_path / "kpimon.yml"))


def engine(cfg: DaemonConfig, journal: Journal | None = None) -> Engine:
    return Engine(cfg.kpis, Store(retention_s=cfg.retention_s(), min_interval_s=15), journal)


def feed(e: Engine, t: float, **queues: float) -> Any:
    """Queues' depths scraped and evaluated at ``t`` (a queue left out has no sample)."""
    keys = [format_key("app_queue_depth", {"queue": q}) for q in queues]
    e.store.ingest(
        "app",
        (("instance", "app:1"), ("job", "app")),
        keys,
        np.array(list(queues.values()), dtype=float),
        t,
    )
    return e.tick(t)


class Capture:
    """The engine's notifier for planner tests: plans with ``planner`` and keeps everything."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.notes: list[Notification] = []
        self.plans: list[Plan] = []

    def plan(
        self,
        t: float,
        transitions: Sequence[tuple[str, Transition]],
        flap_events: Sequence[tuple[str, FlapEvent]],
        kpis: Mapping[str, KpiRuntime],
    ) -> Plan | None:
        plan = self.planner.plan(t, transitions, flap_events, kpis)
        self.plans.append(plan)
        self.notes.extend(plan.notifications)
        return plan

    def committed(self, items: Sequence[object]) -> None:
        pass

    def take(self) -> list[tuple[str, str, str, str]]:
        """(hook, kind, alertname/severity, queue) of the notifications since the last take."""
        out = [
            (
                n.hook,
                n.kind,
                f"{n.event.kpi}/{n.event.level}",
                dict(n.event.labels).get("queue", ""),
            )
            for n in self.notes
        ]
        self.notes = []
        return out


@dataclass
class ScriptedHook:
    """A :class:`~kpimon.notify.registry.Hook` whose answers come from ``answer(events)``
    (default: ok); it records every batch it was given."""

    name: str = "scripted"
    max_batch: int = 1000
    answer: Callable[[Sequence[AlertEvent]], SendResult] = lambda _: SendResult("ok")
    batches: list[list[AlertEvent]] = field(default_factory=list)

    async def send(self, events: Sequence[AlertEvent]) -> SendResult:
        self.batches.append(list(events))
        return self.answer(events)


@dataclass
class Receiver:
    """A loopback HTTP receiver on a fixed port whose behaviour the test switches:
    ``up`` (answer ``status``), ``hang`` (never answer), or ``down`` (nothing listens)."""

    status: int = 200
    hang: bool = False
    seen: list[dict[str, Any]] = field(default_factory=list)
    """Every request body received (JSON), answered or not."""
    answered: list[dict[str, Any]] = field(default_factory=list)
    """The bodies answered with a 2xx."""
    port: int = 0
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.seen.append(body)
        if self.hang:
            await asyncio.Event().wait()
        if 200 <= self.status < 300:
            self.answered.append(body)
        return web.Response(status=self.status, text="ok" if self.status < 300 else "boom")

    async def start(self) -> None:
        if self._runner is None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def down(self) -> None:
        """Stop listening and close every connection: connections are refused until
        :meth:`start`."""
        self._site = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def close(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    try:
        yield rec
    finally:
        await rec.close()
