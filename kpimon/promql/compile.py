"""Parse and check a PromQL expression (no evaluation here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import promql_parser

from kpimon.errors import PromQLError

LOOKBACK_S = 300.0
"""Prometheus' default lookback delta: an instant selector sees samples up to 5 minutes old."""


@dataclass(frozen=True, slots=True)
class CompiledExpr:
    """A parsed, checked expression.

    Attributes:
        text: the expression as written.
        ast: the promql-parser AST (read-only by convention).
        metric_names: metric names the expression reads; ``None`` when some selector has no
            fixed name (e.g. ``{__name__=~"node_.*"}``), in which case every name must be kept.
        max_range_s: the longest time before the evaluation time the expression reads,
            range plus offset, not counting the lookback delta.
    """

    text: str
    ast: Any
    metric_names: frozenset[str] | None
    max_range_s: float


def compile_expr(text: str) -> CompiledExpr:
    """Parse ``text`` and check it is in the supported subset.

    Raises:
        PromQLError: the expression does not parse, or uses an unsupported construct.
    """
    try:
        ast = promql_parser.parse(text)
    except (ValueError, RuntimeError) as exc:
        raise PromQLError(f"invalid PromQL: {exc}") from None
    names: set[str] = set()
    unnamed = False
    max_range = 0.0

    def visit(node: Any) -> None:
        nonlocal unnamed, max_range
        if isinstance(node, promql_parser.MatrixSelector):
            vs = node.vector_selector
            offset = vs.offset.total_seconds() if vs.offset is not None else 0.0
            max_range = max(max_range, node.range.total_seconds() + max(offset, 0.0))
        elif isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                fixed = [
                    m.value
                    for m in node.matchers.matchers
                    if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal
                ]
                if fixed:
                    names.add(fixed[0])
                else:
                    unnamed = True
            if node.offset is not None:
                max_range = max(max_range, node.offset.total_seconds())

    _walk(ast, visit)
    return CompiledExpr(
        text=text,
        ast=ast,
        metric_names=None if unnamed else frozenset(names),
        max_range_s=max_range,
    )


def _children(node: Any) -> list[Any]:
    for cls, attrs in _CHILD_ATTRS:
        if isinstance(node, cls):
            out: list[Any] = []
            for a in attrs:
                child = getattr(node, a)
                if child is None:
                    continue
                if isinstance(child, list):
                    out.extend(child)
                else:
                    out.append(child)
            return out
    return []


_CHILD_ATTRS: tuple[tuple[type, tuple[str, ...]], ...] = (
    (promql_parser.BinaryExpr, ("lhs", "rhs")),
    (promql_parser.AggregateExpr, ("expr", "param")),
    (promql_parser.Call, ("args",)),
    (promql_parser.ParenExpr, ("expr",)),
    (promql_parser.UnaryExpr, ("expr",)),
    (promql_parser.SubqueryExpr, ("expr",)),
    (promql_parser.MatrixSelector, ("vector_selector",)),
)


def _walk(node: Any, visit: Any) -> None:
    visit(node)
    for child in _children(node):
        _walk(child, visit)
