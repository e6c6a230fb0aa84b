"""The transition log: append-only, ``seq`` increasing by one per transition, no gaps.

Written only inside :meth:`Journal.commit`'s transaction; read by anyone (notifications,
replays, tests) in sequence order through :func:`read`.

**Format (schema v3).** A commit appends its transitions as ONE row of ``transition_batches``:
``first_seq`` and ``n`` (the batch holds ``first_seq`` .. ``first_seq + n - 1``), the batch's
distinct (KPI, level, reason) triples as a JSON array, the label sets (one
:func:`~kpimon.journal.codec.labels_text` per line, in sequence order) and the numbers as one
numpy structured record per transition (:data:`RECORD`, little-endian). A row per transition
costs SQLite ≈ 4–5 µs of CPU each, 9 ms for the 2,000 transitions of a tick at 100k series
with 1% changing phase; the batch costs ≈ 0.5 ms. SQL cannot see inside a batch: read the log
with :meth:`Journal.transitions` (``kpimon.journal``'s API), not with ``sqlite3``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kpimon.journal.codec import parse_many_labels
from kpimon.kpi.machine import CLEARING, FIRING, INACTIVE, PHASES, LevelChanges, Transition
from kpimon.labels import Labels

RECORD = np.dtype(
    [
        ("t", "<f8"),
        ("value", "<f8"),
        ("threshold", "<f8"),
        ("key", "<u4"),
        ("from_phase", "u1"),
        ("to_phase", "u1"),
        ("flapping", "u1"),
    ]
)
"""One transition's numbers; ``key`` indexes the batch's [kpi, level, reason] triples."""

_NOTIFYING_FROM_FIRING = PHASES[FIRING], PHASES[CLEARING]


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

    @property
    def notifies(self) -> bool:
        """True for the changes that reach people: firing, and resolved
        (:attr:`Transition.notifies`)."""
        return (self.to_phase == PHASES[FIRING] and self.from_phase != PHASES[CLEARING]) or (
            self.to_phase == PHASES[INACTIVE] and self.from_phase in _NOTIFYING_FROM_FIRING
        )


def append(
    conn: sqlite3.Connection,
    first_seq: int,
    parts: Sequence[tuple[str, LevelChanges] | tuple[str, Transition]],
    label_texts: Callable[[Sequence[Labels]], Iterable[str]],
    batch_texts: Callable[[str, LevelChanges], Iterable[str]] | None = None,
) -> None:
    """Insert the transitions of ``parts`` as ``first_seq``, ``first_seq + 1``, ...

    One row for them all. ``parts`` are :class:`~kpimon.kpi.changes.TickChanges` parts: a
    ``(kpi, LevelChanges)`` batch is copied column by column (no per-transition Python work
    but its label text), a ``(kpi, Transition)`` field by field. ``label_texts(label_sets)``
    gives the label-set JSON of each label set, ``batch_texts(kpi, batch)`` (if given) that of
    each row of a batch.
    """
    if not parts:
        return
    keys: dict[tuple[str, str, str], int] = {}
    records: list[npt.NDArray[np.void]] = []
    texts: list[str] = []
    singles: list[tuple[str, Transition]] = []

    def flush_singles() -> None:
        # Transitions given one by one (a restart's), as one run of records.
        if not singles:
            return
        records.append(
            np.array(
                [
                    (
                        tr.t,
                        tr.value,
                        tr.threshold,
                        keys.setdefault((kpi, tr.level, tr.reason), len(keys)),
                        tr.from_phase,
                        tr.to_phase,
                        tr.flapping,
                    )
                    for kpi, tr in singles
                ],
                dtype=RECORD,
            )
        )
        texts.extend(label_texts([tr.labels for _, tr in singles]))
        singles.clear()

    for kpi, part in parts:
        if isinstance(part, LevelChanges):
            flush_singles()  # keep sequence order
            rec = np.empty(len(part), dtype=RECORD)
            rec["t"] = part.t
            rec["value"] = part.value
            rec["threshold"] = part.threshold
            codes = part.reason_code
            lut = np.zeros(len(part.reasons), dtype=np.uint32)
            # (bincount, not np.unique: that imports numpy.ma, 20 ms, at the first call)
            for code in np.flatnonzero(np.bincount(codes, minlength=len(part.reasons))).tolist():
                lut[code] = keys.setdefault((kpi, part.level, part.reasons[code]), len(keys))
            rec["key"] = lut[codes]
            rec["from_phase"] = part.from_phase
            rec["to_phase"] = part.to_phase
            rec["flapping"] = False if part.flapping is None else part.flapping
            texts.extend(
                label_texts(part.labels) if batch_texts is None else batch_texts(kpi, part)
            )
            records.append(rec)
        else:
            singles.append((kpi, part))
    flush_singles()
    _insert(conn, first_seq, list(keys), "\n".join(texts), np.concatenate(records))


def insert_batch(
    conn: sqlite3.Connection,
    first_seq: int,
    kpis: Sequence[str],
    labels: str,
    floats: tuple[Sequence[float], Sequence[float], Sequence[float]],
    level: Sequence[str],
    small: tuple[Sequence[int], Sequence[int], Sequence[bool]],
    reason: Sequence[str],
) -> None:
    """Insert one batch from its columns: ``labels`` one label-set JSON per line, ``floats``
    (t, value, threshold), ``small`` (from phase, to phase, flapping)."""
    triples = list(zip(kpis, level, reason, strict=True))
    keys = dict.fromkeys(triples)
    index = dict(zip(keys, range(len(keys)), strict=False))
    rec = np.empty(len(kpis), dtype=RECORD)
    f = np.array(floats, dtype=np.float64)
    rec["t"], rec["value"], rec["threshold"] = f
    rec["key"] = list(map(index.__getitem__, triples))
    u = np.array(small, dtype=np.uint8)
    rec["from_phase"], rec["to_phase"], rec["flapping"] = u
    _insert(conn, first_seq, list(keys), labels, rec)


def _insert(
    conn: sqlite3.Connection,
    first_seq: int,
    keys: Sequence[tuple[str, str, str]],
    labels: str,
    rec: npt.NDArray[np.void],
) -> None:
    conn.execute(
        "INSERT INTO transition_batches (first_seq, n, keys, labels, records) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            first_seq,
            len(rec),
            json.dumps(keys, separators=(",", ":")),
            labels,
            rec.astype(RECORD, copy=False).tobytes(),
        ),
    )


def next_seq(conn: sqlite3.Connection) -> int:
    """The sequence number the next transition gets."""
    row = conn.execute(
        "SELECT first_seq + n FROM transition_batches ORDER BY first_seq DESC LIMIT 1"
    ).fetchone()
    return 1 if row is None else int(row[0])


def read(conn: sqlite3.Connection, after_seq: int = 0) -> Iterator[TransitionRecord]:
    """The log from ``after_seq + 1`` on, in sequence order.

    Raises:
        ValueError: a batch is unreadable (its records do not match its count).
    """
    cur = conn.execute(
        "SELECT first_seq, n, keys, labels, records FROM transition_batches "
        "WHERE first_seq >= (SELECT coalesce(max(first_seq), 0) FROM transition_batches "
        "WHERE first_seq <= ?) ORDER BY first_seq",
        (after_seq + 1,),
    )
    phases = PHASES
    for first_seq, n, keys_text, labels, records in cur:
        keys = json.loads(keys_text)
        rec = np.frombuffer(records, dtype=RECORD)
        lines = labels.split("\n") if n else []
        if len(rec) != n or len(lines) != n:
            raise ValueError(f"transition batch {first_seq} does not hold {n} transitions")
        label_sets = parse_many_labels(json.loads("[" + ",".join(lines) + "]"))
        skip = max(0, after_seq + 1 - first_seq)
        for i in range(skip, n):
            r = rec[i]
            kpi, level, reason = keys[r["key"]]
            yield TransitionRecord(
                seq=first_seq + i,
                t=float(r["t"]),
                kpi=kpi,
                labels=label_sets[i],
                level=level,
                from_phase=phases[r["from_phase"]],
                to_phase=phases[r["to_phase"]],
                value=float(r["value"]),
                threshold=float(r["threshold"]),
                reason=reason,
                flapping=bool(r["flapping"]),
            )


def migrate_rows_to_batches(conn: sqlite3.Connection) -> None:
    """Schema v3's data step: move the v1/v2 ``transitions`` rows into batches.

    Each run of consecutive sequence numbers becomes one batch (a v2 log has no gaps, so
    that is one batch); SQLite's NULL for NaN becomes NaN again.
    """
    rows = conn.execute(
        "SELECT seq, t, kpi, labels, level, from_phase, to_phase, value, threshold, reason, "
        "flapping FROM transitions ORDER BY seq"
    ).fetchall()
    code = {p: i for i, p in enumerate(PHASES)}
    start = 0
    for end in range(1, len(rows) + 1):
        if end < len(rows) and rows[end][0] == rows[end - 1][0] + 1:
            continue
        run = rows[start:end]
        _, t, kpi, labels, level, frm, to, value, threshold, reason, flapping = zip(
            *run, strict=True
        )
        insert_batch(
            conn,
            run[0][0],
            kpi,
            "\n".join(labels),
            (
                t,
                [np.nan if v is None else v for v in value],
                [np.nan if v is None else v for v in threshold],
            ),
            level,
            ([code[p] for p in frm], [code[p] for p in to], flapping),
            reason,
        )
        start = end
