"""compile_expr: what it accepts, what it refuses (message and offset), what it reports."""

from __future__ import annotations

import pytest

from kpimon.errors import PromQLError
from kpimon.promql import compile_expr, plan


@pytest.mark.parametrize(
    ("text", "message", "at"),
    [
        ("sin(x)", 'unsupported function "sin"', 0),
        ("1 + pi()", 'unsupported function "pi"', 4),
        ("sum(x) + histogram_count(y)", '"histogram_count"', 9),
        ('count_values("1a", x)', "invalid label name '1a' in count_values", 12),
        ('x{a="1" or b="2"}', '"or" inside a selector', 8),
        ("x[5m]", "range vector cannot be the result", 1),
        ("x[5m:1m]", "range vector cannot be the result", 1),
        ('"text"', "a string cannot be the result", 0),
        ("x > 5m", 'unexpected duration "5m"', 4),
        ("x @ 1m", 'unexpected duration "1m"', 4),
        ('x{a="5m"} + 1d', 'unexpected duration "1d"', 12),
        ("max_over_time(x[5m:30])", 'unexpected number "30"', 19),
        ("x offset 5", 'unexpected number "5"', 9),
        ("x @ 1e20", "timestamp out of bounds for @ modifier", 2),
        (
            "max_over_time(predict_linear(x[5m:1m] @ 1, 60)[1h:1m])",
            "predict_linear() over a subquery with @ inside another subquery",
            14,
        ),
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
        compile_expr("1 - tan(x)")
    assert info.value.message.startswith(
        'unsupported function "tan" (supported: abs, absent, absent_over_time, avg_over_time, '
    )
    assert info.value.message.endswith(", time, timestamp, vector, year)")


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
