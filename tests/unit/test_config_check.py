"""``kpimon check``: exit codes, output lines, file-kind detection."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kpimon.check import run_check

REPO = Path(__file__).resolve().parents[2]
RULES = "kpis:\n  - {name: k, owner: me, expr: up, levels: {warning: {below: 1}}}\n"


def check(*paths: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_check(list(paths), out, err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(name="files")
def _files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "k.yaml").write_text(RULES)
    (tmp_path / "kpimon.yml").write_text(
        "scrape_configs:\n"
        "  - {job_name: a, static_configs: [{targets: ['127.0.0.1:1']}]}\n"
        "  - {job_name: b}\n"
        "rule_files: ['rules/*.yaml']\n"
    )
    (tmp_path / "bad.yaml").write_text("kpis:\n  - name: x\n")
    return tmp_path


def test_valid_files(files: Path) -> None:
    assert check("kpimon.yml", "rules/k.yaml") == (
        0,
        "kpimon.yml: ok (2 scrape configs, 1 KPI)\nrules/k.yaml: ok (1 KPI)\n",
        "",
    )


def test_empty_config_is_valid(files: Path) -> None:
    (files / "empty.yml").write_text("")
    assert check("empty.yml") == (0, "empty.yml: ok (0 scrape configs, 0 KPIs)\n", "")


def test_invalid_file_among_valid_ones(files: Path) -> None:
    status, out, err = check("kpimon.yml", "bad.yaml", "rules/k.yaml")
    assert status == 1
    assert out == "kpimon.yml: ok (2 scrape configs, 1 KPI)\nrules/k.yaml: ok (1 KPI)\n"
    assert err == (
        'bad.yaml:2:5: kpis[0]: missing required key "owner"\n'
        'bad.yaml:2:5: kpis[0]: missing required key "expr"\n'
        'bad.yaml:2:5: kpis[0]: missing required key "levels"\n'
    )


def test_config_with_an_invalid_rule_file(files: Path) -> None:
    (files / "rules" / "bad.yaml").write_text("kpis: [{name: j, owner: me, expr: up}]\n")
    status, out, err = check("kpimon.yml")
    assert status == 1
    assert out == ""
    assert err == 'rules/bad.yaml:1:8: kpis[0]: missing required key "levels"\n'


def test_unreadable_files(files: Path) -> None:
    status, out, err = check("missing.yml", "rules", "rules/k.yaml")
    assert status == 1
    assert out == "rules/k.yaml: ok (1 KPI)\n"
    assert err == (
        "missing.yml: cannot read: No such file or directory\nrules: cannot read: Is a directory\n"
    )


def test_no_files_is_a_usage_error() -> None:
    assert check() == (2, "", "usage: kpimon check FILE...\n")


def test_the_shipped_files_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    shipped = ["kpimon/rules/host.yaml"]
    shipped += [str(p.relative_to(REPO)) for p in sorted((REPO / "rules").glob("*.yaml"))]
    shipped += [str(p.relative_to(REPO)) for p in sorted((REPO / "deploy").glob("*.yml"))]
    status, _, err = check(*shipped)
    assert err == ""
    assert status == 0
