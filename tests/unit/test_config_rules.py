"""KPI rule files: models, defaults, semantics helpers, cross-file uniqueness."""

from __future__ import annotations

import math
from importlib import resources

import pytest

from kpimon.config.models import Kpi, Level, NoData, Threshold
from kpimon.config.rules import is_rule_file, parse_rules
from kpimon.config.yamlload import load_yaml
from kpimon.errors import Position

FULL = """\
kpis:
  - name: cpu_utilization
    help: Share of CPU time not idle, per host.
    owner: platform-team
    unit: percent
    expr: 100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))
    source: local
    target: {below: 70}
    levels:
      critical: {above: 90, for: 10m}
      warning:  {above: 70, for: 45m, clear: 65, clear_for: 5m}
    max_gap: 1m
    no_data: {after: 10m, resolve_after: 2h}
    labels: {team: platform, port: 8080}
    annotations:
      summary: "CPU on {{ labels.instance }} at {{ value }}%"
      runbook_url: https://runbooks.example/cpu
"""


def one(text: str) -> Kpi:
    kpis, problems = parse_rules(text, "r.yaml")
    assert problems == []
    assert len(kpis) == 1
    return kpis[0]


def test_full_kpi() -> None:
    kpi = one(FULL)
    assert kpi.name == "cpu_utilization"
    assert kpi.help == "Share of CPU time not idle, per host."
    assert kpi.owner == "platform-team"
    assert kpi.unit == "percent"
    assert kpi.expr.text.startswith("100 * (1 - avg by (instance)")
    assert kpi.expr.metric_names == frozenset({"node_cpu_seconds_total"})
    assert kpi.expr.max_range_s == 300.0
    assert kpi.source == "local"
    assert kpi.target == Threshold(direction="below", value=70.0)
    # Levels come least severe first, whatever the order in the file.
    assert [lv.name for lv in kpi.levels] == ["warning", "critical"]
    warning, critical = kpi.levels
    assert warning == Level(
        name="warning",
        direction="above",
        threshold=70.0,
        for_s=2700.0,
        clear=65.0,
        clear_for_s=300.0,
        position=Position("r.yaml", 11, 17),
    )
    assert critical.clear == 90.0  # clear defaults to the threshold
    assert critical.clear_for_s == 0.0
    assert kpi.max_gap_s == 60.0
    assert kpi.no_data == NoData(after_s=600.0, resolve_after_s=7200.0)
    assert kpi.semantics == "default"
    assert kpi.labels == (("port", "8080"), ("team", "platform"))
    assert kpi.annotations == (
        ("summary", "CPU on {{ labels.instance }} at {{ value }}%"),
        ("runbook_url", "https://runbooks.example/cpu"),
    )
    assert kpi.file == "r.yaml"
    assert kpi.position == Position("r.yaml", 2, 5)
    assert kpi.expr_position == Position("r.yaml", 6, 11)
    assert kpi.level("warning") is warning
    assert kpi.level("page") is None


def test_defaults() -> None:
    kpi = one(
        "kpis:\n  - {name: up_ratio, owner: me, expr: avg(up), levels: {critical: {below: 1}}}\n"
    )
    assert kpi.help == ""
    assert kpi.unit == "none"
    assert kpi.source == "local"
    assert kpi.target is None
    assert kpi.max_gap_s == 0.0
    assert kpi.no_data == NoData(after_s=300.0, resolve_after_s=3600.0)
    assert kpi.semantics == "default"
    assert kpi.labels == ()
    assert kpi.annotations == ()
    (level,) = kpi.levels
    assert (level.direction, level.threshold, level.for_s, level.clear, level.clear_for_s) == (
        "below",
        1.0,
        0.0,
        1.0,
        0.0,
    )


def test_keep_firing_for_is_an_alias_of_clear_for() -> None:
    kpi = one(
        "kpis:\n  - name: k\n    owner: me\n    expr: up\n    semantics: prometheus\n"
        "    levels: {warning: {below: 1, for: 5m, keep_firing_for: 10m}}\n"
    )
    assert kpi.semantics == "prometheus"
    assert kpi.levels[0].clear_for_s == 600.0


@pytest.mark.parametrize("number", ["1e3", "1000", "1000.0", "+1e3", "1_000"])
def test_numbers_as_yaml_writes_them(number: str) -> None:
    kpi = one(
        f"kpis:\n  - {{name: k, owner: me, expr: up, levels: {{warning: {{above: {number}}}}}}}\n"
    )
    assert kpi.levels[0].threshold == 1000.0


def test_no_data_after_only_keeps_resolve_default() -> None:
    kpi = one(
        "kpis:\n  - {name: k, owner: me, expr: up, levels: {warning: {above: 1}}, "
        "no_data: {after: 1m}}\n"
    )
    assert kpi.no_data == NoData(after_s=60.0, resolve_after_s=3600.0)


def test_level_and_target_helpers() -> None:
    above = Level(
        name="warning", direction="above", threshold=70, clear=65, position=Position("f", 1, 1)
    )
    assert above.breached(70.5)
    assert not above.breached(70)
    assert not above.breached(math.nan)
    assert above.beyond_clear(66)
    assert not above.beyond_clear(65)
    below = Level(
        name="critical", direction="below", threshold=10, clear=15, position=Position("f", 1, 1)
    )
    assert below.breached(9.9)
    assert not below.breached(10)
    assert below.beyond_clear(14)
    assert not below.beyond_clear(15)
    assert Threshold(direction="below", value=70).met(69) is True
    assert Threshold(direction="below", value=70).met(70) is False
    assert Threshold(direction="above", value=600).met(601) is True


def test_duplicate_names_across_files_share_seen() -> None:
    seen: dict[str, Position] = {}
    text = "kpis:\n  - {name: k, owner: me, expr: up, levels: {warning: {above: 1}}}\n"
    first, problems = parse_rules(text, "a.yaml", seen)
    assert len(first) == 1
    assert problems == []
    second, problems = parse_rules(text, "b.yaml", seen)
    assert second == ()
    assert [str(p) for p in problems] == [
        'b.yaml:2:12: kpis[0].name: duplicate KPI name "k" (first defined at a.yaml:2:12)'
    ]


def test_invalid_kpis_are_dropped_valid_ones_kept() -> None:
    text = (
        "kpis:\n"
        "  - {name: good, owner: me, expr: up, levels: {warning: {above: 1}}}\n"
        "  - {name: bad, owner: me, expr: up, levels: {warning: {above: x}}}\n"
    )
    kpis, problems = parse_rules(text, "r.yaml")
    assert [k.name for k in kpis] == ["good"]
    assert [str(p) for p in problems] == [
        'r.yaml:3:64: kpis[1].levels.warning.above: expected a number, got "x"'
    ]


@pytest.mark.parametrize("text", ["", "# nothing\n", "kpis:\n", "kpis: []\n"])
def test_empty_rule_files_define_nothing(text: str) -> None:
    assert parse_rules(text, "r.yaml") == ((), [])


def test_is_rule_file() -> None:
    assert is_rule_file(load_yaml("kpis: []\n", "f")[0])
    assert is_rule_file(load_yaml("groups: []\n", "f")[0])
    assert not is_rule_file(load_yaml("global: {}\n", "f")[0])
    assert not is_rule_file(load_yaml("- kpis\n", "f")[0])
    assert not is_rule_file(None)


def test_packaged_host_rules_load() -> None:
    text = resources.files("kpimon").joinpath("rules/host.yaml").read_text(encoding="utf-8")
    kpis, problems = parse_rules(text, "host.yaml")
    assert problems == []
    assert kpis
    assert all(kpi.owner and kpi.levels for kpi in kpis)


def test_flapping_defaults_and_values():
    from kpimon.config.models import Flapping
    from kpimon.kpi.engine import machine_rule

    kpi = one(FULL)
    assert kpi.flapping == Flapping(high=30, low=25)
    kpi = one(FULL.replace("    max_gap: 1m\n", "    max_gap: 1m\n    flapping: {high: 50}\n"))
    assert kpi.flapping == Flapping(high=50, low=25)
    rule = machine_rule(kpi)
    assert (rule.flapping_high, rule.flapping_low) == (50, 25)
