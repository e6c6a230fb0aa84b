"""Review of the notification pipeline: defects found, each shown by a failing-then-fixed test.

A real engine and planner; the dispatcher's hooks are scripted; time is a FakeClock.
"""

from __future__ import annotations

from pathlib import Path

from kpimon.labels import Labels
from kpimon.notify.dispatch import Notifications
from kpimon.notify.model import SendResult
from kpimon.notify.outbox import Outbox
from kpimon.notify.policy import Planner
from kpimon.testing import FakeClock
from tests.helpers.notify import RULES, T0, Capture, ScriptedHook, config, engine, feed

AM = "alertmanager:127.0.0.1:9093"
HOOKS = """
hooks:
  - {name: chat, type: webhook, url: "http://127.0.0.1:1/c"}
"""
OK = SendResult("ok")
DOWN = SendResult("retryable", "receiver down")


class Silences:
    """A SilenceCheck over a set of queues."""

    def __init__(self, queues: set[str]) -> None:
        self.queues = queues

    def silenced(self, labels: Labels, t: float) -> bool:
        return dict(labels).get("queue") in self.queues


def _flap(e: object, t: float) -> float:
    for v in [5, 50] * 6:  # in and out of warning every tick: the series starts flapping
        feed(e, t, a=v)  # type: ignore[arg-type]
        t += 60
    return t


# -- policy.py ----------------------------------------------------------------------------


def test_a_silenced_series_that_flaps_pages_nobody(tmp_path: Path) -> None:
    """docs/alerting.md: a silence mutes every notification of the alerts it matches. A
    maintenance window is exactly when KPIs flap; the flapping notice must be muted too."""
    cfg = config(tmp_path, HOOKS)
    e = engine(cfg)
    cap = Capture(Planner(cfg.alerting, silences=Silences({"a"})))
    e.notifier = cap
    t = _flap(e, T0)
    assert cap.planner._flapping  # the series flaps...
    assert cap.take() == []  # ...and nobody is told, not even "flapping"
    while cap.planner._flapping:
        feed(e, t, a=5)
        t += 60
        assert t < T0 + 3 * 3600
    assert cap.take() == []  # nor "settled"


def test_a_flapping_notice_of_a_kpi_removed_by_a_reload_is_settled(tmp_path: Path) -> None:
    """A flapping notice is its own incident (PagerDuty: its own dedup key), closed only by
    the "settled" notice. A reload that removes the KPI drops the planner's state: the
    receivers must hear it settled, or the incident stays open for good."""
    cfg = config(tmp_path, HOOKS)
    e = engine(cfg)
    cap = Capture(Planner(cfg.alerting))
    e.notifier = cap
    t = _flap(e, T0)
    assert ("chat", "flapping", "queue_depth/flapping", "a") in cap.take()
    e.reload(config(tmp_path, HOOKS, rules=RULES.replace("queue_depth", "other_kpi")).kpis)
    feed(e, t, a=50)
    assert ("chat", "settled", "queue_depth/flapping", "a") in cap.take()
    assert cap.planner._alerts == {}  # and nothing of it is left in memory...
    assert (None in dict(cap.plans[-1].records).values()) is True  # ...nor in the journal


# -- dispatch.py --------------------------------------------------------------------------


async def _am_rig(
    tmp_path: Path, clock: FakeClock, am: ScriptedHook
) -> tuple[object, Notifications]:
    cfg = config(tmp_path)
    e = engine(cfg)
    n = Notifications(Planner(cfg.alerting, [AM]), Outbox.memory(), [am], clock=clock)
    e.notifier = n
    await n.start()
    return e, n


async def test_alertmanager_resends_resume_after_a_row_expired(
    tmp_path: Path, clock: FakeClock
) -> None:
    """An Alertmanager down longer than the retry budget (24h): the firing alert's row expires.
    When it is back, the minute re-sends must tell it the alert still fires. They never did:
    ``_Worker.failing`` stayed set (only a delivered row cleared it) and every re-send was
    skipped until some new transition happened to be delivered."""
    up = {"v": False}
    am = ScriptedHook(AM, answer=lambda _: OK if up["v"] else DOWN)
    e, n = await _am_rig(tmp_path, clock, am)
    feed(e, clock.wall(), a=50)  # type: ignore[arg-type]
    await clock.advance(25 * 3600)
    assert n.counters()[(AM, "expired")] == 1
    up["v"] = True
    await clock.advance(5 * 60)
    assert n.counters().get((AM, "resent"), 0) >= 4
    await n.stop()


async def test_alertmanager_resends_resume_after_a_permanent_error(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A 5xx (the worker is "failing"), then a 400 for the row (permanent, not retried):
    re-sends of the firing alert must go on."""
    answers = [DOWN, SendResult("permanent", "HTTP 400")]
    am = ScriptedHook(AM, answer=lambda _: answers.pop(0) if answers else OK)
    e, n = await _am_rig(tmp_path, clock, am)
    feed(e, clock.wall(), a=50)  # type: ignore[arg-type]
    await clock.advance(10)
    assert n.counters()[(AM, "failed")] == 1
    await clock.advance(5 * 60)
    assert n.counters().get((AM, "resent"), 0) >= 4
    await n.stop()


async def test_a_wall_clock_step_back_does_not_stall_alertmanager_resends(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The minute re-send is an in-process interval, scheduled on the wall clock: after an NTP
    step back of an hour none was sent for an hour, so Alertmanager (endsAt = now + 4m)
    resolved every firing alert by itself and re-fired it an hour later."""
    am = ScriptedHook(AM)
    e, n = await _am_rig(tmp_path, clock, am)
    feed(e, clock.wall(), a=50)  # type: ignore[arg-type]
    await clock.advance(61)
    assert n.counters()[(AM, "resent")] == 1
    clock._wall0 -= 3600  # the wall clock is stepped back an hour; monotonic time goes on
    await clock.advance(5 * 60)
    assert n.counters()[(AM, "resent")] >= 5
    await n.stop()


def test_a_resolve_names_the_alert_its_trigger_named_after_a_reload(tmp_path: Path) -> None:
    """A reload that changes ``global.external_labels`` while an alert fires: its resolve was
    built with the new labels, so its labels and webhook ``fingerprint`` differ from the
    trigger's, and a receiver that de-duplicates by fingerprint (PROTOCOLS §4.2; Alertmanager
    by labels) never closes the incident it opened."""
    cfg = config(tmp_path, HOOKS)
    e = engine(cfg)
    cap = Capture(Planner(cfg.alerting))
    e.notifier = cap
    feed(e, T0, a=50)
    [firing] = cap.plans[-1].notifications
    cap.planner.configure(cfg.alerting, (), external_labels=(("region", "eu"),))
    feed(e, T0 + 60, a=5)
    [resolved] = cap.plans[-1].notifications
    assert resolved.kind == "resolved"
    assert resolved.event.labels == firing.event.labels


# -- outbox.py ----------------------------------------------------------------------------


async def test_a_trigger_whose_ack_failed_is_not_replayed_after_its_resolve(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The trigger is delivered but its acknowledgement fails (the journal cannot be written
    for a moment); the resolve is delivered and acknowledged later. The trigger stayed
    ``pending`` on disk: at the next start it was sent again AFTER its resolve, which at
    PagerDuty opens a new incident that nothing will ever resolve (and the row is never
    pruned until then)."""
    from tests.unit.test_outbox import rig, sent

    chat, ticket = ScriptedHook("chat"), ScriptedHook("ticket")
    r = await rig(tmp_path, clock, [chat, ticket])
    assert r.journal is not None
    conn = r.journal.connection
    feed(r.e, clock.wall(), a=50)  # committed; the workers run at the next loop turns
    conn.execute("PRAGMA query_only = 1")  # the acknowledgements fail
    await clock.settle()
    assert sent(chat) == [("a", "firing")]
    conn.execute("PRAGMA query_only = 0")
    await clock.advance(60)
    await r.tick(a=5)
    assert sent(chat) == [("a", "firing"), ("a", "resolved")]
    await r.close()

    chat2, ticket2 = ScriptedHook("chat"), ScriptedHook("ticket")
    r2 = await rig(tmp_path, clock, [chat2, ticket2])
    await clock.advance(600)
    assert sent(chat2) == sent(ticket2) == []  # no trigger after its resolve
    await r2.close()
