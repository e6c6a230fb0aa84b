"""Windows that live in memory between ticks (an SLO's 30-day ledger), saved in the journal.

Such a window is derived data that takes weeks to rebuild; losing it on every restart would make
an error budget jump back to "untouched" after each deploy. Its owner saves it now and then
(:func:`save`, its own small transaction, never inside :meth:`Journal.commit`'s) and loads it
at start-up (:func:`load`) when the definition it was built for is unchanged (``fingerprint``).
Writes are best effort: a failure is reported to the caller, the window lives on in memory and
is saved again at the next chance.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable


def save(conn: sqlite3.Connection, key: str, fingerprint: str, t: float, data: bytes) -> None:
    """Store ``data`` under ``key`` (replacing what was there), committed at once.

    Raises:
        sqlite3.Error: the write failed.
    """
    conn.execute(  # one statement: atomic in the journal's autocommit mode
        "INSERT INTO aux_state (key, fingerprint, t, data) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, "
        "t = excluded.t, data = excluded.data",
        (key, fingerprint, t, data),
    )


def load(conn: sqlite3.Connection, key: str, fingerprint: str) -> tuple[float, bytes] | None:
    """What :func:`save` stored under ``key`` for the same ``fingerprint``, with its time."""
    row = conn.execute(
        "SELECT t, data FROM aux_state WHERE key = ? AND fingerprint = ?", (key, fingerprint)
    ).fetchone()
    return None if row is None else (float(row[0]), bytes(row[1]))


def keep_only(conn: sqlite3.Connection, prefix: str, keys: Iterable[str]) -> None:
    """Delete the windows under ``prefix`` whose key is not in ``keys`` (removed definitions)."""
    live = set(keys)
    stale = [
        (key,)
        for (key,) in conn.execute(
            "SELECT key FROM aux_state WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
        ).fetchall()
        if key not in live
    ]
    if stale:
        conn.executemany("DELETE FROM aux_state WHERE key = ?", stale)
