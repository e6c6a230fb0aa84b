"""The examples of docs/testing.md and rules/tests/host_test.yaml pass ``kpimon test``."""

from __future__ import annotations

import re
from pathlib import Path

from kpimon.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"


def doc_example() -> tuple[str, str]:
    """The rule file and the test file of docs/testing.md's example."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    rules = next(b for b in blocks if b.startswith("kpis:"))
    test = next(b for b in blocks if b.startswith("rule_files:"))
    return rules, test


def test_doc_example_passes(tmp_path, capsys):
    rules, test = doc_example()
    (tmp_path / "api.yaml").write_text(rules)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "api_test.yaml").write_text(test)
    assert main(["test", str(tmp_path / "tests" / "api_test.yaml")]) == 0, capsys.readouterr().err


def test_packaged_host_tests_pass(capsys):
    assert main(["test", str(ROOT / "rules" / "tests" / "host_test.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "SUCCESS" in out
    assert "2 passed, 0 failed" in out
    # host.yaml's annotations are kpimon templates, rendered as the notifier renders them.
    assert "NOTE" not in err
