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

ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^"})
COMPARISON = frozenset({"==", "!=", ">", "<", ">=", "<="})
RANGE_FUNCTIONS = (
    "avg_over_time",
    "count_over_time",
    "increase",
    "irate",
    "max_over_time",
    "min_over_time",
    "rate",
    "sum_over_time",
)
AGGREGATIONS = ("avg", "count", "max", "min", "sum")


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
    ``matchers``); ``offset_ms`` is the ``offset`` modifier.
    """

    name: str | None
    matchers: tuple[Matcher, ...]
    offset_ms: int
    memo: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=_memo, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class RangeCall:
    """A range-vector function applied to a range selector, e.g. ``rate(x[5m])``."""

    func: str
    selector: Selector
    range_ms: int
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
    ignore (``ignoring(...)``, or nothing); it matters only between two vectors.
    """

    op: str
    lhs: Node
    rhs: Node
    lhs_scalar: bool
    rhs_scalar: bool
    return_bool: bool
    on: bool
    matching: tuple[str, ...]
    memo: weakref.WeakKeyDictionary[Any, Any] = field(
        default_factory=_memo, compare=False, repr=False
    )

    @property
    def scalar(self) -> bool:
        """Does this operation yield a scalar (both operands are scalars)?"""
        return self.lhs_scalar and self.rhs_scalar


Node = Number | Selector | RangeCall | Aggregate | Negate | Binary


def is_scalar(node: Node) -> bool:
    """Does ``node`` evaluate to a scalar rather than an instant vector?"""
    if isinstance(node, Number):
        return True
    if isinstance(node, Negate):
        return node.scalar
    if isinstance(node, Binary):
        return node.scalar
    return False


def memo(node: Selector | RangeCall | Aggregate | Negate | Binary, store: Any) -> dict[str, Any]:
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
