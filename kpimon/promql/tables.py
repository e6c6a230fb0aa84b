"""Label tables: the label sets an operation can produce, computed once per series-set change.

A :class:`LabelTable` is an immutable tuple of label sets; an instant vector inside the
evaluator is a table plus an index array (which of the table's label sets are present this tick)
plus values. Everything derived from label sets (a table without ``__name__``, grouping keys,
matching signatures, duplicate detection) is computed from the table once and reused every tick
until the store's series set changes and a new table replaces it. Per-tick work is then numpy
over index arrays only.

This module never does I/O and never awaits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from kpimon.errors import EvaluationError
from kpimon.labels import Labels

I64 = NDArray[np.int64]

DUPLICATE_LABELSET = "vector cannot contain metrics with the same labelset"


class LabelTable:
    """An immutable tuple of label sets, with caches of what is derived from it."""

    __slots__ = ("_dup_ids", "all", "derived", "labels")

    def __init__(self, labels: Sequence[Labels]) -> None:
        self.labels: tuple[Labels, ...] = tuple(labels)
        self.all: I64 = np.arange(len(self.labels), dtype=np.int64)
        self.derived: dict[Any, Any] = {}
        self._dup_ids: I64 | bool | None = False  # False: not computed yet; None: no duplicates

    def __len__(self) -> int:
        return len(self.labels)

    def without_name(self) -> LabelTable:
        """This table with ``__name__`` dropped from every label set (cached)."""
        out = self.derived.get("without_name")
        if out is None:
            out = LabelTable(project(self.labels, frozenset({"__name__"}), keep=False))
            self.derived["without_name"] = out
        assert isinstance(out, LabelTable)
        return out

    def ids(self) -> I64 | None:
        """For each row, a number that is the same for equal label sets (None: all differ)."""
        if self._dup_ids is False:
            seen: dict[Labels, int] = {}
            ids = [seen.setdefault(lab, len(seen)) for lab in self.labels]
            self._dup_ids = None if len(seen) == len(self.labels) else np.array(ids, dtype=np.int64)
        assert not isinstance(self._dup_ids, bool)
        return self._dup_ids

    def check_unique(self, idx: I64) -> None:
        """Raise as Prometheus does when the label sets at ``idx`` are not all different."""
        self.ids()
        if self._dup_ids is None or idx.size < 2:
            return
        assert isinstance(self._dup_ids, np.ndarray)
        ids_at = self._dup_ids[idx]
        # (ids are below len(self): counting beats np.unique by far on big vectors)
        if int(np.bincount(ids_at, minlength=1).max()) > 1:
            raise EvaluationError(DUPLICATE_LABELSET)


class LabelsView(Sequence[Labels]):
    """The label sets of a table at some positions, without building a list."""

    __slots__ = ("_idx", "_labels")

    def __init__(self, labels: tuple[Labels, ...], idx: I64) -> None:
        self._labels = labels
        self._idx = idx

    def __len__(self) -> int:
        return int(self._idx.size)

    @overload
    def __getitem__(self, i: int) -> Labels: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Labels]: ...
    def __getitem__(self, i: int | slice) -> Labels | Sequence[Labels]:
        if isinstance(i, slice):
            return [self._labels[j] for j in self._idx[i].tolist()]
        return self._labels[int(self._idx[i])]

    def __iter__(self) -> Iterator[Labels]:
        return map(self._labels.__getitem__, self._idx.tolist())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=False))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"LabelsView({list(self)!r})"


def project(labels: Sequence[Labels], names: frozenset[str], *, keep: bool) -> list[Labels]:
    """Each label set with only (``keep``) or without (not ``keep``) the labels in ``names``.

    Written for speed: it runs over every series of a selector when the series set changes.
    """
    if not keep and names == _NAME_ONLY:
        # "__name__" sorts after upper-case names only, so it is almost always first.
        return [
            lab[1:]
            if lab and lab[0][0] == "__name__"
            else tuple([p for p in lab if p[0] != "__name__"])
            for lab in labels
        ]
    if keep and not names:
        return [()] * len(labels)
    if keep and len(names) == 1:
        (name,) = names
        out: list[Labels] = []
        append = out.append
        for lab in labels:
            for pair in lab:
                if pair[0] == name:
                    append((pair,))
                    break
            else:
                append(())
        return out
    if keep:
        return [tuple([p for p in lab if p[0] in names]) for lab in labels]
    return [tuple([p for p in lab if p[0] not in names]) for lab in labels]


_NAME_ONLY = frozenset({"__name__"})


def labels_at(table: LabelTable, idx: I64) -> Sequence[Labels]:
    """The label sets at ``idx``: the table's own tuple when ``idx`` is all of it."""
    if idx is table.all or (idx.size == len(table) and bool(np.array_equal(idx, table.all))):
        return table.labels
    return LabelsView(table.labels, idx)


def format_go(labels: Labels) -> str:
    """A label set as Prometheus prints one in error messages: ``{__name__="x", a="1"}``."""
    body = ", ".join(f"{k}={_quote(v)}" for k, v in labels)
    return "{" + body + "}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
