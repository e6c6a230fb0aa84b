"""The dispatcher: one worker per hook sending the outbox's rows; the async shell of notify/.

:class:`Notifications` is what the daemon holds: the engine asks it to :meth:`~Notifications.plan`
each tick (the pure :class:`~kpimon.notify.policy.Planner`), the journal's commit puts the plan
in the :class:`~kpimon.notify.outbox.Outbox`, and the outbox wakes the workers of the hooks that
got rows at once (an :class:`asyncio.Event` per hook, no polling delay).

A worker sends its hook's due rows oldest first, at most ``hook.max_batch`` per call, never an
alert's row before its earlier rows are done (the outbox offers only the oldest row of each
key). It acknowledges in the journal only after the receiver answered, so a crash between send
and acknowledgement sends the same notification, with the same dedup key, after the restart.
A retryable failure is retried after :func:`~kpimon.notify.retry.next_retry_delay` (backoff
with full jitter, ``Retry-After`` honoured) until the hook's ``max_retry_duration`` since the
first attempt has passed (then the row is ``expired``); a permanent failure is recorded
(``failed``) and not retried. Workers are independent: a hook that hangs delays no other
(each send is bounded by the hook's ``timeout``).

Alertmanager targets also get their active alerts re-sent every minute (firing ones, and
resolved ones for 15 minutes), from the planner's state, in batches, skipping alerts that
still have rows in the outbox (so a re-send never overtakes a queued transition).

Time comes from the injected :class:`~kpimon.clock.Clock` (wall time: rows carry Unix times
across restarts) and randomness from ``rand``, so tests drive a simulated hour in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from kpimon.clock import Clock
from kpimon.config.alerting import AlertingConfig
from kpimon.kpi.machine import FlapEvent, Transition
from kpimon.notify.alertmanager import RESEND_DELAY_S
from kpimon.notify.model import AlertEvent, SendResult
from kpimon.notify.outbox import Outbox, Row
from kpimon.notify.policy import Plan, Planner
from kpimon.notify.registry import Hook
from kpimon.notify.retry import RetryPolicy, next_retry_delay

if TYPE_CHECKING:
    from kpimon.kpi.engine import KpiRuntime

log = logging.getLogger("kpimon.hooks")

RESULTS: Final = ("success", "retry", "failed", "expired", "suppressed", "dropped", "resent")
"""Values of ``kpimon_notifications_total{result}``: delivered; an attempt failed and will be
retried; failed permanently; given up after ``max_retry_duration``; held by a silence,
inhibition or flapping; dropped because its hook was removed; an Alertmanager re-send
delivered (per alert)."""

LATENCY_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
PRUNE_EVERY_S: Final = 3600.0


def policy_for(alerting: AlertingConfig) -> dict[str, RetryPolicy]:
    """Each hook's retry policy (Alertmanager targets keep the default 24h)."""
    return {h.name: RetryPolicy(max_duration_s=h.max_retry_duration_s) for h in alerting.hooks}


@dataclass(slots=True)
class Histogram:
    """A Prometheus histogram's state (cumulative on rendering)."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, v: float) -> None:
        v = max(0.0, v)
        i = next((i for i, b in enumerate(self.buckets) if v <= b), len(self.buckets))
        self.counts[i] += 1
        self.total += v
        self.count += 1


@dataclass(slots=True)
class _Worker:
    hook: Hook
    policy: RetryPolicy
    alertmanager: bool
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    next_resend: float | None = None
    failing: bool = False
    sending: bool = False


class Notifications:
    """Planner, outbox and workers: the daemon's notification service.

    Args:
        planner: plans each tick (pure).
        outbox: the durable queue (:meth:`Outbox.open` on the journal, or in memory).
        hooks: the senders (:func:`~kpimon.notify.registry.build_hooks`).
        policies: retry policy per hook name (default :class:`RetryPolicy`).
        clock: time for retries, re-sends and latencies.
        rand: uniform in [0, 1), for the jitter.
    """

    def __init__(
        self,
        planner: Planner,
        outbox: Outbox,
        hooks: Sequence[Hook],
        *,
        clock: Clock,
        policies: Mapping[str, RetryPolicy] | None = None,
        rand: Callable[[], float] = random.random,
        resend_delay_s: float = RESEND_DELAY_S,
    ) -> None:
        self.planner = planner
        self.outbox = outbox
        self.clock = clock
        self._rand = rand
        self._resend_delay_s = resend_delay_s
        self._workers: dict[str, _Worker] = {}
        self._running = False
        self.results: Counter[tuple[str, str]] = Counter()
        self.latency = Histogram()
        self._last_prune: float | None = None
        outbox.wake = self._wake
        self.update(hooks, policies or {})

    # -- the engine's Notifier --------------------------------------------------------

    def plan(
        self,
        t: float,
        transitions: Sequence[tuple[str, Transition]],
        flap_events: Sequence[tuple[str, FlapEvent]],
        kpis: Mapping[str, KpiRuntime],
    ) -> Plan | None:
        """The tick's plan (None when it holds nothing), for the journal's commit."""
        if self._last_prune is None or t - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = t
            pruned = self.outbox.prune(t)
            if pruned:
                log.debug("notification outbox pruned rows=%d", pruned)
        plan = self.planner.plan(t, transitions, flap_events, kpis)
        return plan if plan else None

    def committed(self, items: Sequence[object]) -> None:
        """Without a journal: the plans go straight to the (in-memory) outbox."""
        self.outbox.committed(items)

    # -- lifecycle ----------------------------------------------------------------------

    def update(self, hooks: Sequence[Hook], policies: Mapping[str, RetryPolicy]) -> None:
        """Use these senders from now on (start-up and reload). Workers of hooks that are
        gone stop; their queued rows are marked failed and counted as ``dropped``."""
        new = {h.name: h for h in hooks}
        for name in list(self._workers):
            if name not in new:
                w = self._workers.pop(name)
                if w.task is not None:
                    w.task.cancel()
        for name, hook in new.items():
            policy = policies.get(name, RetryPolicy())
            old = self._workers.get(name)
            if old is None:
                w = self._workers[name] = _Worker(hook, policy, name.startswith("alertmanager:"))
                if self._running:
                    self._start(w)
            else:
                old.hook, old.policy = hook, policy
                old.wake.set()
        self._drop_unconfigured()

    def _drop_unconfigured(self) -> None:
        """Fail (and count as ``dropped``) the queued rows of hooks without a worker."""
        dropped = self.outbox.drop_hooks(self._workers, self.clock.wall())
        for hook_name, n in dropped.items():
            self.results[(hook_name, "dropped")] += n
            log.warning(
                "notifications dropped: their hook is no longer configured hook=%s rows=%d",
                hook_name,
                n,
            )

    async def start(self) -> None:
        self._running = True
        for w in self._workers.values():
            self._start(w)

    def _start(self, w: _Worker) -> None:
        if w.alertmanager:  # an in-process interval: monotonic time, immune to clock steps
            w.next_resend = self.clock.monotonic() + self._resend_delay_s
        w.task = asyncio.create_task(self._run(w), name=f"notify:{w.hook.name}")
        w.task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        """Stop every worker at once. A send in flight is abandoned: its row stays pending
        and is sent again (same dedup key) at the next start. Staged rows are moved into the
        outbox table, and acknowledgements whose write failed are written
        (:meth:`Outbox.unstage`)."""
        self._running = False
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for w in self._workers.values():
            w.task = None
        self.outbox.unstage()

    def _wake(self, hooks: set[str]) -> None:
        orphans = False
        for name in hooks:
            w = self._workers.get(name)
            if w is not None:
                w.wake.set()
            else:  # planned before a reload removed the hook, committed after it
                orphans = True
        if orphans:
            self._drop_unconfigured()

    # -- metrics ------------------------------------------------------------------------

    def busy(self) -> bool:
        """Whether a worker is waiting for a receiver's answer (tests wait for this to end
        before moving a fake clock on)."""
        return any(w.sending for w in self._workers.values())

    def hook_names(self) -> list[str]:
        return list(self._workers)

    def queue_length(self, hook: str) -> int:
        return self.outbox.pending(hook)

    def oldest_pending_age_s(self, hook: str, now: float) -> float:
        oldest = self.outbox.oldest(hook)
        return 0.0 if oldest is None else max(0.0, now - oldest)

    def counters(self) -> dict[tuple[str, str], int]:
        out = dict(self.results)
        for hook, n in self.planner.suppressed_total.items():
            out[(hook, "suppressed")] = n
        return out

    # -- the workers --------------------------------------------------------------------

    async def _run(self, w: _Worker) -> None:
        name = w.hook.name
        while True:
            w.wake.clear()
            now, mono = self.clock.wall(), self.clock.monotonic()
            rows = self.outbox.due(name, now, max(1, w.hook.max_batch))
            if rows:
                await self._send(w, rows)
                continue
            if w.next_resend is not None and mono >= w.next_resend:
                # While rows are queued, their retries find out when it is back; with none
                # left (delivered, failed or expired), re-sending is how it learns.
                if w.failing and self.outbox.pending(name):
                    w.next_resend = mono + self._resend_delay_s
                else:
                    await self._resend(w, now)
                continue
            waits = []
            due = self.outbox.next_due(name)
            if due is not None:
                waits.append(due - now)
            if w.next_resend is not None:
                waits.append(w.next_resend - mono)
            await self._wait(w, min(waits) if waits else None)

    async def _wait(self, w: _Worker, timeout_s: float | None) -> None:
        waiter = asyncio.ensure_future(w.wake.wait())
        if timeout_s is None:
            try:
                await waiter
            finally:
                waiter.cancel()
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(max(0.0, timeout_s)))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

    async def _call(self, w: _Worker, events: list[AlertEvent]) -> SendResult:
        """``w``'s hook sends ``events`` (``w.sending`` meanwhile). A hook that raises instead
        of reporting is a sender bug: logged with its traceback, and the result is retryable,
        so that the worker goes on."""
        w.sending = True
        try:
            return await w.hook.send(events)
        except Exception as exc:
            log.exception("hook raised instead of reporting hook=%s", w.hook.name)
            return SendResult("retryable", f"{w.hook.name}: internal error: {type(exc).__name__}")
        finally:
            w.sending = False

    async def _send(self, w: _Worker, rows: list[Row]) -> None:
        hook = w.hook
        started = self.clock.wall()
        self.outbox.started(rows, started)
        result = await self._call(w, [r.event for r in rows])
        answered = self.clock.wall()
        if result.ok:
            self.outbox.finish(rows, "delivered", answered)
            self.results[(hook.name, "success")] += len(rows)
            for r in rows:
                self.latency.observe(answered - r.created_at)
            if w.failing:
                w.failing = False
                log.info("hook delivering again hook=%s", hook.name)
            log.debug("notifications delivered hook=%s rows=%d", hook.name, len(rows))
            return
        if result.outcome == "permanent":
            self.outbox.finish(rows, "failed", answered, result.reason)
            self.results[(hook.name, "failed")] += len(rows)
            log.error(
                "notifications failed permanently, not retried hook=%s rows=%d reason=%s",
                hook.name,
                len(rows),
                result.reason,
            )
            return
        retry: list[tuple[Row, float]] = []
        expired: list[Row] = []
        for r in rows:
            delay = next_retry_delay(
                result,
                attempt=r.attempts,
                first_attempt_at=r.first_attempt_at if r.first_attempt_at is not None else started,
                now=answered,
                policy=w.policy,
                rand=self._rand,
            )
            if delay is None:
                expired.append(r)
            else:
                retry.append((r, answered + delay))
        if not w.failing:
            w.failing = True
            log.warning("hook failing, retrying hook=%s reason=%s", hook.name, result.reason)
        else:
            log.debug("hook still failing hook=%s reason=%s", hook.name, result.reason)
        if retry:
            self.outbox.retry(retry, result.reason)
            self.results[(hook.name, "retry")] += len(retry)
        if expired:
            self.outbox.finish(expired, "expired", answered, result.reason)
            self.results[(hook.name, "expired")] += len(expired)
            log.error(
                "notifications expired: retried for max_retry_duration hook=%s rows=%d reason=%s",
                hook.name,
                len(expired),
                result.reason,
            )

    async def _resend(self, w: _Worker, now: float) -> None:
        """Re-send an Alertmanager its active alerts (best effort: the next round retries)."""
        w.next_resend = self.clock.monotonic() + self._resend_delay_s
        pending = self.outbox.pending_keys(w.hook.name)
        events = [e for key, e in self.planner.active(w.hook.name, now) if key not in pending]
        if not events:
            return
        result = await self._call(w, events)
        if result.ok:
            self.results[(w.hook.name, "resent")] += len(events)
        else:
            log.warning(
                "re-sending active alerts failed hook=%s alerts=%d reason=%s",
                w.hook.name,
                len(events),
                result.reason,
            )


def _report_crash(task: asyncio.Task[None]) -> None:
    """A worker that ended other than by being stopped: say so loudly (its hook gets
    nothing more until the next start or reload)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error(
            "notification worker stopped by an internal error, its hook gets nothing until "
            "kpimon is reloaded or restarted task=%s err=%s: %s",
            task.get_name(),
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
