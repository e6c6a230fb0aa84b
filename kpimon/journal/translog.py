"""The transition log: append-only, ``seq`` increasing by one per transition, no gaps.

Written only inside :meth:`Journal.commit`'s transaction; read by anyone (notifications,
replays, tests) in sequence order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from kpimon.journal.codec import parse_labels
from kpimon.kpi.machine import PHASES, Transition
from kpimon.labels import Labels


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One entry of the transition log, as read back."""

    seq: int
    t: float
    kpi: str
    labels: Labels
    level: str
    from_phase: str
    to_phase: str
    value: float
    threshold: float
    reason: str
    flapping: bool


def append(
    conn: sqlite3.Connection,
    first_seq: int,
    transitions: Sequence[tuple[str, Transition]],
    labels_text: Callable[[Labels], str],
) -> None:
    """Insert ``transitions`` (kpi, transition) as ``first_seq``, ``first_seq + 1``, ..."""
    phases = PHASES
    rows = [
        (
            first_seq + i,
            t,
            kpi,
            labels_text(labels),
            level,
            phases[frm],
            phases[to],
            value,
            threshold,
            reason,
            int(flapping),
        )
        # unpacked by position: a NamedTuple's attributes cost a lookup each, 2,000 a tick
        for i, (kpi, (t, labels, level, frm, to, value, threshold, reason, flapping, *_)) in (
            enumerate(transitions)
        )
    ]
    conn.executemany(
        "INSERT INTO transitions (seq, t, kpi, labels, level, from_phase, to_phase, value, "
        "threshold, reason, flapping) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def read(conn: sqlite3.Connection, after_seq: int = 0) -> Iterator[TransitionRecord]:
    """The log from ``after_seq + 1`` on, in sequence order (SQLite stores NaN as NULL)."""
    cur = conn.execute(
        "SELECT seq, t, kpi, labels, level, from_phase, to_phase, value, threshold, reason, "
        "flapping FROM transitions WHERE seq > ? ORDER BY seq",
        (after_seq,),
    )
    for seq, t, kpi, lab, level, frm, to, value, threshold, reason, flapping in cur:
        yield TransitionRecord(
            seq=seq,
            t=t,
            kpi=kpi,
            labels=parse_labels(lab),
            level=level,
            from_phase=frm,
            to_phase=to,
            value=np.nan if value is None else value,
            threshold=np.nan if threshold is None else threshold,
            reason=reason,
            flapping=bool(flapping),
        )
