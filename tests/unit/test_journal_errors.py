"""A journal kpimon cannot use is reported in one line (path, problem, what to do), never
discarded or overwritten; the schema migrates forward and a newer one is refused."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest

from kpimon.journal import DB_NAME, SCHEMA_VERSION, Journal, JournalError, codec
from kpimon.journal.schema import MIGRATIONS
from kpimon.kpi.machine import KpiState, LevelRule, MachineRule

RULE = MachineRule(levels=(LevelRule(name="warning", above=True, threshold=1.0, clear=1.0),))


def a_journal_with_data(path: Path, series: int = 400) -> None:
    state = KpiState(RULE)
    labels = [(("instance", f"host-{i:05d}.example.org:9100"),) for i in range(series)]
    with Journal.open(path) as j:
        for k in range(3):
            trs = state.step(1000.0 + 15 * k, labels, np.full(series, 5.0 * (k % 2)))
            j.commit(1000.0 + 15 * k, [("k", "fp", state)], [("k", tr) for tr in trs])


def error_of(path: Path) -> str:
    with pytest.raises(JournalError) as info:
        Journal.open(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    garbage = b"this is not an SQLite database\n" * 200
    (tmp_path / DB_NAME).write_bytes(garbage)
    message = error_of(tmp_path)
    assert message == (
        f"journal {tmp_path / DB_NAME} is not an SQLite database (file is not a database); "
        "move it aside (with its -wal and -shm files) to start with an empty journal, or "
        "restore a backup"
    )
    assert "move it aside" in message
    assert (tmp_path / DB_NAME).read_bytes() == garbage


def test_a_corrupt_journal_is_refused(tmp_path: Path) -> None:
    a_journal_with_data(tmp_path)
    db = tmp_path / DB_NAME
    data = bytearray(db.read_bytes())
    assert len(data) > 4 * 4096
    data[2 * 4096 : 2 * 4096 + 64] = b"\xff" * 64  # the header of a b-tree page
    db.write_bytes(bytes(data))
    message = error_of(tmp_path)
    assert message.startswith(f"journal {db} ")
    assert "is corrupt" in message
    assert "move it aside" in message
    assert db.read_bytes() == bytes(data)


def test_a_journal_from_a_newer_kpimon_is_refused(tmp_path: Path) -> None:
    a_journal_with_data(tmp_path)
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    message = error_of(tmp_path)
    assert message == (
        f"journal {tmp_path / DB_NAME} was written by a newer kpimon (schema version "
        f"{SCHEMA_VERSION + 1}; this kpimon reads up to {SCHEMA_VERSION}); run a kpimon at "
        "least as new, or move it aside (with its -wal and -shm files) to start with an empty "
        "journal"
    )


def test_another_sqlite_database_is_not_taken_for_a_journal(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.execute("CREATE TABLE important (x)")
        conn.execute("INSERT INTO important VALUES (42)")
    conn.close()
    message = error_of(tmp_path)
    assert "is an SQLite database but not a kpimon journal" in message
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        assert conn.execute("SELECT x FROM important").fetchall() == [(42,)]
    conn.close()


def test_a_storage_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    assert error_of(tmp_path / "data") == (
        f"storage path {tmp_path / 'data'} is not a directory; choose another --storage.path"
    )
    message = error_of(tmp_path / "data" / "sub")
    assert message.startswith(f"storage directory {tmp_path / 'data' / 'sub'} is not writable")


def test_a_read_only_storage_directory_is_refused() -> None:
    """Checked as an unprivileged user: root writes to read-only directories anyway, so under
    root (CI containers) the check runs in a forked child that drops to ``nobody``."""
    base = Path(tempfile.mkdtemp(prefix="kpimon-ro-"))
    try:
        base.chmod(0o755)  # traversable by the unprivileged child
        ro = base / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        message = _open_error_unprivileged(ro)
        assert message.startswith(f"storage directory {ro} is not writable (Permission denied)")
        assert "choose another --storage.path" in message
        assert "\n" not in message
        assert list(ro.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _open_error_unprivileged(path: Path) -> str:
    """The JournalError message of opening ``path``, as a user that is not root."""
    if os.geteuid() != 0:
        return error_of(path)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec, so nothing outside this process must be readable
        status = 1
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                Journal.open(path).close()
                text = "opened"
            except JournalError as exc:
                text = str(exc)
            os.write(write_fd, text.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        text = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, text
    return text


def test_a_second_kpimon_cannot_open_the_same_journal(tmp_path: Path) -> None:
    with Journal.open(tmp_path):
        message = error_of(tmp_path)
        assert message.startswith(f"storage directory {tmp_path} is in use by another kpimon")
    Journal.open(tmp_path).close()  # released on close


def test_a_version_1_journal_is_migrated_with_its_data(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    for statement in MIGRATIONS[0].statements:
        conn.execute(statement)
    conn.execute("INSERT INTO heartbeat VALUES (1, 1234.5)")
    conn.execute(
        "INSERT INTO transitions VALUES "
        "(1, 1200.0, 'cpu', '[[\"instance\",\"a\"]]', 'warning', 'inactive', 'pending', "
        "NULL, 70.0, 'value > 70', 0)"
    )
    conn.commit()
    conn.close()

    with Journal.open(tmp_path) as j:
        assert j.heartbeat == 1234.5
        [record] = list(j.transitions())
        assert record.seq == 1
        assert record.labels == (("instance", "a"),)
        assert record.to_phase == "pending"
        assert not record.notifies  # inactive → pending notifies no one
        assert np.isnan(record.value)  # NULL in v1 rows
        version = j._conn.execute("SELECT version FROM schema_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 8
    with Journal.open(tmp_path) as j:  # idempotent
        assert len(list(j.transitions())) == 1


def _as_version_2(db: Path) -> None:
    """Rewrite a current journal's transition log in the v2 format (a row per transition)."""
    with Journal.open(db.parent) as j:
        log = list(j.transitions())
    conn = sqlite3.connect(db)
    conn.execute(MIGRATIONS[0].statements[-1])  # CREATE TABLE transitions
    conn.execute(MIGRATIONS[1].statements[0])  # CREATE VIEW notifications
    conn.executemany(
        "INSERT INTO transitions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r.seq,
                r.t,
                r.kpi,
                codec.labels_text(r.labels),
                r.level,
                r.from_phase,
                r.to_phase,
                None if np.isnan(r.value) else r.value,
                None if np.isnan(r.threshold) else r.threshold,
                r.reason,
                int(r.flapping),
            )
            for r in log
        ],
    )
    conn.execute("DROP TABLE transition_batches")
    v2 = ("meta", "heartbeat", "kpis", "state_chunks", "transitions", "schema_version")
    later = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    for (name,) in later:  # tables of migrations 4 and up (outbox, silences, ...)
        if name not in v2:
            conn.execute(f"DROP TABLE {name}")
    conn.execute("UPDATE schema_version SET version = 2")
    conn.commit()
    conn.close()


def test_a_version_2_journal_is_migrated_with_its_data(tmp_path: Path) -> None:
    a_journal_with_data(tmp_path, series=50)
    with Journal.open(tmp_path) as j:
        expected = list(j.transitions())
    state = KpiState(RULE)
    with Journal.open(tmp_path) as j:
        assert j.load("k", "fp", state) == 50
    _as_version_2(tmp_path / DB_NAME)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    notifying_v2 = [r[0] for r in conn.execute("SELECT seq FROM notifications ORDER BY seq")]
    conn.close()

    with Journal.open(tmp_path) as j:
        version = j._conn.execute("SELECT version FROM schema_version").fetchone()[0]
        assert list(j.transitions()) == expected
        assert [r.seq for r in expected] == list(range(1, 101))  # 50 pending, 50 inactive
        assert [r.seq for r in expected if r.notifies] == notifying_v2
        restored = KpiState(RULE)
        assert j.load("k", "fp", restored) == 50
        assert restored.labels == state.labels
        for array in KpiState.PERSISTED_ARRAYS:
            assert np.array_equal(getattr(restored, array), getattr(state, array), equal_nan=True)
        # and the migrated journal carries on: the next commit continues the sequence
        more = restored.step(1060.0, restored.labels, np.full(50, 5.0))
        assert j.commit(1060.0, [("k", "fp", restored)], [("k", tr) for tr in more])
        assert [r.seq for r in j.transitions(after_seq=100)] == list(range(101, 151))
    assert version == SCHEMA_VERSION == 8


def test_a_new_journal_uses_wal_and_full_sync(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "new" / "dir") as j:
        assert j._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert j.heartbeat is None
    assert (tmp_path / "new" / "dir" / DB_NAME).exists()
