"""Per-target bookkeeping of the store, and how a target's labels join a scraped series'.

Owns :class:`Target` (the mapping of a target's series keys to store columns, the positional
index reused while the key list is unchanged, which series are present) and
:func:`attach_target_labels` (Prometheus' ``honor_labels: false`` rule). No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kpimon.labels import Labels
from kpimon.store.layout import I64, NO_TIME


@dataclass(slots=True, eq=False)
class Target:
    """One target's bookkeeping (mutable, private to the store package)."""

    name: str
    slot: int
    labels: Labels
    key_to_col: dict[bytes, int] = field(default_factory=dict)
    labels_to_col: dict[Labels, int] = field(default_factory=dict)
    members: set[int] = field(default_factory=set)
    keys: list[bytes] | None = None  # key list the positional index below was built for
    n_keys: int = 0  # its length then: a list grown or shrunk in place is not the same list
    # ``keys`` when a scrape with it needs nothing but a row: no ``take``, nothing ``absent``.
    fast_keys: list[bytes] | None = None
    take: I64 | None = None  # positions in the batch to keep (None: all, in order)
    cols: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    span: slice | None = None  # cols as a slice when they are contiguous and increasing
    absent: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    present: I64 = field(default_factory=lambda: np.empty(0, np.int64))  # present at the last row
    last_ms: int = NO_TIME
    dropped: bool = False
    chunk: int = 0  # the store's write chunk that last saw a scrape of this target


def forget_index(tg: Target) -> None:
    """The positional index of ``tg`` is no longer valid: rebuild it at the next scrape."""
    tg.keys = tg.fast_keys = None


def metric_name(full: Labels) -> str:
    """The ``__name__`` of a label set (``""`` when it has none)."""
    for k, v in full:
        if k == "__name__":
            return v
    return ""


def attach_target_labels(
    name: str, scraped: Labels, target_labels: Labels, pairs: dict[tuple[str, str], tuple[str, str]]
) -> Labels:
    """The series' label set: scraped labels plus target labels (``honor_labels: false``).

    Label pairs are shared through ``pairs`` (most repeat across series: job, mode, cpu, ...).
    """
    lset = dict(scraped)
    result = dict(lset)
    conflicts: list[tuple[str, str]] = []
    for k, v in target_labels:
        if k in lset:
            conflicts.append((k, lset[k]))
        if v:
            result[k] = v
        else:
            result.pop(k, None)
    if conflicts:
        # As Prometheus: shortest names first, each renamed to the first exported_… name that
        # neither the scraped labels, the target labels nor an earlier rename use.
        conflicts.sort(key=lambda kv: len(kv[0]))
        target_names = {k for k, _ in target_labels}
        taken: set[str] = set()
        for k, v in conflicts:
            new = k
            while True:
                new = "exported_" + new
                if new not in lset and new not in target_names and new not in taken:
                    break
            taken.add(new)
            result[new] = v
    result["__name__"] = name
    return tuple(pairs.setdefault(p, p) for p in sorted(result.items()))
