"""Shrink a disagreeing differential case to a small reproducer.

:func:`shrink` greedily drops input series, replaces the expression by a smaller one of the
same type (:func:`shrink_candidates`, over the generator's :class:`~tests.helpers.promql_gen.Expr`
trees) and cuts series short, as long as the case still comes out the same way.

``python -m tests.helpers.promql_shrink [SEED [N]]`` runs the ``N`` generated cases of ``SEED``
against promtool (as the differential suite does) and prints every disagreement, shrunk.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.helpers.promql import DISAGREE, LIVE_DIFFERS, Case, Verdict, differential
from tests.helpers.promql_gen import Expr, generate


def shrink_candidates(expr: Expr) -> Iterator[Expr]:
    """Smaller expressions of the same type: a sub-expression instead of the whole or a part."""
    for kid in _descendants(expr):
        if kid.type == expr.type and kid is not expr and kid.text:
            yield kid
    for i, part in enumerate(expr.parts):
        if isinstance(part, Expr):
            for smaller in shrink_candidates(part):
                yield Expr(
                    expr.type, (*expr.parts[:i], smaller, *expr.parts[i + 1 :]), expr.construct
                )


def _descendants(expr: Expr) -> Iterator[Expr]:
    for kid in expr.kids:
        yield kid
        yield from _descendants(kid)


def shrink(case: Case, expr: Expr | None, fails: Callable[[Case], bool]) -> Case:
    """A smaller case that still ``fails``: fewer series, a smaller expression, shorter series.

    Greedy: each step keeps the first smaller variant that still fails, until none does.
    ``expr`` is the case's expression tree (None for a hand-written case: series only).
    """
    progress = True
    while progress:
        progress = False
        for i in range(len(case.series)):
            smaller = replace(case, series=[*case.series[:i], *case.series[i + 1 :]])
            if len(case.series) > 1 and fails(smaller):
                case, progress = smaller, True
                break
        if progress:
            continue
        for candidate in shrink_candidates(expr) if expr is not None else ():
            smaller = replace(case, expr=candidate.text)
            if fails(smaller):
                case, expr, progress = smaller, candidate, True
                break
        if progress:
            continue
        for i, (key, values) in enumerate(case.series):
            items = values.split()
            if len(items) > 1:
                cut = (key, " ".join(items[:-1]))
                smaller = replace(case, series=[*case.series[:i], cut, *case.series[i + 1 :]])
                if fails(smaller):
                    case, progress = smaller, True
                    break
    return case


def _disagreements(seed: int, n: int) -> None:
    def judge(case: Case) -> Verdict:
        with tempfile.TemporaryDirectory() as tmp:
            return differential([case], Path(tmp))[0]

    pairs = generate(seed, n)
    with tempfile.TemporaryDirectory() as tmp:
        verdicts = differential([c for c, _ in pairs], Path(tmp))
    for (case, expr), verdict in zip(pairs, verdicts, strict=True):
        if verdict.kind in (DISAGREE, LIVE_DIFFERS):
            small = shrink(case, expr, functools.partial(_still, judge, verdict.kind))
            print(f"# {case.note}: {case.expr}\n{judge(small).describe()}\n")


def _still(judge: Callable[[Case], Any], kind: str, case: Case) -> bool:
    return bool(judge(case).kind == kind)


def main(argv: Sequence[str]) -> None:
    """Shrink and print the disagreements among ``N`` generated cases of ``SEED``."""
    _disagreements(int(argv[0]) if argv else 3, int(argv[1]) if len(argv) > 1 else 640)


if __name__ == "__main__":
    main(sys.argv[1:])
