"""The examples of docs/testing.md and rules/tests/host_test.yaml pass ``kpimon test``.

The main example's test file is also run through promtool (tests/integration), so it has no
``transition_test``: that example is a file of its own.
"""

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


def doc_transition_example() -> str:
    """The transition_test file of docs/testing.md (for the example's rule file)."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    (test,) = [b for b in blocks if b.startswith("rule_files:") and "transition_test:" in b]
    return test


def _write_doc_files(root, test):
    rules, _ = doc_example()
    (root / "rules" / "tests").mkdir(parents=True)
    (root / "rules" / "api.yaml").write_text(rules)
    (root / "rules" / "tests" / "api_transitions_test.yaml").write_text(test)


def test_doc_transition_example_passes(tmp_path, capsys, monkeypatch):
    _write_doc_files(tmp_path, doc_transition_example())
    monkeypatch.chdir(tmp_path)
    assert main(["test", "rules/tests/api_transitions_test.yaml"]) == 0, capsys.readouterr().err


def test_doc_transition_failure_is_what_kpimon_prints(tmp_path, capsys, monkeypatch):
    """The documented transition_test failure: the example expecting firing at 6m."""
    text = DOC.read_text(encoding="utf-8")
    block = next(
        b for b in re.findall(r"```text\n(.*?)```", text, flags=re.S) if "transition_test[0]" in b
    )
    _write_doc_files(tmp_path, doc_transition_example().replace("time: 17m", "time: 6m"))
    monkeypatch.chdir(tmp_path)
    assert main(["test", "rules/tests/api_transitions_test.yaml"]) == 1
    assert block in capsys.readouterr().err


def test_packaged_host_tests_pass(capsys):
    assert main(["test", str(ROOT / "rules" / "tests" / "host_test.yaml")]) == 0
    out, err = capsys.readouterr()
    assert "SUCCESS" in out
    assert "2 passed, 0 failed" in out
    # host.yaml's annotations are kpimon templates, rendered as the notifier renders them.
    assert "NOTE" not in err
