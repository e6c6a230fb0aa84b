"""Reading promtool-format test files (kpimon.ruletest.loader): the model, and every problem
with its FILE:LINE:COL."""

from __future__ import annotations

import math
import textwrap

from kpimon.ruletest.loader import parse_test_file


def _parse(text):
    return parse_test_file(textwrap.dedent(text).lstrip("\n"), "t.yaml")


def _problems(text):
    tf, problems = _parse(text)
    assert tf is None
    return [str(p) for p in problems]


def test_full_file():
    tf, problems = _parse(
        """
        rule_files: [a.yaml, "rules/*.yaml"]
        evaluation_interval: 30s
        group_eval_order: [g1]
        tests:
          - name: first
            interval: 15s
            external_labels: {region: eu}
            external_url: http://example.org
            input_series:
              - series: 'up{job="a"}'
                values: '1+1x2 _ stale'
            alert_rule_test:
              - eval_time: 5m
                alertname: cpu
                exp_alerts:
                  - exp_labels: {severity: warning, instance: a}
                    exp_annotations: {summary: hi}
              - eval_time: 1m
                alertname: cpu
            promql_expr_test:
              - expr: up
                eval_time: 1m30s
                exp_samples:
                  - labels: 'up{job="a"}'
                    value: 1e3
                  - labels: '{}'
                    value: .nan
          - input_series: []
        """
    )
    assert problems == []
    assert tf is not None
    assert [p.pattern for p in tf.rule_files] == ["a.yaml", "rules/*.yaml"]
    assert tf.evaluation_interval_ms == 30_000
    assert tf.group_eval_order == ("g1",)
    first, second = tf.tests
    assert first.title == "tests[0] (first)"
    assert second.title == "tests[1]"
    assert first.interval_ms == 15_000
    assert second.interval_ms == 30_000  # defaults to evaluation_interval
    assert first.external_labels == (("region", "eu"),)
    (series,) = first.input_series
    assert series.labels == (("__name__", "up"), ("job", "a"))
    assert series.values[:4] == (1.0, 2.0, 3.0, None)
    alert = first.alert_tests[0]
    assert alert.eval_time_ms == 300_000
    assert alert.exp_alerts[0].labels == (
        ("alertname", "cpu"),
        ("instance", "a"),
        ("severity", "warning"),
    )
    assert alert.exp_alerts[0].annotations == (("summary", "hi"),)
    assert first.alert_tests[1].exp_alerts == ()
    promql = first.promql_tests[0]
    assert promql.eval_time_ms == 90_000
    assert promql.expr.text == "up"
    assert promql.exp_samples[0].value == 1000.0
    assert promql.exp_samples[1].labels == ()
    assert math.isnan(promql.exp_samples[1].value)
    assert first.max_eval_time_ms() == 300_000


def test_defaults():
    tf, problems = _parse("tests: [{}]\n")
    assert problems == []
    assert tf is not None
    assert tf.evaluation_interval_ms == 60_000
    assert tf.tests[0].interval_ms == 60_000


def test_problems_have_positions():
    problems = _problems(
        """
        rule_file: [a.yaml]
        evaluation_interval: 1 minute
        tests:
          - intervall: 1m
            transition_test: []
            input_series:
              - series: 'up{job=~"a"}'
                values: '1 2 x'
              - series: 'up'
                values: '1+2'
              - series: '{job="a"}'
                values: '1'
            alert_rule_test:
              - eval_time: 5m
                exp_alerts: [{exp_labelz: {}}]
            promql_expr_test:
              - expr: 'rate(up[5m]'
                eval_time: 1m
              - expr: up
                exp_samples:
                  - labels: 'up{'
                    value: one
        """
    )
    assert problems == [
        't.yaml:1:1: unknown key "rule_file" (did you mean "rule_files"?)',
        't.yaml:2:22: evaluation_interval: invalid duration "1 minute": no spaces allowed; '
        "write 1m",
        't.yaml:4:5: tests[0]: unknown key "intervall" (did you mean "interval"?)',
        "t.yaml:7:24: tests[0].input_series[0].series: invalid series 'up{job=~\"a\"}': a "
        'series gives label values with "=", not "=~"',
        "t.yaml:8:22: tests[0].input_series[0].values: unexpected series item; expected a "
        'number, "stale", "_", "a+bxN", "a-bxN", "axN" or "_xN" (got "x" at character 5-5)',
        "t.yaml:10:18: tests[0].input_series[1].values: unexpected series item; expected a "
        'number, "stale", "_", "a+bxN", "a-bxN", "axN" or "_xN" (got "1+2" at character 1-3)',
        "t.yaml:11:17: tests[0].input_series[2].series: an input series needs a metric name",
        "t.yaml:14:9: tests[0].alert_rule_test[0]: an alert_rule_test needs an alertname (the "
        "KPI's name)",
        't.yaml:15:23: tests[0].alert_rule_test[0].exp_alerts[0]: unknown key "exp_labelz" '
        '(did you mean "exp_labels"?)',
        "t.yaml:17:15: tests[0].promql_expr_test[0].expr: invalid PromQL: unclosed left "
        "parenthesis",
        "t.yaml:21:25: tests[0].promql_expr_test[1].exp_samples[0].labels: invalid series "
        "'up{': unexpected end of series, expected a label name or '}'",
        "t.yaml:22:20: tests[0].promql_expr_test[1].exp_samples[0].value: expected a number, "
        'got "one"',
    ]


def test_yaml_error_and_empty_file():
    (problem,) = _problems("tests: [\n")
    assert problem.startswith("t.yaml:2:1: YAML syntax error")
    assert _problems("") == ["t.yaml:1:1: empty test file (expected tests)"]
    assert _problems("- a\n") == ["t.yaml:1:1: expected a mapping, got a list"]
