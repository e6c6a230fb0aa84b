"""API silences in the journal: the ``silences`` table (kpimon.journal.schema), one row each.

A row holds the silence's id, its end (so that SQL can see what expired) and the silence as
JSON (matchers as Alertmanager-syntax strings, times as Unix seconds). Every write is its own
``BEGIN IMMEDIATE … COMMIT`` on the journal's connection, on the event loop's thread between two
awaits (the journal's rule), so it never interleaves with an evaluation tick's commit; with the
journal's ``synchronous=FULL`` a silence the API acknowledged survives a power cut.

A row that cannot be read back (edited by hand, written by a newer kpimon) is logged and
skipped; the others load.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Sequence

from kpimon.config.matchers import parse_matcher
from kpimon.errors import JournalError
from kpimon.journal.txn import write_transaction
from kpimon.notify.silences import Silence, SilenceStoreError

log = logging.getLogger("kpimon.silences")


def encode(silence: Silence) -> str:
    """``silence`` as the JSON text of its row."""
    return json.dumps(
        {
            "matchers": [str(m) for m in silence.matchers],
            "starts_at": silence.starts_at,
            "ends_at": silence.ends_at,
            "created_by": silence.created_by,
            "comment": silence.comment,
            "updated_at": silence.updated_at,
        },
        allow_nan=False,
    )


def decode(silence_id: str, text: str) -> Silence:
    """The silence of a row.

    Raises:
        ValueError: the row is not a silence this kpimon can read.
    """
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    matchers = tuple(parse_matcher(m) for m in doc["matchers"])
    if not matchers:
        raise ValueError("no matchers")
    starts, ends, updated = (float(doc[k]) for k in ("starts_at", "ends_at", "updated_at"))
    if not all(map(math.isfinite, (starts, ends, updated))) or ends < starts:
        raise ValueError("invalid times")
    created_by, comment = doc.get("created_by", ""), doc.get("comment", "")
    if not isinstance(created_by, str) or not isinstance(comment, str):
        raise ValueError("invalid createdBy or comment")
    return Silence(
        id=silence_id,
        matchers=matchers,
        starts_at=starts,
        ends_at=ends,
        created_by=created_by,
        comment=comment,
        source="api",
        updated_at=updated,
    )


class JournalSilenceStore:
    """:class:`~kpimon.notify.silences.SilenceStore` on the journal's SQLite connection."""

    def __init__(self, conn: sqlite3.Connection, path: object = "journal") -> None:
        self._conn = conn
        self._path = path

    def _fail(self, what: str, exc: sqlite3.Error) -> SilenceStoreError:
        return SilenceStoreError(f"journal {self._path}: cannot {what} ({exc})")

    def load(self) -> list[Silence]:
        """Every readable silence of the table.

        Raises:
            JournalError: the table cannot be read (start-up stops, as for the journal).
        """
        try:
            rows = self._conn.execute("SELECT id, doc FROM silences ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            raise JournalError(
                f"journal {self._path} cannot be read: silences ({exc}); move it aside (with "
                "its -wal and -shm files) to start with an empty journal"
            ) from None
        out: list[Silence] = []
        for sid, text in rows:
            try:
                out.append(decode(str(sid), str(text)))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("skipping an unreadable silence in the journal id=%s err=%s", sid, exc)
        return out

    def save(self, silence: Silence) -> None:
        self._write(
            "save the silence",
            "INSERT INTO silences (id, ends_at, doc) VALUES (?, ?, ?) ON CONFLICT (id) DO "
            "UPDATE SET ends_at = excluded.ends_at, doc = excluded.doc",
            [(silence.id, silence.ends_at, encode(silence))],
        )

    def delete(self, ids: Sequence[str]) -> None:
        self._write(
            "delete expired silences", "DELETE FROM silences WHERE id = ?", [(i,) for i in ids]
        )

    def _write(self, what: str, sql: str, rows: list[tuple[object, ...]]) -> None:
        conn = self._conn
        try:
            with write_transaction(conn):
                conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise self._fail(what, exc) from None
