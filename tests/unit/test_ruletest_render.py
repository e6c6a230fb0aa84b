"""Go's number formatting and the trivial Prometheus alert templates (kpimon.ruletest.render).

The expected strings are what Prometheus 2.42 prints (checked with promtool: ``{{ $value }}`` in
an annotation, and sample values in a failed ``promql_expr_test``).
"""

from __future__ import annotations

import math

import pytest

from kpimon.ruletest.render import expand_template, go_float, go_float_e


@pytest.mark.parametrize(
    ("value", "v", "e"),
    [
        (1234567.0, "1.234567e+06", "1.234567E+06"),
        (123456.0, "123456", "1.23456E+05"),
        (0.00001, "1e-05", "1E-05"),
        (0.0001, "0.0001", "1E-04"),
        (-0.0001, "-0.0001", "-1E-04"),
        (1e21, "1e+21", "1E+21"),
        (95.0, "95", "9.5E+01"),
        (0.1, "0.1", "1E-01"),
        (1.0000000000000002, "1.0000000000000002", "1.0000000000000002E+00"),
        (0.0, "0", "0E+00"),
        (-0.0, "-0", "-0E+00"),
        (5e-324, "5e-324", "5E-324"),
        (math.inf, "+Inf", "+Inf"),
        (-math.inf, "-Inf", "-Inf"),
        (math.nan, "NaN", "NaN"),
    ],
)
def test_go_float(value, v, e):
    assert go_float(value) == v
    assert go_float_e(value) == e


def _expand(text):
    return expand_template(
        text,
        labels={"job": "api"},
        value=0.5,
        external_labels={"region": "eu"},
        external_url="http://x",
    )


def test_trivial_templates_are_expanded():
    assert _expand("{{ $labels.job }} {{$value}} {{ .Labels.job }} {{ .Value }}") == (
        "api 0.5 api 0.5"
    )
    assert _expand("{{ $externalLabels.region }} {{ $externalURL }}/{{ $labels.nope }}.") == (
        "eu http://x/."
    )
    assert _expand("no template") == "no template"


@pytest.mark.parametrize(
    "text", ["{{ $value | humanize }}", "{{ labels.job }}", "{{- $value }}", "{{ if 1 }}x{{ end }}"]
)
def test_other_templates_are_left_alone(text):
    assert _expand(text) is None
