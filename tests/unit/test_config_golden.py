"""Golden config errors: ``kpimon check CASE.yaml`` prints exactly ``CASE.expected`` on stderr.

Each ``tests/data/config_errors/*.yaml`` is one case (a daemon config or a rule file; a config's
``rule_files`` may point into ``CASE.d/``). Nothing is regenerated: a missing ``.expected`` fails.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kpimon.check import run_check

CASES_DIR = Path(__file__).resolve().parents[1] / "data" / "config_errors"
CASES = sorted(p.stem for p in CASES_DIR.glob("*.yaml"))


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected_file = CASES_DIR / f"{case}.expected"
    assert expected_file.exists(), f"{expected_file} is missing (write it by hand and review it)"
    # File names in messages are as given on the command line: run from the cases' directory.
    monkeypatch.chdir(CASES_DIR)
    out, err = io.StringIO(), io.StringIO()
    status = run_check([f"{case}.yaml"], out, err)
    assert err.getvalue() == expected_file.read_text(encoding="utf-8")
    assert status == 1
    assert out.getvalue() == ""


def test_distinct_messages() -> None:
    """The cases cover many different messages, not one message many times."""
    kinds = set()
    for expected in CASES_DIR.glob("*.expected"):
        for line in expected.read_text(encoding="utf-8").splitlines():
            message = line.split(": ", 2)[-1]
            kinds.add(message.split('"')[0])
    assert len(kinds) >= 40
