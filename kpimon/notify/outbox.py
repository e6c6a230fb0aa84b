"""The durable outbox: notifications waiting for their hook, and what became of them.

The planner's :class:`~kpimon.notify.policy.Plan` of a tick reaches :meth:`Outbox.write`
INSIDE the journal's commit transaction (the journal calls it as its commit extension), so a
notification exists on disk exactly when the transition that caused it does: after a failed
commit both wait for the next one (nothing lost, nothing doubled), and after a crash both are
there or neither is. :meth:`Outbox.committed` then puts the rows in the in-memory queues the
dispatcher reads (:mod:`kpimon.notify.dispatch`) and wakes it; it never polls the table.

Rows (table ``outbox``, schema v4) are ``pending`` until their hook answers: then
``delivered``, ``failed`` (a permanent error, or their hook was removed by a reload) or
``expired`` (retried for ``max_retry_duration``). A pending row is acknowledged only after the
receiver answered, so a crash between send and acknowledgement sends that same row again (the
same event, hence the same dedup key) at the next start. Rows that are done are pruned
:data:`DONE_RETENTION_S` after they were done.

Per hook and alert key, rows go out in id order: :meth:`Outbox.due` offers only the oldest
pending row of each key, so a resolve never overtakes its trigger, even while the trigger is
being retried.

Without a journal (``--storage.path`` unset in tests and embedding) the same class keeps the
rows in memory only (:meth:`Outbox.memory`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import orjson

from kpimon.journal.txn import write_transaction
from kpimon.notify.model import AlertEvent, event_from_json, event_to_json
from kpimon.notify.policy import KINDS, Kind, Notification, Plan

if TYPE_CHECKING:
    from kpimon.journal import Journal

log = logging.getLogger("kpimon.hooks")

DONE_RETENTION_S: Final = 24 * 3600.0
"""Delivered, failed and expired rows stay this long (for inspection), then are deleted."""


@dataclass(slots=True)
class Row:
    """One pending notification (mutable: attempts and the next try change)."""

    id: int
    hook: str
    key: str
    kind: Kind
    created_at: float
    event: AlertEvent
    attempts: int = 0
    first_attempt_at: float | None = None
    next_at: float = 0.0
    """When it may be tried (again); 0: at once."""
    error: str = ""


class Outbox:
    """Pending notifications per hook, mirrored to the journal's ``outbox`` table (by way of
    ``outbox_staged``: :meth:`write`).

    Use :meth:`open` (on a journal) or :meth:`memory`. ``wake`` is called with the hooks that
    got rows after every commit that enqueued something.
    """

    def __init__(self, conn: sqlite3.Connection | None, next_id: int = 1) -> None:
        self._conn = conn
        self._next_id = next_id
        self._written: list[Row] = []
        """The rows :meth:`write` journaled in the commit under way."""
        self._queues: dict[str, dict[int, Row]] = {}
        self.wake: Callable[[set[str]], None] | None = None
        self.records: list[tuple[str, str]] = []
        """The planner state read at :meth:`open` (key, JSON), for :meth:`Planner.load`."""
        self.write_failures_total = 0
        self._unwritten: list[tuple[str, list[tuple[object, ...]]]] = []
        """Acknowledgements whose journal write failed, written with the next one."""
        self._staged = False
        """``outbox_staged`` holds rows (committed) not yet moved into ``outbox``."""
        self._staged_after_commit: bool | None = None
        """What ``_staged`` becomes when the commit under way succeeds (None: unchanged)."""

    @classmethod
    def memory(cls) -> Outbox:
        """An outbox that keeps nothing on disk."""
        return cls(None)

    @classmethod
    def open(cls, journal: Journal) -> Outbox:
        """Read the pending rows and the planner state of ``journal`` and become its commit
        extension.

        Raises:
            ValueError: a row or record is unreadable.
        """
        conn = journal.connection
        pending = conn.execute(
            "SELECT id, hook, key, kind, created_at, event, attempts, first_attempt_at, "
            "next_at, error FROM outbox WHERE state = 'pending' ORDER BY id"
        ).fetchall()
        records = dict(conn.execute("SELECT key, record FROM notify_alerts").fetchall())
        # Staged rows are read where they are (opening writes nothing): the first
        # acknowledgement moves them.
        staged_rows, staged_records = _staged(conn)
        pending += [
            (rid, hook, key, kind, created, event, 0, None, next_at, "")
            for rid, hook, key, kind, created, event, next_at in staged_rows
        ]
        records.update(staged_records)
        (max_id,) = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
        last_staged = staged_rows[-1][0] if staged_rows else 0  # staged ids come after
        box = cls(conn, max(int(max_id), int(last_staged)) + 1)
        box._staged = bool(staged_rows or staged_records)
        for rid, hook, key, kind, created, event, attempts, first, next_at, error in pending:
            if kind not in KINDS:
                raise ValueError(f"outbox row {rid}: unknown kind {kind!r}")
            row = Row(
                int(rid),
                hook,
                key,
                kind,
                float(created),
                event_from_json(event),
                int(attempts),
                first,
                float(next_at),
                error,
            )
            box._queues.setdefault(hook, {})[row.id] = row
        box.records = [(k, r) for k, r in records.items() if r is not None]
        journal.extension = box
        return box

    # -- the journal's commit extension ---------------------------------------------------

    def write(self, conn: sqlite3.Connection, plans: Sequence[object]) -> None:
        """Inside the commit's transaction: journal the plans' notifications and the planner's
        state changes.

        A plan with notifications is written as ONE row of ``outbox_staged`` (its rows and
        records as two JSON arrays): a burst of 1,000 alerts costs one INSERT in the tick
        instead of 2,000. Staged rows move into ``outbox`` and ``notify_alerts`` at the next
        acknowledgement or retry, the next plan with records but no notifications, or
        :meth:`unstage` at a clean stop, in the order they were written; the next start reads
        them where they are.
        """
        new = _new_rows(plans, self._next_id)
        # The last state of each key wins (a key deleted, then re-created, is present).
        records: dict[str, str | None] = {}
        for plan in plans:
            assert isinstance(plan, Plan)
            records.update(plan.records)
        if new:
            rows = orjson.dumps(
                [
                    (
                        row.id,
                        n.hook,
                        n.key,
                        n.kind,
                        n.created_at,
                        n.event_json or event_to_json(n.event),
                        row.next_at,
                    )
                    for row, n in new
                ]
            )
            conn.execute(
                "INSERT INTO outbox_staged (rows, records) VALUES (?, ?)",
                (rows, orjson.dumps(list(records.items()))),
            )
            self._staged_after_commit = True
        else:
            if self._staged:
                _unstage(conn)
                self._staged_after_commit = False
            _write_records(conn, records)
        self._written = [row for row, _ in new]

    def committed(self, plans: Sequence[object]) -> None:
        """The commit succeeded: the rows join their queues; wake their hooks."""
        if self._conn is not None:
            written, self._written = self._written, []
            if self._staged_after_commit is not None:
                self._staged, self._staged_after_commit = self._staged_after_commit, None
        else:
            written = [row for row, _ in _new_rows(plans, self._next_id)]
        self._next_id += len(written)
        hooks: set[str] = set()
        for row in written:
            self._queues.setdefault(row.hook, {})[row.id] = row
            hooks.add(row.hook)
        if hooks and self.wake is not None:
            self.wake(hooks)

    def unstage(self) -> None:
        """At a clean stop: move the staged rows into ``outbox`` (so that the tables show
        every notification) and write the acknowledgements whose write failed (else their
        rows would be sent again at the next start), in one transaction. A failure is logged;
        the rows stay staged (the next start reads them there) and those acknowledgements
        unwritten (their rows are sent again at the next start, with the same dedup key)."""
        if self._conn is None or not (self._staged or self._unwritten):
            return
        try:
            self._write(self._unwritten)
        except sqlite3.Error as exc:
            log.warning("writing the outbox at stop failed err=%s", exc)

    def rolled_back(self) -> None:
        """The commit failed: forget what :meth:`write` prepared (it is written again, with
        the same plans, at the next commit)."""
        self._written = []
        self._staged_after_commit = None

    # -- the dispatcher's side ------------------------------------------------------------

    def due(self, hook: str, now: float, limit: int) -> list[Row]:
        """Up to ``limit`` rows of ``hook`` to send at ``now``, oldest first: of each alert
        key only its oldest pending row, and only once its ``next_at`` has come."""
        out: list[Row] = []
        seen: set[str] = set()
        for row in self._queues.get(hook, {}).values():
            if row.key in seen:
                continue
            seen.add(row.key)
            if row.next_at <= now:
                out.append(row)
                if len(out) >= limit:
                    break
        return out

    def next_due(self, hook: str) -> float | None:
        """When the earliest sendable row of ``hook`` is due (None: nothing pending)."""
        best: float | None = None
        seen: set[str] = set()
        for row in self._queues.get(hook, {}).values():
            if row.key in seen:
                continue
            seen.add(row.key)
            if best is None or row.next_at < best:
                best = row.next_at
        return best

    def pending(self, hook: str) -> int:
        return len(self._queues.get(hook, ()))

    def oldest(self, hook: str) -> float | None:
        """``created_at`` of the oldest pending row of ``hook``."""
        q = self._queues.get(hook)
        if not q:
            return None
        return min(r.created_at for r in q.values())

    def pending_keys(self, hook: str) -> set[str]:
        return {r.key for r in self._queues.get(hook, {}).values()}

    def hooks(self) -> list[str]:
        """Hooks with pending rows."""
        return [h for h, q in self._queues.items() if q]

    def rows(self, hook: str) -> list[Row]:
        """Every pending row of ``hook``, oldest first."""
        return list(self._queues.get(hook, {}).values())

    def started(self, rows: Iterable[Row], now: float) -> None:
        """Rows are being attempted at ``now`` (their deadline counts from the first)."""
        for row in rows:
            if row.first_attempt_at is None:
                row.first_attempt_at = now

    def finish(self, rows: Sequence[Row], state: str, now: float, error: str = "") -> None:
        """Rows are done (``delivered``, ``failed`` or ``expired``): acknowledge them in the
        journal and drop them from the queue."""
        for row in rows:
            self._queues.get(row.hook, {}).pop(row.id, None)
            row.attempts += 1
        self._update(
            "UPDATE outbox SET state = ?, attempts = ?, first_attempt_at = ?, done_at = ?, "
            "error = ? WHERE id = ?",
            [(state, r.attempts, r.first_attempt_at, now, error[:2000], r.id) for r in rows],
        )

    def retry(self, rows: Sequence[tuple[Row, float]], error: str) -> None:
        """Rows failed and are tried again at the times given."""
        for row, at in rows:
            row.attempts += 1
            row.next_at = at
            row.error = error
        self._update(
            "UPDATE outbox SET attempts = ?, first_attempt_at = ?, next_at = ?, error = ? "
            "WHERE id = ?",
            [(r.attempts, r.first_attempt_at, r.next_at, error[:2000], r.id) for r, _ in rows],
        )

    def drop_hooks(self, keep: Iterable[str], now: float) -> dict[str, int]:
        """Fail the pending rows of every hook not in ``keep`` (removed by a reload, or absent
        from the config kpimon started with); returns the count per hook."""
        kept = set(keep)
        dropped: dict[str, int] = {}
        for hook in [h for h in self._queues if h not in kept]:
            rows = list(self._queues[hook].values())
            if rows:
                self.finish(rows, "failed", now, f"hook {hook} is no longer configured")
                dropped[hook] = len(rows)
            self._queues.pop(hook, None)
        return dropped

    def prune(self, now: float, keep_s: float = DONE_RETENTION_S) -> int:
        """Delete rows done more than ``keep_s`` ago; returns how many."""
        if self._conn is None:
            return 0
        try:
            cur = self._conn.execute(
                "DELETE FROM outbox WHERE state != 'pending' AND done_at < ?", (now - keep_s,)
            )
        except sqlite3.Error as exc:
            log.warning("pruning the notification outbox failed err=%s", exc)
            return 0
        return cur.rowcount

    def _update(self, sql: str, params: list[tuple[object, ...]]) -> None:
        if self._conn is None or not params:
            return
        # Updates that failed before go first, in the same transaction: a row is never left
        # pending on disk (sent again at the next start) while a later row of its alert, its
        # resolve, is done.
        batch = [*self._unwritten, (sql, params)]
        try:
            self._write(batch)
        except sqlite3.Error as exc:
            # The rows stay pending on disk until a later update succeeds: after a restart
            # before that they are sent again (same dedup key); in this run they are done.
            self._unwritten = batch
            self.write_failures_total += 1
            log.error(
                "acknowledging notifications in the journal failed rows=%d err=%s", len(params), exc
            )

    def _write(self, batch: list[tuple[str, list[tuple[object, ...]]]]) -> None:
        """In one transaction: move the staged rows (the rows ``batch`` updates may still be
        staged), then run ``batch``'s statements. Raises sqlite3.Error (nothing written)."""
        assert self._conn is not None
        conn = self._conn
        with write_transaction(conn):
            if self._staged:
                _unstage(conn)
            for text, rows in batch:
                conn.executemany(text, rows)
        self._staged, self._unwritten = False, []


def _staged(
    conn: sqlite3.Connection,
) -> tuple[list[tuple[int, str, str, str, float, str, float]], dict[str, str | None]]:
    """What :meth:`Outbox.write` staged: the rows as (id, hook, key, kind, created_at, event,
    next_at), oldest first, and the planner's record changes (the last per key; None: the
    record is deleted)."""
    rows: list[tuple[int, str, str, str, float, str, float]] = []
    records: dict[str, str | None] = {}
    for text, changes in conn.execute("SELECT rows, records FROM outbox_staged ORDER BY id"):
        rows += map(tuple, orjson.loads(text))
        records.update(orjson.loads(changes))
    return rows, records


def _unstage(conn: sqlite3.Connection) -> None:
    """Move the staged plans into ``outbox`` and ``notify_alerts`` (inside a write
    transaction)."""
    rows, records = _staged(conn)
    conn.executemany("INSERT INTO outbox VALUES (?,?,?,?,?,?,'pending',0,NULL,?,NULL,'')", rows)
    _write_records(conn, records)
    conn.execute("DELETE FROM outbox_staged")


def _write_records(conn: sqlite3.Connection, records: dict[str, str | None]) -> None:
    """Journal the planner's state changes: a record per key, or None to delete it."""
    gone = [(key,) for key, text in records.items() if text is None]
    if gone:
        conn.executemany("DELETE FROM notify_alerts WHERE key = ?", gone)
    live = [(key, text) for key, text in records.items() if text is not None]
    if live:
        conn.executemany(
            "INSERT INTO notify_alerts (key, record) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET record = excluded.record",
            live,
        )


def _new_rows(plans: Sequence[object], first_id: int) -> list[tuple[Row, Notification]]:
    """The pending rows of the plans' notifications, numbered from ``first_id``, each with its
    notification."""
    out: list[tuple[Row, Notification]] = []
    for plan in plans:
        assert isinstance(plan, Plan)
        for n in plan.notifications:
            row = Row(
                first_id + len(out), n.hook, n.key, n.kind, n.created_at, n.event, next_at=0.0
            )
            out.append((row, n))
    return out
