"""Crash consistency with the real command: SIGKILL ``kpimon replay --storage.path`` at random
moments, restart it with the same command until it completes, and the transition log its
journal holds is exactly that of an uninterrupted run (no gap, no duplicate, no contradiction).
And a ``kpimon run`` daemon killed with SIGKILL restarts on its journal without error.

The replay's length comes from its data (generated here, seeded), not from sleeps. The kill
moments are seeded and drawn within the uninterrupted run's measured duration, so they spread
over start-up, ticking and the end whatever the machine's speed; the checks hold wherever a
kill lands.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from kpimon.journal import Journal
from tests.helpers.daemon import kpimon

REPO = Path(__file__).resolve().parents[2]
KILLS = 20
SERIES = 20
TICKS = 800  # ≈ 1.5–2 s of replay on a 2-core machine (journal commit + fsync every tick)
T0 = 1_700_000_000

RULES = """
kpis:
  - name: load
    owner: test
    expr: load
    levels:
      warning: {above: 50, for: 2m, clear: 40, clear_for: 1m}
      critical: {above: 80, for: 1m}
"""

Log = list[tuple[object, ...]]


def write_inputs(directory: Path) -> tuple[Path, Path]:
    """A rules file and OpenMetrics data: random walks crossing both levels again and again."""
    rng = random.Random(7)
    lines = []
    for s in range(SERIES):
        v = 30.0
        for i in range(TICKS):
            v = min(100.0, max(0.0, v + rng.uniform(-12, 12)))
            lines.append(f'load{{host="h{s}"}} {v:.1f} {T0 + 60 * i}\n')
    lines.append("# EOF\n")
    rules, data = directory / "rules.yaml", directory / "data.om"
    rules.write_text(RULES)
    data.write_text("".join(lines))
    return rules, data


def spawn(rules: Path, data: Path, storage: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kpimon",
            "replay",
            "--rules",
            str(rules),
            "--data",
            str(data),
            "--step",
            "1m",
            "--storage.path",
            str(storage),
        ],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes]) -> int:
    _, err = proc.communicate(timeout=60)
    text = err.decode(errors="replace")
    assert proc.returncode in (0, -signal.SIGKILL), text
    assert "Traceback" not in text, text
    return proc.returncode


def log_of(storage: Path) -> tuple[float | None, Log]:
    """The journal's heartbeat and transition log, read through kpimon.journal's API."""
    with Journal.open(storage) as j:
        return j.heartbeat, [
            (
                r.seq,
                r.t,
                r.kpi,
                r.labels,
                r.level,
                r.from_phase,
                r.to_phase,
                None if math.isnan(r.value) else r.value,
                r.threshold,
                r.reason,
                r.flapping,
            )
            for r in j.transitions()
        ]


def test_sigkill_of_a_replay_at_random_moments_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    rules, data = write_inputs(tmp_path)
    started = time.monotonic()
    assert finish(spawn(rules, data, tmp_path / "reference")) == 0
    duration_s = time.monotonic() - started
    _, expected = log_of(tmp_path / "reference")
    assert len(expected) > 1000  # the data keeps the machine busy
    assert [r[0] for r in expected] == list(range(1, len(expected) + 1))

    rng = random.Random(20261122)
    kills = rounds = resumed_mid_run = 0
    deadline = time.monotonic() + 60 + 50 * duration_s  # a guard against a hang only
    while kills < KILLS:
        # One round: a fresh journal, killed again and again until a run completes.
        rounds += 1
        storage = tmp_path / f"crashed-{rounds}"
        while True:
            assert time.monotonic() < deadline, f"only {kills} kills in the time allowed"
            proc = spawn(rules, data, storage)
            time.sleep(rng.uniform(0.0, 1.1 * duration_s))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            if finish(proc) == 0:
                break
            heartbeat, partial = log_of(storage)  # reopening a killed journal is fine, too
            if heartbeat is not None and partial != expected:
                resumed_mid_run += 1
            assert partial == expected[: len(partial)]  # a prefix: nothing wrong, so far
        _, got = log_of(storage)
        assert [r[0] for r in got] == list(range(1, len(got) + 1))  # no gap, no duplicate
        assert got == expected, f"round {rounds}"
    # The kills are drawn over the run's own duration, so most land after some progress.
    assert resumed_mid_run >= 3, (resumed_mid_run, kills, rounds)


DAEMON_RULES = """
kpis:
  - name: always
    owner: team
    expr: "1"
    levels: {warning: {above: 0}}
"""


def test_a_killed_daemon_restarts_on_its_journal(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(DAEMON_RULES)
    cfg = tmp_path / "kpimon.yml"
    cfg.write_text("global: {evaluation_interval: 1s}\nrule_files: [rules.yaml]\n")
    rng = random.Random(4)
    for run in range(3):
        with kpimon(tmp_path, f"--config.file={cfg}", "--storage.path=data") as k:
            k.wait_for("the first evaluation", lambda: k.get("/-/ready")[0] == 200)
            time.sleep(rng.uniform(0.0, 1.5))  # somewhere among the next ticks
            k.signal(signal.SIGKILL)
            assert k.proc.wait(timeout=30) == -signal.SIGKILL
            log = k.log()
        assert "Traceback" not in log, log
        assert "ERROR" not in log, log
        if run:
            assert "state restored from the journal kpis=1" in log, log
    with Journal.open(tmp_path / "data") as j:
        log_ = [(r.seq, r.kpi, r.from_phase, r.to_phase) for r in j.transitions()]
    assert log_ == [(1, "always", "inactive", "firing")]  # the restarts fired nothing new
