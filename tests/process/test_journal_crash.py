"""Crash consistency: SIGKILL an Engine+Journal process at random moments, restart it, and the
transition log it leaves is exactly that of an uninterrupted run (no gap, no duplicate).

The process is ``tests/helpers/journal_driver.py``: deterministic synthetic data, a simulated
clock, resuming from the journal's heartbeat. Kills are seeded, so a failure reproduces.
"""

from __future__ import annotations

import math
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kpimon.journal import Journal, TransitionRecord
from kpimon.kpi.machine import KpiState
from tests.helpers import journal_driver

REPO = Path(__file__).resolve().parents[2]
TICKS = 160
KILLS = 20


def log_of(directory: Path) -> list[tuple[object, ...]]:
    with Journal.open(directory / "data") as j:
        records: list[TransitionRecord] = list(j.transitions())
    return [
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
        for r in records
    ]


def states_of(directory: Path) -> dict[str, KpiState]:
    with Journal.open(directory / "data") as j:
        e = journal_driver.engine(directory, None)
        for name, rt in e.kpis.items():
            assert j.load(name, rt.fingerprint, rt.state) is not None
        return {name: rt.state for name, rt in e.kpis.items()}


def spawn(directory: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.journal_driver", str(directory), str(TICKS)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> int | None:
    """Wait for the driver's "ready K" line: the tick it resumes at; None if it exited first."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, "the driver did not start in time"
    line = proc.stdout.readline()
    return int(line.split()[1]) if line.startswith("ready") else None


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    assert journal_driver.main(reference, TICKS) == 0
    expected = log_of(reference)
    assert len(expected) > 1000  # the data makes the machine busy

    crashed = tmp_path / "crashed"
    crashed.mkdir()
    rng = random.Random(20261122)
    kills = 0
    resumed_at: set[int] = set()
    deadline = time.monotonic() + 240
    while kills < KILLS:
        assert time.monotonic() < deadline, f"only {kills} kills in the time allowed"
        proc = spawn(crashed)
        if kills % 4 == 0:
            # anywhere from start-up on: opening, migrating, restoring, or ticking
            time.sleep(rng.uniform(0.0, 1.0))
        elif (start := wait_ready(proc)) is not None:
            resumed_at.add(start)
            time.sleep(rng.uniform(0.0, 0.3))  # in the middle of the ticks
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        _, err = proc.communicate(timeout=30)
        assert proc.returncode in (0, -signal.SIGKILL), err
        assert "Traceback" not in err, err
        if proc.returncode == 0:  # it finished before the kill: start over for more kills
            for leftover in (crashed / "data").iterdir():
                leftover.unlink()
    proc = spawn(crashed)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err

    assert len(resumed_at - {0}) >= 5, resumed_at  # resumed mid-run again and again
    got = log_of(crashed)
    seqs = [r[0] for r in got]
    assert seqs == list(range(1, len(got) + 1))  # no gap, no duplicate
    assert got == expected
    want_states, got_states = states_of(reference), states_of(crashed)
    for name, want in want_states.items():
        have = got_states[name]
        assert have.labels == want.labels
        assert have.last_t == want.last_t
        assert have.evaluations == want.evaluations
        for array in KpiState.PERSISTED_ARRAYS:
            assert np.array_equal(getattr(have, array), getattr(want, array), equal_nan=True), (
                name,
                array,
            )
