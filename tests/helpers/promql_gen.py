"""Random, type-correct PromQL cases for the differential suite (kpimon against promtool).

A :class:`Generator` draws, from one seeded :class:`random.Random`, a set of input series in
promtool's notation and an expression over them:

- **series**: counters ``c`` with resets, gaps (``_``) and staleness markers; gauges ``g`` and
  ``g2`` with NaN, ±Inf, negative and fractional values (``g2`` shares label sets with ``g`` and
  ``c``, so labels collide once the name is dropped); histogram buckets ``h_bucket`` with ``le``
  (sometimes only ``le="+Inf"``).
- **expressions**: a grammar over the PromQL types (instant vector, range vector, scalar,
  string) covering what issue 3 asks kpimon to evaluate: selectors with the four matchers,
  ``offset`` and ``@``, range functions, instant functions, aggregations, arithmetic, comparison
  (with and without ``bool``) and set operators with ``on``/``ignoring``/``group_left``/
  ``group_right``, and subqueries. Every production checks its operand types, so promtool never
  sees a type error of the generator's making.

Each construct the generator can emit has a name (``func:rate``, ``agg:topk``, ``op:and``,
``group_left``, ``@``, ``subquery``, ...) and an exemplar expression in :data:`CONSTRUCTS`.
A generator may be limited to a set of constructs, e.g. :func:`supported_constructs`, the ones
kpimon's ``compile_expr`` accepts today, to see how the supported part fares while the rest is
still being written. Expressions are trees (:class:`Expr`), so that
:mod:`tests.helpers.promql_shrink` can try smaller expressions of the same type when reducing
a disagreement to a reproducer.

Input values are small integers and halves, so that most sums are exact whatever the
summation order (promtool loads series in random order); the suite sets aside the few cases
whose answer still depends on it. The generator stays clear of what docs/promql.md lists as
deliberate differences from Prometheus: ``^`` only gets integer or ±0.5 exponents (literals,
or ``round(...)`` of a vector), and no subquery gets a negative offset as long as its range.
String-typed arguments (``count_values``, ``label_replace``, ``label_join``) are literals.

``python -m tests.helpers.promql_gen [SEED [N]]`` prints cases.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tests.helpers.promql import Case, duration_ms, go_duration

SCALAR, VECTOR, MATRIX, STRING = "scalar", "vector", "matrix", "string"

RANGE_FUNCTIONS = (
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
    "absent_over_time",
)
MATH_FUNCTIONS = ("abs", "ceil", "floor", "exp", "ln", "log2", "log10", "sqrt", "sgn")
DATE_FUNCTIONS = (
    "minute",
    "hour",
    "day_of_week",
    "day_of_month",
    "day_of_year",
    "days_in_month",
    "month",
    "year",
)
SIMPLE_AGGREGATIONS = ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar")
ARITHMETIC = ("+", "-", "*", "/", "%", "^", "atan2")
COMPARISON = ("==", "!=", ">", "<", ">=", "<=")
SET_OPERATORS = ("and", "or", "unless")

CONSTRUCTS: dict[str, str] = {
    "matcher:=": 'g{job="a"}',
    "matcher:!=": 'g{job!="a"}',
    "matcher:=~": 'g{job=~"a|b"}',
    "matcher:!~": 'g{job!~"a"}',
    "offset": "g offset 1m",
    "offset:negative": "g offset -1m",
    "@": "g @ 60",
    "@:start_end": "g @ start()",
    "subquery": "rate(c[5m:1m])",
    "subquery:default_step": "rate(c[5m:])",
    "unary:-": "-g",
    "bool": "g > bool 1",
    "on": "g + on(job) c",
    "ignoring": "g + ignoring(inst) c",
    "group_left": "g * on(job) group_left(inst) c",
    "group_right": "g * on(job) group_right(inst) c",
    "by": "sum by (job) (g)",
    "without": "sum without (job) (g)",
    "func:predict_linear": "predict_linear(g[5m], 60)",
    "func:quantile_over_time": "quantile_over_time(0.5, g[5m])",
    "func:round": "round(g, 0.5)",
    "func:clamp": "clamp(g, 0, 1)",
    "func:clamp_min": "clamp_min(g, 0)",
    "func:clamp_max": "clamp_max(g, 0)",
    "func:timestamp": "timestamp(g)",
    "func:vector": "vector(1)",
    "func:scalar": "scalar(g)",
    "func:time": "time()",
    "func:absent": "absent(g)",
    "func:label_replace": 'label_replace(g, "d", "$1", "job", "(.*)")',
    "func:label_join": 'label_join(g, "d", "-", "job", "inst")',
    "func:sort": "sort(g)",
    "func:sort_desc": "sort_desc(g)",
    "func:histogram_quantile": "histogram_quantile(0.5, h_bucket)",
    "agg:topk": "topk(1, g)",
    "agg:bottomk": "bottomk(1, g)",
    "agg:quantile": "quantile(0.5, g)",
    "agg:count_values": 'count_values("v", g)',
}
CONSTRUCTS |= {f"func:{f}": f"{f}(g[5m])" for f in RANGE_FUNCTIONS}
CONSTRUCTS |= {f"func:{f}": f"{f}(g)" for f in MATH_FUNCTIONS + DATE_FUNCTIONS}
CONSTRUCTS |= {f"agg:{a}": f"{a}(g)" for a in SIMPLE_AGGREGATIONS}
CONSTRUCTS |= {f"op:{o}": f"g {o} c" for o in ARITHMETIC + COMPARISON + SET_OPERATORS}
ALL_CONSTRUCTS = frozenset(CONSTRUCTS)


def supported_constructs() -> frozenset[str]:
    """The constructs whose exemplar kpimon compiles today (``compile_expr`` does not refuse)."""
    from kpimon.errors import PromQLError
    from kpimon.promql import compile_expr

    ok = set()
    for name, exemplar in CONSTRUCTS.items():
        try:
            compile_expr(exemplar)
        except PromQLError:
            continue
        ok.add(name)
    return frozenset(ok)


@dataclass(frozen=True)
class Expr:
    """A generated expression: its type, the constructs it uses and its parts (text and kids)."""

    type: str
    parts: tuple[str | Expr, ...]
    construct: str | None = None

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text for p in self.parts)

    @property
    def kids(self) -> list[Expr]:
        return [p for p in self.parts if isinstance(p, Expr)]

    def constructs(self) -> set[str]:
        out = {self.construct} if self.construct else set()
        for kid in self.kids:
            out |= kid.constructs()
        return out

    def size(self) -> int:
        return 1 + sum(k.size() for k in self.kids)


def _e(type_: str, *parts: str | Expr, construct: str | None = None) -> Expr:
    return Expr(type_, tuple(parts), construct)


def _pairs(key: str) -> list[tuple[str, str]]:
    """The label pairs of a series written as ``name{a="1",b="2"}`` (no commas in values)."""
    inside = key[key.index("{") + 1 : -1]
    return [(p.split("=", 1)[0], p.split("=", 1)[1].strip('"')) for p in inside.split(",") if p]


def rhs_text(e: Expr) -> str:
    """The text ``e`` has as an operand (parenthesised when it is an operator expression)."""
    p = _paren(e)
    return p if isinstance(p, str) else p.text


def _rx(value: str) -> str:
    """``value`` as a regex matching itself (label values here hold no other metacharacter)."""
    return value.replace("+", "[+]")


def _paren(e: Expr) -> str | Expr:
    """``e`` itself or wrapped in parentheses when it is an operator expression."""
    return (
        _e(e.type, "(", e, ")") if e.construct and e.construct.startswith(("op:", "unary")) else e
    )


@dataclass
class Universe:
    """The series of a case, as the expression generator sees them."""

    series: list[tuple[str, str]]
    steps: int
    interval_ms: int
    labels: dict[str, set[str]] = field(default_factory=dict)  # label name -> values seen


JOBS = ("a", "b")
INSTS = ("1", "2", "3")
LES = ("0.1", "0.5", "1", "2.5")


class Generator:
    """Seeded random cases; ``constructs`` limits what expressions may use."""

    def __init__(self, seed: int, constructs: frozenset[str] = ALL_CONSTRUCTS) -> None:
        self.rng = random.Random(seed)
        self.ok = constructs

    # -- series -------------------------------------------------------------------------------

    def universe(self) -> Universe:
        rng = self.rng
        interval_ms = rng.choice((60_000,) * 6 + (15_000, 30_000, 45_000, 120_000))
        steps = rng.randint(4, 24)
        label_sets = self._label_sets()
        series: list[tuple[str, str]] = []
        for labels in rng.sample(label_sets, rng.randint(1, min(4, len(label_sets)))):
            series.append((f"c{labels}", self._counter(steps)))
        for labels in rng.sample(label_sets, rng.randint(0, min(4, len(label_sets)))):
            series.append((f"g{labels}", self._gauge(steps)))
        if rng.random() < 0.4:
            labels = rng.choice(label_sets)
            series.append((f"g2{labels}", self._gauge(steps)))
        if rng.random() < 0.45:
            series.extend(self._histogram(steps))
        uni = Universe(series=series, steps=steps, interval_ms=interval_ms)
        for key, _ in series:
            for name, value in _pairs(key):
                uni.labels.setdefault(name, set()).add(value)
        return uni

    def _label_sets(self) -> list[str]:
        rng = self.rng
        out = []
        for job in JOBS:
            for inst in rng.sample(INSTS, rng.randint(1, 2)):
                extra = ',mode="idle"' if rng.random() < 0.2 else ""
                out.append(f'{{job="{job}",inst="{inst}"{extra}}}')
        if rng.random() < 0.2:
            out.append("{}")
        return out

    def _counter(self, steps: int) -> str:
        rng = self.rng
        items: list[str] = []
        left = steps
        value = rng.choice((0, 0, 1, 5, 100))
        while left > 0:
            kind = rng.random()
            if kind < 0.1:
                items.append("_" if rng.random() < 0.6 else f"_x{rng.randint(2, 7)}")
                left -= 1 if items[-1] == "_" else int(items[-1][2:])
                continue
            if kind < 0.15:
                items.append("stale")
                left -= 1
                continue
            if kind < 0.25:
                value = rng.choice((0, 1, 2, value // 2))  # a reset
            n = rng.randint(0, min(left - 1, 8))
            step = rng.choice((0, 1, 2, 3, 5, 10, 0.5))
            items.append(f"{value}+{step}x{n}" if n else f"{value}")
            value = int(value + step * n + rng.choice((0, step)))
            left -= n + 1
        return " ".join(items)

    def _gauge(self, steps: int) -> str:
        rng = self.rng
        items: list[str] = []
        left = steps
        while left > 0:
            kind = rng.random()
            if kind < 0.1:
                items.append("_" if rng.random() < 0.5 else f"_x{rng.randint(2, 7)}")
            elif kind < 0.14:
                items.append("stale")
            elif kind < 0.2:
                items.append(rng.choice(("NaN", "Inf", "-Inf")))
            elif kind < 0.22:  # rounding at work (sums of these may depend on their order)
                items.append(rng.choice(("0.1", "1e16", "-1e-3", "1e308")))
            elif kind < 0.45:
                a, b = rng.randint(-5, 20), rng.choice((-2, -1, 1, 2, 0.5, -0.5))
                n = rng.randint(1, 5)
                items.append(f"{a}{'+' if b >= 0 else ''}{b}x{n}")
                left -= n
            else:
                items.append(str(rng.choice((rng.randint(-5, 30), rng.randint(0, 8) / 2))))
            left -= int(items[-1][2:]) if items[-1].startswith("_x") else 1
        return " ".join(items)

    def _histogram(self, steps: int) -> list[tuple[str, str]]:
        rng = self.rng
        out = []
        for job in rng.sample(JOBS, rng.randint(1, 2)):
            les = (
                ["+Inf"]
                if rng.random() < 0.25
                else [*sorted(rng.sample(LES, 2), key=float), "+Inf"]
            )
            counts = [0] * len(les)
            rows: list[list[str]] = [[] for _ in les]
            for _ in range(steps):
                if rng.random() < 0.08:
                    counts = [0] * len(les)  # a reset of every bucket
                total = 0
                for i in range(len(les)):
                    total += rng.choice((0, 1, 1, 2, 5))
                    counts[i] += total
                gap = rng.random() < 0.05
                for i, row in enumerate(rows):
                    row.append("_" if gap else str(counts[i]))
            out += [
                (f'h_bucket{{job="{job}",le="{le}"}}', " ".join(r))
                for le, r in zip(les, rows, strict=True)
            ]
        return out

    # -- expressions --------------------------------------------------------------------------

    def case(self, max_depth: int = 4) -> tuple[Case, Expr]:
        """One random case (series, a vector- or scalar-valued expression, an eval time)."""
        uni = self.universe()
        self.uni = uni
        for _ in range(100):
            want = VECTOR if self.rng.random() < 0.9 else SCALAR
            expr = self.expr(want, self.rng.randint(1, max_depth))
            if expr is not None:
                break
        else:
            raise RuntimeError("the allowed constructs generate no expression")
        span = uni.steps * uni.interval_ms
        # mostly inside the data; sometimes after it (lookback, absent); sometimes off the grid
        at_ms = self.rng.randrange(0, span, 15_000)
        if self.rng.random() < 0.15:
            at_ms = self.rng.randrange(span, span + 6 * 60_000, 15_000)
        elif self.rng.random() < 0.3:
            at_ms = self.rng.randrange(0, span, 1_000)
        case = Case(
            series=uni.series,
            expr=expr.text,
            at=go_duration(at_ms),
            interval=go_duration(uni.interval_ms),
        )
        return case, expr

    def expr(self, want: str, depth: int) -> Expr | None:
        """An expression of type ``want`` at most ``depth`` deep, or None if none is allowed."""
        productions = self._productions(want)
        if depth <= 0:
            productions = [p for p in productions if p[1]]
        weights = [p[0] for p in productions]
        for _ in range(8):
            (_, _, make) = self.rng.choices(productions, weights)[0]
            out = make(depth - 1)
            if out is not None:
                return out
        leaf = [p for p in productions if p[1]]
        return leaf[0][2](0) if leaf else None

    def _productions(self, want: str) -> list[tuple[float, bool, Callable[[int], Expr | None]]]:
        """(weight, is a leaf, maker) for each production of type ``want``."""
        if want == SCALAR:
            return [
                (4, True, lambda d: self.number()),
                (1, False, self.scalar_of_vector),
                (0.5, True, self.time),
                (1.5, False, self.scalar_binary),
                (0.3, False, lambda d: self.unary(SCALAR, d)),
            ]
        if want == MATRIX:
            return [(3, True, lambda d: self.range_selector()), (1.5, False, self.subquery)]
        return [
            (3, True, lambda d: self.selector()),
            (3, False, self.range_call),
            (2, False, self.math_call),
            (1.4, False, self.date_call),
            (0.8, False, self.special_call),
            (0.6, False, self.label_call),
            (0.8, False, self.histogram_quantile),
            (2.5, False, self.aggregation),
            (2, False, self.vector_scalar_binary),
            (2.5, False, self.vector_binary),
            (0.3, False, lambda d: self.unary(VECTOR, d)),
            (0.2, True, self.vector_of_scalar),
        ]

    def _allowed(self, construct: str) -> bool:
        return construct in self.ok

    # leaves

    def number(self) -> Expr:
        rng = self.rng
        text = rng.choice(
            ("0", "1", "2", "3", "0.5", "10", "60", "100", "-1", "2.5", "Inf", "NaN", "1e3", "0x10")
        )
        if text.startswith("-") and not self._allowed("unary:-"):
            text = text[1:]
        return _e(SCALAR, text, construct="unary:-" if text.startswith("-") else None)

    def time(self, depth: int = 0) -> Expr | None:
        return _e(SCALAR, "time()", construct="func:time") if self._allowed("func:time") else None

    def _matchers(self) -> tuple[str, list[str]]:
        """A metric name (maybe empty) and matchers, mostly over labels the series have."""
        rng, uni = self.rng, self.uni
        names = sorted({key.split("{")[0] for key, _ in uni.series})
        name = rng.choice([*names, "nosuch"] if rng.random() < 0.05 else names)
        own: dict[str, set[str]] = {}  # the labels of the chosen metric's series
        for key, _ in uni.series:
            if key.split("{")[0] == name:
                for label, value in _pairs(key):
                    own.setdefault(label, set()).add(value)
        matchers: list[str] = []
        used: list[str] = []
        for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
            ops = [o for o in ("=", "!=", "=~", "!~") if self._allowed(f"matcher:{o}")]
            if not ops:
                break
            op = rng.choice(ops)
            pool = sorted(own) if own and rng.random() < 0.85 else [*sorted(uni.labels), "zz"]
            label = rng.choice(pool)
            if any(m.startswith(f"{label}") for m in matchers) and rng.random() < 0.8:
                continue  # two matchers on one label mostly select nothing
            values = sorted(own.get(label, uni.labels.get(label, set()))) or ["x"]
            raw = rng.choice(values)
            value = raw
            if op in ("=~", "!~"):
                value = _rx(raw)
                if rng.random() < 0.5:
                    other = _rx(rng.choice(values))
                    value = rng.choice((f"{value}|{other}", f"{_rx(raw[:1])}.*", ".+", ".*"))
            elif rng.random() < 0.1:
                value = ""
            matchers.append(f'{label}{op}"{value}"')
            used.append(f"matcher:{op}")
        if rng.random() < 0.08 and self._allowed("matcher:=~"):
            pick = rng.sample(names, min(2, len(names)))
            matchers.append(f'__name__=~"{"|".join(pick)}"')
            used.append("matcher:=~")
            name = ""
        if not name and not matchers:
            name = names[0]
        self._used = used
        return name, matchers

    def _modifiers(
        self, allow_at: bool = True, min_negative_offset_ms: int | None = None
    ) -> tuple[str, list[str]]:
        rng = self.rng
        text, used = "", []
        if rng.random() < 0.15 and self._allowed("offset"):
            off = rng.choice(("1m", "30s", "2m", "5m", "10m", "-1m", "-2m"))
            if off.startswith("-") and (
                not self._allowed("offset:negative")
                or (
                    min_negative_offset_ms is not None
                    and -duration_ms(off[1:]) < min_negative_offset_ms
                )
            ):
                off = off[1:]
            text += f" offset {off}"
            used.append("offset:negative" if off.startswith("-") else "offset")
        if allow_at and rng.random() < 0.1 and self._allowed("@"):
            span_s = self.uni.steps * self.uni.interval_ms // 1000
            at = str(rng.randrange(0, span_s + 60, 30))
            if rng.random() < 0.3 and self._allowed("@:start_end"):
                at = rng.choice(("start()", "end()"))
                used.append("@:start_end")
            else:
                used.append("@")
            at_text = f" @ {at}"
            text = at_text + text if rng.random() < 0.5 else text + at_text
        return text, used

    def _selector_text(self) -> tuple[str, list[str]]:
        name, matchers = self._matchers()
        used = list(self._used)
        text = name + ("{" + ", ".join(matchers) + "}" if matchers else "")
        return text, used

    def selector(self) -> Expr:
        text, used = self._selector_text()
        mods, used2 = self._modifiers()
        return self._tagged(VECTOR, text + mods, used + used2)

    def _tagged(self, type_: str, text: str, constructs: Sequence[str]) -> Expr:
        """A leaf carrying several constructs (nested empty nodes, one per construct)."""
        kids = tuple(Expr(type_, (), c) for c in constructs)
        return Expr(type_, (text, *kids))

    def _range(self) -> str:
        return self.rng.choice(("1m", "2m", "5m", "5m", "10m", "90s", "30s", "3m", "1m30s", "15m"))

    def range_selector(self) -> Expr:
        text, used = self._selector_text()
        mods, used2 = self._modifiers()
        return self._tagged(MATRIX, f"{text}[{self._range()}]{mods}", used + used2)

    def subquery(self, depth: int) -> Expr | None:
        if not self._allowed("subquery"):
            return None
        inner = self.expr(VECTOR, min(depth, 2))
        if inner is None:
            return None
        step = self.rng.choice(("1m", "30s", "2m", "45s", "", ""))
        used = ["subquery"]
        if not step:
            if not self._allowed("subquery:default_step"):
                step = "1m"
            else:
                used.append("subquery:default_step")
        range_ = self._range()
        # docs/promql.md: a negative subquery offset at least as long as the range (with "@"
        # inside) is a deliberate difference from Prometheus; not generated.
        mods, used2 = self._modifiers(min_negative_offset_ms=-duration_ms(range_) + 1)
        tail = self._tagged(MATRIX, f"[{range_}:{step}]{mods}", used + used2)
        return _e(MATRIX, "(", inner, ")", tail)

    # functions

    def range_call(self, depth: int) -> Expr | None:
        funcs = [f for f in RANGE_FUNCTIONS if self._allowed(f"func:{f}")]
        extra = [f for f in ("predict_linear", "quantile_over_time") if self._allowed(f"func:{f}")]
        if not funcs and not extra:
            return None
        fname = self.rng.choice(funcs + extra) if funcs else self.rng.choice(extra)
        arg = self.expr(MATRIX, depth)
        if arg is None:
            return None
        if fname == "predict_linear":
            t = self.rng.choice(("60", "300", "0", "-60", "3600"))
            return _e(VECTOR, "predict_linear(", arg, f", {t})", construct="func:predict_linear")
        if fname == "quantile_over_time":
            phi = self._phi()
            return _e(VECTOR, "quantile_over_time(", phi, ", ", arg, ")", construct=f"func:{fname}")
        return _e(VECTOR, f"{fname}(", arg, ")", construct=f"func:{fname}")

    def _phi(self) -> Expr:
        return _e(SCALAR, self.rng.choice(("0", "0.25", "0.5", "0.9", "1", "0.75", "-1", "2")))

    def math_call(self, depth: int) -> Expr | None:
        funcs = [f for f in MATH_FUNCTIONS if self._allowed(f"func:{f}")]
        funcs += [
            f for f in ("round", "clamp", "clamp_min", "clamp_max") if self._allowed(f"func:{f}")
        ]
        if not funcs:
            return None
        fname = self.rng.choice(funcs)
        arg = self.expr(VECTOR, depth)
        if arg is None:
            return None
        if fname == "round":
            if self.rng.random() < 0.5:
                return _e(VECTOR, "round(", arg, ")", construct="func:round")
            to = self.rng.choice(("0.5", "2", "10", "0.1", "3"))
            return _e(VECTOR, "round(", arg, f", {to})", construct="func:round")
        if fname == "clamp":
            lo, hi = self.rng.choice((("0", "10"), ("-1", "1"), ("5", "2"), ("1", "1")))
            return _e(VECTOR, "clamp(", arg, f", {lo}, {hi})", construct="func:clamp")
        if fname in ("clamp_min", "clamp_max"):
            return _e(
                VECTOR,
                f"{fname}(",
                arg,
                f", {self.rng.choice(('0', '3', '-2'))})",
                construct=f"func:{fname}",
            )
        return _e(VECTOR, f"{fname}(", arg, ")", construct=f"func:{fname}")

    def date_call(self, depth: int) -> Expr | None:
        funcs = [f for f in DATE_FUNCTIONS if self._allowed(f"func:{f}")]
        if not funcs:
            return None
        fname = self.rng.choice(funcs)
        if self.rng.random() < 0.3:
            return _e(VECTOR, f"{fname}()", construct=f"func:{fname}")
        # values as Unix times: scale the small values up into this century (and beyond)
        arg = self.expr(VECTOR, depth)
        if arg is None:
            return None
        if self.rng.random() < 0.7 and self._allowed("op:*"):
            scale = self.rng.choice(("86400", "2629743", "31556952", "3600", "1e8"))
            arg = _e(VECTOR, "(", _paren(arg), f" * {scale})", construct="op:*")
        return _e(VECTOR, f"{fname}(", arg, ")", construct=f"func:{fname}")

    def special_call(self, depth: int) -> Expr | None:
        options = [
            f
            for f in ("timestamp", "absent", "sort", "sort_desc", "absent_over_time")
            if self._allowed(f"func:{f}")
        ]
        if not options:
            return None
        fname = self.rng.choice(options)
        if fname == "absent_over_time":
            arg = self.expr(MATRIX, depth)
        else:
            arg = self.expr(VECTOR, depth) if self.rng.random() < 0.6 else self.selector()
        if arg is None:
            return None
        return _e(VECTOR, f"{fname}(", arg, ")", construct=f"func:{fname}")

    def label_call(self, depth: int) -> Expr | None:
        rng = self.rng
        options = [f for f in ("label_replace", "label_join") if self._allowed(f"func:{f}")]
        if not options:
            return None
        fname = rng.choice(options)
        arg = self.expr(VECTOR, depth)
        if arg is None:
            return None
        dst = rng.choice(("job", "inst", "dst", "__name__", "le"))
        if fname == "label_replace":
            src = rng.choice(("job", "inst", "__name__", "nosuch", "le"))
            repl, regex = rng.choice(
                (("$1", "(.*)"), ("x$1", "(.)"), ("$1-$2", "(.)(.*)"), ("", ".*"), ("z", "a|1"))
            )
            return _e(
                VECTOR,
                "label_replace(",
                arg,
                f', "{dst}", "{repl}", "{src}", "{regex}")',
                construct="func:label_replace",
            )
        srcs = rng.sample(("job", "inst", "__name__", "nosuch"), rng.randint(0, 3))
        sep = rng.choice(("-", "", ","))
        tail = "".join(f', "{s}"' for s in srcs)
        return _e(
            VECTOR, "label_join(", arg, f', "{dst}", "{sep}"{tail})', construct="func:label_join"
        )

    def histogram_quantile(self, depth: int) -> Expr | None:
        if not self._allowed("func:histogram_quantile"):
            return None
        rng = self.rng
        names = {key.split("{")[0] for key, _ in self.uni.series}
        if "h_bucket" not in names:
            return None
        inner = f"h_bucket[{rng.choice(('5m', '2m', '10m'))}]"
        if rng.random() < 0.7 and self._allowed("func:rate"):
            buckets: Expr = _e(VECTOR, f"rate({inner})", construct="func:rate")
        else:
            buckets = _e(VECTOR, "h_bucket")
        if rng.random() < 0.5 and self._allowed("agg:sum") and self._allowed("by"):
            by = rng.choice(("le", "le, job", "job"))
            buckets = _e(VECTOR, f"sum by ({by}) (", buckets, ")", construct="agg:sum")
        return _e(
            VECTOR,
            "histogram_quantile(",
            self._phi(),
            ", ",
            buckets,
            ")",
            construct="func:histogram_quantile",
        )

    def vector_of_scalar(self, depth: int = 0) -> Expr | None:
        if not self._allowed("func:vector"):
            return None
        arg = self.expr(SCALAR, depth) if depth > 0 else self.number()
        if arg is None:
            return None
        return _e(VECTOR, "vector(", arg, ")", construct="func:vector")

    def scalar_of_vector(self, depth: int) -> Expr | None:
        if not self._allowed("func:scalar"):
            return None
        arg = self.expr(VECTOR, depth)
        if arg is None:
            return None
        return _e(SCALAR, "scalar(", arg, ")", construct="func:scalar")

    # aggregations

    def _grouping(self) -> tuple[str, str | None]:
        rng = self.rng
        kind = rng.random()
        if kind < 0.35:
            return "", None
        which = "by" if kind < 0.75 else "without"
        if not self._allowed(which):
            return "", None
        labels = rng.sample(("job", "inst", "le", "mode", "zz", "__name__"), rng.randint(0, 2))
        return f" {which} ({', '.join(labels)})", which

    def aggregation(self, depth: int) -> Expr | None:
        rng = self.rng
        ops = [a for a in SIMPLE_AGGREGATIONS if self._allowed(f"agg:{a}")]
        ops += [
            a for a in ("topk", "bottomk", "quantile", "count_values") if self._allowed(f"agg:{a}")
        ]
        if not ops:
            return None
        op = rng.choice(ops)
        arg = self.expr(VECTOR, depth)
        if arg is None:
            return None
        grouping, which = self._grouping()
        param: list[str | Expr] = []
        if op in ("topk", "bottomk"):
            param = [_e(SCALAR, rng.choice(("1", "2", "3", "0", "1.5"))), ", "]
        elif op == "quantile":
            param = [self._phi(), ", "]
        elif op == "count_values":
            param = [f'"{rng.choice(("v", "job", "__name__", "inst"))}", ']
        head = f"{op}{grouping} (" if rng.random() < 0.7 else f"{op}("
        if head == f"{op}(" and grouping:
            out = _e(VECTOR, head, *param, arg, f"){grouping}", construct=f"agg:{op}")
        else:
            out = _e(VECTOR, head, *param, arg, ")", construct=f"agg:{op}")
        if which:
            out = Expr(VECTOR, (*out.parts, Expr(VECTOR, (), which)), out.construct)
        return out

    # operators

    def _op(self, ops: Sequence[str]) -> str | None:
        ok = [o for o in ops if self._allowed(f"op:{o}")]
        return self.rng.choice(ok) if ok else None

    def scalar_binary(self, depth: int) -> Expr | None:
        rng = self.rng
        op = self._op(ARITHMETIC if rng.random() < 0.7 else COMPARISON)
        if op is None:
            return None
        lhs, rhs = self.expr(SCALAR, depth), self.expr(SCALAR, depth)
        if lhs is None or rhs is None:
            return None
        if op in COMPARISON:
            if not self._allowed("bool"):
                return None
            return _e(SCALAR, _paren(lhs), f" {op} bool ", _paren(rhs), construct=f"op:{op}")
        if op == "^":
            rhs = self.exponent()
        return _e(SCALAR, _paren(lhs), f" {op} ", _paren(rhs), construct=f"op:{op}")

    def exponent(self) -> Expr:
        """A literal exponent: integers and ±0.5 only.

        docs/promql.md: any other non-integer exponent may differ from Go's ``math.Pow`` in the
        last bit (a deliberate difference), so the generator does not write one.
        """
        text = self.rng.choice(("2", "3", "0", "1", "-1", "-2", "0.5", "-0.5", "10", "Inf", "NaN"))
        if text.startswith("-") and not self._allowed("unary:-"):
            text = text[1:]
        return _e(SCALAR, text, construct="unary:-" if text.startswith("-") else None)

    def _integral(self, e: Expr) -> Expr | None:
        """``e`` rounded to integers (as an exponent), or None when round() is not allowed."""
        if not self._allowed("func:round"):
            return None
        return _e(e.type, "round(", e, ")", construct="func:round")

    def vector_scalar_binary(self, depth: int) -> Expr | None:
        rng = self.rng
        op = self._op(ARITHMETIC + COMPARISON)
        if op is None:
            return None
        vec = self.expr(VECTOR, depth)
        sca = self.expr(SCALAR, depth - 1) if rng.random() < 0.4 else self.number()
        if vec is None or sca is None:
            return None
        mid = f" {op} "
        used = [f"op:{op}"]
        if op in COMPARISON and rng.random() < 0.4 and self._allowed("bool"):
            mid = f" {op} bool "
            used.append("bool")
        vector_first = rng.random() < 0.6
        if op == "^":  # integer exponents only (see exponent())
            if vector_first:
                sca = self.exponent()
            else:
                rounded = self._integral(vec)
                if rounded is None:
                    return None
                vec = rounded
        sides = (_paren(vec), mid, _paren(sca)) if vector_first else (_paren(sca), mid, _paren(vec))
        return self._tagged_node(VECTOR, sides, used)

    def _tagged_node(self, type_: str, parts: Sequence[str | Expr], used: Sequence[str]) -> Expr:
        """A node of construct ``used[0]`` that also carries ``used[1:]`` (as empty kids)."""
        return Expr(type_, (*parts, *(Expr(type_, (), c) for c in used[1:])), used[0])

    def vector_binary(self, depth: int) -> Expr | None:
        rng = self.rng
        kind = rng.random()
        ops = ARITHMETIC if kind < 0.45 else COMPARISON if kind < 0.75 else SET_OPERATORS
        op = self._op(ops)
        if op is None:
            return None
        lhs, rhs = self.expr(VECTOR, depth), self.expr(VECTOR, depth)
        if lhs is None or rhs is None:
            return None
        if op == "^":  # integer exponents only (see exponent())
            rhs = self._integral(rhs)
            if rhs is None:
                return None
        used = [f"op:{op}"]
        mid = f" {op} "
        if op in COMPARISON and rng.random() < 0.4 and self._allowed("bool"):
            mid += "bool "
            used.append("bool")
        labels = ", ".join(rng.sample(("job", "inst", "le", "mode", "zz"), rng.randint(0, 2)))
        match = rng.random()
        if match < 0.35 and self._allowed("on"):
            mid += f"on({labels}) "
            used.append("on")
        elif match < 0.55 and self._allowed("ignoring"):
            mid += f"ignoring({labels}) "
            used.append("ignoring")
        if op not in SET_OPERATORS and rng.random() < 0.2:
            group = rng.choice(("group_left", "group_right"))
            if self._allowed(group):
                if used[-1] not in ("on", "ignoring"):
                    if not self._allowed("ignoring"):
                        return None
                    mid += "ignoring() "
                    used.append("ignoring")
                on = labels.split(", ") if used[-1] == "on" else []
                pool = [lbl for lbl in ("job", "inst", "le", "dst") if lbl not in on]
                extra = rng.sample(pool, rng.randint(0, 1))
                # "group_left (x)" takes (x) as its label list: bare only before a non-"("
                bare = not extra and not rhs_text(rhs).startswith("(") and rng.random() < 0.5
                mid += f"{group} " if bare else f"{group}({', '.join(extra)}) "
                used.append(group)
        return self._tagged_node(VECTOR, (_paren(lhs), mid.rstrip() + " ", _paren(rhs)), used)

    def unary(self, want: str, depth: int) -> Expr | None:
        if not self._allowed("unary:-"):
            return None
        arg = self.expr(want, depth)
        if arg is None:
            return None
        return _e(
            want,
            "-",
            _paren(arg) if arg.construct != "unary:-" else _e(want, "(", arg, ")"),
            construct="unary:-",
        )


def generate(
    seed: int, n: int, constructs: frozenset[str] = ALL_CONSTRUCTS
) -> list[tuple[Case, Expr]]:
    """``n`` cases from ``seed``; the same arguments always give the same cases."""
    gen = Generator(seed, constructs)
    out = []
    for i in range(n):
        case, expr = gen.case()
        out.append((Case(case.series, case.expr, case.at, case.interval, note=f"gen#{i}"), expr))
    return out


def main(argv: Sequence[str]) -> None:
    """Print ``N`` generated cases of seed ``SEED`` with the constructs each uses."""
    seed = int(argv[0]) if argv else 1
    n = int(argv[1]) if len(argv) > 1 else 20
    for case, expr in generate(seed, n):
        print(f"{case.note} at {case.at} every {case.interval}: {case.expr}")
        print(f"    constructs: {sorted(expr.constructs())}")
        for key, values in case.series:
            print(f"    {key}: {values}")


if __name__ == "__main__":
    main(sys.argv[1:])
