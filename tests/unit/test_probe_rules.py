"""rules/availability.yaml is valid, packaged, and its tests (rules/tests/) pass and bite."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest
import yaml

from kpimon.cli import main
from kpimon.config.rules import parse_rules

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules" / "availability.yaml"
TESTS = ROOT / "rules" / "tests" / "availability_test.yaml"


def test_the_rule_file_checks_and_is_the_packaged_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(RULES)]) == 0
    assert "ok (6 KPIs)" in capsys.readouterr().out
    packaged = importlib.resources.files("kpimon").joinpath("rules/availability.yaml")
    assert packaged.read_text(encoding="utf-8") == RULES.read_text(encoding="utf-8")
    kpis, problems = parse_rules(RULES.read_text(encoding="utf-8"), str(RULES))
    assert problems == []
    assert [k.name for k in kpis] == [
        "probe_uptime_1h",
        "probe_uptime_1d",
        "probe_uptime_30d",
        "probe_latency_p95",
        "certificate_days_left",
        "host_uptime",
    ]
    for kpi in kpis:  # usable as they are: an owner, a unit, a target and levels each
        assert kpi.owner
        assert kpi.unit != "none" or kpi.name == "certificate_days_left"
        assert kpi.target is not None
        assert kpi.levels
    # the longest range read is a day: the store does not keep 30 days of every series
    assert max(k.expr.max_range_s for k in kpis) == 86400


def test_the_packaged_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(TESTS)]) == 0
    out, err = capsys.readouterr()
    assert "SUCCESS" in out
    assert "6 passed, 0 failed" in out
    assert "NOTE" not in err


@pytest.mark.parametrize(
    ("change", "loosened", "group"),
    [
        ("critical: {below: 95, for: 2m, clear: 97}", "critical: {below: 80, for: 2m}", 0),
        ("warning: {below: 99.5, for: 10m}", "warning: {below: 99.2, for: 10m}", 1),
        ("kpimon_probe_attempts_30d >= 100", "kpimon_probe_attempts_30d >= 1000", 2),
        ("critical: {above: 5, for: 10m, clear: 4}", "critical: {above: 7, for: 10m}", 3),
        ("critical: {below: 3, for: 10m}", "critical: {below: 2, for: 10m}", 4),
        ("warning: {below: 600}", "warning: {below: 300}", 5),
    ],
)
def test_each_kpi_is_pinned_by_its_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, loosened: str, group: int
) -> None:
    """Loosening a KPI makes its test group fail: the tests are not vacuous."""
    text = RULES.read_text(encoding="utf-8")
    assert text.count(change) == 1
    tests = yaml.safe_load(TESTS.read_text(encoding="utf-8"))
    tests["tests"] = [tests["tests"][group]]  # only the group concerned, to keep this quick
    (tmp_path / "tests").mkdir()
    test_file = tmp_path / "tests" / "availability_test.yaml"
    test_file.write_text(yaml.safe_dump(tests))
    (tmp_path / "availability.yaml").write_text(text)
    assert main(["test", str(test_file)]) == 0, capsys.readouterr()
    (tmp_path / "availability.yaml").write_text(text.replace(change, loosened))
    assert main(["test", str(test_file)]) == 1
    out, err = capsys.readouterr()
    assert "1 test group in 1 file: 0 passed, 1 failed" in out + err
