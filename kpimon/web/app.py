"""The aiohttp application: /metrics, /api/v1/kpis, /api/v1/kpis/{name}/explain,
/api/v1/alerts, /api/v1/silences (kpimon.web.silences), /-/healthy, /-/ready, /-/reload and /.

Handlers only read the daemon's in-memory state (never do I/O while rendering) and answer
errors the way the Prometheus HTTP API does: ``{"status": "error", "errorType", "error"}``.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

import numpy as np
from aiohttp import web
from aiohttp.typedefs import Handler

from kpimon import __version__
from kpimon.kpi.alerts import open_alerts
from kpimon.kpi.engine import Engine
from kpimon.kpi.explain import explain, explanation_doc
from kpimon.kpi.summary import rfc3339, series_reports
from kpimon.labels import Labels, decode_key
from kpimon.notify.silences import SilenceSet
from kpimon.slo.health import health_doc
from kpimon.textfmt import json_number
from kpimon.web import silences as silence_api
from kpimon.web.render import CONTENT_TYPE, MetricsView, Renderer
from kpimon.web.responses import api_error, api_json

log = logging.getLogger("kpimon.http")


class DaemonView(Protocol):
    """What the web layer needs from the daemon."""

    @property
    def engine(self) -> Engine: ...

    @property
    def ready(self) -> bool: ...

    @property
    def lifecycle_enabled(self) -> bool: ...

    def metrics_view(self) -> MetricsView: ...

    def now(self) -> float: ...

    @property
    def evaluation_interval_s(self) -> float: ...

    async def reload(self) -> list[str]:
        """Reload the configuration; returns the problems found (empty when it succeeded)."""
        ...


DAEMON = web.AppKey("daemon", DaemonView)
RENDERER = web.AppKey("renderer", Renderer)


async def metrics(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    view = daemon.metrics_view()
    if view.silences is None:
        view = replace(view, silences=request.app[silence_api.SILENCES].counts(view.now))
    body = request.app[RENDERER].render(view)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _kpi_docs(daemon: DaemonView, name: str | None = None) -> list[dict[str, object]]:
    now = daemon.now()
    docs: list[dict[str, object]] = []
    for rt in daemon.engine.kpis.values():
        if name is not None and rt.kpi.name != name:
            continue
        for rep in series_reports(rt, now):
            docs.append(
                {
                    "kpi": rep.kpi,
                    "labels": dict(rep.labels),
                    "value": json_number(rep.value),
                    "status": rep.status,
                    "status_code": rep.status_code,
                    "since": rfc3339(rep.since),
                    "owner": rt.kpi.owner,
                    "unit": rt.kpi.unit,
                    "target": (
                        {rt.kpi.target.direction: json_number(rt.kpi.target.value)}
                        if rt.kpi.target is not None
                        else None
                    ),
                    "levels": {
                        level: {**doc, "threshold": json_number(float(str(doc["threshold"])))}
                        for level, doc in rep.levels.items()
                    },
                    "error": rt.last_error,
                    "summary": rep.summary,
                }
            )
    return docs


async def api_kpis(request: web.Request) -> web.Response:
    return api_json({"status": "success", "data": _kpi_docs(request.app[DAEMON])})


async def api_kpi(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    name = request.match_info["name"]
    if name not in daemon.engine.kpis:
        return api_error(404, "not_found", f'no KPI named "{name}"')
    return api_json({"status": "success", "data": _kpi_docs(daemon, name)})


def series_filter(query: Mapping[str, str]) -> Callable[[Labels], bool] | None:
    """The series an explain request asks for (None: all of them).

    ``series={a="1",b="2"}`` (repeatable) selects the series with exactly that label set; any
    other parameter ``name=value`` keeps the series whose label ``name`` equals ``value``. Both
    kinds together: a series must match one ``series`` and every ``name=value``.

    Raises:
        ValueError: a ``series`` value is not a label set.
    """
    exact: set[Labels] = set()
    equal: list[tuple[str, str]] = []
    for key, value in query.items():
        if key != "series":
            equal.append((key, value))
            continue
        text = value.strip()
        if not text.startswith("{"):
            text = "{" + text + "}"
        try:
            _, labels = decode_key(b"x" + text.encode())
        except ValueError:
            raise ValueError(
                f'invalid series {value!r}: expected a label set like {{a="1"}}'
            ) from None
        exact.add(tuple(sorted(labels)))
    if not exact and not equal:
        return None

    def select(labels: Labels) -> bool:
        if exact and labels not in exact:
            return False
        have = dict(labels)
        return all(have.get(k) == v for k, v in equal)

    return select


async def api_explain(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    name = request.match_info["name"]
    rt = daemon.engine.kpis.get(name)
    if rt is None:
        return api_error(404, "not_found", f'no KPI named "{name}"')
    try:
        select = series_filter(request.query)
    except ValueError as exc:
        return api_error(400, "bad_data", str(exc))
    exp = explain(rt.kpi, rt.state, daemon.now(), daemon.evaluation_interval_s, select)
    return api_json({"status": "success", "data": explanation_doc(exp, rt.last_error)})


def _go_float(value: float) -> str:
    """A sample value as Prometheus' alerts API writes it (Go's ``FormatFloat(v, 'e', -1)``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return np.format_float_scientific(value, unique=True, exp_digits=2, trim="-")


async def api_alerts(request: web.Request) -> web.Response:
    alerts = [
        {
            "labels": dict(a.labels),
            "annotations": dict(a.annotations),
            "state": a.state,
            "activeAt": rfc3339(a.active_at),
            "value": _go_float(a.value),
        }
        for rt in request.app[DAEMON].engine.kpis.values()
        for a in open_alerts(rt)
    ]
    return api_json({"status": "success", "data": {"alerts": alerts}})


async def api_services(request: web.Request) -> web.Response:
    """Each service's health (docs/slo.md), as /metrics shows it."""
    services = request.app[DAEMON].metrics_view().services
    return api_json({"status": "success", "data": [health_doc(h) for h in services]})


async def api_not_found(request: web.Request) -> web.Response:
    return api_error(404, "not_found", f"no such endpoint: {request.path}")


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="kpimon is Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[DAEMON].ready:
        return web.Response(text="kpimon is Ready.\n")
    return web.Response(status=503, text="Service Unavailable: no evaluation has run yet.\n")


async def reload(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    if not daemon.lifecycle_enabled:
        return web.Response(status=403, text="Lifecycle API is not enabled.\n")
    problems = await daemon.reload()
    if problems:
        return web.Response(
            status=500, text="failed to reload config:\n" + "\n".join(problems) + "\n"
        )
    return web.Response(text="config reloaded\n")


_STATUS_COLOURS = {
    "ok": "#2e7d32",
    "warning": "#ef6c00",
    "critical": "#c62828",
    "no_data": "#616161",
}


async def index(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    rows = [
        f'<tr><td style="color:{_STATUS_COLOURS["critical"]}"><b>error</b></td>'
        f"<td>{html.escape(rt.kpi.name)}: evaluation failing: {html.escape(rt.last_error)}</td>"
        "<td></td></tr>"
        for rt in daemon.engine.kpis.values()
        if rt.last_error is not None
    ]
    for doc in _kpi_docs(daemon):
        status = str(doc["status"])
        rows.append(
            f'<tr><td style="color:{_STATUS_COLOURS[status]}"><b>{html.escape(status)}</b></td>'
            f"<td>{html.escape(str(doc['summary']))}</td><td>{html.escape(str(doc['since']))}</td></tr>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>kpimon</title></head><body>"
        f"<h1>kpimon {html.escape(__version__)}</h1>"
        "<p><a href='/metrics'>/metrics</a> · <a href='/api/v1/kpis'>/api/v1/kpis</a></p>"
        "<table><tr><th>status</th><th>KPI</th><th>since</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    return web.Response(text=page, content_type="text/html")


@web.middleware
async def _internal_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A bug in a handler of ``/api/`` answers in the API's error format (500), logged once
    with its traceback, instead of aiohttp's plain-text page."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        if not request.path.startswith("/api/"):
            raise
        log.exception("internal error serving %s", request.path)
        return api_error(500, "internal", f"internal error: {type(exc).__name__}: {exc}")


def build_app(daemon: DaemonView, silences: SilenceSet | None = None) -> web.Application:
    """The aiohttp application serving ``daemon``; ``/api/v1/silences`` serves ``silences``
    (None: a set of its own, in memory)."""
    app = web.Application(middlewares=[_internal_errors])
    app[DAEMON] = daemon
    app[RENDERER] = Renderer()
    app.router.add_get("/", index)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/kpis", api_kpis)
    app.router.add_get("/api/v1/kpis/{name}", api_kpi)
    app.router.add_get("/api/v1/kpis/{name}/explain", api_explain)
    app.router.add_get("/api/v1/alerts", api_alerts)
    app.router.add_get("/api/v1/services", api_services)
    silence_api.setup(app, SilenceSet() if silences is None else silences, daemon.now)
    app.router.add_route("*", "/api/v1/{tail:.*}", api_not_found)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_route("POST", "/-/reload", reload)
    app.router.add_route("PUT", "/-/reload", reload)
    return app
