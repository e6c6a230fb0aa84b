"""The garbage collector, set for a long-running daemon (:func:`settle`).

CPython's cyclic collector now and then makes a full pass over every object it tracks. In
kpimon those are mostly the objects of its modules, its config and its first scrapes (40k to
60k, whatever the number of series: labels are tuples of strings, which it stops tracking),
and a full pass over them costs 15–25 ms on a 2-core box, landing in whatever runs then: an
evaluation tick, a burst of notifications. Those objects live as long as the process. Once
the daemon is ready they are frozen (:func:`gc.freeze`), so later passes look only at what
was made since. What the collector then never frees is cyclic garbage among them: at most the
first config's own cycles, after a reload replaced it.
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> int:
    """Collect the garbage there is, then freeze what is left; returns how many objects are
    frozen (all of them, counting earlier calls)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
