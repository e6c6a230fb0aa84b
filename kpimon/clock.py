"""The one clock kpimon reads.

Every duration, timer and ``for:`` window uses :meth:`Clock.monotonic`; :meth:`Clock.wall` gives
the Unix time that samples, payloads and people see. Tests pass :class:`kpimon.testing.FakeClock`.
``time.time()`` outside this module is a review flag.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Time as kpimon sees it."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def wall(self) -> float:
        """Unix time in seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()
