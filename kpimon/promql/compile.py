"""Parse and check a PromQL expression, and build its evaluation plan (no evaluation here).

Parsing is done by ``promql-parser`` (which also checks types, e.g. that ``rate`` gets a range
vector). This module refuses every construct outside kpimon's subset (docs/promql.md) with a
:class:`PromQLError` that names the construct and, when it can be found in the text, its
character offset, and turns the AST into :mod:`kpimon.promql.plan` nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import promql_parser

from kpimon.errors import PromQLError
from kpimon.promql import plan
from kpimon.promql.plan import AGGREGATIONS, ARITHMETIC, COMPARISON, RANGE_FUNCTIONS, MatchOp

LOOKBACK_S = 300.0
"""Prometheus' default lookback delta: an instant selector sees samples up to 5 minutes old."""

_MS = timedelta(milliseconds=1)
_MATCH_OPS: dict[str, MatchOp] = {
    "MatchOp.Equal": "=",
    "MatchOp.NotEqual": "!=",
    "MatchOp.Re": "=~",
    "MatchOp.NotRe": "!~",
}


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
        plan: the evaluation plan (:mod:`kpimon.promql.plan`).
    """

    text: str
    ast: Any
    metric_names: frozenset[str] | None
    max_range_s: float
    plan: plan.Node


def compile_expr(text: str) -> CompiledExpr:
    """Parse ``text``, check it is in the supported subset and build its plan.

    Raises:
        PromQLError: the expression does not parse, or uses an unsupported construct.
    """
    try:
        ast = promql_parser.parse(text)
    except (ValueError, RuntimeError) as exc:
        raise PromQLError(f"invalid PromQL: {exc}") from None
    builder = _Builder(text)
    if isinstance(ast, promql_parser.MatrixSelector):
        raise PromQLError(
            "a range vector cannot be the result of a KPI expression; "
            "apply a function such as rate() to it",
            offset=_find(text, r"\["),
        )
    root = builder.build(ast)
    return CompiledExpr(
        text=text,
        ast=ast,
        metric_names=None if builder.unnamed else frozenset(builder.names),
        max_range_s=builder.max_range_ms / 1000.0,
        plan=root,
    )


class _Builder:
    def __init__(self, text: str) -> None:
        self.text = text
        self.names: set[str] = set()
        self.unnamed = False
        self.max_range_ms = 0

    def refuse(self, message: str, pattern: str | None) -> PromQLError:
        return PromQLError(message, _find(self.text, pattern) if pattern else None)

    def build(self, node: Any) -> plan.Node:
        p = promql_parser
        if isinstance(node, p.ParenExpr):
            return self.build(node.expr)
        if isinstance(node, p.NumberLiteral):
            return plan.Number(float(node.val))
        if isinstance(node, p.StringLiteral):
            raise self.refuse("string literals are not supported", r"[\"'`]")
        if isinstance(node, p.VectorSelector):
            return self.selector(node, 0)
        if isinstance(node, p.MatrixSelector):
            raise self.refuse(
                "a range vector selector is only allowed as the argument of a range function",
                r"\[",
            )
        if isinstance(node, p.SubqueryExpr):
            raise self.refuse("subqueries are not supported", r"\[[^\]]*:")
        if isinstance(node, p.Call):
            return self.call(node)
        if isinstance(node, p.AggregateExpr):
            return self.aggregate(node)
        if isinstance(node, p.UnaryExpr):
            inner = self.build(node.expr)
            return plan.Negate(expr=inner, scalar=plan.is_scalar(inner))
        if isinstance(node, p.BinaryExpr):
            return self.binary(node)
        raise self.refuse(f"unsupported expression {type(node).__name__}", None)

    def selector(self, node: Any, range_ms: int) -> plan.Selector:
        if node.at is not None:
            raise self.refuse('the "@" modifier is not supported', "@")
        if node.matchers.or_matchers:
            raise self.refuse('"or" inside a selector is not supported', r"\bor\b")
        offset_ms = node.offset // _MS if node.offset is not None else 0
        self.max_range_ms = max(self.max_range_ms, range_ms + max(offset_ms, 0))
        name: str | None = node.name or None
        matchers: list[plan.Matcher] = []
        for m in node.matchers.matchers:
            op = _MATCH_OPS[str(m.op)]
            if m.name == "__name__" and op == "=" and name is None:
                name = m.value
                continue
            try:
                matchers.append(plan.Matcher.make(m.name, op, m.value))
            except re.error as exc:
                raise self.refuse(f"invalid regex {m.value!r}: {exc}", re.escape(m.value)) from None
        if name is not None:
            self.names.add(name)
        else:
            self.unnamed = True
        return plan.Selector(name=name, matchers=tuple(matchers), offset_ms=offset_ms)

    def call(self, node: Any) -> plan.Node:
        fname = node.func.name
        if fname not in RANGE_FUNCTIONS:
            raise self.refuse(
                f'unsupported function "{fname}" (supported: {", ".join(RANGE_FUNCTIONS)})',
                rf"\b{re.escape(fname)}\s*\(",
            )
        (arg,) = node.args
        while isinstance(arg, promql_parser.ParenExpr):
            arg = arg.expr
        if isinstance(arg, promql_parser.SubqueryExpr):
            raise self.refuse("subqueries are not supported", r"\[[^\]]*:")
        if not isinstance(arg, promql_parser.MatrixSelector):  # the parser checks this already
            raise self.refuse(f"{fname}() needs a range vector selector such as x[5m]", None)
        range_ms = arg.range // _MS
        sel = self.selector(arg.vector_selector, range_ms)
        return plan.RangeCall(func=fname, selector=sel, range_ms=range_ms)

    def aggregate(self, node: Any) -> plan.Aggregate:
        op = str(node.op)
        if op not in AGGREGATIONS:
            raise self.refuse(
                f'unsupported aggregation "{op}" (supported: {", ".join(AGGREGATIONS)})',
                rf"\b{re.escape(op)}\b",
            )
        mod = node.modifier
        without = mod is not None and mod.type == promql_parser.AggModifierType.Without
        labels = tuple(sorted(set(mod.labels))) if mod is not None else ()
        return plan.Aggregate(op=op, without=without, labels=labels, expr=self.build(node.expr))

    def binary(self, node: Any) -> plan.Binary:
        op = str(node.op).strip()
        if op in ("and", "or", "unless"):
            raise self.refuse(f'the set operator "{op}" is not supported yet', rf"\b{op}\b")
        if op not in ARITHMETIC and op not in COMPARISON:
            raise self.refuse(f'the operator "{op}" is not supported', rf"\b{re.escape(op)}\b")
        mod = node.modifier
        return_bool = bool(mod is not None and mod.return_bool)
        on, matching = False, ()
        if mod is not None:
            if str(mod.card) in (
                "VectorMatchCardinality.ManyToOne",
                "VectorMatchCardinality.OneToMany",
            ):
                which = "group_left" if str(mod.card).endswith("ManyToOne") else "group_right"
                raise self.refuse(
                    f'"{which}" (many-to-one matching) is not supported yet', rf"\b{which}\b"
                )
            if mod.matching is not None:
                on = mod.matching.type == promql_parser.LabelModifierType.Include
                matching = tuple(sorted(set(mod.matching.labels)))
        lhs, rhs = self.build(node.lhs), self.build(node.rhs)
        return plan.Binary(
            op=op,
            lhs=lhs,
            rhs=rhs,
            lhs_scalar=plan.is_scalar(lhs),
            rhs_scalar=plan.is_scalar(rhs),
            return_bool=return_bool,
            on=on,
            matching=matching,
        )


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', re.S)


def _find(text: str, pattern: str) -> int | None:
    """Offset of the first match of ``pattern`` in ``text`` outside string literals."""
    masked = _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', text)
    m = re.search(pattern, masked)
    if m is None:
        m = re.search(pattern, text)  # e.g. a regex that is itself inside a string
    return m.start() if m else None
