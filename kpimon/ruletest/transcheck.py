"""Compare a ``transition_test``'s expected transitions with the ones a run made.

The whole ordered list is compared: the n-th transition made in the test's range must match the
n-th expected one (time, KPI, series labels, level, from and to phases exactly; ``notify``
against :attr:`Transition.notifies <kpimon.kpi.machine.Transition.notifies>` and ``reason`` as a
substring, when given), and there must be as many. A failure lists both sides with aligned
columns and marks the first difference with ``>``.

Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from kpimon.config.durations import format_duration
from kpimon.kpi.machine import PHASES, Transition
from kpimon.labels import format_labels
from kpimon.ruletest.model import ExpTransition, TransitionTest

Got = tuple[str, Transition]
"""A transition made by the run, with its KPI's name."""


def check_transitions(test: TransitionTest, got: Sequence[Got]) -> str | None:
    """The failure text of ``test`` given the transitions ``got`` in its range (None: passed)."""
    exp = test.exp_transitions
    first: int | None = None
    fields: list[str] = []
    for i in range(max(len(exp), len(got))):
        if i >= len(exp):
            first, fields = i, ["unexpected transition"]
            break
        if i >= len(got):
            first, fields = i, ["missing transition"]
            break
        fields = _differences(exp[i], got[i])
        if fields:
            first = i
            break
    if first is None:
        return None
    exp_rows = [_exp_row(i, e) for i, e in enumerate(exp)]
    got_rows = [_got_row(i, name, tr) for i, (name, tr) in enumerate(got)]
    widths = [
        max((len(row[c]) for row in exp_rows + got_rows), default=0)
        for c in range(len(_HEADINGS) - 1)
    ]
    lines = [
        f"    {test.title}, {test.position.file}:{test.position.line}:{test.position.column}: "
        f"from {_fmt(test.from_ms)} to {_fmt(test.to_ms)}"
        + (f", kpi {test.kpi}" if test.kpi else ""),
        f"      first difference at [{first}]: {', '.join(fields)}",
        "        exp:" + ("" if exp_rows else " none"),
        *_listing(exp_rows, widths, first),
        "        got:" + ("" if got_rows else " none"),
        *_listing(got_rows, widths, first),
    ]
    return "\n".join(lines)


_HEADINGS = ("index", "time", "series", "level", "phases", "notify", "reason")


def _fmt(ms: int) -> str:
    return format_duration(ms / 1000)


def _ms(tr: Transition) -> int:
    return round(tr.t * 1000)


def _differences(exp: ExpTransition, got: Got) -> list[str]:
    name, tr = got
    checks = (
        ("time", exp.time_ms == _ms(tr)),
        ("kpi", exp.kpi == name),
        ("labels", dict(exp.labels) == dict(tr.labels)),
        ("level", exp.level == tr.level),
        ("from", exp.from_phase == PHASES[tr.from_phase]),
        ("to", exp.to_phase == PHASES[tr.to_phase]),
        ("notify", exp.notify is None or exp.notify == tr.notifies),
        ("reason", exp.reason is None or exp.reason in tr.reason),
    )
    return [field for field, same in checks if not same]


def _exp_row(i: int, e: ExpTransition) -> list[str]:
    notify = "" if e.notify is None else ("notify" if e.notify else "no notify")
    reason = "" if e.reason is None else f"reason contains {json.dumps(e.reason)}"
    return [
        f"{i}:",
        _fmt(e.time_ms),
        e.kpi + format_labels(e.labels),
        e.level,
        f"{e.from_phase} -> {e.to_phase}",
        notify,
        reason,
    ]


def _got_row(i: int, name: str, tr: Transition) -> list[str]:
    return [
        f"{i}:",
        format_duration(max(0.0, tr.t)),
        name + format_labels(tr.labels),
        tr.level,
        f"{PHASES[tr.from_phase]} -> {PHASES[tr.to_phase]}",
        "notify" if tr.notifies else "no notify",
        f"reason {json.dumps(tr.reason)}",
    ]


def _listing(rows: list[list[str]], widths: list[int], first: int) -> list[str]:
    out = []
    for i, row in enumerate(rows):
        mark = ">" if i == first else " "
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        cells[0] = row[0].rjust(widths[0])  # indexes right-aligned
        out.append(f"          {mark} " + "  ".join([*cells, row[-1]]).rstrip())
    return out
