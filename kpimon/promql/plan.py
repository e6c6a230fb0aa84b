"""The evaluation plan: kpimon's own small tree of checked nodes, built once from the parser's AST.

Owns the node types (frozen dataclasses) and label matchers; no evaluation here. Each node carries
a ``memo``: per-store scratch space where the evaluator keeps what it derived from the store's
series set (selector matches, grouping and matching indices), so that work is redone only when
the series set changes. The memo is not part of a node's identity (excluded from eq and hash).
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

from kpimon.labels import Labels

MatchOp = Literal["=", "!=", "=~", "!~"]

ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^", "atan2"})
COMPARISON = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPERATORS = frozenset({"and", "or", "unless"})
DROPS_NAME = frozenset({"+", "-", "*", "/", "%", "^"})
"""Operators whose result loses ``__name__`` (Prometheus' shouldDropMetricName: not atan2)."""
Cardinality = Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]
At = int | Literal["start", "end"]
"""An ``@`` modifier: a Unix time in milliseconds, or ``start()`` / ``end()``."""
RANGE_FUNCTIONS = (
    "absent_over_time",
    "avg_over_time",
    "changes",
    "count_over_time",
    "delta",
    "deriv",
    "idelta",
    "increase",
    "irate",
    "last_over_time",
    "max_over_time",
    "min_over_time",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
)
"""Functions of a range vector (``quantile_over_time``, ``predict_linear`` also take a scalar)."""
INSTANT_FUNCTIONS = (
    "abs",
    "absent",
    "ceil",
    "clamp",
    "clamp_max",
    "clamp_min",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "exp",
    "floor",
    "histogram_quantile",
    "hour",
    "label_join",
    "label_replace",
    "ln",
    "log10",
    "log2",
    "minute",
    "month",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "time",
    "timestamp",
    "vector",
    "year",
)
"""Functions of instant vectors and scalars (see :mod:`kpimon.promql.instant`)."""
AGGREGATIONS = (
    "avg",
    "bottomk",
    "count",
    "count_values",
    "group",
    "max",
    "min",
    "quantile",
    "stddev",
    "stdvar",
    "sum",
    "topk",
)


def _memo() -> weakref.WeakKeyDictionary[Any, Any]:
    return weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; regexes are fully anchored, as in Prometheus."""

    name: str
    op: MatchOp
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def make(cls, name: str, op: MatchOp, value: str) -> Matcher:
        """Build a matcher; raises re.error for an invalid regex."""
        regex = re.compile(f"(?:{value})") if op in ("=~", "!~") else None
        return cls(name=name, op=op, value=value, regex=regex)

    def matches_labels(self, labels: Labels) -> bool:
        """Does a series with ``labels`` satisfy this matcher?"""
        if self.value and self.op in ("=", "!="):
            # A non-empty value: a plain pair lookup (in C) decides.
            return ((self.name, self.value) in labels) == (self.op == "=")
        return self.matches(label_value(labels, self.name))

    def matches(self, value: str) -> bool:
        """Does a label value (``""`` when the label is absent) satisfy this matcher?"""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(value) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True, slots=True)
class Number:
    """A number literal (a scalar)."""

    value: float


@dataclass(frozen=True, slots=True)
class Selector:
    """An instant vector selector (or the inside of a range selector).

    ``name`` is the fixed metric name when there is one (then no ``__name__`` matcher is in
    ``matchers``); ``offset_ms`` is the ``offset`` modifier (negative for ``offset -5m``) and
    ``at`` the ``@`` modifier.
    """

    name: str | None
    matchers: tuple[Matcher, ...]
    offset_ms: int
    at: At | None = None
    memo: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=_memo, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class RangeCall:
    """A range-vector function applied to a range selector, e.g. ``rate(x[5m])``."""

    func: str
    selector: Selector
    range_ms: int
    param: Node | None = None  # quantile_over_time's quantile, predict_linear's seconds ahead
    absent: Labels = ()  # absent_over_time's result labels (from the selector's = matchers)
    memo: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=_memo, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class Aggregate:
    """``op [by|without (labels)] (expr)``; ``op(expr)`` is ``by ()``."""

    op: str
    without: bool
    labels: tuple[str, ...]
    expr: Node
    param: Node | None = None  # topk/bottomk's k, quantile's phi
    value_label: str = ""  # count_values' label name
    memo: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=_memo, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class Negate:
    """Unary minus."""

    expr: Node
    scalar: bool
    memo: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=_memo, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class Binary:
    """A binary arithmetic or comparison operation.

    ``on`` tells whether ``matching`` lists the labels to match on (``on(...)``) or the labels to
    ignore (``ignoring(...)``, or nothing); it matters only between two vectors, as do ``card``
    (``group_left`` is many-to-one, ``group_right`` one-to-many, set operators many-to-many)
    and ``include``, the labels ``group_left(...)``/``group_right(...)`` copy from the "one" side.
    """

    op: str
    lhs: Node
    rhs: Node
    lhs_scalar: bool
    rhs_scalar: bool
    return_bool: bool
    on: bool
    matching: tuple[str, ...]
    card: Cardinality = "one-to-one"
    include: tuple[str, ...] = ()
    memo: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=_memo, compare=False, repr=False
    )

    @property
    def scalar(self) -> bool:
        """Does this operation yield a scalar (both operands are scalars)?"""
        return self.lhs_scalar and self.rhs_scalar


@dataclass(frozen=True, slots=True)
class Call:
    """A function of instant vectors and scalars, e.g. ``abs(x)``, ``clamp(x, 0, 1)``, ``time()``.

    ``args`` are the evaluated arguments in order (string arguments left out), ``strings`` the
    string arguments in order (``label_replace``, ``label_join``); ``absent`` the labels
    ``absent()`` gives its result (derived from the argument's ``=`` matchers).
    """

    func: str
    args: tuple[Node, ...]
    strings: tuple[str, ...]
    scalar: bool
    absent: Labels = ()
    memo: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=_memo, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class Subquery:
    """``expr[range:step]`` with its ``offset`` and ``@``: ``expr`` evaluated at every multiple of
    ``step_ms`` (None: the evaluation interval) in the range, as a range vector."""

    expr: Node
    range_ms: int
    step_ms: int | None
    offset_ms: int
    at: At | None = None
    memo: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=_memo, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class SubqueryCall:
    """A range-vector function applied to a subquery, e.g. ``max_over_time(rate(x[5m])[1h:1m])``.

    ``param`` is the scalar argument of ``quantile_over_time`` and ``predict_linear``.
    """

    func: str
    subquery: Subquery
    param: Node | None = None
    memo: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=_memo, compare=False, repr=False
    )


Node = Number | Selector | RangeCall | Aggregate | Negate | Binary | Call | SubqueryCall


def is_scalar(node: Node) -> bool:
    """Does ``node`` evaluate to a scalar rather than an instant vector?"""
    if isinstance(node, Number):
        return True
    if isinstance(node, Negate):
        return node.scalar
    if isinstance(node, Binary):
        return node.scalar
    if isinstance(node, Call):
        return node.scalar
    return False


def memo(
    node: Selector | RangeCall | Aggregate | Negate | Binary | Call | Subquery | SubqueryCall,
    store: Any,
) -> dict[str, Any]:
    """The scratch space of ``node`` for ``store`` (created on first use)."""
    out: dict[str, Any] | None = node.memo.get(store)
    if out is None:
        out = {}
        node.memo[store] = out
    return out


def label_value(labels: Labels, name: str) -> str:
    """Value of ``name`` in ``labels``; ``""`` when absent (PromQL's convention)."""
    for k, v in labels:
        if k == name:
            return v
    return ""
