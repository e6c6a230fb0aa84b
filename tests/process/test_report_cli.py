"""``kpimon report`` as users run it: a subprocess over a journal ``kpimon replay`` wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kpimon.journal import Journal
from tests.helpers.cli import REPO, kpimon

DATA = REPO / "tests" / "data" / "report"


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("report-cli") / "data"
    proc = kpimon(
        "replay",
        "--rules", str(DATA / "rules.yaml"),
        "--data", str(DATA / "samples.csv"),
        "--step", "1m",
        "--storage.path", str(directory),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return directory


def test_markdown_report_matches_the_golden_file(journal: Path) -> None:
    # (the golden journal has a restart at noon too; the report is the same without it)
    proc = kpimon("report", "--period", "day", "--at", "2024-05-01",
                  "--rules", str(DATA / "rules.yaml"), "--storage.path", str(journal))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == (DATA / "day.md").read_text()


def test_report_reads_a_journal_a_running_kpimon_holds(journal: Path) -> None:
    with Journal.open(journal):  # holds the lock, as the daemon does
        proc = kpimon("report", "--at", "2024-05-01", "--format", "json",
                      "--storage.path", str(journal))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [k["kpi"] for k in doc["kpis"]] == ["cpu_utilization", "queue_depth"]
    assert doc["kpis"][0]["owner"] == "?"  # no rule files: owners unknown


def test_a_period_without_data_is_a_report_that_says_so(journal: Path) -> None:
    proc = kpimon("report", "--period", "month", "--at", "2023-01-15",
                  "--storage.path", str(journal))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "No data for this period" in proc.stdout
    assert "Data coverage: 0%" in proc.stdout


def test_no_journal_is_exit_2_with_one_line(tmp_path: Path) -> None:
    proc = kpimon("report", "--storage.path", str(tmp_path / "nothing"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"kpimon report: no journal at {tmp_path / 'nothing'}")
    assert not (tmp_path / "nothing").exists()  # nothing created


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--at", "last tuesday"], "kpimon report: invalid time 'last tuesday'"),
        (["--at", "2024-02-30"], "kpimon report: invalid date '2024-02-30'"),
        (["--tz", "Nowhere/Land"], "kpimon report: unknown time zone 'Nowhere/Land'"),
    ],
)
def test_unusable_options_are_exit_2(journal: Path, flags: list[str], message: str) -> None:
    proc = kpimon("report", "--storage.path", str(journal), *flags)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message)
    assert proc.stderr.count("\n") == 1


def test_usage_errors_are_exit_2(journal: Path) -> None:
    proc = kpimon("report", "--period", "year", "--storage.path", str(journal))
    assert proc.returncode == 2
    assert "invalid choice: 'year'" in proc.stderr


def test_an_invalid_rule_file_is_exit_2(journal: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kpis:\n  - name: x\n")
    proc = kpimon("report", "--rules", str(bad), "--storage.path", str(journal))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{bad}:2:")
