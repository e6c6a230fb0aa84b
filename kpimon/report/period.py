"""The period a report covers: a calendar day, week (Monday first) or month, in UTC or a zone.

``--at`` names a moment (RFC 3339 or Unix seconds) or a date (``2024-05-01``):

- a date: the whole calendar day, week or month containing that date;
- a moment (default: now): the calendar period containing it, from its start up to that
  moment (a report "so far").

Calendar boundaries are midnights in the zone (``--tz``, default UTC), so a day in a zone with
daylight saving time may last 23 or 25 hours. Pure: no I/O (``now`` is passed in).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kpimon.replay.data import parse_time

PeriodKind = Literal["day", "week", "month"]
PERIODS: tuple[PeriodKind, ...] = ("day", "week", "month")

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in Unix seconds; ``kind`` and ``tz`` as asked; ``label`` for people
    (``2024-05-01``, ``2024-W18``, ``2024-05``); ``partial`` when it ends at ``--at`` before
    the calendar period's end."""

    kind: PeriodKind
    tz: str
    start: float
    end: float
    label: str
    partial: bool

    @property
    def length_s(self) -> float:
        return self.end - self.start


def zone(name: str) -> dt.tzinfo:
    """The time zone called ``name`` (``UTC``, ``Europe/Paris``).

    Raises:
        ValueError: no such zone.
    """
    if name.upper() in ("UTC", "Z"):
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)"
        ) from None


def period_at(kind: PeriodKind, at: str | None, now: float, tz: str = "UTC") -> Period:
    """The ``kind`` period named by ``at`` (None: ``now``) in zone ``tz``.

    Raises:
        ValueError: ``at`` is neither a date nor a time, or ``tz`` is unknown.
    """
    zinfo = zone(tz)
    whole = False
    if at is None:
        moment = now
    elif _DATE.match(at.strip()):
        try:
            day = dt.date.fromisoformat(at.strip())
        except ValueError:
            raise ValueError(f"invalid date {at!r}") from None
        moment = dt.datetime(day.year, day.month, day.day, 12, tzinfo=zinfo).timestamp()
        whole = True
    else:
        moment = parse_time(at)
    local = dt.datetime.fromtimestamp(moment, tz=zinfo)
    day = local.date()
    if kind == "day":
        first, after = day, day + dt.timedelta(days=1)
        label = day.isoformat()
    elif kind == "week":
        first = day - dt.timedelta(days=day.weekday())
        after = first + dt.timedelta(days=7)
        year, week, _ = first.isocalendar()
        label = f"{year}-W{week:02d}"
    else:
        first = day.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
        label = f"{first.year}-{first.month:02d}"
    start = _midnight(first, zinfo)
    end = _midnight(after, zinfo)
    partial = not whole and moment < end
    return Period(kind, tz, start, moment if partial else end, label, partial)


def _midnight(day: dt.date, zinfo: dt.tzinfo) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=zinfo).timestamp()
