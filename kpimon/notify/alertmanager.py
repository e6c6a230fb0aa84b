"""Alertmanager API v2: ``POST /api/v2/alerts`` and the re-send policy Prometheus follows.

One :class:`AlertmanagerHook` per Alertmanager target: every alert goes to every replica (never
load-balanced), each replica with its own retries. Bodies are JSON lists of
``{labels, annotations, startsAt, endsAt, generatorURL}``, at most :data:`MAX_BATCH` alerts per
POST. A firing alert carries ``endsAt = now + 4 × max(evaluation_interval, 1m)`` (so two missed
re-sends do not resolve it); a resolved one its resolution time.

:func:`resend_due` and :func:`keep_sending` are the pure policy a scheduler calls: firing alerts
are re-sent every :data:`RESEND_DELAY_S`; a newly resolved alert is sent at once and then
re-sent on the same rhythm for :data:`RESOLVED_RETENTION_S` (an Alertmanager that restarted
meanwhile still learns it resolved). Alertmanager identifies alerts by their labels, so
re-sending is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

from kpimon.clock import Clock
from kpimon.config.alerting import AlertmanagerConfig
from kpimon.notify import http
from kpimon.notify.model import AlertEvent, SendResult, Status, rfc3339

MAX_BATCH: Final = 1000
RESEND_DELAY_S: Final = 60.0
"""Prometheus' ``--rules.alert.resend-delay`` default."""
RESOLVED_RETENTION_S: Final = 15 * 60.0
"""Prometheus keeps re-sending a resolved alert this long (``resolvedRetention``)."""


def valid_until(now: float, evaluation_interval_s: float) -> float:
    """``endsAt`` of a firing alert sent at ``now``: ``now + 4 × max(eval, resend delay)``."""
    return now + 4 * max(evaluation_interval_s, RESEND_DELAY_S)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendState:
    """What a scheduler remembers about one alert for one Alertmanager.

    Attributes:
        status: the alert's current status.
        resolved_at: when it resolved (None while firing).
        last_sent_at: when it was last delivered successfully (None: never).
    """

    status: Status
    resolved_at: float | None = None
    last_sent_at: float | None = None


def keep_sending(state: SendState, now: float) -> bool:
    """Whether the alert is still to be (re-)sent at all: firing, or resolved less than
    :data:`RESOLVED_RETENTION_S` ago."""
    if state.status == "firing" or state.resolved_at is None:
        return True
    return now - state.resolved_at <= RESOLVED_RETENTION_S


def resend_due(state: SendState, now: float, resend_delay_s: float = RESEND_DELAY_S) -> bool:
    """Whether to send the alert at ``now``: never sent, newly resolved, or last sent at least
    ``resend_delay_s`` ago (and :func:`keep_sending` holds)."""
    if not keep_sending(state, now):
        return False
    if state.last_sent_at is None:
        return True
    if state.resolved_at is not None and state.last_sent_at < state.resolved_at:
        return True  # the resolution itself has not been sent yet
    return now - state.last_sent_at >= resend_delay_s


def to_alert(event: AlertEvent, now: float, evaluation_interval_s: float) -> dict[str, Any]:
    """The API v2 JSON of one alert (``postableAlert``)."""
    return _postable(event, now, valid_until(now, evaluation_interval_s), {})


def _postable(
    event: AlertEvent, now: float, firing_until: float, times: dict[float, str]
) -> dict[str, Any]:
    """:func:`to_alert` with the batch's ``endsAt`` of firing alerts, and its formatted times
    (``times``, filled as they are met: a burst shares its start and end)."""
    if event.status == "resolved":
        ends_at = event.resolved_at if event.resolved_at is not None else now
    else:
        ends_at = firing_until
    ends_at = max(ends_at, event.fired_at)
    starts = times.get(event.fired_at)
    if starts is None:
        starts = times[event.fired_at] = rfc3339(event.fired_at)
    ends = times.get(ends_at)
    if ends is None:
        ends = times[ends_at] = rfc3339(ends_at)
    labels = dict(event.labels)
    if "" in labels.values():
        labels = {k: v for k, v in labels.items() if v != ""}
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": dict(event.annotations),
        "startsAt": starts,
        "endsAt": ends,
    }
    if event.generator_url:
        alert["generatorURL"] = event.generator_url
    return alert


def batches(events: Sequence[AlertEvent], size: int = MAX_BATCH) -> list[Sequence[AlertEvent]]:
    """``events`` in chunks of at most ``size``."""
    return [events[i : i + size] for i in range(0, len(events), size)]


class AlertmanagerHook:
    """Pushes alerts to one Alertmanager (``POST <target><path_prefix>/api/v2/alerts``)."""

    max_batch: int = MAX_BATCH

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        clock: Clock,
        timeout_s: float,
        evaluation_interval_s: float,
    ) -> None:
        self.url = url
        self.name = f"alertmanager:{http.redact_url(url).split('://', 1)[-1]}"
        self._session = session
        self._clock = clock
        self._timeout_s = timeout_s
        self._evaluation_interval_s = evaluation_interval_s

    @classmethod
    def from_config(
        cls,
        config: AlertmanagerConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Clock,
        evaluation_interval_s: float,
    ) -> list[AlertmanagerHook]:
        """One hook per target of an ``alertmanagers`` entry."""
        return [
            cls(
                url,
                session,
                clock=clock,
                timeout_s=config.timeout_s,
                evaluation_interval_s=evaluation_interval_s,
            )
            for url in config.urls()
        ]

    def body(self, events: Sequence[AlertEvent], now: float) -> bytes:
        firing_until = valid_until(now, self._evaluation_interval_s)
        times: dict[float, str] = {}
        alerts = [_postable(e, now, firing_until, times) for e in events]
        return orjson.dumps(alerts)  # compact UTF-8, as json.dumps with those options, faster

    async def send(self, events: Sequence[AlertEvent]) -> SendResult:
        """POST ``events`` in batches of :data:`MAX_BATCH`.

        A 400 is permanent for its own batch only: Alertmanager rejected some alert of it as
        invalid (it still accepted the valid ones), and sending it again cannot help; the
        other batches are still sent. A retryable failure (connection, 5xx, 429) stops the
        send: the receiver is unwell, and the whole send is retried. The result is the first
        failure, else ok.
        """
        result = SendResult("ok", f"{self.name}: nothing to send")
        first_failure: SendResult | None = None
        label = f'alertmanager "{http.redact_url(self.url)}"'
        for batch in batches(events, self.max_batch):
            now = self._clock.wall()
            result = await http.post(
                self._session,
                self.url,
                self.body(batch, now),
                content_type="application/json",
                timeout_s=self._timeout_s,
                label=label,
                now=now,
            )
            if result.outcome == "retryable":
                return result
            if not result.ok and first_failure is None:
                first_failure = result
        return first_failure if first_failure is not None else result
