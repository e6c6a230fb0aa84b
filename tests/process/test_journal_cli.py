"""`kpimon run` and its journal, as operators run it: a bad journal stops start-up with one
line and exit code 2; a restart carries the KPIs' state over (no second firing transition)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from kpimon.journal import Journal
from tests.helpers.daemon import kpimon

REPO = Path(__file__).resolve().parents[2]

RULES = """
kpis:
  - name: always
    owner: team
    expr: "1"
    levels: {warning: {above: 0}}
"""


def write_config(tmp_path: Path, storage: str | None = None) -> Path:
    (tmp_path / "rules.yaml").write_text(RULES)
    cfg = tmp_path / "kpimon.yml"
    text = "global: {evaluation_interval: 1s}\nrule_files: [rules.yaml]\n"
    if storage is not None:
        text += f"storage: {{path: {storage}}}\n"
    cfg.write_text(text)
    return cfg


def run_kpimon(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kpimon", "run", "--web.listen-address=127.0.0.1:0", *args],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_corrupt_journal_stops_start_up_with_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, storage="from-the-config")  # the flag wins
    storage = tmp_path / "corrupt"
    storage.mkdir()
    (storage / "kpimon.db").write_bytes(b"\x00garbage, not SQLite\n" * 100)
    result = run_kpimon(tmp_path, f"--config.file={cfg}", f"--storage.path={storage}")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"kpimon: journal {storage / 'kpimon.db'} is not an SQLite database (file is not a "
        "database); move it aside (with its -wal and -shm files) to start with an empty "
        "journal, or restore a backup"
    ]
    assert (storage / "kpimon.db").read_bytes() == b"\x00garbage, not SQLite\n" * 100
    assert not (tmp_path / "from-the-config").exists()


def test_a_storage_path_kpimon_cannot_create_stops_start_up(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    (tmp_path / "file").write_text("")
    result = run_kpimon(tmp_path, f"--config.file={cfg}", f"--storage.path={tmp_path}/file/data")
    assert result.returncode == 2, result
    [line] = result.stderr.splitlines()
    assert line.startswith(f"kpimon: storage directory {tmp_path}/file/data is not writable")


def test_a_restart_restores_state_and_fires_once(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    db = tmp_path / "data" / "kpimon.db"  # the default --storage.path, data/ under the cwd
    for run in range(2):
        with kpimon(tmp_path, f"--config.file={cfg}") as k:
            k.wait_for("the first evaluation", lambda: k.get("/-/ready")[0] == 200)
            k.wait_for(
                "the journal metric",
                lambda: b"kpimon_journal_write_failures_total 0" in k.get("/metrics")[1],
            )
            k.signal(signal.SIGTERM)
            assert k.proc.wait(timeout=30) == 0, k.log()
            log = k.log()
        if run == 1:
            assert "state restored from the journal kpis=1" in log
    with Journal.open(db.parent) as j:
        rows = [(r.seq, r.kpi, r.from_phase, r.to_phase) for r in j.transitions()]
    assert rows == [(1, "always", "inactive", "firing")]  # the restart fired nothing new
