"""The YAML examples in docs/rules.md are valid (rule files and daemon configs alike)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kpimon.config.daemon import parse_config
from kpimon.config.rules import parse_rules

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
EXAMPLES = [b for b in BLOCKS if b.startswith(("kpis:", "global:"))]


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("text", EXAMPLES)
def test_example_is_valid(text: str) -> None:
    if text.startswith("kpis:"):
        kpis, problems = parse_rules(text, "docs/rules.md")
        assert problems == []
        assert kpis
    else:
        _, _, problems = parse_config(text, "docs/rules.md")
        assert problems == []
