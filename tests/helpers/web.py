"""The web layer's view of the daemon over a real engine and store, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kpimon.config.loader import build_config
from kpimon.kpi.engine import Engine
from kpimon.labels import format_key
from kpimon.store import Store
from kpimon.web.app import build_app
from kpimon.web.render import MetricsView

T0 = 1_700_000_000.0


@dataclass
class Daemon:
    """The daemon as the web layer sees it (kpimon.web.app.DaemonView), over real parts.

    ``reload`` counts its calls in ``reloads`` and reports ``problems``.
    """

    engine: Engine
    store: Store
    t: float = T0
    ready: bool = False
    lifecycle_enabled: bool = False
    evaluation_interval_s: float = 15.0
    reloads: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def now(self) -> float:
        return self.t

    def metrics_view(self) -> MetricsView:
        return MetricsView(
            kpis=list(self.engine.kpis.values()),
            now=self.t,
            targets=[],
            last_eval_wall=self.engine.last_eval_wall,
            last_eval_duration_s=self.engine.last_eval_duration_s,
            store_series=self.store.series_count,
            reload_ok=True,
            reload_success_wall=T0,
            version="test",
        )

    async def reload(self) -> list[str]:
        self.reloads.append(1)
        return self.problems


def daemon_with_rules(
    tmp_path: Path,
    rules: str,
    *,
    config: str = "rule_files: [rules.yaml]\n",
    min_interval_s: float = 15.0,
    ready: bool = False,
) -> Daemon:
    """A :class:`Daemon` over the KPIs of ``rules`` (written as ``rules.yaml``) and ``config``."""
    (tmp_path / "rules.yaml").write_text(rules)
    cfg = build_config(config, str(tmp_path / "kpimon.yml"))
    store = Store(retention_s=cfg.retention_s(), min_interval_s=min_interval_s)
    return Daemon(Engine(cfg.kpis, store), store, ready=ready)


@asynccontextmanager
async def web_client(daemon: Daemon) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """A client of the daemon's web app, served on 127.0.0.1 (port 0)."""
    async with TestClient(TestServer(build_app(daemon), host="127.0.0.1", port=0)) as client:
        yield client


def feed_queues(daemon: Daemon, values: dict[str, float], t: float) -> None:
    """Queues' depths (``app_queue_depth``) scraped and evaluated at ``t`` (a queue left out
    has no sample)."""
    keys = [format_key("app_queue_depth", {"queue": q}) for q in values]
    target = (("instance", "app:1"), ("job", "app"))
    daemon.store.ingest("app", target, keys, np.array(list(values.values())), t)
    daemon.engine.tick(t)
    daemon.t = t


@asynccontextmanager
async def exposition_target(body: bytes) -> AsyncIterator[str]:
    """A scrape target on 127.0.0.1 (port 0) serving ``body`` as text format 0.0.4 at
    ``/metrics``; yields its ``host:port``."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        yield f"127.0.0.1:{server.port}"
