"""PagerDuty Events API v2: ``trigger`` when a level fires, ``resolve`` when it resolves.

One event per POST to ``https://events.pagerduty.com/v2/enqueue`` (or the hook's ``url``). The
``routing_key`` travels in the body (PagerDuty has no auth header) and is read from its
:class:`~kpimon.config.alerting.Secret` at each send. ``dedup_key`` is
:func:`~kpimon.notify.model.dedup_key` (KPI, level, series labels), so a re-delivered trigger
appends to the open incident instead of paging again, and the resolve closes it. PagerDuty
answers 202; 429 and 5xx are retried, any other 4xx (e.g. 400 "invalid event") is permanent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from kpimon.config.alerting import PAGERDUTY_URL, SecretError
from kpimon.labels import get
from kpimon.notify import http
from kpimon.notify.model import AlertEvent, SendResult, rfc3339
from kpimon.notify.templates import format_value

SEVERITY: Final[dict[str, str]] = {
    "warning": "warning",
    "critical": "critical",
    "flapping": "info",
}
"""KPI level → PagerDuty ``payload.severity`` (a flapping notice is ``info``; other levels, if
any, become ``error``)."""
MAX_SUMMARY: Final = 1024
MAX_PAYLOAD_BYTES: Final = 512 * 1024


def event_body(event: AlertEvent, routing_key: str, *, client_url: str = "") -> dict[str, Any]:
    """The Events v2 JSON for ``event``."""
    if event.status == "resolved":
        return {
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": event.dedup_key,
        }
    summary = event.summary
    if len(summary) > MAX_SUMMARY:
        summary = summary[: MAX_SUMMARY - 1] + "…"
    source = get(event.labels, "instance") or get(event.labels, "job") or "kpimon"
    details: dict[str, Any] = {
        "kpi": event.kpi,
        "level": event.level,
        "value": format_value(event.value, event.unit),
        "threshold": format_value(event.threshold, event.unit),
        "direction": event.direction,
        "owner": event.owner,
        "since": rfc3339(event.active_at),
        "labels": dict(event.labels),
        "annotations": dict(event.annotations),
    }
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": event.dedup_key,
        "payload": {
            "summary": summary,
            "source": source,
            "severity": SEVERITY.get(event.level, "error"),
            "timestamp": rfc3339(event.fired_at),
            "component": event.kpi,
            "class": event.kpi,
            "custom_details": details,
        },
        "client": "kpimon",
    }
    if get(event.labels, "job"):
        body["payload"]["group"] = get(event.labels, "job")
    url = client_url or event.generator_url
    if url:
        body["client_url"] = url
    links = [
        {"href": href, "text": text}
        for href, text in (
            (event.annotation("runbook_url"), "Runbook"),
            (event.annotation("dashboard_url"), "Dashboard"),
        )
        if href.startswith(("http://", "https://"))
    ]
    if links:
        body["links"] = links
    if len(json.dumps(body).encode()) > MAX_PAYLOAD_BYTES:
        body["payload"]["custom_details"] = {"note": "details dropped: payload over 512 KB"}
    return body


class PagerDutyHook(http.HttpHook):
    """Sends one event per call (``max_batch`` 1)."""

    required = "routing_key"

    async def send(self, events: Sequence[AlertEvent]) -> SendResult:
        if len(events) != 1:
            raise ValueError(f"{self.name}: a PagerDuty hook sends one event at a time")
        config = self._config
        url = await http.reveal(config.url) if config.url is not None else PAGERDUTY_URL
        label = f'pagerduty hook "{self.name}" ({http.redact_url(url)})'
        assert config.routing_key is not None
        try:
            key = await http.reveal(config.routing_key)
        except SecretError as exc:
            # A missing key file may be fixed by an operator: retry until max_retry_duration.
            return SendResult("retryable", f"{label}: routing_key: {exc}")
        body = event_body(events[0], key, client_url=self._external_url)
        return await self.post(url, http.json_bytes(body), label=label, secret=key)
