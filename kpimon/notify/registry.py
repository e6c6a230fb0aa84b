"""The :class:`Hook` protocol and the explicit registry of hook kinds.

``HOOK_TYPES`` maps a hook ``type`` from ``kpimon.yml`` to the class that sends it; there is no
directory scan and no import of names from config files. :func:`build_hooks` makes every sender
of an ``alerting:`` config (one per Alertmanager target, one per hook) around one shared
:class:`aiohttp.ClientSession`, which the caller owns and closes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final, Protocol
from urllib.parse import urlsplit

import aiohttp

from kpimon.clock import Clock
from kpimon.config.alerting import AlertingConfig, HookConfig
from kpimon.notify.alertmanager import AlertmanagerHook
from kpimon.notify.exec_hook import ExecHook
from kpimon.notify.model import AlertEvent, SendResult
from kpimon.notify.pagerduty import PagerDutyHook
from kpimon.notify.slack import SlackHook
from kpimon.notify.webhook import WebhookHook


class Hook(Protocol):
    """Something that delivers alerts: one attempt per :meth:`send`, result reported.

    ``max_batch`` is how many events one call accepts (1 for PagerDuty and Slack, which get
    one event per request). ``send`` never raises for delivery trouble: it returns a
    :class:`SendResult`; retrying and remembering what was sent is the caller's job.
    """

    @property
    def name(self) -> str: ...

    @property
    def max_batch(self) -> int: ...

    async def send(self, events: Sequence[AlertEvent]) -> SendResult: ...


class HookFactory(Protocol):
    def __call__(
        self,
        config: HookConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Clock,
        external_url: str = ...,
    ) -> Hook: ...


HOOK_TYPES: Final[Mapping[str, HookFactory]] = {
    "pagerduty": PagerDutyHook,
    "slack": SlackHook,
    "webhook": WebhookHook,
    "exec": ExecHook,
}


def build_hooks(
    alerting: AlertingConfig,
    session: aiohttp.ClientSession,
    *,
    clock: Clock,
    evaluation_interval_s: float,
    external_url: str = "",
) -> list[Hook]:
    """Every sender of ``alerting``: Alertmanager targets first, then hooks in file order."""
    hooks: list[Hook] = []
    ams = [
        hook
        for am in alerting.alertmanagers
        for hook in AlertmanagerHook.from_config(
            am, session, clock=clock, evaluation_interval_s=evaluation_interval_s
        )
    ]
    shared = Counter(hook.name for hook in ams)
    for hook in ams:
        if shared[hook.name] > 1:  # one host:port, several path prefixes: a worker each
            hook.name += urlsplit(hook.url).path.removesuffix("/api/v2/alerts").rstrip("/")
    hooks.extend(ams)
    for config in alerting.hooks:
        hooks.append(
            HOOK_TYPES[config.kind](config, session, clock=clock, external_url=external_url)
        )
    return hooks
