"""Generic webhook: Alertmanager's webhook v4 JSON by default, or a Jinja2 ``body`` template.

The default body is what an Alertmanager ``webhook_config`` receiver would get, so receivers
written for Alertmanager work unchanged: ``{version: "4", groupKey, truncatedAlerts, status,
receiver, groupLabels, commonLabels, commonAnnotations, externalURL, alerts: [...]}``. A
``body`` template sees the same fields as variables (``alerts``, ``status``, ...; each alert a
dict) and renders in the sandbox; when its output parses as JSON it is sent as
``application/json``, otherwise as ``text/plain``. Any 2xx is success; 429/5xx are retried.
The URL may carry a token, so it is a secret and reasons show its host only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kpimon.config.alerting import SecretError
from kpimon.labels import format_labels
from kpimon.notify import http, templates
from kpimon.notify.model import AlertEvent, SendResult, fingerprint, rfc3339, zero_time


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def webhook_v4(
    events: Sequence[AlertEvent], *, receiver: str, external_url: str = ""
) -> dict[str, Any]:
    """Alertmanager's webhook v4 message for ``events`` (one group)."""
    alerts = []
    for e in events:
        ended = e.resolved_at if e.status == "resolved" else None
        alerts.append(
            {
                "status": e.status,
                "labels": dict(e.labels),
                "annotations": dict(e.annotations),
                "startsAt": rfc3339(e.fired_at),
                "endsAt": rfc3339(ended) if ended is not None else zero_time(),
                "generatorURL": e.generator_url,
                "fingerprint": fingerprint(e.labels),
            }
        )
    common_labels = _common([dict(e.labels) for e in events])
    group_labels = {"alertname": common_labels["alertname"]} if "alertname" in common_labels else {}
    return {
        "version": "4",
        "groupKey": "{}:" + format_labels(tuple(sorted(group_labels.items()))),
        "truncatedAlerts": 0,
        "status": "firing" if any(e.status == "firing" for e in events) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": _common([dict(e.annotations) for e in events]),
        "externalURL": external_url,
        "alerts": alerts,
    }


def render_body(template: str, message: dict[str, Any]) -> tuple[bytes, str]:
    """The body and content type a ``body`` template makes of ``message``.

    Raises:
        jinja2.TemplateError: the template failed (unknown variable, sandbox violation).
    """
    text = templates.render_with(template, message)
    try:
        json.loads(text)
    except ValueError:
        return text.encode(), "text/plain; charset=utf-8"
    return text.encode(), "application/json"


class WebhookHook(http.HttpHook):
    """POSTs a group of alerts per call."""

    max_batch: int = 1000

    async def send(self, events: Sequence[AlertEvent]) -> SendResult:
        assert self._config.url is not None
        label = f'webhook hook "{self.name}"'
        try:
            url = await http.reveal(self._config.url)
        except SecretError as exc:
            return SendResult("retryable", f"{label}: url: {exc}")
        label = f"{label} ({http.redact_url(url)})"
        message = webhook_v4(events, receiver=self.name, external_url=self._external_url)
        if self._config.body is None:
            data, content_type = http.json_bytes(message), "application/json"
        else:
            try:
                data, content_type = render_body(self._config.body, message)
            except Exception as exc:  # TemplateError, or the template's own arithmetic
                return SendResult("permanent", f"{label}: body template failed: {exc}")
        return await self.post(url, data, label=label, secret=url, content_type=content_type)
