"""compile_expr: what it accepts, what it refuses (message and offset), what it reports."""

from __future__ import annotations

import pytest

from kpimon.errors import PromQLError
from kpimon.promql import compile_expr, plan


@pytest.mark.parametrize(
    ("text", "message", "at"),
    [
        ("histogram_quantile(0.9, x)", 'unsupported function "histogram_quantile"', 0),
        ("1 + abs(x)", 'unsupported function "abs"', 4),
        ('sum(x) + label_replace(y, "a", "b", "c", "d")', '"label_replace"', 9),
        ("topk(3, x)", 'unsupported aggregation "topk"', 0),
        ("sum(x) / quantile(0.5, y)", 'unsupported aggregation "quantile"', 9),
        ("x and y", 'set operator "and"', 2),
        ('x{a="and"} or y', 'set operator "or"', 11),
        ("x unless y", 'set operator "unless"', 2),
        ("x * on(a) group_left(b) y", '"group_left"', 10),
        ("x * on(a) group_right y", '"group_right"', 10),
        ("rate(x[5m:1m])", "subqueries are not supported", 6),
        ("max_over_time((x > 1)[5m:])", "subqueries are not supported", 21),
        ("x @ 100", '"@" modifier', 2),
        ("rate(x[5m] @ end())", '"@" modifier', 11),
        ('x{a="1" or b="2"}', '"or" inside a selector', 8),
        ("x[5m]", "range vector cannot be the result", 1),
        ('"text"', "string literals are not supported", 0),
        ("x atan2 y", 'operator "atan2"', 2),
    ],
)
def test_unsupported_constructs_are_refused_with_their_offset(
    text: str, message: str, at: int
) -> None:
    with pytest.raises(PromQLError) as info:
        compile_expr(text)
    assert message in info.value.message
    assert info.value.offset == at, (text, info.value.offset)


def test_refusal_lists_what_is_supported() -> None:
    with pytest.raises(PromQLError) as info:
        compile_expr("deriv(x[5m])")
    assert info.value.message == (
        'unsupported function "deriv" (supported: avg_over_time, count_over_time, increase, '
        "irate, max_over_time, min_over_time, rate, sum_over_time)"
    )
    with pytest.raises(PromQLError) as info:
        compile_expr("stddev(x)")
    assert info.value.message.endswith("(supported: avg, count, max, min, sum)")


@pytest.mark.parametrize("text", ["rate(x)", "sum(", "x{", "1 > 2", 'x{a=~"["}', "foo bar"])
def test_invalid_promql(text: str) -> None:
    with pytest.raises(PromQLError, match="invalid PromQL"):
        compile_expr(text)


def test_metric_names_and_longest_range() -> None:
    e = compile_expr(
        'avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])) '
        "+ on(instance) max_over_time(up[1h] offset 10m) - node_load1 offset 30m"
    )
    assert e.metric_names == frozenset({"node_cpu_seconds_total", "up", "node_load1"})
    assert e.max_range_s == 4200.0
    assert compile_expr('{__name__=~"node_.*"}').metric_names is None
    assert compile_expr('{__name__="up", job="x"}').metric_names == frozenset({"up"})
    assert compile_expr("1 + 2").metric_names == frozenset()
    assert compile_expr("x offset -5m").max_range_s == 0.0


def test_plan_shape() -> None:
    e = compile_expr('-(sum without (cpu) (rate(x{a!~"b.*"}[90s] offset 1m)) > bool 2)')
    root = e.plan
    assert isinstance(root, plan.Negate)
    assert not root.scalar
    cmp = root.expr
    assert isinstance(cmp, plan.Binary)
    assert (cmp.op, cmp.return_bool, cmp.rhs_scalar, cmp.lhs_scalar) == (">", True, True, False)
    agg = cmp.lhs
    assert isinstance(agg, plan.Aggregate)
    assert (agg.op, agg.without, agg.labels) == ("sum", True, ("cpu",))
    call = agg.expr
    assert isinstance(call, plan.RangeCall)
    assert (call.func, call.range_ms, call.selector.offset_ms) == ("rate", 90_000, 60_000)
    assert call.selector.name == "x"
    (m,) = call.selector.matchers
    assert (m.name, m.op, m.value) == ("a", "!~", "b.*")
    assert isinstance(compile_expr("1 + 2").plan, plan.Binary)
    assert plan.is_scalar(compile_expr("(1 + 2) * -3").plan)


def test_matchers_are_fully_anchored() -> None:
    m = plan.Matcher.make("a", "=~", "1|2")
    assert m.matches("1")
    assert m.matches("2")
    assert not m.matches("12")
    assert not m.matches("01")
    n = plan.Matcher.make("a", "!~", "b.*")
    assert n.matches("ab")
    assert not n.matches("bc")
    assert plan.Matcher.make("a", "=~", "").matches("")
    assert not plan.Matcher.make("a", "=~", ".").matches("\n")  # RE2: . is not newline
