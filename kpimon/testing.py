"""Helpers for testing kpimon and rules built on it, shipped with the package.

:class:`FakeClock` is an asyncio clock whose time moves only when a test says so, so that a
"fires after 45 minutes" test runs in milliseconds and never depends on machine speed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """A :class:`kpimon.clock.Clock` under the test's control.

    ``monotonic()`` starts at 0 and ``wall()`` at ``start_wall``; both advance together, only in
    :meth:`advance`. ``sleep`` parks the caller until the clock reaches its deadline.

    Example::

        clock = FakeClock()
        task = asyncio.create_task(loop_that_sleeps(clock))
        await clock.advance(60)      # wakes every sleeper due in the next minute, in order
    """

    def __init__(self, start_wall: float = 1_700_000_000.0) -> None:
        self._mono = 0.0
        self._wall0 = start_wall
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall0 + self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many tasks are parked in :meth:`sleep` (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        """The monotonic time of the earliest parked sleeper, or None."""
        live = [d for d, _, f in self._sleepers if not f.done()]
        return min(live) if live else None

    async def settle(self, rounds: int = 20) -> None:
        """Let woken tasks run until they park again (a bounded number of loop turns)."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in deadline order.

        Each sleeper wakes with the clock set to its own deadline, and the woken tasks run
        before time moves on, so a loop that sleeps repeatedly sees every one of its ticks.
        """
        target = self._mono + seconds
        while True:
            await self.settle()
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._mono = max(self._mono, deadline)
            fut.set_result(None)
        self._mono = target
        await self.settle()
