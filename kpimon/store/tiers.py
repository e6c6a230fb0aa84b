"""Two stores instead of one: long ranges keep long history only for the metrics that need it.

A store keeps as much history as the longest range read from it, for every series it holds
(one ring of rows per target, shared by all its series). One KPI reading
``avg_over_time(probe_success[1d])`` or an SLO's 3-day burn rate would otherwise make the store
keep a day or three of every series of every target: at a 15 s interval a day is ≈ 5,800 samples,
≈ 46 KB per series, gigabytes for a fleet of node_exporters.

So expressions are split by the longest range they read. Those reading at most
:data:`LONG_RANGE_S` go to the *main* store, which holds every wanted series with the history
the short expressions need. Those reading more go to the *long* store, which holds only the
metric names the long expressions read (all names when one of them has a selector without a
metric name), with the history they need. :class:`Tiers` says which store an expression reads
and where a scrape goes (:class:`~kpimon.ingest.IngestBuffer` writes each scrape to the main
store and its long-store names to the long store). Both stores see the same samples at the same
times, so an expression's result does not depend on its tier.

Pure: no I/O, never awaits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from kpimon.labels import decode_key
from kpimon.promql import CompiledExpr
from kpimon.store.core import Store, replay

LONG_RANGE_S: Final = 3600.0
"""Expressions reading ranges longer than this (1h) read the long store."""


@dataclass(frozen=True, slots=True)
class TierPlan:
    """How much history each store keeps and which metrics the long store holds.

    Attributes:
        main_range_s: the longest range the main store's expressions read (0 when none).
        long_range_s: the longest range of all; None when no expression reads a long range
            (no long store).
        long_names: metric names the long store holds; None for every name.
    """

    main_range_s: float
    long_range_s: float | None
    long_names: frozenset[str] | None


def plan(exprs: Iterable[CompiledExpr]) -> TierPlan:
    """The tiers that ``exprs`` need."""
    main = 0.0
    longest: float | None = None
    names: set[str] | None = set()
    for expr in exprs:
        if expr.max_range_s <= LONG_RANGE_S:
            main = max(main, expr.max_range_s)
            continue
        longest = max(longest or 0.0, expr.max_range_s)
        if expr.metric_names is None or names is None:
            names = None
        else:
            names |= expr.metric_names
    if longest is None:
        return TierPlan(main, None, frozenset())
    return TierPlan(main, longest, None if names is None else frozenset(names))


def is_long(expr: CompiledExpr) -> bool:
    """Whether ``expr`` reads the long store."""
    return expr.max_range_s > LONG_RANGE_S


class Tiers:
    """The main store and, when some expression reads a long range, the long store.

    ``padding_s`` is added to each store's longest range (the lookback and the longest
    interval, so that a range is full even just before a tick).
    """

    def __init__(self, tiers: TierPlan, *, padding_s: float, min_interval_s: float) -> None:
        self.main = Store(retention_s=tiers.main_range_s + padding_s, min_interval_s=min_interval_s)
        self.long: Store | None = None
        self.plan = tiers
        self._keep: dict[str, tuple[Sequence[bytes], int, list[bytes], list[int] | None]] = {}
        self.reconfigure(tiers, padding_s=padding_s, min_interval_s=min_interval_s)

    def reconfigure(self, tiers: TierPlan, *, padding_s: float, min_interval_s: float) -> None:
        """Apply a new plan (config reload): stores keep their newest samples; metrics that
        become long-range (a new long store, or new names in it) start with the history the
        main store has of them, as one store holding everything would have; a long store no
        longer needed is dropped."""
        self.main.reconfigure(tiers.main_range_s + padding_s, min_interval_s)
        before = None if self.long is None else self.plan.long_names
        if tiers.long_range_s is None:
            self.long = None
        elif self.long is None:
            self.long = Store(
                retention_s=tiers.long_range_s + padding_s, min_interval_s=min_interval_s
            )
            before = frozenset()
        else:
            self.long.reconfigure(tiers.long_range_s + padding_s, min_interval_s)
        if self.long is not None and before is not None:
            new = None if tiers.long_names is None else tiers.long_names - before
            if new is None or new:
                replay(self.main.history(new), self.long)
        if tiers.long_names != self.plan.long_names:
            self._keep.clear()
        self.plan = tiers

    def for_expr(self, expr: CompiledExpr) -> Store:
        """The store ``expr`` reads."""
        if self.long is not None and is_long(expr):
            return self.long
        return self.main

    @property
    def stores(self) -> list[Store]:
        return [self.main] if self.long is None else [self.main, self.long]

    def long_part(self, target: str, keys: list[bytes]) -> tuple[list[bytes], list[int] | None]:
        """The keys of a scrape of ``target`` that the long store holds, and their positions in
        ``keys`` (None: all of them). Worked out once per key list (kept while the target sends
        the very same list, as the parser returns it for an unchanged series set)."""
        names = self.plan.long_names
        if names is None:
            return keys, None
        hit = self._keep.get(target)
        if hit is not None and hit[0] is keys and hit[1] == len(keys):
            return hit[2], hit[3]
        take = [i for i, key in enumerate(keys) if _name(key) in names]
        part = [keys[i] for i in take]
        out = (part, None if len(take) == len(keys) else take)
        self._keep[target] = (keys, len(keys), *out)
        return out

    def forget(self, target: str) -> None:
        """``target`` left the configuration."""
        self._keep.pop(target, None)


def _name(key: bytes) -> str | None:
    """The metric name of a series key; None when the key is not well formed."""
    brace = key.find(b"{")
    if brace > 0:
        try:
            return key[:brace].decode("ascii")
        except UnicodeDecodeError:
            pass
    elif brace < 0:
        return key.decode("utf-8", "replace")
    try:
        return decode_key(key)[0]
    except ValueError:
        return None
