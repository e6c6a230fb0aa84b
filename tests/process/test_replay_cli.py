"""``kpimon replay`` as users run it: a subprocess, its output and its exit codes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.helpers.cli import REPO, kpimon

DATA = REPO / "tests" / "data" / "replay"


def test_text_report() -> None:
    proc = kpimon(
        "replay",
        "--rules", str(DATA / "rules.yaml"),
        "--data", str(DATA / "queues.csv"),
        "--step", "1m",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar (not a terminal), no log lines
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "kpimon replay 2024-05-01T12:00:00Z .. 2024-05-01T12:40:00Z: step 1m, 41 ticks, "
        "2 series, 18 samples"
    )
    assert lines[3:6] == [
        '2024-05-01T12:05:00Z  queue_depth{queue="orders"}  warning  inactive → pending  '
        "value=150  (value > 100)",
        '2024-05-01T12:15:00Z  queue_depth{queue="orders"}  warning  pending → firing  '
        "value=160  (value > 100 held for 600s)",
        '2024-05-01T12:20:00Z  queue_depth{queue="orders"}  warning  firing → inactive  '
        "value=80  (value <= 100)",
    ]
    summary = proc.stdout.split("\nSummary\n", 1)[1].splitlines()
    assert summary == [
        "queue_depth  (2 series)",
        "  status: ok 1h12m (90.0%), warning 5m (6.2%), critical 3m (3.8%), no_data 0s",
        "  warning: 1 breach (1 resolved), longest 5m, MTTR 5m, total 5m",
        "  critical: 1 breach (1 resolved), longest 3m, MTTR 3m, total 3m",
    ]


def test_json_report_with_range_and_restart() -> None:
    proc = kpimon(
        "replay",
        "--rules", str(DATA / "rules.yaml"),
        "--data", str(DATA / "queues.om"),
        "--from", "2024-05-01T12:00:00Z",
        "--to", "1714566000",
        "--restart-at", "2024-05-01T12:10:00Z",
        "--step", "1m",
        "--format", "json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["range"]["start"] == "2024-05-01T12:00:00Z"
    assert doc["range"]["end"] == "2024-05-01T12:20:00Z"
    assert doc["range"]["ticks"] == 21
    assert doc["restarts"] == ["2024-05-01T12:10:00Z"]
    assert [(t["time"], t["from"], t["to"], t["value"]) for t in doc["transitions"]] == [
        ("2024-05-01T12:05:00Z", "inactive", "pending", 150.0),
        ("2024-05-01T12:15:00Z", "pending", "firing", 160.0),
        ("2024-05-01T12:20:00Z", "firing", "inactive", 80.0),
    ]
    first = doc["transitions"][1]
    assert first["labels"] == {"queue": "orders"}
    assert first["notifies"] is True
    (summary,) = doc["summary"]
    assert summary["levels"]["warning"]["mttr_seconds"] == 300.0
    assert summary["status_seconds"]["warning"] == 300.0


def test_a_daemon_config_sets_the_step(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text((DATA / "rules.yaml").read_text())
    (tmp_path / "kpimon.yml").write_text(
        "global: {evaluation_interval: 5m}\nrule_files: [rules.yaml]\n"
    )
    proc = kpimon(
        "replay", "--rules", "kpimon.yml", "--data", str(DATA / "queues.csv"), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "step 5m, 9 ticks" in proc.stdout.splitlines()[0]


def test_malformed_data_exits_2_with_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "bad.csv"
    data.write_text("timestamp,series,value\n1700000000,up,1\n1700000015,up,lots\n")
    proc = kpimon("replay", "--rules", str(DATA / "rules.yaml"), "--data", str(data))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"{data}:3: invalid value 'lots'\n"
    om = tmp_path / "bad.om"
    om.write_text("up 1 1700000000\nup{ 2 1700000015\n# EOF\n")
    proc = kpimon("replay", "--rules", str(DATA / "rules.yaml"), "--data", str(om))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{om}:2: ")


def test_invalid_rules_exit_2_as_check_prints_them(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "kpis:\n  - name: x\n    owner: o\n    expr: up\n"
        "    levels: {warning: {above: 1, fore: 5m}}\n"
    )
    check = kpimon("check", str(rules))
    proc = kpimon("replay", "--rules", str(rules), "--data", str(DATA / "queues.csv"))
    assert proc.returncode == 2
    assert check.returncode == 1
    assert proc.stderr == check.stderr
    assert proc.stderr.startswith(f"{rules}:5:")


def test_bad_arguments_exit_2() -> None:
    rules, data = str(DATA / "rules.yaml"), str(DATA / "queues.csv")
    for args, message in [
        (["--rules", rules], "the following arguments are required: --data"),
        (["--rules", rules, "--data", data, "--from", "yesterday"], "invalid time 'yesterday'"),
        (["--rules", rules, "--data", data, "--step", "0s"], "must be positive"),
        (["--rules", rules, "--data", data, "--format", "xml"], "invalid choice: 'xml'"),
        (["--rules", rules, "--data", data, "--restart-at", "2030-01-01T00:00:00Z"],
         "outside the replayed range"),
        (["--rules", rules, "--data", data, "--from", "1714566000", "--to", "1714565000"],
         "before it starts"),
    ]:  # fmt: skip
        proc = kpimon("replay", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert proc.stdout == ""


def test_storage_path_resumes_a_replay(tmp_path: Path) -> None:
    base = ["replay", "--rules", str(DATA / "rules.yaml"), "--data", str(DATA / "queues.om")]
    base += ["--step", "1m", "--storage.path", str(tmp_path / "journal"), "--format", "json"]
    part = kpimon(*base, "--to", "2024-05-01T12:16:00Z")
    assert part.returncode == 0, part.stderr
    assert len(json.loads(part.stdout)["transitions"]) == 2
    whole = kpimon(*base)
    assert whole.returncode == 0, whole.stderr
    doc = json.loads(whole.stdout)
    assert doc["resumed_after"] == "2024-05-01T12:16:00Z"
    assert len(doc["transitions"]) == 8
    again = kpimon(*base[:-2])  # nothing left to do: the journal has every tick
    assert again.returncode == 0, again.stderr
    assert "resumed from the journal after 2024-05-01T12:40:00Z" in again.stdout.splitlines()[0]
    other = kpimon(*base, "--step", "45s")
    assert other.returncode == 2
    assert "progress of another replay" in other.stderr


def test_progress_bar_on_a_terminal_only() -> None:
    args = ["replay", "--rules", str(DATA / "rules.yaml"), "--data", str(DATA / "queues.csv")]
    args += ["--step", "1s"]  # 2401 ticks: long enough for a bar
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "kpimon", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=120,
            check=False,
        )
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert b"] 100%  2401/2401 ticks" in seen
    assert seen.endswith(b"\r")  # erased at the end
    assert b"Transitions" in proc.stdout
    assert kpimon(*args).stderr == ""  # not a terminal: no bar
