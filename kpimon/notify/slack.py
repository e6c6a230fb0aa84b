"""Slack incoming webhook: one message per firing or resolved alert.

The webhook URL is the credential (it is a :class:`~kpimon.config.alerting.Secret` and never
shown; reasons name ``hooks.slack.com`` only). The body has ``text`` (used in notifications)
and ``blocks`` (a header line and the summary, then the labels). Slack answers 200 ``ok``; 429
carries ``Retry-After``, which is honoured; 5xx is retried, other 4xx are permanent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kpimon.config.alerting import SecretError
from kpimon.notify import http
from kpimon.notify.model import AlertEvent, SendResult
from kpimon.notify.templates import format_value


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message(event: AlertEvent) -> dict[str, Any]:
    """The webhook JSON for ``event``."""
    if event.status == "firing":
        icon = ":rotating_light:" if event.level == "critical" else ":warning:"
        head = f"[FIRING] {event.level}: {event.kpi}"
    else:
        icon = ":white_check_mark:"
        head = f"[RESOLVED] {event.level}: {event.kpi}"
    text = _escape(f"{head} — {event.summary}")
    labels = ", ".join(f"{k}={v}" for k, v in event.labels if k not in ("alertname", "severity"))
    fields = [
        f"*Value:* {_escape(format_value(event.value, event.unit))}",
        f"*Threshold:* {_escape(event.direction)} "
        f"{_escape(format_value(event.threshold, event.unit))}",
    ]
    if event.owner:
        fields.append(f"*Owner:* {_escape(event.owner)}")
    if labels:
        fields.append(f"*Labels:* {_escape(labels)}")
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"{icon} *{_escape(head)}*\n{_escape(event.summary)}",
            },
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    runbook = event.annotation("runbook_url")
    if runbook.startswith(("http://", "https://")):
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"<{runbook}|Runbook>"}}
        )
    return {"text": text, "blocks": blocks}


class SlackHook(http.HttpHook):
    """Posts one message per call (``max_batch`` 1)."""

    async def send(self, events: Sequence[AlertEvent]) -> SendResult:
        if len(events) != 1:
            raise ValueError(f"{self.name}: a Slack hook sends one alert at a time")
        assert self._config.url is not None
        label = f'slack hook "{self.name}"'
        try:
            url = await http.reveal(self._config.url)
        except SecretError as exc:
            return SendResult("retryable", f"{label}: url: {exc}")
        return await self.post(
            url,
            http.json_bytes(message(events[0])),
            label=f"{label} ({http.redact_url(url)})",
            secret=url,
        )
