"""The state journal: every KPI's phases and timers, and the transition log, in SQLite.

One file, ``kpimon.db`` under ``--storage.path`` (plus SQLite's ``-wal``/``-shm`` files and a
``kpimon.lock`` that keeps a second kpimon away). It holds (schema: :mod:`.schema`):

- ``heartbeat``: the time up to which the saved state is accounted (the last evaluation tick);
- ``kpis``: per KPI, the fingerprint of its definition (state is restored only into the same
  definition), the layout of its state records, and its scalar state (``last_t``, ...);
- ``state_chunks``: per KPI, chunks of state records (every :attr:`KpiState.PERSISTED_ARRAYS`
  row of a series, :mod:`.codec`) with their label sets, appended as series change, and the
  label sets of series forgotten; a series' latest record wins;
- ``transition_batches``: the append-only transition log, ``seq`` increasing by one per
  transition, no gaps; one row per commit holding that commit's transitions (:mod:`.translog`).

**Commit protocol.** :meth:`Journal.commit` writes one evaluation tick in ONE transaction: the
tick's transitions, one chunk per KPI with the records of the series that changed in the tick
(``KpiState.dirty``) and the series forgotten, each KPI's scalars and the heartbeat. The
engine calls it before it hands the tick's transitions to anything that acts on them, and hands
on only what is committed: when a write fails (disk full, I/O error) it is logged, counted
(``write_failures_total``), and the tick's transitions and dirty rows wait for the next tick's
transaction; the daemon keeps running.

**Why chunks.** Updating 1,000 changed series in place among 100k would rewrite a page per
series (the changed rows are scattered), megabytes per tick; a chunk appends them in one row.
Once a KPI's chunks since its last full chunk hold as many records as it has series, the next
chunk is full (every series) and the older ones are deleted, so the state on disk stays within
twice the live state and restoring reads at most that. Breach seconds grow at every tick for
every firing series, so they are not rewritten every tick: a record holds the count as of its
chunk's tick and the count is recomputed on restore (:meth:`KpiState.load`).

**Durability.** WAL with ``synchronous=FULL``: a commit returns only once the WAL is on stable
storage, so a transition that may have been notified survives a power cut as well as a crash.
With ``NORMAL`` a power cut may roll back the last commits, and kpimon would then make (and
notify) the same transitions again after the restart: a duplicate page. FULL costs one fsync
per evaluation tick, a few milliseconds every ``evaluation_interval`` (``benchmarks/evaluate.py``
measures both modes).

Only this package and the daemon shell do I/O; everything here runs on the event loop's thread
between two awaits, so no tick ever sees a half-written state.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Protocol

import numpy as np

from kpimon import __version__
from kpimon.errors import JournalError
from kpimon.journal import codec, reportlog, translog
from kpimon.journal.schema import migrate
from kpimon.journal.translog import TransitionRecord
from kpimon.kpi.changes import TickChanges
from kpimon.kpi.machine import KpiState, LevelChanges, Transition
from kpimon.labels import Labels

log = logging.getLogger("kpimon.journal")

DB_NAME = "kpimon.db"
LOCK_NAME = "kpimon.lock"
SYNCHRONOUS = "FULL"

_MOVE_ASIDE = "move it aside (with its -wal and -shm files) to start with an empty journal"


@dataclass(frozen=True, slots=True)
class _SavedKpi:
    kpi_id: int
    fingerprint: str
    layout: str
    scalars: str


class _LabelTexts(dict[Labels, str]):
    """Label sets to JSON (:func:`codec.labels_text`), memoised: the same series change phase
    again and again. ``map(texts.__getitem__, ...)`` is a C-level dict lookup per hit, 2.5x
    cheaper than ``functools.lru_cache``; the encoder runs only on a miss. Bounded: emptied
    when it holds :data:`MAX` label sets (then it refills with the live ones)."""

    MAX = 1 << 18

    def __missing__(self, labels: Labels) -> str:
        if len(self) >= self.MAX:
            self.clear()
        text = self[labels] = codec.labels_text(labels)
        return text


@dataclass(slots=True)
class _RowTexts:
    """A KPI state's rows' label-set JSON: ``texts[r]`` for row ``r`` of ``labels`` (the
    state's list), ``last`` the last row's label set when cached."""

    labels: list[Labels]
    texts: list[str]
    last: Labels | None


class CommitExtension(Protocol):
    """Rows written in :meth:`Journal.commit`'s transaction besides the journal's own."""

    def write(self, conn: sqlite3.Connection, items: Sequence[object]) -> None:
        """Write ``items`` (every ``extra`` not yet committed, in order)."""

    def committed(self, items: Sequence[object]) -> None:
        """The transaction holding ``items`` is durable."""

    def rolled_back(self) -> None:
        """The transaction failed; the same items come again at the next commit."""


class Journal:
    """An open journal. Use :meth:`open`; call :meth:`close` when done."""

    def __init__(self, conn: sqlite3.Connection, db: Path, lock: IO[bytes]) -> None:
        self._conn = conn
        self.path = db
        self._lock = lock
        self.heartbeat: float | None = None
        """The saved state's time (last committed tick), None for an empty journal."""
        self.write_failures_total = 0
        self.commits_total = 0
        self.last_commit_duration_s = 0.0
        self._failing: str | None = None
        self._pending = TickChanges()
        self._pending_extra: list[object] = []
        self.extension: CommitExtension | None = None
        """Writes more in each commit's transaction: the notification outbox
        (:class:`kpimon.notify.outbox.Outbox`)."""
        self._kpis: dict[str, _SavedKpi] = {}
        self._layouts: weakref.WeakKeyDictionary[KpiState, tuple[codec.Layout, str]] = (
            weakref.WeakKeyDictionary()
        )
        self._since_full: dict[str, int] = {}
        """Per KPI: records in the chunks after its last full chunk (none: no full chunk)."""
        self._next_seq = 1
        self._run_id: int | None = None
        """This process's row of ``runs`` (:mod:`.reportlog`), once it has committed."""
        self._status_logged: set[str] = set()
        """KPIs whose every series' status this process has logged (:mod:`.reportlog`)."""
        self._label_texts = _LabelTexts()
        self._texts: weakref.WeakKeyDictionary[KpiState, _RowTexts] = weakref.WeakKeyDictionary()
        self._read_catalog()

    def _read_catalog(self) -> None:
        """Read the catalog: heartbeat, next sequence number, KPIs, records since full chunks."""
        conn = self._conn
        row = conn.execute("SELECT t FROM heartbeat WHERE id = 1").fetchone()
        self.heartbeat = None if row is None else float(row[0])
        self._next_seq = translog.next_seq(conn)
        names: dict[int, str] = {}
        self._kpis = {}
        for kid, name, fp, lay, scalars in conn.execute(
            "SELECT kpi_id, name, fingerprint, layout, scalars FROM kpis"
        ):
            self._kpis[name] = _SavedKpi(kid, fp, lay, scalars)
            names[kid] = name
        self._since_full = {}
        for kid, n in conn.execute(
            "SELECT c.kpi_id, sum(c.n) FROM state_chunks c WHERE c.chunk_id > ("
            " SELECT coalesce(max(f.chunk_id), 0) FROM state_chunks f"
            " WHERE f.kpi_id = c.kpi_id AND f.full) GROUP BY c.kpi_id"
        ):
            if kid in names:
                self._since_full[names[kid]] = int(n)
        for (kid,) in conn.execute("SELECT DISTINCT kpi_id FROM state_chunks WHERE full"):
            if kid in names:
                self._since_full.setdefault(names[kid], 0)

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, synchronous: str = SYNCHRONOUS) -> Journal:
        """Open (creating or migrating as needed) the journal under ``directory``.

        ``synchronous`` is SQLite's setting for this connection; keep the default (``FULL``,
        see the module docstring) but for measurements.

        Raises:
            JournalError: one line saying which path, what is wrong and what to do: the
                directory cannot be created or written, another kpimon holds it, or the
                journal is not a database, is corrupt, or was written by a newer kpimon.
        """
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"invalid synchronous setting {synchronous!r}")
        path = Path(directory)
        db = path / DB_NAME
        if path.exists() and not path.is_dir():
            raise JournalError(
                f"storage path {path} is not a directory; choose another --storage.path"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock = open(path / LOCK_NAME, "ab")  # noqa: SIM115 (held until close())
        except OSError as exc:
            raise JournalError(
                f"storage directory {path} is not writable ({exc.strerror or exc}); fix its "
                "permissions or choose another --storage.path"
            ) from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise JournalError(
                f"storage directory {path} is in use by another kpimon (it holds "
                f"{path / LOCK_NAME}); stop that one or choose another --storage.path"
            ) from None
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(db, isolation_level=None, timeout=1.0)
            before, after = _prepare(conn, synchronous)
            journal = cls(conn, db, lock)
        except JournalError as exc:
            _close_quietly(conn, lock)
            advice = (
                "run a kpimon at least as new, or " + _MOVE_ASIDE
                if "newer kpimon" in str(exc)
                else _MOVE_ASIDE + ", or restore a backup"
            )
            raise JournalError(f"journal {db} {exc}; {advice}") from None
        except sqlite3.OperationalError as exc:  # (a DatabaseError: catch it first)
            _close_quietly(conn, lock)
            raise JournalError(
                f"journal {db} cannot be opened ({exc}); check the storage directory's "
                "permissions and free space"
            ) from None
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
            _close_quietly(conn, lock)
            what = "is not an SQLite database" if "not a database" in str(exc) else "is corrupt"
            raise JournalError(
                f"journal {db} {what} ({exc}); {_MOVE_ASIDE}, or restore a backup"
            ) from None
        except (sqlite3.Error, OSError) as exc:
            _close_quietly(conn, lock)
            raise JournalError(
                f"journal {db} cannot be opened ({exc}); check the storage directory's "
                "permissions and free space"
            ) from None
        if before != after:
            log.info("journal schema migrated path=%s from=%d to=%d", db, before, after)
        log.info(
            "journal opened path=%s kpis=%d heartbeat=%s",
            db,
            len(journal._kpis),
            "none" if journal.heartbeat is None else f"{journal.heartbeat:.3f}",
        )
        return journal

    def close(self) -> None:
        """Checkpoint the WAL into the database file, close it and release the lock."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _close_quietly(self._conn, self._lock)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- restoring ----------------------------------------------------------------------

    def saved_kpis(self) -> dict[str, str]:
        """Every KPI with saved state: name → fingerprint."""
        return {name: s.fingerprint for name, s in self._kpis.items()}

    def load(self, name: str, fingerprint: str, state: KpiState) -> int | None:
        """Fill the new, empty ``state`` with KPI ``name``'s saved state, as of its last tick.

        Returns the number of series loaded, or None when there is no saved state for this
        definition (none at all, or a different ``fingerprint``: the KPI changed, and its old
        rows are dropped at the next commit).

        Raises:
            JournalError: the saved state is unreadable.
        """
        saved = self._kpis.get(name)
        if saved is None:
            return None
        if saved.fingerprint != fingerprint:
            log.info("KPI changed since it was journaled, its state starts afresh kpi=%s", name)
            return None
        chunks = self._conn.execute(
            "SELECT t, labels, gone, records FROM state_chunks WHERE kpi_id = ? ORDER BY chunk_id",
            (saved.kpi_id,),
        ).fetchall()
        try:
            lay = codec.parse_layout(saved.layout)
            labels, rows, written, texts = codec.latest([(c[0], c[1], c[2]) for c in chunks])
            arrays = codec.unpack(b"".join(c[3] for c in chunks), lay)
            axis = {name: ax for name, ax, _, _ in lay}
            state.load(
                labels,
                {k: np.take(a, rows, axis=axis[k]) for k, a in arrays.items()},
                written,
                json.loads(saved.scalars),
            )
            # The texts just read are these label sets' texts: the first commit after a restore
            # (every row dirty) finds them instead of encoding 100k label sets again.
            if len(self._label_texts) + len(texts) < self._label_texts.MAX:
                self._label_texts.update(zip(labels, texts, strict=True))
        except (ValueError, TypeError, KeyError) as exc:
            raise JournalError(
                f"journal {self.path}: the saved state of KPI {name} is unreadable ({exc}); "
                f"{_MOVE_ASIDE}"
            ) from None
        return len(labels)

    # -- writing ------------------------------------------------------------------------

    def commit(
        self,
        t: float,
        kpis: Sequence[tuple[str, str, KpiState]],
        transitions: Sequence[tuple[str, Transition]],
        extra: object | None = None,
    ) -> TickChanges:
        """Write tick ``t`` in one transaction; return the transitions now durable.

        ``extra`` (the tick's notification plan) is handed to :attr:`extension`, which writes
        it in the same transaction; after a failed commit it waits, like the transitions.

        ``kpis`` is every KPI of the engine as (name, fingerprint, state): saved KPIs not in
        it are deleted, KPIs whose fingerprint changed are saved afresh, and of the others only
        the dirty rows are written. The result is ``transitions`` preceded by those of earlier
        ticks whose commit failed; on failure it is empty and everything waits for the next
        call. Never raises for a database error.
        """
        if transitions:
            self._pending.extend(transitions)  # columns stay columns
        if extra is not None:
            self._pending_extra.append(extra)
        started = time.perf_counter()
        conn = self._conn
        catalog = dict(self._kpis)
        since_full = dict(self._since_full)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for name, fingerprint, state in kpis:
                    self._write_kpi(catalog, name, fingerprint, state, t)
                names = {name for name, _, _ in kpis}
                for name in catalog.keys() - names:
                    kid = catalog.pop(name).kpi_id
                    self._drop_state(name, kid)
                    reportlog.record_kpi_gone(conn, name, t)
                    conn.execute("DELETE FROM kpis WHERE kpi_id = ?", (kid,))
                if self._pending:
                    self._write_transitions(self._pending, kpis)
                if self._pending_extra and self.extension is not None:
                    self.extension.write(conn, self._pending_extra)
                conn.execute(
                    "INSERT INTO heartbeat (id, t) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET t = excluded.t",
                    (t,),
                )
                run_id = reportlog.record_run(conn, self._run_id, t)
                conn.execute("COMMIT")
            except BaseException:
                self._since_full = since_full  # forget what the rolled-back transaction did
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if self.extension is not None:
                    self.extension.rolled_back()
                raise
        except sqlite3.Error as exc:
            self.write_failures_total += 1
            if self._failing is None:
                log.error(
                    "journal write failed, retrying at the next tick path=%s err=%s "
                    "transitions_waiting=%d",
                    self.path,
                    exc,
                    len(self._pending),
                )
            self._failing = str(exc)
            return TickChanges()
        if self._failing is not None:
            log.info("journal writes recovered path=%s", self.path)
            self._failing = None
        for _, _, state in kpis:
            state.dirty.fill(False)
            state.forgotten.clear()
        self._kpis = catalog
        self._next_seq += len(self._pending)
        done, self._pending = self._pending, TickChanges()
        extra, self._pending_extra = self._pending_extra, []
        if extra and self.extension is not None:
            self.extension.committed(extra)
        self.heartbeat = t
        self._run_id = run_id
        self._status_logged.update(name for name, _, _ in kpis)
        self.commits_total += 1
        self.last_commit_duration_s = time.perf_counter() - started
        return done

    def _layout(self, state: KpiState) -> tuple[codec.Layout, str]:
        hit = self._layouts.get(state)
        if hit is None:
            lay = codec.layout(state)
            hit = self._layouts[state] = (lay, codec.layout_text(lay))
        return hit

    def _rows(self, state: KpiState) -> _RowTexts:
        """The label-set JSON of each of ``state``'s rows, kept across ticks (:class:`_RowTexts`).

        ``KpiState.labels`` only grows (appended in place) until series are forgotten, which
        replaces the list; so while it is the same list, the texts of the rows cached so far
        stand and only new rows are encoded: a list index per changed row instead of a hash of
        its label set (0.1 ms instead of 1.3 ms for 2,000 rows among 100k).
        """
        labels = state.labels
        rows = self._texts.get(state)
        if rows is not None:
            n = len(rows.texts)
            if (
                rows.labels is not labels
                or n > len(labels)
                or (n and labels[n - 1] is not rows.last)
            ):
                rows = None
        if rows is None:
            rows = self._texts[state] = _RowTexts(labels, [], None)
        n = len(rows.texts)
        if n < len(labels):
            new = labels[n:]
            rows.texts.extend(map(self._label_texts.__getitem__, new))
            rows.last = labels[-1]
        return rows

    def _drop_state(self, name: str, kpi_id: int) -> None:
        self._conn.execute("DELETE FROM state_chunks WHERE kpi_id = ?", (kpi_id,))
        self._since_full.pop(name, None)

    def _write_kpi(
        self,
        catalog: dict[str, _SavedKpi],
        name: str,
        fingerprint: str,
        state: KpiState,
        t: float,
    ) -> None:
        conn = self._conn
        lay, lay_text = self._layout(state)
        scalars = json.dumps({k: getattr(state, k) for k in state.STATE_SCALARS})
        saved = catalog.get(name)
        if saved is None:
            cur = conn.execute(
                "INSERT INTO kpis (name, fingerprint, layout, scalars) VALUES (?, ?, ?, ?)",
                (name, fingerprint, lay_text, scalars),
            )
            assert cur.lastrowid is not None
            saved = catalog[name] = _SavedKpi(cur.lastrowid, fingerprint, lay_text, scalars)
            self._since_full.pop(name, None)
        elif saved.fingerprint != fingerprint or saved.layout != lay_text:
            # A changed KPI starts afresh; a new kpimon version's layout rewrites every row.
            self._drop_state(name, saved.kpi_id)
            if saved.fingerprint != fingerprint:
                reportlog.record_kpi_gone(conn, name, t)
            saved = catalog[name] = replace(saved, fingerprint=fingerprint, layout=lay_text)
            conn.execute(
                "UPDATE kpis SET fingerprint = ?, layout = ? WHERE kpi_id = ?",
                (fingerprint, lay_text, saved.kpi_id),
            )
        if saved.scalars != scalars:
            conn.execute("UPDATE kpis SET scalars = ? WHERE kpi_id = ?", (scalars, saved.kpi_id))
            catalog[name] = replace(saved, scalars=scalars)
        rows = np.flatnonzero(state.dirty)
        n = len(state)
        first = name not in self._status_logged
        texts = self._rows(state).texts
        forgotten = list(map(self._label_texts.__getitem__, state.forgotten))
        reportlog.record_statuses(
            conn,
            name,
            t,
            state,
            np.arange(n) if first else rows,
            None if first else self.heartbeat,
            texts,
            forgotten,
        )
        since = self._since_full.get(name)
        # A full chunk replaces the KPI's chunks once they would hold more records than it.
        full = since is None or (len(rows) > 0 and since + len(rows) >= n)
        if full:
            rows = np.arange(n)
        elif not len(rows) and not state.forgotten:
            return
        # One JSON label set per line (JSON escapes newlines): restoring splits the lines and
        # parses only the label sets still live.
        labels = "\n".join(map(texts.__getitem__, rows.tolist()))
        gone = "" if full else "\n".join(forgotten)
        cur = conn.execute(
            "INSERT INTO state_chunks (kpi_id, t, full, n, labels, gone, records) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                saved.kpi_id,
                state.last_t if state.last_t is not None else t,
                int(full),
                len(rows),
                labels,
                gone,
                codec.pack(state, rows, lay),
            ),
        )
        if full:
            conn.execute(
                "DELETE FROM state_chunks WHERE kpi_id = ? AND chunk_id < ?",
                (saved.kpi_id, cur.lastrowid),
            )
            self._since_full[name] = 0
        else:
            self._since_full[name] = (since or 0) + len(rows)

    def _write_transitions(
        self, transitions: TickChanges, kpis: Sequence[tuple[str, str, KpiState]]
    ) -> None:
        text = self._label_texts.__getitem__
        states = {name: state for name, _, state in kpis}

        def batch_texts(kpi: str, batch: LevelChanges) -> Iterable[str]:
            state = states.get(kpi)
            if state is not None and batch.series is state.labels:
                return map(self._rows(state).texts.__getitem__, batch.rows.tolist())
            return map(text, batch.labels)  # series forgotten since: by label set

        translog.append(
            self._conn,
            self._next_seq,
            transitions.parts,
            lambda labels: map(text, labels),
            batch_texts,
        )

    # -- reading the log ----------------------------------------------------------------

    def transitions(self, after_seq: int = 0) -> Iterator[TransitionRecord]:
        """The transition log from ``after_seq + 1`` on, in sequence order."""
        return translog.read(self._conn, after_seq)

    @property
    def pending_transitions(self) -> int:
        """Transitions waiting for a commit to succeed."""
        return len(self._pending)

    @property
    def connection(self) -> sqlite3.Connection:
        """The SQLite connection, for tables written elsewhere (API silences,
        kpimon.notify.silence_store): only on the event loop's thread, outside :meth:`commit`,
        one short ``BEGIN IMMEDIATE`` transaction per write."""
        return self._conn


def _prepare(conn: sqlite3.Connection, synchronous: str) -> tuple[int, int]:
    """Check the file, switch to WAL, migrate the schema; raise JournalError with the problem."""
    result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    if result != ["ok"]:
        raise JournalError(f"is corrupt (PRAGMA quick_check: {'; '.join(map(str, result[:3]))})")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise JournalError(f"cannot be switched to WAL mode (journal_mode is {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    before, after = migrate(conn)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('written_by', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (f"kpimon {__version__}",),
    )
    return before, after


def _close_quietly(conn: sqlite3.Connection | None, lock: IO[bytes]) -> None:
    if conn is not None:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    with contextlib.suppress(OSError):
        lock.close()  # closing the file releases the flock
