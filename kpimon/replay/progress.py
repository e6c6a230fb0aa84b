"""A progress bar for long replays, on a terminal only; no dependency.

:class:`Progress` is a :data:`~kpimon.replay.driver.ProgressFn`: it redraws one line (``\\r``)
at most :data:`MAX_RATE` times a second and erases it when the replay ends. It draws nothing
when its stream is not a terminal or the replay is short. The clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

MAX_RATE = 10.0
"""Redraws per second, at most."""
MIN_TICKS = 2000
"""Replays with fewer ticks get no bar (they finish in a blink)."""
WIDTH = 30


class Progress:
    """Draws ``[#####-----]  45%  2600/5761 ticks`` on ``stream`` while a replay runs."""

    def __init__(
        self,
        stream: TextIO,
        *,
        enabled: bool | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``enabled`` None: draw when ``stream`` is a terminal (and the replay long)."""
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.monotonic = monotonic
        self._last = -1.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < MIN_TICKS:
            return
        now = self.monotonic()
        if done < total and now - self._last < 1 / MAX_RATE:
            return
        self._last = now
        filled = WIDTH * done // total
        bar = "#" * filled + "-" * (WIDTH - filled)
        self.stream.write(f"\r[{bar}] {100 * done // total:3d}%  {done}/{total} ticks")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the bar (if one was drawn)."""
        if self._drawn:
            self.stream.write("\r" + " " * (WIDTH + 40) + "\r")
            self.stream.flush()
            self._drawn = False
