"""Which hooks get an alert: Alertmanager-style matchers, ``continue`` and a default route.

Hooks are tried in file order. A hook matches when every one of its matchers matches the
alert's labels (a hook without matchers matches everything: the default route, best placed
last). The first matching hook gets the alert and routing stops there, unless that hook has
``continue: true``. :func:`repeat_due` says when a still-firing alert is notified again. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from kpimon.config.alerting import HookConfig
from kpimon.labels import Labels


def matches(hook: HookConfig, labels: Labels) -> bool:
    """Whether every matcher of ``hook`` matches ``labels``."""
    return all(m.matches(labels) for m in hook.matchers)


def route(labels: Labels, hooks: Sequence[HookConfig]) -> tuple[HookConfig, ...]:
    """The hooks an alert with ``labels`` goes to, in order."""
    out: list[HookConfig] = []
    for hook in hooks:
        if matches(hook, labels):
            out.append(hook)
            if not hook.continue_:
                break
    return tuple(out)


def repeat_due(last_notified_at: float | None, now: float, repeat_interval_s: float) -> bool:
    """Whether a hook with ``repeat_interval`` should be notified again about an alert that is
    still firing: never notified, or notified at least ``repeat_interval_s`` ago (0: never
    repeat; a PagerDuty trigger is not repeated, its incident stays open on its own)."""
    if last_notified_at is None:
        return True
    return repeat_interval_s > 0 and now - last_notified_at >= repeat_interval_s
