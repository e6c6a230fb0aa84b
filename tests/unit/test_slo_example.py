"""The example SLO's rule unit tests pass ``kpimon test``: the 14.4x page fires on a fast burn
while the 3-day ticket stays quiet, min_events guards low traffic, a slow burn opens the ticket,
and a missing SLI alerts."""

from __future__ import annotations

from pathlib import Path

from kpimon.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_example_slo_tests_pass(capsys) -> None:  # type: ignore[no-untyped-def]
    status = main(["test", str(ROOT / "rules" / "tests" / "slo_example_test.yaml")])
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    assert "4 test groups in 1 file: 4 passed, 0 failed" in captured.out + captured.err
