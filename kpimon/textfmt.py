"""Small text helpers that several reports share: numbers as written, counted nouns.

Durations are :func:`kpimon.config.durations.format_duration`; label sets are
:func:`kpimon.labels.format_labels`. Pure.
"""

from __future__ import annotations

import math


def plain_number(x: float) -> str:
    """A number as written in a rule: ``70``, ``0.95``, ``1e+21``, ``inf``."""
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def exposition_number(v: float) -> str:
    """A sample value as the Prometheus text format writes it: ``NaN``, ``+Inf``, ``-Inf``,
    else Python's shortest round-trip ``repr``."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def json_number(x: float | None) -> float | str | None:
    """Numbers JSON can carry; NaN and infinities as the Prometheus HTTP API spells them."""
    if x is None or math.isfinite(x):
        return x
    if math.isnan(x):
        return "NaN"
    return "+Inf" if x > 0 else "-Inf"


def count(n: int, noun: str) -> str:
    """``1 file``, ``2 files``: ``n`` and ``noun``, plural with an ``s`` unless n is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def family_header(name: str, doc: str, kind: str = "gauge") -> str:
    """The ``# HELP`` and ``# TYPE`` lines of a metric family (text format 0.0.4: backslashes
    and newlines in the help text escaped)."""
    escaped = doc.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} {kind}\n"
