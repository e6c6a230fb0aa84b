"""Running the real ``python -m kpimon`` command in a subprocess, as users do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def kpimon(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m kpimon ARGS...`` in ``cwd``, its output captured as text (never raises for
    a non-zero exit: the tests look at the code)."""
    return subprocess.run(
        [sys.executable, "-m", "kpimon", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
