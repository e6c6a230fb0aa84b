"""``slos:`` and ``services:`` in rule files: what they compile into, and every error at once
with its position."""

from __future__ import annotations

import io

import pytest

from kpimon.check import run_check
from kpimon.config.loader import build_config
from kpimon.config.rules import parse_rules
from kpimon.errors import ConfigError
from kpimon.slo.model import GOOGLE_ALERTS

GOOD = """
slos:
  - name: api
    owner: team-a
    objective: 99.5
    window: 28d
    sli:
      error_query: sum(increase(req_total{code=~"5.."}[{{.window}}]))
      total_query: sum(increase(req_total[{{ .window }}]))
    labels: {team: a}
"""


def problems(text: str) -> list[str]:
    _, found = parse_rules(text, "r.yaml")
    return sorted(str(p) for p in found)


def test_an_slo_compiles_into_one_kpi_per_alert_and_a_no_data_kpi() -> None:
    kpis, found = parse_rules(GOOD, "r.yaml")
    assert found == []
    assert [k.name for k in kpis] == [
        "api:burn_1h_5m",
        "api:burn_6h_30m",
        "api:burn_3d_6h",
        "api:sli_no_data",
    ]
    page = kpis[0]
    assert [(lv.name, lv.direction, lv.threshold) for lv in page.levels] == [
        ("critical", "above", 14.4)
    ]
    assert [(lv.name, lv.threshold) for lv in kpis[2].levels] == [("warning", 1.0)]
    assert dict(page.labels) == {"slo": "api", "team": "a"}
    assert page.owner == "team-a"
    assert page.expr.max_range_s == 3600
    assert "[1h]" in page.expr.text
    assert "[5m]" in page.expr.text
    assert "/ 0.005" in page.expr.text
    assert dict(page.annotations)["summary"] == (
        "SLO api: error budget burning at {{ value }}x over both 1h and 5m (page above 14.4x: "
        "2.1429% of the 4w budget in 1h)"
    )
    no_data = kpis[3]
    assert no_data.expr.text == "sum(absent((sum(increase(req_total[5m]))))) or vector(0)"
    assert [(lv.name, lv.threshold, lv.for_s) for lv in no_data.levels] == [
        ("critical", 0.0, 600.0)
    ]


def test_the_defaults_are_the_sre_workbook_windows() -> None:
    assert [(a.severity, a.long_s, a.short_s, a.factor) for a in GOOGLE_ALERTS] == [
        ("critical", 3600, 300, 14.4),
        ("critical", 21600, 1800, 6.0),
        ("warning", 259200, 21600, 1.0),
    ]


def test_min_events_multiplies_by_the_guard_and_overrides_replace_the_defaults() -> None:
    text = GOOD.replace(
        "    labels: {team: a}",
        "    min_events: 50\n"
        "    alerts:\n"
        "      - {severity: warning, long: 2h, short: 10m, factor: 3, for: 5m}\n"
        "    no_data_alert: {for: 3m, severity: warning}",
    )
    kpis, found = parse_rules(text, "r.yaml")
    assert found == []
    assert [k.name for k in kpis] == ["api:burn_2h_10m", "api:sli_no_data"]
    assert kpis[0].expr.text.endswith("* ((sum(increase(req_total[2h]))) >= bool 50)")
    assert [(lv.name, lv.threshold, lv.for_s) for lv in kpis[0].levels] == [("warning", 3.0, 300.0)]
    assert "[10m]" in kpis[1].expr.text
    assert [(lv.name, lv.for_s) for lv in kpis[1].levels] == [("warning", 180.0)]


def test_every_slo_error_at_once_with_positions() -> None:
    text = """slos:
  - name: api
    owner: team
    objective: 100
    window: thirty days
    sli:
      error_query: sum(increase(req_total{code="500"}[5m]))
      total_query: sum(increase(req_total[{{.window}}]))
    min_events: -1
    alerts:
      - {severity: page, long: 5m, short: 1h, factor: 0}
      - {severity: warning, long: 1h, short: 5m, factor: 2, fro: 1m}
    labels: {slo: x}
    objectiv: 99
  - name: api
    owner: team
    objective: 99
    sli: {error_query: 'a[{{.window}}]', good_query: 'b[{{.window}}]', total_query: x}
"""
    assert problems(text) == [
        'r.yaml:11:20: slos[0].alerts[0].severity: expected warning or critical, got "page"',
        "r.yaml:11:43: slos[0].alerts[0].short: the short window (1h) must be shorter than the "
        "long one (5m); the workbook uses 1/12 of it",
        "r.yaml:11:55: slos[0].alerts[0].factor: a burn-rate factor must be greater than 0, got 0",
        'r.yaml:12:61: slos[0].alerts[1]: unknown key "fro" (did you mean "for"?)',
        'r.yaml:13:14: slos[0].labels.slo: label "slo" is reserved (kpimon sets alertname, '
        "severity, kpi and slo itself)",
        'r.yaml:14:5: slos[0]: unknown key "objectiv" (did you mean "objective"?)',
        'r.yaml:15:11: slos[1].name: duplicate SLO name "api" (first defined at line 2, column 11)',
        'r.yaml:18:42: slos[1].sli: an SLI has exactly one of "error_query", "good_query" '
        '(each with "total_query") or "probe", got error_query and good_query',
        "r.yaml:4:16: slos[0].objective: objective is a percentage of good events between 0 "
        "and 100 (exclusive), e.g. 99.9; got 100",
        'r.yaml:5:13: slos[0].window: invalid duration "thirty days": expected whole numbers '
        "each followed by a unit (y, w, d, h, m, s, ms), e.g. 30s, 5m or 1h30m",
        "r.yaml:7:20: slos[0].sli.error_query: the query must contain {{.window}} where the "
        'window goes, e.g. sum(increase(http_requests_total{code=~"5.."}[{{.window}}]))',
        "r.yaml:9:17: slos[0].min_events: must be at least 0, got -1",
    ]


def test_rate_in_total_query_with_min_events_is_refused() -> None:
    text = GOOD.replace("increase(req_total[{{ .window }}])", "rate(req_total[{{ .window }}])")
    text = text.replace("    labels: {team: a}", "    min_events: 10")
    (message,) = problems(text)
    assert message == (
        "r.yaml:10:17: slos[0].min_events: min_events counts events, but total_query uses "
        "rate(): write increase() so that total_query counts events over the window"
    )


def test_a_query_that_does_not_compile_is_reported_at_the_sli() -> None:
    text = GOOD.replace('code=~"5.."', "code=~")
    (message,) = problems(text)
    assert (
        message == "r.yaml:8:7: slos[0].sli: api:burn_1h_5m: invalid PromQL: invalid promql query"
    )


def test_a_default_alert_longer_than_the_window_is_an_error() -> None:
    (message,) = problems(GOOD.replace("window: 28d", "window: 1d"))
    assert message == (
        "r.yaml:6:13: slos[0].window: the default burn-rate alerts read up to 3d, longer "
        "than the SLO window 1d; set alerts"
    )


def test_a_generated_name_clashing_with_a_kpi_is_a_duplicate_kpi_name() -> None:
    text = (
        """kpis:
  - {name: "api:burn_1h_5m", owner: o, expr: up, levels: {warning: {above: 1}}}
"""
        + GOOD
    )
    (message,) = problems(text)
    assert message == (
        'r.yaml:5:11: slos[0].name: duplicate KPI name "api:burn_1h_5m" (first defined at '
        "line 2, column 12)"
    )


def test_probe_slis() -> None:
    ok = "slos:\n  - {name: w, owner: o, objective: 99, sli: {probe: 'probe_success{job=\"w\"}'}}\n"
    kpis, found = parse_rules(ok, "r.yaml")
    assert found == []
    assert 'sum(count_over_time(probe_success{job="w"}[1h]))' in kpis[0].expr.text
    bad = (
        "slos:\n  - {name: w, owner: o, objective: 99, "
        "sli: {probe: 'probe_success[{{.window}}]', total_query: x}}\n"
    )
    assert problems(bad) == [
        "r.yaml:2:53: slos[0].sli.probe: a probe SLI is a selector such as "
        'probe_success{job="web"}; kpimon adds the window itself (no {{.window}})',
        'r.yaml:2:83: slos[0].sli: a probe SLI counts probe results itself; drop "total_query"',
    ]


SERVICES = """
kpis:
  - {name: cpu, owner: o, expr: up, levels: {warning: {above: 1}}}
  - {name: memory, owner: o, expr: up, levels: {warning: {above: 1}}}
services:
  - name: shop
    owner: o
    kpis:
      - {kpi: cpu, importance: 11}
      - {kpi: memroy, importance: 3}
      - {kpi: memory, importance: 12}
      - {kpi: cpu, importance: -1}
  - name: shop
    owner: o
    kpis: []
"""


def test_service_errors_unknown_kpi_with_a_hint_importance_and_duplicates() -> None:
    assert problems(SERVICES) == [
        'r.yaml:10:15: services[0].kpis[1].kpi: unknown KPI "memroy" (did you mean "memory"?) '
        "(a service names KPIs of its own rule file or of one loaded before it)",
        "r.yaml:11:35: services[0].kpis[2].importance: importance is 0 to 11 (0: not scored, "
        "11: a critical KPI makes the service critical), got 12",
        'r.yaml:12:15: services[0].kpis[3].kpi: duplicate KPI in this service "cpu" (first '
        "defined at line 9, column 15)",
        "r.yaml:12:32: services[0].kpis[3].importance: must be at least 0, got -1",
        'r.yaml:13:11: services[1].name: duplicate service name "shop" (first defined at line '
        "6, column 11)",
        "r.yaml:15:11: services[1].kpis: a service needs at least one KPI",
    ]


def test_services_and_slos_reach_the_daemon_config_across_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(
        "services:\n  - name: api\n    owner: o\n"
        "    kpis: [{kpi: 'api:burn_1h_5m', importance: 11}]\n"
    )
    cfg = build_config("rule_files: [a.yaml, b.yaml]\n", str(tmp_path / "kpimon.yml"))
    assert [s.name for s in cfg.slos] == ["api"]
    assert [(s.name, [(m.kpi, m.importance) for m in s.kpis]) for s in cfg.services] == [
        ("api", [("api:burn_1h_5m", 11)])
    ]
    assert len(cfg.kpis) == 4
    # Retention: the longest raw range the SLO's KPIs read (3d), not its 30-day window.
    assert cfg.retention_s() < 3 * 86400 + 3600
    # A service before the file defining its KPI: unknown there.
    with pytest.raises(ConfigError) as err:
        build_config("rule_files: [b.yaml, a.yaml]\n", str(tmp_path / "kpimon.yml"))
    assert 'unknown KPI "api:burn_1h_5m"' in str(err.value.problems[0])


def test_kpimon_check_counts_generated_kpis() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_check(["rules/slo-example.yaml"], out, err) == 0, err.getvalue()
    assert out.getvalue() == "rules/slo-example.yaml: ok (5 KPIs, 1 SLO, 1 service)\n"
