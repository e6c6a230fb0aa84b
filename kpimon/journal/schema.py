"""The journal's SQLite schema and its numbered migrations.

A journal records its schema version in the one-row table ``schema_version``. Opening a journal
applies, in order, every migration numbered above that version, each in its own transaction
(SQLite's DDL is transactional, so a migration is applied whole or not at all, even if kpimon is
killed half-way). A journal whose version is above :data:`SCHEMA_VERSION` was written by a newer
kpimon and is refused: an older kpimon cannot know what the newer one stored.

To change the schema, append a migration; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from kpimon.errors import JournalError
from kpimon.journal.translog import migrate_rows_to_batches
from kpimon.journal.txn import write_transaction


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: statements, then ``data`` (a step moving data, if any), then
    ``after`` statements, in one transaction; then the version is bumped."""

    version: int
    description: str
    statements: tuple[str, ...]
    data: Callable[[sqlite3.Connection], None] | None = None
    after: tuple[str, ...] = ()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema: heartbeat, KPIs, state chunks, transition log",
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            # The time up to which the saved state is accounted: the last evaluation tick (or
            # the start-up that restored it).
            "CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), t REAL NOT NULL)",
            # One row per KPI: the fingerprint of its definition (state is restored only into
            # an identical definition), the layout of its state records, its scalar state.
            "CREATE TABLE kpis ("
            " kpi_id INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL UNIQUE,"
            " fingerprint TEXT NOT NULL,"
            " layout TEXT NOT NULL,"
            " scalars TEXT NOT NULL)",
            # The state, as chunks appended per KPI and tick: the label sets (one JSON array
            # of pairs per line) and packed state records of the series that changed, as of
            # tick t, and the label sets of series forgotten since the previous chunk. A full
            # chunk holds every series of the KPI and replaces the chunks before it; a later
            # record of a series wins; a series first seen in a later chunk comes after the
            # others.
            "CREATE TABLE state_chunks ("
            " chunk_id INTEGER PRIMARY KEY,"
            " kpi_id INTEGER NOT NULL,"
            " t REAL NOT NULL,"
            " full INTEGER NOT NULL,"
            " n INTEGER NOT NULL,"
            " labels TEXT NOT NULL,"
            " gone TEXT NOT NULL,"
            " records BLOB NOT NULL)",
            "CREATE INDEX state_chunks_by_kpi ON state_chunks (kpi_id, chunk_id)",
            # Append-only; seq increases by one per transition, with no gap.
            "CREATE TABLE transitions ("
            " seq INTEGER PRIMARY KEY,"
            " t REAL NOT NULL,"
            " kpi TEXT NOT NULL,"
            " labels TEXT NOT NULL,"
            " level TEXT NOT NULL,"
            " from_phase TEXT NOT NULL,"
            " to_phase TEXT NOT NULL,"
            " value REAL,"
            " threshold REAL,"
            " reason TEXT NOT NULL,"
            " flapping INTEGER NOT NULL DEFAULT 0)",
        ),
    ),
    Migration(
        2,
        "a view of the transitions that notify (firing, resolved), for people and hooks",
        (
            # A view, not an index: it costs nothing per tick (an index on a 2,000-transition
            # tick costs a third more than the log itself).
            "CREATE VIEW notifications AS SELECT * FROM transitions WHERE "
            "(to_phase = 'firing' AND from_phase != 'clearing') OR "
            "(to_phase = 'inactive' AND from_phase IN ('firing', 'clearing'))",
        ),
    ),
    Migration(
        3,
        "the transition log as one row per commit (a batch), not one per transition",
        (
            # first_seq .. first_seq + n - 1; keys: the batch's distinct [kpi, level, reason]
            # triples (a JSON array); labels: one JSON label set per line; records: the numbers, one
            # numpy record per transition (kpimon.journal.translog.RECORD). A row per
            # transition cost 9 ms of CPU per 2,000-transition tick, a batch 0.5 ms.
            "CREATE TABLE transition_batches ("
            " first_seq INTEGER PRIMARY KEY,"
            " n INTEGER NOT NULL,"
            " keys TEXT NOT NULL,"
            " labels TEXT NOT NULL,"
            " records BLOB NOT NULL)",
        ),
        migrate_rows_to_batches,
        ("DROP VIEW notifications", "DROP TABLE transitions"),
    ),
    Migration(
        4,
        "the notification outbox and the notification planner's state",
        (
            # One row per notification to one hook (kpimon.notify.outbox), INSERTed in the
            # commit of the transition that caused it; id orders them. state: pending, then
            # delivered, failed (permanent error, or its hook removed) or expired (retried
            # for max_retry_duration); done rows are pruned a day after they are done.
            "CREATE TABLE outbox ("
            " id INTEGER PRIMARY KEY,"
            " hook TEXT NOT NULL,"
            " key TEXT NOT NULL,"
            " kind TEXT NOT NULL,"
            " created_at REAL NOT NULL,"
            " event TEXT NOT NULL,"
            " state TEXT NOT NULL,"
            " attempts INTEGER NOT NULL,"
            " first_attempt_at REAL,"
            " next_at REAL NOT NULL,"
            " done_at REAL,"
            " error TEXT NOT NULL)",
            "CREATE INDEX outbox_pending ON outbox (id) WHERE state = 'pending'",
            "CREATE INDEX outbox_done ON outbox (done_at) WHERE state != 'pending'",
            # Per alert (dedup key, or a flapping notice's key): what the planner knows of it
            # and what each hook was told (kpimon.notify.policy.AlertRecord as JSON).
            "CREATE TABLE notify_alerts (key TEXT PRIMARY KEY, record TEXT NOT NULL)",
        ),
    ),
    Migration(
        5,
        "silences made through the HTTP API",
        (
            # One row per API silence (kpimon.notify.silence_store): id, end (Unix seconds;
            # expired ones are deleted after the retention) and the silence as JSON.
            "CREATE TABLE silences (id TEXT PRIMARY KEY, ends_at REAL NOT NULL, doc TEXT NOT NULL)",
        ),
    ),
    Migration(
        6,
        "the status log and the runs, for reports (kpimon.journal.reportlog)",
        (
            # One row per KPI and commit with status changes: labels one JSON label set per
            # line, records one reportlog.RECORD (time of the change, new status) per line.
            "CREATE TABLE status_log ("
            " id INTEGER PRIMARY KEY,"
            " kpi TEXT NOT NULL,"
            " t REAL NOT NULL,"
            " labels TEXT NOT NULL,"
            " records BLOB NOT NULL)",
            "CREATE INDEX status_log_by_t ON status_log (t)",
            # One row per process that committed ticks: its first and latest committed tick.
            "CREATE TABLE runs (run_id INTEGER PRIMARY KEY, started REAL NOT NULL,"
            " last REAL NOT NULL)",
        ),
    ),
    Migration(
        7,
        "windows kept in memory between ticks (SLO ledgers), saved for restarts",
        (
            # One row per window (kpimon.journal.auxstate): its owner's key, the fingerprint of
            # the definition it belongs to (restored only into the same), when it was saved,
            # and its data (a packed numpy array).
            "CREATE TABLE aux_state (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,"
            " t REAL NOT NULL, data BLOB NOT NULL)",
        ),
    ),
    Migration(
        8,
        "a tick's notifications staged as one row (kpimon.notify.outbox)",
        (
            # One row per commit whose plan had notifications: rows, a JSON array of [id,
            # hook, key, kind, created_at, event JSON, next_at] (pending outbox rows), and
            # records, a JSON array of [key, record or null] (notify_alerts changes, in
            # order). Moved into outbox and notify_alerts, oldest first, by the next
            # acknowledgement or retry, the next commit with records but no notifications, or
            # a clean stop; read as they are at start-up.
            "CREATE TABLE outbox_staged (id INTEGER PRIMARY KEY, rows BLOB NOT NULL,"
            " records BLOB NOT NULL)",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
"""The schema this kpimon writes (and the newest it reads)."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The journal's schema version; 0 for an empty database.

    Raises:
        JournalError: the database holds tables but is not a kpimon journal.
    """
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in tables:
        if tables:
            raise JournalError("is an SQLite database but not a kpimon journal")
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None or not isinstance(row[0], int):
        raise JournalError("has no valid schema version")
    version: int = row[0]
    return version


def migrate(conn: sqlite3.Connection) -> tuple[int, int]:
    """Bring the journal's schema up to :data:`SCHEMA_VERSION`.

    ``conn`` must be in autocommit mode (``isolation_level=None``): each migration runs in its
    own ``BEGIN IMMEDIATE`` transaction.

    Returns:
        The versions before and after.

    Raises:
        JournalError: the journal is newer than this kpimon, or not a journal at all.
    """
    before = schema_version(conn)
    if before > SCHEMA_VERSION:
        raise JournalError(
            f"was written by a newer kpimon (schema version {before}; this kpimon reads up to "
            f"{SCHEMA_VERSION})"
        )
    version = before
    for m in MIGRATIONS:
        if m.version <= version:
            continue
        with write_transaction(conn):
            if version == 0:
                conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            for statement in m.statements:
                conn.execute(statement)
            if m.data is not None:
                m.data(conn)
            for statement in m.after:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (m.version,))
        version = m.version
    return before, version
