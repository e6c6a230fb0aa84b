"""Rule unit-test files (promtool's format) → :class:`~kpimon.ruletest.model.TestFile`.

Pure: takes the file's text, returns the parsed file and every problem found, each at its
FILE:LINE:COL (positions from :mod:`kpimon.config.yamlload`). Unknown keys are problems, as
promtool's strict YAML decoding makes them. Beyond promtool, things promtool only finds while
running (a malformed series or expected label set, an expression that does not parse, an
``alert_rule_test`` without ``alertname``) are reported here, with their position. Expressions are
compiled with :func:`kpimon.promql.compile_expr`, so an expression outside kpimon's PromQL subset
is a problem too. kpimon's ``transition_test`` entries are parsed by :mod:`.transload`.
"""

from __future__ import annotations

import re
from typing import Final

from kpimon import labels as labelset
from kpimon.config.daemon import RulePattern
from kpimon.config.fields import (
    Problems,
    as_duration,
    as_map,
    as_seq,
    as_str,
    as_str_map,
    check_keys,
    seq_items,
)
from kpimon.config.rules import compile_at
from kpimon.config.yamlload import (
    Map,
    Node,
    Scalar,
    describe,
    join_index,
    join_key,
    load_yaml,
)
from kpimon.errors import Position, Problem
from kpimon.ruletest.model import (
    DEFAULT_EVALUATION_INTERVAL_MS,
    AlertTest,
    ExpAlert,
    ExpSample,
    InputSeries,
    PromqlTest,
    TestFile,
    TestGroup,
)
from kpimon.ruletest.series import SeriesError, expand_values
from kpimon.ruletest.transload import metric_at, offset_pos, parse_transition_test

_TOP_KEYS: Final = ("rule_files", "evaluation_interval", "group_eval_order", "tests")
_GROUP_KEYS: Final = (
    "interval",
    "input_series",
    "alert_rule_test",
    "promql_expr_test",
    "external_labels",
    "external_url",
    "name",
    "transition_test",
)
# YAML 1.1 (PyYAML) reads 1e3 as a string; promtool's YAML library reads it as a number.
_PLAIN_NUMBER: Final = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def parse_test_file(text: str, file: str) -> tuple[TestFile | None, list[Problem]]:
    """Parse the text of a rule unit-test file.

    Returns:
        The file (None when there is any problem) and every problem found.
    """
    root, yaml_problems = load_yaml(text, file)
    problems = Problems()
    problems.extend(yaml_problems)
    if root is None:
        if not problems.items:
            problems.add(Position(file, 1, 1), "", "empty test file (expected tests)")
        return None, problems.items
    top = as_map(root, "", problems)
    if top is None:
        return None, problems.items
    check_keys(top, "", _TOP_KEYS, problems)
    patterns = _rule_files(top.get("rule_files"), problems)
    interval = _duration_ms(top, "evaluation_interval", "", problems)
    evaluation_interval = interval or DEFAULT_EVALUATION_INTERVAL_MS
    order = _strings(top.get("group_eval_order"), "group_eval_order", problems)
    groups: list[TestGroup] = []
    tests = top.get("tests")
    seq = as_seq(tests, "tests", problems) if tests is not None else None
    for i, item in enumerate(seq.items if seq is not None else ()):
        group = _group(item, i, evaluation_interval, problems)
        if group is not None:
            groups.append(group)
    if problems.items:
        return None, problems.items
    return (
        TestFile(
            path=file,
            rule_files=patterns,
            evaluation_interval_ms=evaluation_interval,
            group_eval_order=order,
            tests=tuple(groups),
        ),
        [],
    )


def _rule_files(node: Node | None, problems: Problems) -> tuple[RulePattern, ...]:
    if node is None:
        return ()
    seq = as_seq(node, "rule_files", problems)
    out: list[RulePattern] = []
    for i, item in enumerate(seq.items if seq is not None else ()):
        path = join_index("rule_files", i)
        text = as_str(item, path, problems, nonempty=True)
        if text is not None:
            out.append(RulePattern(pattern=text, position=item.pos, path=path))
    return tuple(out)


def _strings(node: Node | None, path: str, problems: Problems) -> tuple[str, ...]:
    if node is None:
        return ()
    seq = as_seq(node, path, problems)
    out: list[str] = []
    for i, item in enumerate(seq.items if seq is not None else ()):
        text = as_str(item, join_index(path, i), problems)
        if text is not None:
            out.append(text)
    return tuple(out)


def _duration_ms(m: Map, key: str, path: str, problems: Problems) -> int:
    """A duration in whole milliseconds; 0 when absent (promtool's zero value)."""
    node = m.get(key)
    if node is None:
        return 0
    seconds = as_duration(node, join_key(path, key), problems)
    return 0 if seconds is None else round(seconds * 1000)


def _group(
    node: Node, index: int, evaluation_interval: int, problems: Problems
) -> TestGroup | None:
    path = join_index("tests", index)
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _GROUP_KEYS, problems)
    interval = _duration_ms(m, "interval", path, problems) or evaluation_interval
    name = _str(m, "name", path, problems)
    url = _str(m, "external_url", path, problems)
    ext_node = m.get("external_labels")
    external = (
        as_str_map(ext_node, join_key(path, "external_labels"), problems)
        if ext_node is not None
        else ()
    )
    series = tuple(
        s
        for i, item in enumerate(seq_items(m, "input_series", path, problems))
        if (s := _series(item, join_index(join_key(path, "input_series"), i), problems))
    )
    alerts = tuple(
        a
        for i, item in enumerate(seq_items(m, "alert_rule_test", path, problems))
        if (a := _alert_test(item, join_index(join_key(path, "alert_rule_test"), i), problems))
    )
    promql = tuple(
        p
        for i, item in enumerate(seq_items(m, "promql_expr_test", path, problems))
        if (p := _promql_test(item, join_index(join_key(path, "promql_expr_test"), i), problems))
    )
    transitions = tuple(
        t
        for i, item in enumerate(seq_items(m, "transition_test", path, problems))
        if (
            t := parse_transition_test(
                item, i, join_index(join_key(path, "transition_test"), i), problems
            )
        )
    )
    if len(problems) > before:
        return None
    return TestGroup(
        index=index,
        name=name,
        interval_ms=interval,
        input_series=series,
        alert_tests=alerts,
        promql_tests=promql,
        transition_tests=transitions,
        external_labels=labelset.make(external or ()),
        external_url=url,
        position=m.pos,
    )


def _str(m: Map, key: str, path: str, problems: Problems) -> str:
    node = m.get(key)
    if node is None:
        return ""
    return as_str(node, join_key(path, key), problems) or ""


def _scalar_text(m: Map, key: str, path: str, problems: Problems) -> tuple[str, Node] | None:
    node = m.get(key)
    if node is None:
        problems.add(m.pos, path, f'missing required key "{key}"')
        return None
    text = as_str(node, join_key(path, key), problems)
    return None if text is None else (text, node)


def _series(node: Node, path: str, problems: Problems) -> InputSeries | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    check_keys(m, path, ("series", "values"), problems)
    found = _scalar_text(m, "series", path, problems)
    labels = None
    if found is not None:
        labels = metric_at(
            found[0], found[1], join_key(path, "series"), problems, input_series=True
        )
    values_node = m.get("values")
    values: tuple[float | None, ...] = ()
    if values_node is not None:
        text = as_str(values_node, join_key(path, "values"), problems)
        if text is not None:
            try:
                values = expand_values(text)
            except SeriesError as exc:
                problems.add(
                    offset_pos(values_node, exc.offset), join_key(path, "values"), exc.message
                )
                return None
    if labels is None or found is None:
        return None
    if not any(name == "__name__" for name, _ in labels):
        problems.add(found[1].pos, join_key(path, "series"), "an input series needs a metric name")
        return None
    return InputSeries(labels=labels, values=values, position=m.pos)


def _alert_test(node: Node, path: str, problems: Problems) -> AlertTest | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, ("eval_time", "alertname", "exp_alerts"), problems)
    eval_time = _duration_ms(m, "eval_time", path, problems)
    name_node = m.get("alertname")
    name = "" if name_node is None else as_str(name_node, join_key(path, "alertname"), problems)
    if name == "":
        problems.add(
            m.pos if name_node is None else name_node.pos,
            path,
            "an alert_rule_test needs an alertname (the KPI's name)",
        )
    expected: list[ExpAlert] = []
    for i, item in enumerate(seq_items(m, "exp_alerts", path, problems)):
        sub = join_index(join_key(path, "exp_alerts"), i)
        am = as_map(item, sub, problems)
        if am is None:
            continue
        check_keys(am, sub, ("exp_labels", "exp_annotations"), problems)
        pairs = {}
        for key in ("exp_labels", "exp_annotations"):
            value = am.get(key)
            found = () if value is None else as_str_map(value, join_key(sub, key), problems)
            pairs[key] = dict(found or ())
        # promtool adds alertname to the expected labels; empty values are kept, as there.
        exp_labels = {**pairs["exp_labels"], "alertname": name or ""}
        expected.append(
            ExpAlert(
                labels=tuple(sorted(exp_labels.items())),
                annotations=tuple(sorted(pairs["exp_annotations"].items())),
            )
        )
    if len(problems) > before or name is None:
        return None
    return AlertTest(
        eval_time_ms=eval_time, alertname=name, exp_alerts=tuple(expected), position=m.pos
    )


def _promql_test(node: Node, path: str, problems: Problems) -> PromqlTest | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, ("expr", "eval_time", "exp_samples"), problems)
    eval_time = _duration_ms(m, "eval_time", path, problems)
    expr = None
    found = _scalar_text(m, "expr", path, problems)
    if found is not None:
        text, expr_node = found
        expr = compile_at(text, expr_node, join_key(path, "expr"), problems)
    samples: list[ExpSample] = []
    for i, item in enumerate(seq_items(m, "exp_samples", path, problems)):
        sub = join_index(join_key(path, "exp_samples"), i)
        sm = as_map(item, sub, problems)
        if sm is None:
            continue
        check_keys(sm, sub, ("labels", "value"), problems)
        labels_found = _scalar_text(sm, "labels", sub, problems)
        labels = None
        if labels_found is not None:
            labels = metric_at(labels_found[0], labels_found[1], join_key(sub, "labels"), problems)
        value_node = sm.get("value")
        value = 0.0 if value_node is None else _float(value_node, join_key(sub, "value"), problems)
        if labels is not None and value is not None:
            samples.append(ExpSample(labels=labels, value=value))
    if len(problems) > before or expr is None:
        return None
    return PromqlTest(expr=expr, eval_time_ms=eval_time, exp_samples=tuple(samples), position=m.pos)


def _float(node: Node, path: str, problems: Problems) -> float | None:
    """A number as promtool's YAML decoder reads one (``.inf``, ``-.inf`` and ``.nan`` too)."""
    if isinstance(node, Scalar) and not node.is_bool:
        if node.is_number:
            return float(node.value)  # type: ignore[arg-type]  # int or float per the tag
        if node.is_str and node.style is None and _PLAIN_NUMBER.fullmatch(node.text):
            return float(node.text)
    problems.add(node.pos, path, f"expected a number, got {describe(node)}")
    return None
