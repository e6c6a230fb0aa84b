"""``kpimon test``: KPIs run over promtool-format test files (kpimon.ruletest.runner/command).

Each test writes a rule file and a test file to a temporary directory and runs the command as a
user would (``kpimon.cli.main``), checking exit status and report.
"""

from __future__ import annotations

import textwrap

import pytest

from kpimon.cli import main

RULES = """
kpis:
  - name: cpu
    owner: team
    expr: cpu_busy
    levels:
      warning: {above: 70, for: 2m}
      critical: {above: 90}
    labels: {team: platform}
    annotations:
      summary: "{{ $labels.instance }} at {{ $value }} ({{ $externalLabels.region }})"
      url: "{{ $externalURL }}/cpu"
"""


def _run(tmp_path, capsys, test, rules=RULES, name="t.yaml"):
    (tmp_path / "rules.yaml").write_text(textwrap.dedent(rules).lstrip())
    path = tmp_path / name
    path.write_text(textwrap.dedent(test).lstrip())
    code = main(["test", str(path)])
    out, err = capsys.readouterr()
    return code, out, err.replace(str(tmp_path) + "/", "")


def _alert(instance, severity, value):
    return f"""
                  - exp_labels: {{instance: {instance}, severity: {severity}, team: platform}}
                    exp_annotations:
                      summary: "{instance} at {value} (eu)"
                      url: "http://x/cpu\""""


def test_pending_is_not_an_alert_firing_is(tmp_path, capsys):
    code, out, err = _run(
        tmp_path,
        capsys,
        f"""
        rule_files: [rules.yaml]
        tests:
          - external_labels: {{region: eu}}
            external_url: http://x
            input_series:
              - series: 'cpu_busy{{instance="a"}}'
                values: '50 75 80 85 95 60'
            alert_rule_test:
              - {{eval_time: 0m, alertname: cpu}}
              - {{eval_time: 2m, alertname: cpu}}
              - eval_time: 3m
                alertname: cpu
                exp_alerts:{_alert("a", "warning", 85)}
              - eval_time: 4m
                alertname: cpu
                exp_alerts:{_alert("a", "critical", 95)}{_alert("a", "warning", 95)}
              - eval_time: 4m59s
                alertname: cpu
                exp_alerts:{_alert("a", "warning", 95)}{_alert("a", "critical", 95)}
              - {{eval_time: 5m, alertname: cpu}}
              - {{eval_time: 5m, alertname: no_such_kpi}}
        """,
    )
    assert code == 0
    assert err == "  NOTE: alertname no_such_kpi is not the name of any KPI\n"
    assert out.splitlines() == [
        "Unit Testing:  " + str(tmp_path / "t.yaml"),
        "  SUCCESS",
        "",
        "kpimon test: 1 test group in 1 file: 1 passed, 0 failed",
    ]


def test_alert_failure_report(tmp_path, capsys):
    code, _, err = _run(
        tmp_path,
        capsys,
        """
        rule_files: [rules.yaml]
        tests:
          - name: busy
            input_series:
              - series: 'cpu_busy{instance="a"}'
                values: '95'
            alert_rule_test:
              - eval_time: 0m
                alertname: cpu
                exp_alerts:
                  - exp_labels: {instance: a, severity: warning, team: platform}
        """,
    )
    assert code == 1
    assert err.splitlines() == [
        "  FAILED:",
        "  in tests[0] (busy):",
        "    alertname: cpu, time: 0s, ",  # (sic) promtool's trailing blank
        "        exp:[",
        "            0:",
        '              Labels:{alertname="cpu", instance="a", severity="warning", team="platform"}',
        "              Annotations:{}",
        "            ], ",
        "        got:[",
        "            0:",
        '              Labels:{alertname="cpu", instance="a", severity="critical", '
        'team="platform"}',
        '              Annotations:{summary="a at 95 ()", url="/cpu"}',
        "            ]",
        "",
        "kpimon test: 1 test group in 1 file: 0 passed, 1 failed",
    ]


HYSTERESIS = """
kpis:
  - name: lat
    owner: team
    expr: latency
    levels:
      warning: {above: 10, clear: 5, clear_for: 2m}
"""


def test_clearing_is_still_an_open_alert(tmp_path, capsys):
    code, _, err = _run(
        tmp_path,
        capsys,
        """
        rule_files: [rules.yaml]
        tests:
          - input_series:
              - series: 'latency{path="/"}'
                values: '20 8 4 4 4 4'
            alert_rule_test:
              - eval_time: 1m
                alertname: lat
                exp_alerts: [{exp_labels: {path: /, severity: warning}}]
              - eval_time: 3m
                alertname: lat
                exp_alerts: [{exp_labels: {path: /, severity: warning}}]
              - {eval_time: 4m, alertname: lat}
        """,
        rules=HYSTERESIS,
    )
    assert (code, err) == (0, "")


GAPS = """
kpis:
  - name: up_kpi
    owner: team
    expr: up
    levels:
      critical: {below: 1}
  - name: up_prom
    owner: team
    expr: up
    semantics: prometheus
    levels:
      critical: {below: 1}
"""


def test_missing_data_keeps_a_kpi_open_unless_prometheus_semantics(tmp_path, capsys):
    code, _, err = _run(
        tmp_path,
        capsys,
        """
        rule_files: [rules.yaml]
        tests:
          - input_series:
              - series: 'up{job="a"}'
                values: '1 0 stale'
            alert_rule_test:
              - eval_time: 1m
                alertname: up_kpi
                exp_alerts: [{exp_labels: {job: a, severity: critical}}]
              - eval_time: 1m
                alertname: up_prom
                exp_alerts: [{exp_labels: {job: a, severity: critical}}]
              - eval_time: 30m
                alertname: up_kpi
                exp_alerts: [{exp_labels: {job: a, severity: critical}}]
              - {eval_time: 2m, alertname: up_prom}
        """,
        rules=GAPS,
    )
    assert (code, err) == (0, "")


def test_promql_comparison_is_promtools(tmp_path, capsys):
    code, _, err = _run(
        tmp_path,
        capsys,
        """
        rule_files: []
        tests:
          - input_series:
              - series: 'm{a="2"}'
                values: '1 NaN'
              - series: 'm{a="1"}'
                values: '3 3'
              - series: 'm{a="1"}'
                values: '5 5'
            promql_expr_test:
              - expr: m
                eval_time: 0m
                exp_samples:
                  - {labels: 'm{a="2"}', value: 1}
                  - {labels: 'm{a="1"}', value: 5}
              - {expr: 'm > 100', eval_time: 0m, exp_samples: []}
              - {expr: 'm > 100', eval_time: 0m}
              - expr: sum(m{a="1"})
                eval_time: 0m
                exp_samples: [{labels: '{}', value: 5}]
              - expr: '1 + 1'
                eval_time: 0m
                exp_samples: [{labels: '{}', value: 2}]
              - expr: 'm{a="2"}'
                eval_time: 1m
                exp_samples: [{labels: 'm{a="2"}', value: .nan}]
              - expr: 'm{a="1"}'
                eval_time: 1m
                exp_samples: [{labels: 'm{a="1"}', value: 5.000000000000001}]
              - {expr: 'm{a="1"}', eval_time: 1m30s}
        """,
    )
    assert code == 1
    assert err == textwrap.dedent(
        """\
          FAILED:
          in tests[0]:
            expr: "m{a=\\"2\\"}", time: 1m,
                exp: {__name__="m", a="2"} NaN
                got: {__name__="m", a="2"} NaN

            expr: "m{a=\\"1\\"}", time: 1m,
                exp: {__name__="m", a="1"} 5.000000000000001E+00
                got: {__name__="m", a="1"} 5E+00

            expr: "m{a=\\"1\\"}", time: 1m30s,
                exp: nil
                got: {__name__="m", a="1"} 5E+00

        kpimon test: 1 test group in 1 file: 0 passed, 1 failed
        """
    )


def test_alert_between_ticks_uses_the_tick_before(tmp_path, capsys):
    code, _, err = _run(
        tmp_path,
        capsys,
        """
        rule_files: [rules.yaml]
        evaluation_interval: 2m
        tests:
          - interval: 1m
            input_series:
              - series: 'cpu_busy{instance="a"}'
                values: '0 95 95'
            alert_rule_test:
              - {eval_time: 1m, alertname: cpu}
              - {eval_time: 3m59s, alertname: cpu}
        """,
    )
    assert code == 1
    assert "alertname: cpu, time: 3m59s" in err
    assert "alertname: cpu, time: 1m," not in err


def test_a_failing_kpi_stops_its_group(tmp_path, capsys):
    code, _, err = _run(
        tmp_path,
        capsys,
        """
        rule_files: [rules.yaml]
        tests:
          - input_series:
              - {series: 'a{x="1"}', values: '1 1'}
              - {series: 'b{x="1"}', values: '_ 1'}
            alert_rule_test:
              - {eval_time: 0m, alertname: both}
              - {eval_time: 1m, alertname: both}
        """,
        rules="""
        kpis:
          - name: both
            owner: team
            expr: '{__name__=~"a|b"}'
            levels: {warning: {above: 0}}
        """,
    )
    assert code == 1
    assert err.startswith(
        "  FAILED:\n  in tests[0]:\n"
        "    alertname: both, time: 0s, \n"
        '        exp:[], \n        got:[\n            0:\n              Labels:{alertname="both"'
    )
    assert "    rule: both, time: 1m, err: vector contains series with the same label set" in err


def test_prometheus_and_kpimon_templates_are_both_rendered(tmp_path, capsys):
    code, _, err = _run(
        tmp_path,
        capsys,
        """
        rule_files: [rules.yaml]
        tests:
          - input_series: [{series: 'x', values: '5'}]
            alert_rule_test:
              - eval_time: 0m
                alertname: k
                exp_alerts:
                  - exp_labels: {severity: warning}
                    exp_annotations:
                      a: "5"
                      b: "k 5"
                      c: "plain"
        """,
        rules="""
        kpis:
          - name: k
            owner: team
            expr: x
            levels: {warning: {above: 1}}
            annotations:
              a: "{{ $value | humanize }}"
              b: "{{ labels.alertname }} {{ value }}"
              c: "plain"
        """,
    )
    assert code == 0, err
    assert "NOTE" not in err


def test_invalid_files_exit_2_with_positions(tmp_path, capsys):
    code, out, err = _run(
        tmp_path,
        capsys,
        """
        rule_files: [rules.yaml, "missing/*.yaml"]
        tests:
          - input_series: [{series: 'x', values: '5 y'}]
        """,
    )
    assert code == 2
    assert "t.yaml:3:45: tests[0].input_series[0].values: unexpected identifier" in err
    assert out.startswith("Unit Testing:  ")

    code, _, err = _run(
        tmp_path,
        capsys,
        """
        rule_files: [rules.yaml, "missing/*.yaml", nope.yaml]
        tests: []
        """,
        rules="kpis:\n  - name: k\n    owner: team\n    expr: x\n"
        "    levels: {warning: {abov: 1}}\n",
    )
    assert code == 2
    assert "WARNING: no file match pattern missing/*.yaml" in err
    assert 't.yaml:1:44: rule_files[2]: rule file "' in err
    assert 'rules.yaml:5:24: kpis[0].levels.warning: unknown key "abov"' in err

    code, _, err = _run(tmp_path, capsys, "tests: [\n")
    assert code == 2


def test_no_file_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["test"])
    assert info.value.code == 2
    assert "at least one FILE" in capsys.readouterr().err


def test_several_files_summary(tmp_path, capsys):
    ok = tmp_path / "ok.yaml"
    ok.write_text("tests: [{input_series: [], promql_expr_test: [{expr: '1', eval_time: 0m,"
                  " exp_samples: [{labels: '{}', value: 1}]}]}]\n")  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text("tests: [{promql_expr_test: [{expr: '1', eval_time: 0m}]}]\n")
    assert main(["test", str(ok), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out.count("Unit Testing:") == 2
    assert err.endswith("kpimon test: 2 test groups in 2 files: 1 passed, 1 failed\n")


def test_group_eval_order_is_accepted_with_a_note(tmp_path, capsys):
    code, _, err = _run(
        tmp_path,
        capsys,
        """
        rule_files: [rules.yaml]
        group_eval_order: [a, b]
        tests: [{input_series: []}]
        """,
    )
    assert code == 0
    assert "NOTE: group_eval_order is ignored" in err


def test_kpimon_templates_in_annotations_are_rendered_and_errors_fail(tmp_path, capsys):  # type: ignore[no-untyped-def]
    (tmp_path / "rules.yaml").write_text(
        """
kpis:
  - name: load
    owner: ops
    unit: percent
    expr: x
    levels: {warning: {above: 50, for: 2m}}
    annotations:
      summary: "{{ labels.host }} at {{ value }}% (> {{ threshold }}) for {{ for_duration }}"
      level: "{{ level | upper }} since {{ since }}"
"""
    )
    (tmp_path / "t.yaml").write_text(
        """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'x{host="a"}'
        values: '60x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: load
        exp_alerts:
          - exp_labels: {host: a, severity: warning}
            exp_annotations:
              summary: "a at 60% (> 50) for 5m"
              level: "WARNING since 1970-01-01T00:00:00Z"
"""
    )
    code = main(["test", str(tmp_path / "t.yaml")])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    text = (tmp_path / "t.yaml").read_text().replace("for 5m", "for 4m")
    (tmp_path / "t.yaml").write_text(text)
    assert main(["test", str(tmp_path / "t.yaml")]) == 1
    err = capsys.readouterr().err
    assert 'summary="a at 60% (> 50) for 4m"' in err  # expected
    assert 'summary="a at 60% (> 50) for 5m"' in err  # got


def test_an_annotation_that_fails_to_render_shows_as_the_notifier_sends_it(tmp_path, capsys):  # type: ignore[no-untyped-def]
    (tmp_path / "rules.yaml").write_text(
        """
kpis:
  - name: load
    owner: ops
    expr: x
    levels: {warning: {above: 50}}
    annotations:
      summary: "{{ labels.missing }}"
"""
    )
    (tmp_path / "t.yaml").write_text(
        """
rule_files: [rules.yaml]
tests:
  - interval: 1m
    input_series: [{series: 'x', values: '60'}]
    alert_rule_test:
      - eval_time: 0m
        alertname: load
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations: {summary: "x"}
"""
    )
    assert main(["test", str(tmp_path / "t.yaml")]) == 1
    assert 'summary="{{ labels.missing }} (template error: ' in capsys.readouterr().err
