"""The transitions of a tick, as the engine hands them to the journal and on: columns per
(KPI, level), readable as a sequence of ``(kpi, Transition)``.

:class:`TickChanges` keeps the machine's :class:`~kpimon.kpi.machine.LevelChanges` batches as
they are, so the journal writes them as columns and a notifier builds
:class:`~kpimon.kpi.machine.Transition`\\ s only for the few that notify
(:meth:`TickChanges.notifying`). Reading it as a sequence builds every transition once, on
first use (replays, ``kpimon test`` and the tests do).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from kpimon.kpi.machine import LevelChanges, Transition

Entry = tuple[str, Transition]
"""A transition and the name of its KPI."""


class TickChanges(Sequence[Entry]):
    """The transitions of one or more ticks, in order: batches of columns, plus transitions
    that came as objects (those of a restart); a read-only sequence of ``(kpi, transition)``.
    """

    __slots__ = ("_flat", "_parts")

    def __init__(self, parts: Iterable[tuple[str, LevelChanges] | Entry] = ()) -> None:
        self._parts: list[tuple[str, LevelChanges] | Entry] = list(parts)
        self._flat: list[Entry] | None = None

    # -- building -------------------------------------------------------------------------

    def add(self, kpi: str, changes: LevelChanges) -> None:
        """Append one batch (empty batches are dropped)."""
        if len(changes):
            self._parts.append((kpi, changes))
            self._flat = None

    def extend(self, entries: Iterable[Entry]) -> None:
        """Append transitions given one by one (or another :class:`TickChanges`' parts)."""
        if isinstance(entries, TickChanges):
            self._parts.extend(entries._parts)
        else:
            self._parts.extend(entries)
        self._flat = None

    # -- reading --------------------------------------------------------------------------

    @property
    def parts(self) -> Sequence[tuple[str, LevelChanges] | Entry]:
        """The parts in order: ``(kpi, LevelChanges)`` batches and ``(kpi, Transition)``."""
        return self._parts

    def notifying(self) -> list[Entry]:
        """The transitions that reach people (:attr:`Transition.notifies`), in order."""
        out: list[Entry] = []
        for kpi, part in self._parts:
            if isinstance(part, LevelChanges):
                out.extend((kpi, tr) for tr in part.notifying())
            elif part.notifies:
                out.append((kpi, part))
        return out

    def _entries(self) -> list[Entry]:
        if self._flat is None:
            flat: list[Entry] = []
            for kpi, part in self._parts:
                if isinstance(part, LevelChanges):
                    flat.extend((kpi, tr) for tr in part)
                else:
                    flat.append((kpi, part))
            self._flat = flat
        return self._flat

    def __len__(self) -> int:
        return sum(len(p) if isinstance(p, LevelChanges) else 1 for _, p in self._parts)

    def __bool__(self) -> bool:
        return any(len(p) if isinstance(p, LevelChanges) else True for _, p in self._parts)

    @overload
    def __getitem__(self, i: int) -> Entry: ...
    @overload
    def __getitem__(self, i: slice) -> list[Entry]: ...
    def __getitem__(self, i: int | slice) -> Entry | list[Entry]:
        return self._entries()[i]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return self._entries() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"TickChanges({self._entries()!r})"
