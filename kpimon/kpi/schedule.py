"""Time-of-day thresholds: which threshold and clear value a level uses at tick time ``t``.

A level may carry a ``schedule``: windows (weekdays and a local time range in a named time zone)
each with its own threshold. At tick ``t`` the first window that contains ``t`` wins; outside
every window the level's own threshold applies. Local time is wall-clock time in the window's
zone (:mod:`zoneinfo`), so a window follows daylight saving time: 08:00–18:00 Europe/Berlin is
07:00–17:00 UTC in winter and 06:00–16:00 UTC in summer.

A window whose end is not after its start crosses midnight: ``days`` names the day it starts on,
and it runs into the next day (``fri 22:00–06:00`` is Friday 22:00 to Saturday 06:00). On the
day clocks spring forward, local times that do not exist are never reached; on the day they fall
back, the repeated hour is inside a window each time it passes.

Pure: no I/O beyond the time-zone database, which :mod:`zoneinfo` reads once per zone and keeps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

DAY_NAMES: Final[tuple[str, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names as written in rule files, Monday first (index = ``datetime.weekday()``)."""

MINUTES_PER_DAY: Final = 24 * 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """One ``schedule`` entry of a level.

    Attributes:
        days: weekdays (0 = Monday) on which the window starts.
        start_min: local start, minutes after midnight (0–1439), inclusive.
        end_min: local end, minutes after midnight (1–1440), exclusive; not after ``start_min``
            means the window crosses midnight and ends on the next day.
        timezone: an IANA time-zone name (``Europe/Berlin``, ``UTC``).
        threshold: the level's threshold inside the window.
        clear: the level's clear value inside the window.
    """

    days: frozenset[int]
    start_min: int
    end_min: int
    timezone: str
    threshold: float
    clear: float

    @property
    def crosses_midnight(self) -> bool:
        return self.end_min <= self.start_min

    def contains(self, t: float) -> bool:
        """Whether Unix time ``t`` lies inside the window."""
        local = datetime.fromtimestamp(t, zone(self.timezone))
        day = local.weekday()
        minute = local.hour * 60 + local.minute
        if not self.crosses_midnight:
            return day in self.days and self.start_min <= minute < self.end_min
        return (day in self.days and minute >= self.start_min) or (
            (day - 1) % 7 in self.days and minute < self.end_min
        )


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The time zone called ``name`` (raises what :class:`~zoneinfo.ZoneInfo` raises)."""
    return ZoneInfo(name)


def in_force(
    windows: tuple[Window, ...], t: float, threshold: float, clear: float
) -> tuple[float, float]:
    """The ``(threshold, clear)`` in force at ``t``: the first window containing ``t``, else
    the level's own ``threshold`` and ``clear``."""
    for window in windows:
        if window.contains(t):
            return window.threshold, window.clear
    return threshold, clear


def parse_time_of_day(text: str) -> int | None:
    """Minutes after midnight of ``"HH:MM"`` (``"00:00"``–``"24:00"``), or None if malformed."""
    hours, sep, minutes = text.partition(":")
    if (
        not sep
        or len(hours) != 2
        or len(minutes) != 2
        or not (hours.isdigit() and minutes.isdigit())
        or not hours.isascii()
        or not minutes.isascii()
    ):
        return None
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and m):
        return None
    return h * 60 + m
