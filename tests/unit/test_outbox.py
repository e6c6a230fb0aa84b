"""The durable outbox and its dispatcher: written with the transitions, sent in order per
alert, exactly once, with backoff, a deadline and permanent errors, and restored at start-up.

A real journal, a real engine and planner; the hooks are in-process senders whose answers
the test scripts; time is a FakeClock.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kpimon.config.models import DaemonConfig
from kpimon.journal import Journal
from kpimon.kpi.engine import Engine
from kpimon.notify.dispatch import Notifications, policy_for
from kpimon.notify.model import AlertEvent, SendResult
from kpimon.notify.outbox import DONE_RETENTION_S, Outbox
from kpimon.notify.policy import Planner
from kpimon.notify.registry import Hook
from kpimon.testing import FakeClock
from tests.helpers.notify import ScriptedHook, config, engine, feed

HOOKS = """
hooks:
  - {name: chat, type: webhook, url: "http://127.0.0.1:1/c", max_retry_duration: 10m,
     continue: true}
  - {name: ticket, type: webhook, url: "http://127.0.0.1:1/t"}
"""
OK = SendResult("ok")
DOWN = SendResult("retryable", "receiver down")


@dataclass
class Rig:
    """Engine + journal + planner + outbox + dispatcher over scripted hooks."""

    tmp_path: Path
    clock: FakeClock
    hooks: list[Hook]
    cfg: DaemonConfig
    journal: Journal | None
    e: Engine
    n: Notifications
    log: list[tuple[str, str, str, str]] = field(default_factory=list)

    async def tick(self, **queues: float) -> None:
        feed(self.e, self.clock.wall(), **queues)
        await self.clock.settle()

    def table(self) -> list[tuple[object, ...]]:
        assert self.journal is not None
        return self.journal.connection.execute(
            "SELECT id, hook, kind, state, attempts FROM outbox ORDER BY id"
        ).fetchall()

    async def close(self) -> None:
        await self.n.stop()
        if self.journal is not None:
            self.journal.close()


async def rig(
    tmp_path: Path,
    clock: FakeClock,
    hooks: Sequence[Hook],
    *,
    journal: bool = True,
    rand: Callable[[], float] = lambda: 0.5,
    alerting: str = HOOKS,
) -> Rig:
    cfg = config(tmp_path, alerting)
    j = Journal.open(tmp_path / "data") if journal else None
    e = engine(cfg, j)
    outbox = Outbox.open(j) if j is not None else Outbox.memory()
    planner = Planner(cfg.alerting)
    planner.load(outbox.records)
    if j is not None:
        e.restore(clock.wall(), outage_tolerance_s=3600, grace_s=0)
    n = Notifications(
        planner, outbox, list(hooks), clock=clock, rand=rand, policies=policy_for(cfg.alerting)
    )
    e.notifier = n
    await n.start()
    return Rig(tmp_path, clock, list(hooks), cfg, j, e, n)


def sent(hook: ScriptedHook) -> list[tuple[str, str]]:
    """(queue, status) of every event the hook was given, in order."""
    return [(dict(ev.labels)["queue"], ev.status) for batch in hook.batches for ev in batch]


async def test_rows_are_committed_with_their_transitions_even_after_a_failed_commit(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="kpimon.journal")
    chat, ticket = ScriptedHook("chat"), ScriptedHook("ticket")
    r = await rig(tmp_path, clock, [chat, ticket])
    assert r.journal is not None
    conn = r.journal.connection
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
    await r.tick(a=50, **{f"pad{i}" * 30: 1.0 for i in range(100)})
    assert r.journal.write_failures_total == 1
    assert r.table() == []  # nothing acted on before it is durable
    assert chat.batches == []
    conn.execute("PRAGMA max_page_count = 1000000")
    await clock.advance(60)
    await r.tick(a=50)
    assert [(h, k, s) for _, h, k, s, _ in r.table()] == [
        ("chat", "firing", "delivered"),
        ("ticket", "firing", "delivered"),
    ]  # written once, by the commit that finally held the transition
    assert sent(chat) == sent(ticket) == [("a", "firing")]
    await r.close()


async def test_a_resolve_never_overtakes_its_trigger(tmp_path: Path, clock: FakeClock) -> None:
    answers = [DOWN, DOWN, DOWN]
    chat = ScriptedHook("chat", answer=lambda _: answers.pop(0) if answers else OK)
    r = await rig(tmp_path, clock, [chat, ScriptedHook("ticket")])
    await r.tick(a=50, b=50)
    assert sent(chat) == [("a", "firing"), ("b", "firing")]  # one batch, failed
    await clock.advance(0.2)
    await r.tick(a=5, b=50)  # a resolves while its trigger is still being retried
    assert sent(chat)[2:] == []
    for _ in range(10):
        await clock.advance(1)
    got = sent(chat)
    firing_ok = max(i for i, s in enumerate(got) if s == ("a", "firing"))
    assert got.index(("a", "resolved")) > firing_ok
    assert [s for s in got if s[0] == "a"][-2:] == [("a", "firing"), ("a", "resolved")]
    assert r.n.counters()[("chat", "success")] == 3
    assert r.n.counters()[("chat", "retry")] == 6  # two rows, three failed attempts
    assert all(state == "delivered" for _, _, _, state, _ in r.table())
    await r.close()


async def test_backoff_full_jitter_doubles_up_to_the_cap(tmp_path: Path, clock: FakeClock) -> None:
    times: list[float] = []

    def down(_: Sequence[AlertEvent]) -> SendResult:
        times.append(clock.monotonic())
        return DOWN

    chat = ScriptedHook("chat", answer=down)
    r = await rig(tmp_path, clock, [chat, ScriptedHook("ticket")], rand=lambda: 0.5)
    await r.tick(a=50)
    await clock.advance(9 * 60)  # within max_retry_duration (10m)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    # rand 0.5 × min(300, 1 × 2^n): 0.5, 1, 2, 4, ..., 128, then 150 (the cap's half)
    assert gaps[:9] == [0.5, 1, 2, 4, 8, 16, 32, 64, 128]
    assert set(gaps[9:]) == {150.0}
    await r.close()


async def test_retry_after_is_honoured(tmp_path: Path, clock: FakeClock) -> None:
    times: list[float] = []

    def limited(_: Sequence[AlertEvent]) -> SendResult:
        times.append(clock.monotonic())
        return OK if len(times) > 1 else SendResult("retryable", "429", retry_after_s=30)

    chat = ScriptedHook("chat", answer=limited)
    r = await rig(tmp_path, clock, [chat, ScriptedHook("ticket")])
    await r.tick(a=50)
    await clock.advance(60)
    assert times == [0.0, 30.0]
    await r.close()


async def test_a_row_expires_after_max_retry_duration_and_the_next_goes_on(
    tmp_path: Path, clock: FakeClock
) -> None:
    state = {"up": False}
    chat = ScriptedHook("chat", answer=lambda _: OK if state["up"] else DOWN)
    r = await rig(tmp_path, clock, [chat, ScriptedHook("ticket")])
    await r.tick(a=50)
    await clock.advance(9 * 60)
    assert r.n.counters().get(("chat", "expired"), 0) == 0
    await r.tick(a=5)  # the resolve waits behind its trigger
    await clock.advance(5 * 60)  # past 10m since the first attempt: the trigger expires
    assert r.n.counters()[("chat", "expired")] == 1
    state["up"] = True
    await clock.advance(5 * 60)
    rows = [(h, k, s) for _, h, k, s, _ in r.table() if h == "chat"]
    assert rows == [("chat", "firing", "expired"), ("chat", "resolved", "delivered")]
    assert sent(chat)[-1] == ("a", "resolved")
    await r.close()


async def test_a_permanent_error_is_recorded_and_not_retried(
    tmp_path: Path, clock: FakeClock
) -> None:
    chat = ScriptedHook("chat", answer=lambda _: SendResult("permanent", "HTTP 400: invalid"))
    r = await rig(tmp_path, clock, [chat, ScriptedHook("ticket")])
    await r.tick(a=50)
    await clock.advance(3600)
    assert len(chat.batches) == 1
    assert r.n.counters()[("chat", "failed")] == 1
    assert r.journal is not None
    [(state, error, attempts)] = r.journal.connection.execute(
        "SELECT state, error, attempts FROM outbox WHERE hook = 'chat'"
    ).fetchall()
    assert (state, error, attempts) == ("failed", "HTTP 400: invalid", 1)
    await r.close()


async def test_a_restart_restores_the_queue_and_the_planner_state(
    tmp_path: Path, clock: FakeClock
) -> None:
    chat = ScriptedHook("chat", answer=lambda _: DOWN)
    ticket = ScriptedHook("ticket")
    r = await rig(tmp_path, clock, [chat, ticket])
    await r.tick(a=50, b=50)
    await clock.advance(30)
    assert sent(ticket) == [("a", "firing"), ("b", "firing")]
    await r.close()

    # The same journal, a new process: the rows for chat are still pending, ticket's are done
    chat2, ticket2 = ScriptedHook("chat"), ScriptedHook("ticket")
    r2 = await rig(tmp_path, clock, [chat2, ticket2])
    await clock.settle()
    assert sent(chat2) == []  # the backoff journaled with the rows still holds...
    await clock.advance(300)
    assert sent(chat2) == [("a", "firing"), ("b", "firing")]  # ...then they go, once
    assert sent(ticket2) == []  # delivered before the restart: never again
    await r2.tick(a=5, b=50)  # the planner remembers who was told: both hear a resolve
    assert sent(chat2)[2:] == [("a", "resolved")]
    assert sent(ticket2) == [("a", "resolved")]
    assert r2.n.queue_length("chat") == 0
    await r2.close()


async def test_a_hanging_hook_delays_no_other(tmp_path: Path, clock: FakeClock) -> None:
    @dataclass
    class Hanging:
        name: str = "chat"
        max_batch: int = 1

        async def send(self, events: Sequence[AlertEvent]) -> SendResult:
            await asyncio.Event().wait()
            return OK

    ticket = ScriptedHook("ticket")
    r = await rig(tmp_path, clock, [Hanging(), ticket])
    await r.tick(a=50)
    assert sent(ticket) == [("a", "firing")]
    assert r.n.queue_length("chat") == 1
    assert r.n.oldest_pending_age_s("chat", clock.wall() + 5) == 5
    assert r.table()[0][3] == "pending"  # sent again at the next start
    await r.close()  # stops at once although chat never answers


async def test_a_removed_hook_s_rows_are_failed_and_counted(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    chat = ScriptedHook("chat", answer=lambda _: DOWN)
    r = await rig(tmp_path, clock, [chat, ScriptedHook("ticket")])
    await r.tick(a=50)
    r.n.update([ScriptedHook("ticket")], {})
    assert r.n.counters()[("chat", "dropped")] == 1
    assert "hook=chat rows=1" in caplog.text
    rows = {h: s for _, h, _, s, _ in r.table()}
    assert rows == {"chat": "failed", "ticket": "delivered"}
    await r.close()


async def test_without_a_journal_the_outbox_lives_in_memory(
    tmp_path: Path, clock: FakeClock
) -> None:
    answers = [DOWN]
    chat = ScriptedHook("chat", answer=lambda _: answers.pop(0) if answers else OK)
    r = await rig(tmp_path, clock, [chat, ScriptedHook("ticket")], journal=False)
    await r.tick(a=50)
    await clock.advance(0.2)
    await r.tick(a=5)
    await clock.advance(5)
    assert sent(chat) == [("a", "firing"), ("a", "firing"), ("a", "resolved")]
    assert r.n.latency.count == 4  # chat and ticket, firing and resolved
    assert r.n.outbox.prune(clock.wall() + 2 * DONE_RETENTION_S) == 0  # nothing on disk
    await r.close()


async def test_done_rows_are_pruned_a_day_later(tmp_path: Path, clock: FakeClock) -> None:
    r = await rig(tmp_path, clock, [ScriptedHook("chat"), ScriptedHook("ticket")])
    await r.tick(a=50)
    assert len(r.table()) == 2
    await clock.advance(DONE_RETENTION_S - 60)
    await r.tick(a=50)
    assert len(r.table()) == 2
    await clock.advance(3600)
    await r.tick(a=50)
    assert r.table() == []
    await r.close()


def test_an_unreadable_outbox_row_is_reported(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as j:
        j.connection.execute(
            "INSERT INTO outbox VALUES (1, 'h', 'k', 'firing', 0, '{}', 'pending', 0, NULL, 0, "
            "NULL, '')"
        )
        with pytest.raises(ValueError, match="not an alert event"):
            Outbox.open(j)


async def test_rows_planned_before_a_reload_removed_their_hook_are_dropped_when_committed(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Planned while commits fail, committed after a reload removed the hook: the rows have
    no worker, so they are failed and counted as dropped, not left pending unseen."""
    caplog.set_level(logging.WARNING, logger="kpimon.notify")
    chat, ticket = ScriptedHook("chat"), ScriptedHook("ticket")
    r = await rig(tmp_path, clock, [chat, ticket])
    assert r.journal is not None
    conn = r.journal.connection
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full: the plan waits
    await r.tick(a=50, **{f"pad{i}" * 30: 1.0 for i in range(100)})
    assert r.table() == []
    r.n.update([ticket], {})  # a reload removes chat
    conn.execute("PRAGMA max_page_count = 1000000")
    await clock.advance(60)
    await r.tick(a=50)
    rows = {h: s for _, h, _, s, _ in r.table()}
    assert rows == {"chat": "failed", "ticket": "delivered"}
    assert r.n.counters()[("chat", "dropped")] == 1
    assert r.n.queue_length("chat") == 0
    assert chat.batches == []
    await r.close()


# -- a tick's notifications staged as one row ---------------------------------------------------


class Hanging:
    """A hook whose receiver never answers: nothing is acknowledged."""

    name = "chat"
    max_batch = 1000

    async def send(self, events: Sequence[AlertEvent]) -> SendResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def staged(r: Rig) -> int:
    assert r.journal is not None
    (count,) = r.journal.connection.execute("SELECT count(*) FROM outbox_staged").fetchone()
    return int(count)


async def test_a_tick_s_notifications_are_one_staged_row_that_a_restart_reads_back(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The commit writes the tick's rows as one staged row; read back (as after a crash),
    they are the same rows, in the same order, with the same events and planner state."""
    r = await rig(tmp_path, clock, [Hanging(), ScriptedHook("ticket", answer=lambda _: DOWN)])
    assert r.journal is not None
    await r.tick(a=50, b=50, c=50)
    # ticket's first attempt failed and was journaled: that write moved the staged rows
    assert staged(r) == 0
    assert (
        sorted((h, k, s) for _, h, k, s, _ in r.table())
        == [("chat", "firing", "pending")] * 3 + [("ticket", "firing", "pending")] * 3
    )
    await clock.advance(1)
    await r.tick(a=5, b=50, c=50)  # a resolves: staged, nothing acknowledged since
    assert staged(r) == 1
    assert len(r.table()) == 6
    before = {h: r.n.outbox.rows(h) for h in ("chat", "ticket")}
    records = dict(r.journal.connection.execute("SELECT key, record FROM notify_alerts"))
    again = Outbox.open(r.journal)  # what the next start reads
    assert staged(r) == 1  # where it is: opening writes nothing
    for hook, rows in before.items():
        assert [(x.id, x.key, x.kind, x.event) for x in again.rows(hook)] == [
            (x.id, x.key, x.kind, x.event) for x in rows
        ]
    assert [x.kind for x in again.rows("chat")] == ["firing"] * 3 + ["resolved"]
    assert dict(again.records) != records  # the resolve's record was staged too
    planner = Planner(r.cfg.alerting)
    planner.load(again.records)
    assert planner.firing() == 2
    await r.close()


async def test_an_acknowledgement_moves_the_staged_rows_first(
    tmp_path: Path, clock: FakeClock
) -> None:
    chat = ScriptedHook("chat")
    r = await rig(
        tmp_path,
        clock,
        [chat],
        alerting='hooks: [{name: chat, type: webhook, url: "http://127.0.0.1:1/c"}]',
    )
    await r.tick(a=50, b=50)
    assert staged(r) == 0
    assert [(h, k, s) for _, h, k, s, _ in r.table()] == [("chat", "firing", "delivered")] * 2
    await r.close()


async def test_stopping_moves_the_staged_rows_into_the_outbox(
    tmp_path: Path, clock: FakeClock
) -> None:
    r = await rig(
        tmp_path,
        clock,
        [Hanging()],
        alerting='hooks: [{name: chat, type: webhook, url: "http://127.0.0.1:1/c"}]',
    )
    await r.tick(a=50)
    assert staged(r) == 1
    assert r.table() == []
    await r.n.stop()
    assert staged(r) == 0
    assert [(h, k, s) for _, h, k, s, _ in r.table()] == [("chat", "firing", "pending")]
    await r.close()


async def test_after_a_crash_the_staged_rows_are_sent_once_then_moved(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    one = 'hooks: [{name: chat, type: webhook, url: "http://127.0.0.1:1/c"}]'
    r = await rig(tmp_path, clock, [Hanging()], alerting=one)
    assert r.journal is not None
    await r.tick(a=50, b=50)
    assert staged(r) == 1
    r.journal.close()  # killed: nothing stopped, nothing moved
    caplog.set_level(logging.CRITICAL, logger="kpimon.hooks")
    await r.n.stop()  # (only to end the hanging task; the journal is already closed)

    chat = ScriptedHook("chat")
    r2 = await rig(tmp_path, clock, [chat], alerting=one)
    await clock.settle()
    assert sent(chat) == [("a", "firing"), ("b", "firing")]
    assert staged(r2) == 0
    assert [(h, k, s) for _, h, k, s, _ in r2.table()] == [("chat", "firing", "delivered")] * 2
    await r2.tick(a=5, b=50)
    await clock.settle()
    assert sent(chat)[2:] == [("a", "resolved")]  # the planner state came back too
    await r2.close()


async def test_a_clean_stop_writes_the_acknowledgements_whose_write_failed(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Delivered, but its acknowledgement could not be written: a clean stop writes it, so
    the next start does not send it again."""
    one = 'hooks: [{name: chat, type: webhook, url: "http://127.0.0.1:1/c"}]'
    chat = ScriptedHook("chat")
    r = await rig(tmp_path, clock, [chat], alerting=one)
    assert r.journal is not None
    conn = r.journal.connection
    conn.execute(
        "CREATE TEMP TRIGGER no_ack BEFORE UPDATE ON outbox "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    caplog.set_level(logging.CRITICAL, logger="kpimon.hooks")
    await r.tick(a=50)
    assert sent(chat) == [("a", "firing")]
    assert r.n.outbox.write_failures_total == 1
    assert staged(r) == 1  # the failed acknowledgement's transaction moved nothing
    conn.execute("DROP TRIGGER no_ack")
    await r.close()

    chat2 = ScriptedHook("chat")
    r2 = await rig(tmp_path, clock, [chat2], alerting=one)
    await clock.settle()
    assert sent(chat2) == []
    assert [(h, k, s) for _, h, k, s, _ in r2.table()] == [("chat", "firing", "delivered")]
    await r2.close()


def test_staged_records_and_later_ones_apply_in_order(tmp_path: Path) -> None:
    """A key's record staged with notifications, then deleted by a plan without any: the
    delete wins; deleted while staged, then written again: the record is there."""
    from kpimon.notify.policy import Notification, Plan

    ev = AlertEvent(kpi="k", level="warning", status="firing", labels=(), active_at=0, fired_at=0)
    with Journal.open(tmp_path / "data") as j:
        box = Outbox.open(j)

        def commit(t: float, plan: Plan) -> None:
            j.commit(t, [], [], plan)

        note = Notification("chat", "x", "firing", ev, 1.0)
        commit(1, Plan(1, (note,), (("x", '{"r":1}'), ("y", '{"r":1}'))))
        commit(2, Plan(2, (), (("x", None),)))  # moves the staged plan first, then deletes
        commit(3, Plan(3, (note._replace(created_at=3.0),), (("y", None),)))
        commit(4, Plan(4, (note._replace(created_at=4.0),), (("y", '{"r":2}'),)))
        box.unstage()
        conn = j.connection
        assert dict(conn.execute("SELECT key, record FROM notify_alerts")) == {"y": '{"r":2}'}
        assert conn.execute("SELECT id, created_at, state FROM outbox ORDER BY id").fetchall() == [
            (1, 1.0, "pending"),
            (2, 3.0, "pending"),
            (3, 4.0, "pending"),
        ]
        assert [r.id for r in box.rows("chat")] == [1, 2, 3]
