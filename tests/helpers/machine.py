"""Building state-machine rules for tests of :mod:`kpimon.kpi.machine`."""

from __future__ import annotations

from kpimon.kpi.machine import LevelRule

THRESHOLD = 70.0


def warning_level(**kw: float) -> LevelRule:
    """A ``warning`` level above ``THRESHOLD`` (cleared there, no ``for`` or ``clear_for``);
    ``kw`` overrides any of ``threshold``, ``clear``, ``for_s`` and ``clear_for_s``."""
    args = {"threshold": THRESHOLD, "clear": THRESHOLD, "for_s": 0.0, "clear_for_s": 0.0}
    args.update(kw)
    return LevelRule(name="warning", above=True, **args)  # type: ignore[arg-type]
