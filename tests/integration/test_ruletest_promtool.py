"""``kpimon test`` against Debian's promtool 2.42 (ARCHITECTURE §5 "Compatibility", §6).

- Series notation: the values kpimon expands are checked by promtool (it must pass a test file
  expecting exactly them), and every string kpimon rejects, promtool rejects too.
- Alerts: for single-level KPIs with default options, the expectations of an ``alert_rule_test`` at
  every evaluation time are generated from promtool running the equivalent Prometheus alerting
  rule (``expr > x`` or ``expr < x`` with the same ``for``, labels and annotations). The file is
  then checked to pass under promtool, and the very same file, with ``rule_files`` naming the
  kpimon rule file instead, must pass ``kpimon test``: on gap-free data with default semantics,
  and on data with gaps, staleness markers and NaN with ``semantics: prometheus``.
"""

from __future__ import annotations

import io
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from kpimon.config.durations import format_duration, parse_duration
from kpimon.labels import format_labels
from kpimon.ruletest import expand_values, parse_metric, run_tests
from kpimon.store import is_stale
from tests.helpers.promql import run_promtool

# -- series notation ---------------------------------------------------------------------------

VALID = [
    "1 2 3",
    "0+10x3",
    "-2+4x3",
    " 1-2x4",
    "1x4",
    "1 _x3 stale 4",
    "_ _x0 2",
    "stale+1x2 7",
    "010 08 0.5 .5 1. 1e3 1E-2 -010",
    "Inf -Inf +5 inf NaN nan INF",
    "-Inf+1x2",
    "1e308+1e308x1",
    "0.1+0.1x12",
    "1.5-0.7x9",
    "5x03",
    "9007199254740993 123456789012345678901234567890",
    "-0 0",
]
INVALID = [
    "1 2 abc",
    "1+2",
    "1x",
    "1x2.5",
    "1--2x3",
    "1_0",
    "1e",
    "Infx3",
    "stalex2",
    "Stale",
    "_x",
]
STEP = "10m"  # longer than the 5m lookback: a missing sample is no sample


def _series_file(path: Path, values: str) -> None:
    expanded = expand_values(values)
    tests = []
    for i, v in enumerate(expanded):
        at = format_duration(i * parse_duration(STEP))
        if v is None or is_stale(_arr(v))[0]:
            tests.append({"expr": "m", "eval_time": at, "exp_samples": []})
        elif math.isnan(v):  # promtool 2.42 never finds NaN equal to NaN: count it instead
            tests.append(
                {"expr": "count(m != m)", "eval_time": at, "exp_samples": [_sample("{}", 1)]}
            )
        else:
            tests.append({"expr": "m", "eval_time": at, "exp_samples": [_sample("m", v)]})
    doc = {
        "tests": [
            {
                "interval": STEP,
                "input_series": [{"series": "m", "values": values}],
                "promql_expr_test": tests,
            }
        ]
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))


def _arr(v: float) -> np.ndarray:
    return np.array([v], dtype=np.float64)


def _sample(labels: str, value: float) -> dict[str, object]:
    return {"labels": labels, "value": value}


def test_series_notation_matches_promtool(tmp_path):
    files = []
    for i, values in enumerate(VALID):
        path = tmp_path / f"valid_{i}.yaml"
        _series_file(path, values)
        files.append(path)
    for i, values in enumerate(INVALID):
        path = tmp_path / f"invalid_{i}.yaml"
        doc = {"tests": [{"interval": "1m", "input_series": [{"series": "m", "values": values}]}]}
        path.write_text(yaml.safe_dump(doc))
        files.append(path)
    reports = run_promtool(files)
    for i, values in enumerate(VALID):
        report = reports[tmp_path / f"valid_{i}.yaml"]
        assert report.passed, f"{values!r}: promtool disagrees with kpimon:\n{report.text}"
    for i, values in enumerate(INVALID):
        report = reports[tmp_path / f"invalid_{i}.yaml"]
        assert not report.passed, f"{values!r} is rejected by kpimon, not by promtool"
        assert "expr:" not in report.text, report.text  # a load error, not a failed check


SERIES = [
    "m",
    'm{a="1"}',
    " m{ b = \"2\" , a='1', } ",
    'm{a="x\\ny", b="q\\"uote", c="back\\\\slash"}',
    'm{a="\\x41\\u00e9\\101", b="é ✓"}',
    "m{a=`raw\\n`}",
    '{__name__="m", by="keyword", on="x"}',
    'm{a="1", empty=""}',
]


def test_series_labels_match_promtool(tmp_path):
    """promtool and ``kpimon test`` read each series, and its labels as kpimon prints them,
    alike."""
    groups = []
    for text in SERIES:
        labels = parse_metric(text, input_series=True)
        shown = format_labels(tuple(p for p in labels if p[0] != "__name__"))
        groups.append(
            {
                "input_series": [{"series": text, "values": "7"}],
                "promql_expr_test": [
                    {"expr": "m", "eval_time": "0s", "exp_samples": [_sample("m" + shown, 7)]}
                ],
            }
        )
    path = tmp_path / "labels_test.yaml"
    path.write_text(yaml.safe_dump({"tests": groups}, width=1000, allow_unicode=True))
    report = run_promtool([path])[path]
    assert report.passed, report.text
    out, err = io.StringIO(), io.StringIO()
    assert run_tests([str(path)], out, err) == 0, err.getvalue()
    # A blank between the name and "{" ends an input series to Prometheus' lexer.
    bad = tmp_path / "blank_test.yaml"
    bad.write_text(
        yaml.safe_dump({"tests": [{"input_series": [{"series": 'm {a="1"}', "values": "1"}]}]})
    )
    assert not run_promtool([bad])[bad].passed
    assert run_tests([str(bad)], out, err) == 2


# -- alert compatibility -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    expr: str
    level: str  # warning | critical
    direction: str  # above | below
    threshold: float
    for_: str
    series: tuple[tuple[str, str], ...]
    steps: int  # evaluation ticks checked (every evaluation_interval from 0)
    evaluation_interval: str = "1m"
    interval: str = "1m"
    semantics: str = "default"


ANNOTATIONS = {
    "summary": "{{ $labels.job }} is at {{ $value }}",
    "where": "{{ $externalURL }}/{{ $externalLabels.region }}",
}


def _walk(rng: random.Random, n: int, threshold: float, *, gaps: bool, scale: int) -> str:
    """A random series description around ``threshold``, ``n`` steps long at least; runs and
    gaps last about ``scale`` times longer (so that they span minutes at short intervals)."""
    parts: list[str] = []
    count = 0
    while count < n:
        roll = rng.random()
        if gaps and roll < 0.12:
            k = rng.choice([1, 2, 4, 6, 9]) * scale
            parts.append("_" if k == 1 else f"_x{k}")
            count += k
        elif gaps and roll < 0.18:
            parts.append("stale")
            count += 1
        elif roll < 0.22:
            parts.append("NaN")
            count += 1
        elif roll < 0.45:
            k = rng.randint(1, 6) * scale
            start = round(threshold + rng.uniform(-15, 15), 1)
            step = round(rng.uniform(-4, 4) / scale, 2)
            parts.append(f"{start}{'+' if step >= 0 else '-'}{abs(step)}x{k}")
            count += k + 1
        elif roll < 0.55:
            parts.append(f"{threshold:g}")  # exactly at the threshold: not beyond it
            count += 1
        else:
            k = rng.randint(0, 5) * scale
            value = round(threshold + rng.uniform(-12, 12), 3)
            parts.append(f"{value}x{k}" if k else f"{value}")
            count += k + 1
    return " ".join(parts)


def _scenarios() -> list[Scenario]:
    rng = random.Random(20261122)
    out = []
    fors = ["0s", "1m", "2m30s", "5m", "3m"]
    for i in range(10):
        gaps = i >= 5
        threshold = rng.choice([50.0, 70.0, 0.5, 90.0])
        direction = rng.choice(["above", "below"])
        interval = ["1m", "30s", "1m", "15s", "1m"][i % 5]
        steps = 40
        scale = int(parse_duration("1m") // parse_duration(interval))
        n_samples = steps * scale + 2
        series = tuple(
            (
                f'm{{job="{job}", env="prod"}}',
                _walk(rng, n_samples, threshold, gaps=gaps, scale=scale),
            )
            for job in ("a", "b", "c")
        )
        expr = "m" if i % 3 else 'max by (job) (m{env="prod"})'
        out.append(
            Scenario(
                name=f"{'gaps' if gaps else 'gapfree'}_{i}",
                expr=expr,
                level=rng.choice(["warning", "critical"]),
                direction=direction,
                threshold=threshold,
                for_=fors[i % len(fors)],
                series=series,
                steps=steps,
                interval=interval,
                semantics="prometheus" if gaps else "default",
            )
        )
    return out


def _rule_files(dirpath: Path, sc: Scenario) -> None:
    op = ">" if sc.direction == "above" else "<"
    prom = {
        "groups": [
            {
                "name": "compat",
                "rules": [
                    {
                        "alert": "compat_kpi",
                        "expr": f"{sc.expr} {op} {sc.threshold:g}",
                        "for": sc.for_,
                        "labels": {"severity": sc.level, "team": "compat"},
                        "annotations": ANNOTATIONS,
                    }
                ],
            }
        ]
    }
    kpi: dict[str, object] = {
        "name": "compat_kpi",
        "owner": "compat",
        "expr": sc.expr,
        "levels": {sc.level: {sc.direction: sc.threshold, "for": sc.for_}},
        "labels": {"team": "compat"},
        "annotations": ANNOTATIONS,
    }
    if sc.semantics != "default":
        kpi["semantics"] = sc.semantics
    (dirpath / "prometheus_rules.yaml").write_text(yaml.safe_dump(prom, sort_keys=False))
    (dirpath / "kpimon_rules.yaml").write_text(yaml.safe_dump({"kpis": [kpi]}, sort_keys=False))


def _eval_times(sc: Scenario) -> list[str]:
    tick = parse_duration(sc.evaluation_interval)
    times = [format_duration(k * tick) for k in range(sc.steps + 1)]
    times += [format_duration(k * tick + 20) for k in (3, 11, 17)]  # between ticks
    return times


def _test_file(path: Path, rules: str, sc: Scenario, expected: dict[str, list[dict]]) -> None:
    doc = {
        "rule_files": [rules],
        "evaluation_interval": sc.evaluation_interval,
        "tests": [
            {
                "name": sc.name,
                "interval": sc.interval,
                "external_labels": {"region": "eu"},
                "external_url": "http://alerts.example",
                "input_series": [{"series": s, "values": v} for s, v in sc.series],
                "alert_rule_test": [
                    {"eval_time": t, "alertname": "compat_kpi", "exp_alerts": expected.get(t, [])}
                    for t in _eval_times(sc)
                ],
            }
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000, allow_unicode=True))


_BLOCK = re.compile(
    r"alertname: compat_kpi, time: (\S+), \n\s+exp:.*?, \n\s+got:(.*?)(?=\n\n|\Z)", re.S
)
_GOT = re.compile(r"^\s*Labels:(\{.*\})\n\s*Annotations:(\{.*\}),?$", re.M)


def _expectations(report_text: str) -> dict[str, list[dict]]:
    """What promtool found firing at each time (from the failures of an all-empty file)."""
    out: dict[str, list[dict]] = {}
    for block in _BLOCK.finditer(report_text):
        alerts = []
        for labels_text, annotations_text in _GOT.findall(block.group(2)):
            labels = dict(parse_metric(labels_text))
            del labels["alertname"]
            alerts.append(
                {"exp_labels": labels, "exp_annotations": dict(parse_metric(annotations_text))}
            )
        out[block.group(1)] = alerts
    return out


def test_alert_rule_tests_pass_on_promtool_and_kpimon_alike(tmp_path):
    scenarios = _scenarios()
    gen = []
    for sc in scenarios:
        d = tmp_path / sc.name
        d.mkdir()
        _rule_files(d, sc)
        _test_file(d / "generate.yaml", "prometheus_rules.yaml", sc, {})
        gen.append(d / "generate.yaml")
    generated = run_promtool(gen)

    final = []
    for sc in scenarios:
        d = tmp_path / sc.name
        report = generated[d / "generate.yaml"]
        assert "rule:" not in report.text, report.text
        expected = _expectations(report.text)
        firing = sum(len(v) for v in expected.values())
        # Non-trivial: alerts fire at some times and not at others.
        assert firing >= 3, f"{sc.name}: only {firing} firing alerts"
        assert len(expected) < len(_eval_times(sc)), sc.name
        _test_file(d / "promtool_test.yaml", "prometheus_rules.yaml", sc, expected)
        _test_file(d / "kpimon_test.yaml", "kpimon_rules.yaml", sc, expected)
        final.append(d / "promtool_test.yaml")
    for path, report in run_promtool(final).items():
        assert report.passed, f"{path}: promtool fails its own expectations:\n{report.text}"

    for sc in scenarios:
        path = tmp_path / sc.name / "kpimon_test.yaml"
        out, err = io.StringIO(), io.StringIO()
        assert run_tests([str(path)], out, err) == 0, f"{sc.name}:\n{err.getvalue()}"


def test_default_semantics_differ_from_prometheus_on_gaps(tmp_path):
    """Why the gap scenarios need ``semantics: prometheus``: by default a firing KPI whose data
    goes missing stays open (no_data), where a Prometheus alert resolves."""
    sc = Scenario(
        name="gap",
        expr="m",
        level="critical",
        direction="above",
        threshold=1,
        for_="0s",
        series=(('m{job="a"}', "5 5 stale"),),
        steps=4,
    )
    _rule_files(tmp_path, sc)
    _test_file(tmp_path / "generate.yaml", "prometheus_rules.yaml", sc, {})
    expected = _expectations(
        run_promtool([tmp_path / "generate.yaml"])[tmp_path / "generate.yaml"].text
    )
    assert sorted(expected) == ["0s", "1m"]
    _test_file(tmp_path / "kpimon_test.yaml", "kpimon_rules.yaml", sc, expected)
    out, err = io.StringIO(), io.StringIO()
    assert run_tests([str(tmp_path / "kpimon_test.yaml")], out, err) == 1
    assert "alertname: compat_kpi, time: 2m," in err.getvalue()


def test_doc_example_passes_promtool_with_the_prometheus_translation(tmp_path):
    """docs/testing.md's test file passes promtool, run on the KPI's Prometheus alerting rule."""
    from tests.unit.test_ruletest_docs import doc_example

    rules, test = doc_example()
    (kpi,) = yaml.safe_load(rules)["kpis"]
    ((level, spec),) = kpi["levels"].items()
    op = ">" if "above" in spec else "<"
    rule = {
        "alert": kpi["name"],
        "expr": f"{kpi['expr']} {op} {spec.get('above', spec.get('below'))}",
        "for": spec.get("for", "0s"),
        "labels": {"severity": level, **kpi.get("labels", {})},
        "annotations": kpi.get("annotations", {}),
    }
    (tmp_path / "api.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "api", "rules": [rule]}]}, sort_keys=False)
    )
    test_file = tmp_path / "tests" / "api_test.yaml"
    test_file.parent.mkdir()
    test_file.write_text(test)
    report = run_promtool([test_file])[test_file]
    assert report.passed, report.text


ALERTS_TEST = """
rule_files: [RULES]
tests:
  - interval: 1m
    input_series:
      - series: 'm{job="a"}'
        values: '0 10 10 10 10 0 0 0'
    promql_expr_test:
      - expr: ALERTS
        eval_time: 1m
        exp_samples:
          - labels: 'ALERTS{alertname="K", alertstate="pending", job="a", severity="warning"}'
            value: 1
      - expr: ALERTS
        eval_time: 2m30s
        exp_samples:
          - labels: 'ALERTS{alertname="K", alertstate="pending", job="a", severity="warning"}'
            value: 1
      - expr: ALERTS
        eval_time: 3m
        exp_samples:
          - labels: 'ALERTS{alertname="K", alertstate="firing", job="a", severity="warning"}'
            value: 1
      - expr: ALERTS_FOR_STATE
        eval_time: 4m
        exp_samples:
          - labels: 'ALERTS_FOR_STATE{alertname="K", job="a", severity="warning"}'
            value: 60
      - {expr: ALERTS, eval_time: 5m, exp_samples: []}
      - {expr: ALERTS, eval_time: 7m, exp_samples: []}
"""


def test_alerts_series_as_promtool_writes_them(tmp_path):
    (tmp_path / "prom.yaml").write_text(
        "groups: [{name: g, rules: [{alert: K, expr: m > 5, for: 2m, "
        "labels: {severity: warning}}]}]\n"
    )
    (tmp_path / "kpi.yaml").write_text(
        "kpis: [{name: K, owner: o, expr: m, levels: {warning: {above: 5, for: 2m}}}]\n"
    )
    prom = tmp_path / "prom_test.yaml"
    prom.write_text(ALERTS_TEST.replace("RULES", "prom.yaml"))
    report = run_promtool([prom])[prom]
    assert report.passed, report.text
    kpi = tmp_path / "kpi_test.yaml"
    kpi.write_text(ALERTS_TEST.replace("RULES", "kpi.yaml"))
    out, err = io.StringIO(), io.StringIO()
    assert run_tests([str(kpi)], out, err) == 0, err.getvalue()
