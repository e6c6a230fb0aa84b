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
from kpimon.labels import Labels
from kpimon.promql import plan
from kpimon.promql.plan import (
    AGGREGATIONS,
    ARITHMETIC,
    COMPARISON,
    INSTANT_FUNCTIONS,
    RANGE_FUNCTIONS,
    SET_OPERATORS,
    MatchOp,
)

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
    _check_durations(text)
    if isinstance(ast, (promql_parser.MatrixSelector, promql_parser.SubqueryExpr)):
        raise PromQLError(
            "a range vector cannot be the result of a KPI expression; "
            "apply a function such as rate() to it",
            offset=_find(text, r"\["),
        )
    if isinstance(ast, promql_parser.StringLiteral):
        raise PromQLError(
            "a string cannot be the result of a KPI expression", offset=_find(text, r"[\"'`]")
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
        self.shift_ms = 0  # how far back the enclosing subqueries reach (range + offset)
        self.pinned = False  # inside a subquery with @: reads do not follow the evaluation time
        self.depth = 0  # how many subqueries enclose the node being built

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
            raise self.refuse(
                "a subquery is only allowed as the argument of a range function", r"\[[^\]]*:"
            )
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
        if node.matchers.or_matchers:
            raise self.refuse('"or" inside a selector is not supported', r"\bor\b")
        offset_ms = node.offset // _MS if node.offset is not None else 0
        at = self.at(node)
        if at is None and not self.pinned:  # (with @, reads do not follow the evaluation time)
            self.max_range_ms = max(self.max_range_ms, self.shift_ms + range_ms + offset_ms)
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
        return plan.Selector(name=name, matchers=tuple(matchers), offset_ms=offset_ms, at=at)

    def at(self, node: Any) -> plan.At | None:
        """The ``@`` modifier of a selector or subquery, in milliseconds (Prometheus rounds)."""
        if node.at is None:
            return None
        kind = str(node.at.type)
        if kind.endswith("Start"):
            return "start"
        if kind.endswith("End"):
            return "end"
        # The binding cannot convert times before 1970 (it panics): read the node's own
        # ``at`` field (indented 8 spaces, after any nested one) from its debug form instead.
        found = _AT_REPR.findall(repr(node))
        if not found:
            raise self.refuse("cannot read the timestamp of the @ modifier", "@")
        sec, nsec = (int(v) for v in found[-1])
        if abs(sec) > _MAX_AT_S:
            raise self.refuse("timestamp out of bounds for @ modifier", "@")
        return sec * 1000 + round(nsec / 1e6)

    def subquery(self, node: Any) -> plan.Subquery:
        range_ms = node.range // _MS
        step_ms = node.step // _MS if node.step is not None else None
        offset_ms = node.offset // _MS if node.offset is not None else 0
        at = self.at(node)
        saved = self.shift_ms, self.pinned
        # Inside, expressions are evaluated up to range + offset before the subquery's time.
        self.shift_ms += range_ms + offset_ms
        self.pinned = self.pinned or at is not None
        self.depth += 1
        try:
            inner = self.build(node.expr)
        finally:
            self.shift_ms, self.pinned = saved
            self.depth -= 1
        return plan.Subquery(
            expr=inner, range_ms=range_ms, step_ms=step_ms, offset_ms=offset_ms, at=at
        )

    def call(self, node: Any) -> plan.Node:
        fname = node.func.name
        if fname not in RANGE_FUNCTIONS and fname not in INSTANT_FUNCTIONS:
            supported = sorted((*RANGE_FUNCTIONS, *INSTANT_FUNCTIONS))
            raise self.refuse(
                f'unsupported function "{fname}" (supported: {", ".join(supported)})',
                rf"\b{re.escape(fname)}\s*\(",
            )
        types = [str(t) for t in node.func.arg_types]
        args = [_unparen(a) for a in node.args]
        kinds = [types[min(i, len(types) - 1)] for i in range(len(args))]
        if fname in RANGE_FUNCTIONS:
            return self.range_call(fname, args, kinds)
        built: list[plan.Node] = []
        strings: list[str] = []
        for arg, kind in zip(args, kinds, strict=True):
            if kind == "ValueType.String":
                strings.append(self.string(arg, fname))
            else:
                built.append(self.build(arg))
        self.check_strings(fname, strings)
        absent: Labels = ()
        if fname == "absent" and isinstance(args[0], promql_parser.VectorSelector):
            absent = _absent_labels(args[0])
        return plan.Call(
            func=fname,
            args=tuple(built),
            strings=tuple(strings),
            scalar=str(node.func.return_type) == "ValueType.Scalar",
            absent=absent,
        )

    def range_call(
        self, fname: str, args: list[Any], kinds: list[str]
    ) -> plan.RangeCall | plan.SubqueryCall:
        at = kinds.index("ValueType.Matrix")
        arg = args[at]
        if isinstance(arg, promql_parser.SubqueryExpr):
            if fname == "predict_linear" and arg.at is not None and self.depth:
                # Prometheus moves such a subquery with the outer steps but loads the samples
                # of its @ time only; kpimon does not reproduce that.
                raise self.refuse(
                    "predict_linear() over a subquery with @ inside another subquery "
                    "is not supported",
                    r"\bpredict_linear\s*\(",
                )
            sub = self.subquery(arg)
            rest = [self.build(a) for i, a in enumerate(args) if i != at]
            return plan.SubqueryCall(func=fname, subquery=sub, param=rest[0] if rest else None)
        if not isinstance(arg, promql_parser.MatrixSelector):  # the parser checks this already
            raise self.refuse(f"{fname}() needs a range vector selector such as x[5m]", None)
        range_ms = arg.range // _MS
        sel = self.selector(arg.vector_selector, range_ms)
        others = [self.build(a) for i, a in enumerate(args) if i != at]
        absent = _absent_labels(arg.vector_selector) if fname == "absent_over_time" else ()
        return plan.RangeCall(
            func=fname,
            selector=sel,
            range_ms=range_ms,
            param=others[0] if others else None,
            absent=absent,
        )

    def string(self, arg: Any, where: str) -> str:
        if not isinstance(arg, promql_parser.StringLiteral):  # the parser checks this already
            raise self.refuse(f"{where}() needs a string literal here", None)
        return str(arg.val)

    def check_strings(self, fname: str, strings: list[str]) -> None:
        """Refuse what Prometheus would fail on at every evaluation (bad label names, regexes)."""
        names: list[str] = []
        if fname == "label_replace":
            names = [strings[0]]
            try:
                re.compile(f"(?:{strings[3]})")
            except re.error as exc:
                raise self.refuse(
                    f"invalid regular expression in label_replace(): {strings[3]!r}: {exc}",
                    r"\blabel_replace\s*\(",
                ) from None
        elif fname == "label_join":
            names = [strings[0], *strings[2:]]
        for name in names:
            if not _LABEL_NAME.fullmatch(name):
                raise self.refuse(f"invalid label name {name!r} in {fname}()", rf"\b{fname}\s*\(")

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
        param: plan.Node | None = None
        value_label = ""
        if op == "count_values":
            value_label = self.string(_unparen(node.param), op)
            if not _LABEL_NAME.fullmatch(value_label):
                raise self.refuse(f"invalid label name {value_label!r} in count_values", r"\(")
        elif op in ("topk", "bottomk", "quantile"):
            param = self.build(node.param)
        return plan.Aggregate(
            op=op,
            without=without,
            labels=labels,
            expr=self.build(node.expr),
            param=param,
            value_label=value_label,
        )

    def binary(self, node: Any) -> plan.Binary:
        op = str(node.op).strip()
        if op not in ARITHMETIC and op not in COMPARISON and op not in SET_OPERATORS:
            raise self.refuse(f'the operator "{op}" is not supported', rf"\b{re.escape(op)}\b")
        mod = node.modifier
        return_bool = bool(mod is not None and mod.return_bool)
        on, matching = False, ()
        card: plan.Cardinality = "many-to-many" if op in SET_OPERATORS else "one-to-one"
        include: tuple[str, ...] = ()
        if mod is not None:
            kind = str(mod.card)
            if kind.endswith(("ManyToOne", "OneToMany")):
                card = "many-to-one" if kind.endswith("ManyToOne") else "one-to-many"
                # Prometheus keeps the group_x labels in the order written, duplicates included;
                # setting each in turn, only the set of names matters.
                include = tuple(dict.fromkeys(mod.group_labels or ()))
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
            card=card,
            include=include,
        )


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _unparen(node: Any) -> Any:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


def _absent_labels(selector: Any) -> Labels:
    """The labels ``absent()`` gives its result: Prometheus' createLabelsForAbsentFunction.

    Each label with an ``=`` matcher, in the order written; a second matcher on the same label
    (whatever its kind) or any other kind of matcher removes it; empty values are dropped.
    """
    out: dict[str, str] = {}
    seen: set[str] = set()
    for m in selector.matchers.matchers:
        if m.name == "__name__":
            continue
        if _MATCH_OPS[str(m.op)] == "=" and m.name not in seen:
            out[m.name] = m.value
            seen.add(m.name)
        else:
            out.pop(m.name, None)
    return tuple(sorted((k, v) for k, v in out.items() if v))


_AT_REPR = re.compile(
    r"^ {8}at: Some\(\s*At\(\s*SystemTime \{\s*tv_sec: (-?\d+),\s*tv_nsec: (\d+),", re.M
)
_MAX_AT_S = 9_223_372_036_854_775  # @ times must fit in int64 milliseconds

_TOKEN = re.compile(
    r"(?P<open>\[)|(?P<close>\])|(?P<offset>\boffset\b)|(?P<at>@)"
    r"|(?<![\w.])(?P<duration>(?:\d+(?:ms|[smhdwy]))+)(?![\w.])"
    r"|(?<![\w.])(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])"
)


def _check_durations(text: str) -> None:
    """Refuse what promql-parser accepts but Prometheus 2.42 does not: a duration where a number
    is expected (``x > 5m``, ``x @ 1m``) and a number without unit as a range (``x[5m:30]``)."""
    masked = _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', text)
    depth = 0
    after_offset = False
    for m in _TOKEN.finditer(masked):
        kind = m.lastgroup
        before = masked[m.start() - 1 : m.start()]
        if kind in ("duration", "number") and not depth and before == ":":
            continue  # part of a metric name such as "job:errors:5m"
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
        elif kind == "duration" and not depth and not after_offset:
            raise PromQLError(
                f'unexpected duration "{m.group()}": Prometheus 2.x does not accept a duration '
                "as a number",
                offset=m.start(),
            )
        elif kind == "number" and (depth or after_offset):
            raise PromQLError(
                f'unexpected number "{m.group()}": a range, step or offset needs a unit, '
                'such as "30s"',
                offset=m.start(),
            )
        after_offset = kind == "offset"


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', re.S)


def _find(text: str, pattern: str) -> int | None:
    """Offset of the first match of ``pattern`` in ``text`` outside string literals."""
    masked = _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', text)
    m = re.search(pattern, masked)
    if m is None:
        m = re.search(pattern, text)  # e.g. a regex that is itself inside a string
    return m.start() if m else None
