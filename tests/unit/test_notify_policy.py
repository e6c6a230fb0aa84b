"""The notification planner, rule by rule (both sides of each), over a real engine.

Each test feeds queue depths into a real :class:`~kpimon.kpi.engine.Engine` whose notifier
records the planner's plans: warning above 10, critical above 100, no ``for``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kpimon.errors import ConfigError
from kpimon.labels import Labels
from kpimon.notify.policy import Planner, flapping_key
from tests.helpers.notify import RULES, T0, Capture, config, engine, feed

AM = "alertmanager:127.0.0.1:9093"
HOOKS = """
hooks:
  - {name: pager, type: webhook, url: "http://127.0.0.1:1/p", continue: true,
     matchers: ['severity="critical"']}
  - {name: chat, type: webhook, url: "http://127.0.0.1:1/c"}
"""
W, C = "queue_depth/warning", "queue_depth/critical"


def setup(tmp_path: Path, alerting: str = HOOKS, am: tuple[str, ...] = (), **kw):  # type: ignore[no-untyped-def]
    cfg = config(tmp_path, alerting, **kw)
    e = engine(cfg)
    cap = Capture(Planner(cfg.alerting, am))
    e.notifier = cap
    return cfg, e, cap


class Silences:
    """A SilenceCheck over a set of queues, switched by the test."""

    def __init__(self) -> None:
        self.queues: set[str] = set()

    def silenced(self, labels: Labels, t: float) -> bool:
        return dict(labels).get("queue") in self.queues


def test_routing_matchers_continue_and_every_alertmanager(tmp_path: Path) -> None:
    _, e, cap = setup(tmp_path, am=(AM,))
    feed(e, T0, a=50)
    assert cap.take() == [(AM, "firing", W, "a"), ("chat", "firing", W, "a")]
    feed(e, T0 + 60, a=500)  # critical: pager (matches, continues) and chat
    assert cap.take() == [
        (AM, "firing", C, "a"),
        ("pager", "firing", C, "a"),
        ("chat", "firing", C, "a"),
    ]
    feed(e, T0 + 120, a=5)
    assert sorted(cap.take()) == sorted(
        [
            (AM, "resolved", W, "a"),
            ("chat", "resolved", W, "a"),
            (AM, "resolved", C, "a"),
            ("pager", "resolved", C, "a"),
            ("chat", "resolved", C, "a"),
        ]
    )
    feed(e, T0 + 180, a=5)
    assert cap.take() == []  # nothing more: every hook told, every alert forgotten
    assert cap.planner.firing() == 0


def test_an_event_carries_times_labels_and_a_stable_key(tmp_path: Path) -> None:
    _, e, cap = setup(tmp_path)
    feed(e, T0, a=50)
    [n] = cap.notes
    assert (n.key, n.created_at) == (n.event.dedup_key, T0)
    assert (n.event.status, n.event.fired_at) == ("firing", T0)
    assert dict(n.event.labels) == {
        "alertname": "queue_depth",
        "severity": "warning",
        "team": "ops",
        "queue": "a",
        "instance": "app:1",
        "job": "app",
    }
    cap.notes = []
    feed(e, T0 + 300, a=1)
    [r] = cap.notes
    assert (r.key, r.event.status, r.event.fired_at, r.event.resolved_at) == (
        n.key,
        "resolved",
        T0,
        T0 + 300,
    )
    assert "is back at 1" in r.event.summary


def test_a_lower_level_is_held_while_a_higher_fires(tmp_path: Path) -> None:
    _, e, cap = setup(tmp_path)
    feed(e, T0, a=500, b=500)  # warning and critical fire in the same tick
    assert cap.take() == [
        ("pager", "firing", C, "a"),
        ("chat", "firing", C, "a"),
        ("pager", "firing", C, "b"),
        ("chat", "firing", C, "b"),
    ]
    assert cap.planner.suppressed_total["chat"] == 2  # the warnings, held
    feed(e, T0 + 60, a=50, b=5)  # a: critical resolves, warning still fires → now notified
    assert sorted(cap.take()) == [
        ("chat", "firing", W, "a"),
        ("chat", "resolved", C, "a"),
        ("chat", "resolved", C, "b"),
        ("pager", "resolved", C, "a"),
        ("pager", "resolved", C, "b"),
    ]
    # b's warning resolved without ever being told: no resolve is sent for it


def test_a_warning_told_before_its_critical_stays_open_and_resolves_normally(
    tmp_path: Path,
) -> None:
    _, e, cap = setup(tmp_path, HOOKS.replace("chat, type", "chat, repeat_interval: 1m, type"))
    feed(e, T0, a=50)
    assert cap.take() == [("chat", "firing", W, "a")]
    feed(e, T0 + 60, a=500)
    assert cap.take() == [("pager", "firing", C, "a"), ("chat", "firing", C, "a")]
    feed(e, T0 + 120, a=500)
    assert cap.take() == [("chat", "repeat", C, "a")]  # the warning's repeat is held
    feed(e, T0 + 180, a=5)
    assert sorted(cap.take()) == [
        ("chat", "resolved", C, "a"),
        ("chat", "resolved", W, "a"),
        ("pager", "resolved", C, "a"),
    ]


def test_inhibition_can_be_turned_off(tmp_path: Path) -> None:
    _, e, cap = setup(tmp_path, HOOKS + "inhibit_lower_levels: false\n")
    feed(e, T0, a=500)
    assert cap.take() == [
        ("chat", "firing", W, "a"),
        ("pager", "firing", C, "a"),
        ("chat", "firing", C, "a"),
    ]


@pytest.mark.parametrize(
    ("steady", "then"),
    [
        (50, []),  # settles firing, as the hooks were last told: the notice only
        (5, [(AM, "resolved", W, "a"), ("chat", "resolved", W, "a")]),  # settles resolved
    ],
)
def test_flapping_one_notice_held_then_settled_and_the_state_that_changed(
    tmp_path: Path, steady: float, then: list[tuple[str, str, str, str]]
) -> None:
    _, e, cap = setup(tmp_path, am=(AM,))
    t = T0
    seen = []
    for v in [5, 50] * 6:  # in and out of warning every tick
        feed(e, t, a=v)
        seen += cap.take()
        t += 60
    kinds = [(hook, kind) for hook, kind, _, _ in seen]
    assert kinds.count(("chat", "flapping")) == 1  # once, to the hook that routes the series
    assert (AM, "flapping") not in kinds  # Alertmanager gets alerts, not notices
    start = kinds.index(("chat", "flapping"))
    assert kinds[start + 1 :] == []  # then everything is held while it flaps
    assert kinds[start - 1] == ("chat", "firing")  # the last state told: firing
    [notice] = [a for a in cap.planner._alerts.values() if a.notice]
    assert notice.key == flapping_key("queue_depth", notice.series)
    assert notice.event.level == "flapping"
    assert notice.key != notice.event.dedup_key  # never resolves the level's incident
    assert dict(notice.event.labels)["flapping"] == "true"
    assert "is flapping" in notice.event.summary
    held = 0
    while cap.planner._flapping:
        feed(e, t, a=steady)
        t += 60
        held += 1
        got = cap.take()
        if cap.planner._flapping:
            assert got == []
        assert held < 60
    assert got == [("chat", "settled", "queue_depth/flapping", "a"), *then]
    [settled] = [n for n in cap.plans[-1].notifications if n.kind == "settled"]
    assert (settled.key, settled.event.status) == (notice.key, "resolved")
    assert "has settled" in settled.event.summary


def test_a_silenced_alert_is_notified_when_the_silence_ends_if_still_firing(
    tmp_path: Path,
) -> None:
    _, e, cap = setup(tmp_path)
    silences = Silences()
    cap.planner.silences = silences
    silences.queues = {"a", "b"}
    feed(e, T0, a=50, b=50)
    assert cap.take() == []
    assert cap.planner.suppressed_total["chat"] == 2
    feed(e, T0 + 60, a=50, b=5)  # b resolves while silenced: never told, nothing to resolve
    assert cap.take() == []
    silences.queues = set()
    feed(e, T0 + 120, a=50, b=5)  # the silence ended, a still fires: notified now
    assert cap.take() == [("chat", "firing", W, "a")]
    assert cap.planner.suppressed_total["chat"] == 2  # counted once per held notification
    feed(e, T0 + 180, a=50, b=5)
    assert cap.take() == []


def test_a_silence_never_holds_a_resolve_of_an_alert_told(tmp_path: Path) -> None:
    _, e, cap = setup(tmp_path)
    silences = Silences()
    cap.planner.silences = silences
    feed(e, T0, a=50)
    assert cap.take() == [("chat", "firing", W, "a")]
    silences.queues = {"a"}
    feed(e, T0 + 60, a=5)
    assert cap.take() == [("chat", "resolved", W, "a")]


def test_repeat_interval_per_hook(tmp_path: Path) -> None:
    alerting = """
hooks:
  - {name: ticket, type: webhook, url: "http://127.0.0.1:1/t", repeat_interval: 5m, continue: true}
  - {name: chat, type: webhook, url: "http://127.0.0.1:1/c"}
"""
    _, e, cap = setup(tmp_path, alerting)
    feed(e, T0, a=50)
    assert cap.take() == [("ticket", "firing", W, "a"), ("chat", "firing", W, "a")]
    for i in range(1, 11):
        feed(e, T0 + 60 * i, a=50)
    # repeats at 5 and 10 minutes for ticket; never for chat (repeat_interval 0)
    assert cap.take() == [("ticket", "repeat", W, "a")] * 2
    feed(e, T0 + 660, a=5)
    assert cap.take() == [("ticket", "resolved", W, "a"), ("chat", "resolved", W, "a")]


def test_planner_state_survives_a_restart(tmp_path: Path) -> None:
    cfg, e, cap = setup(tmp_path, am=(AM,))
    silences = Silences()
    cap.planner.silences = silences
    silences.queues = {"b"}
    feed(e, T0, a=50, b=50)
    assert cap.take() == [(AM, "firing", W, "a"), ("chat", "firing", W, "a")]
    records: dict[str, str] = {}
    for plan in cap.plans:
        for key, text in plan.records:
            if text is None:
                records.pop(key, None)
            else:
                records[key] = text
    assert len(records) == 2  # a (told) and b (held by the silence)

    # A new planner over the same engine state (as after a restart) ...
    fresh = Planner(cfg.alerting, (AM,), silences=silences)
    assert fresh.load(records.items()) == 2
    key_a = cap.plans[0].notifications[0].key
    assert [k for k, _ in fresh.active(AM, T0 + 60)] == [key_a]  # b was never told
    cap2 = Capture(fresh)
    e.notifier = cap2
    silences.queues = set()
    feed(e, T0 + 60, a=5, b=50)  # a resolves: its hooks were told; b's silence ended
    assert sorted(cap2.take()) == sorted(
        [
            (AM, "resolved", W, "a"),
            ("chat", "resolved", W, "a"),
            (AM, "firing", W, "b"),
            ("chat", "firing", W, "b"),
        ]
    )


def test_alertmanager_active_set_keeps_resolved_alerts_15_minutes(tmp_path: Path) -> None:
    _, e, cap = setup(tmp_path, "", am=(AM,))
    feed(e, T0, a=50)
    [(key, ev)] = cap.planner.active(AM, T0)
    assert ev.status == "firing"
    feed(e, T0 + 60, a=5)
    [(key2, ev2)] = cap.planner.active(AM, T0 + 60)
    assert (key2, ev2.status, ev2.resolved_at) == (key, "resolved", T0 + 60)
    for i in range(2, 16):
        feed(e, T0 + 60 * i, a=5)
    assert len(cap.planner.active(AM, T0 + 15 * 60)) == 1
    feed(e, T0 + 60 * 17, a=5)
    assert cap.planner.active(AM, T0 + 17 * 60) == []
    assert cap.planner._alerts == {}  # forgotten after the retention


def test_a_kpi_removed_by_a_reload_resolves_its_alerts(tmp_path: Path) -> None:
    _, e, cap = setup(tmp_path)
    feed(e, T0, a=50)
    assert cap.take() == [("chat", "firing", W, "a")]
    other = RULES.replace("queue_depth", "other_kpi")
    cfg2 = config(tmp_path, HOOKS, rules=other)
    e.reload(cfg2.kpis)
    feed(e, T0 + 60, a=50)
    got = cap.take()
    assert ("chat", "resolved", W, "a") in got
    [r] = [n for n in cap.plans[-1].notifications if n.kind == "resolved"]
    assert "was removed or changed" in r.event.summary


def test_a_reload_drops_what_removed_hooks_were_told_and_routes_anew(tmp_path: Path) -> None:
    _, e, cap = setup(tmp_path)
    feed(e, T0, a=50)
    assert cap.take() == [("chat", "firing", W, "a")]
    new = config(
        tmp_path,
        """
hooks:
  - {name: chat2, type: webhook, url: "http://127.0.0.1:1/c"}
""",
    )
    cap.planner.configure(new.alerting, ())
    feed(e, T0 + 60, a=50)
    assert cap.take() == [("chat2", "firing", W, "a")]  # the new route hears of it
    feed(e, T0 + 120, a=5)
    assert cap.take() == [("chat2", "resolved", W, "a")]  # chat is gone: nothing for it


@pytest.mark.parametrize("value", [5, 50])
def test_pending_levels_are_never_sent(tmp_path: Path, value: float) -> None:
    _, e, cap = setup(tmp_path, HOOKS, rules=RULES.replace("{above: 10}", "{above: 10, for: 5m}"))
    feed(e, T0, a=value)
    feed(e, T0 + 60, a=value)
    assert cap.take() == []


def test_inhibit_lower_levels_is_a_checked_boolean(tmp_path: Path) -> None:
    assert config(tmp_path, HOOKS).alerting.inhibit_lower_levels is True
    with pytest.raises(ConfigError) as err:
        config(tmp_path, "inhibit_lower_levels: sometimes\n")
    assert [str(p) for p in err.value.problems] == [
        f"{tmp_path / 'kpimon.yml'}:3:25: alerting.inhibit_lower_levels: expected true or false, "
        'got "sometimes"'
    ]


def test_an_alert_that_cannot_be_planned_costs_the_others_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A series label no encoder can write (a lone surrogate, as Python decodes a mountpoint of
    invalid UTF-8) makes that alert's planning raise: it is logged once and counted, and the
    other alerts of the tick are planned and notified as usual."""
    _, e, cap = setup(tmp_path, am=(AM,))
    planner = cap.planner

    class Poisoning(Capture):
        def plan(self, t, transitions, flap_events, kpis):  # type: ignore[no-untyped-def]
            bad = [
                (name, tr._replace(labels=(*tr.labels, ("mountpoint", "/mnt/\udcff"))))
                if dict(tr.labels).get("queue") == "a"
                else (name, tr)
                for name, tr in transitions
            ]
            return super().plan(t, bad, flap_events, kpis)

    poisoned = Poisoning(planner)
    e.notifier = poisoned
    feed(e, T0, a=50, b=50)
    assert poisoned.take() == [(AM, "firing", W, "b"), ("chat", "firing", W, "b")]
    assert planner.failures_total == 1
    failures = [r for r in caplog.records if "planning a notification failed" in r.message]
    assert len(failures) == 1
    assert "mountpoint" in failures[0].message
    feed(e, T0 + 60, a=50, b=50)  # nothing new, no repeated failure log
    assert poisoned.take() == []
    assert len([r for r in caplog.records if "planning a notification failed" in r.message]) == 1
