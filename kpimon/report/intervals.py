"""Half-open time intervals ``[a, b)`` as sorted, disjoint lists: union, clip, overlap.

Pure helpers of :mod:`kpimon.report.compute`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

Interval = tuple[float, float]


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of ``intervals`` as sorted, disjoint, non-empty intervals."""
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def clip(intervals: Iterable[Interval], start: float, end: float) -> list[Interval]:
    """``intervals`` cut to ``[start, end)`` (empty pieces dropped)."""
    return [(max(a, start), min(b, end)) for a, b in intervals if min(b, end) > max(a, start)]


def overlap(a: float, b: float, within: Sequence[Interval], starts: Sequence[float]) -> float:
    """Length of ``[a, b)`` inside ``within`` (sorted, disjoint; ``starts`` their starts)."""
    return sum((hi - lo for lo, hi in pieces(a, b, within, starts)), 0.0)


def pieces(
    a: float, b: float, within: Sequence[Interval], starts: Sequence[float]
) -> list[Interval]:
    """``[a, b)`` cut into its pieces inside ``within`` (sorted, disjoint)."""
    out: list[Interval] = []
    i = max(0, bisect.bisect_right(starts, a) - 1)
    while i < len(within) and within[i][0] < b:
        lo, hi = max(a, within[i][0]), min(b, within[i][1])
        if hi > lo:
            out.append((lo, hi))
        i += 1
    return out


def length(intervals: Iterable[Interval]) -> float:
    return sum(b - a for a, b in intervals)
