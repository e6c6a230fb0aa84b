"""Rule unit tests (``kpimon test``) in promtool's test-file format, run over kpimon's engine.

Test files are promtool's (``rule_files``, ``evaluation_interval``, ``tests[]`` with
``input_series``, ``alert_rule_test`` and ``promql_expr_test``, plus kpimon's ``transition_test``),
with ``rule_files`` naming kpimon rule files (ARCHITECTURE §6). The KPIs run through the daemon's
own store and engine on a simulated clock, so a test passes or fails exactly as production would
behave.

Modules: :mod:`.series` (promtool's series notation), :mod:`.model` (frozen dataclasses),
:mod:`.loader` (test-file text → model, problems with FILE:LINE:COL), :mod:`.render` (Go number
formatting, trivial alert templates), :mod:`.transload` and :mod:`.transcheck` (kpimon's own
``transition_test``: parsing, comparison), :mod:`.runner` (the simulation and the comparisons;
restarts through a temporary journal) and :mod:`.command` (the ``kpimon test`` command: files
in, report out).
"""

from __future__ import annotations

from kpimon.ruletest.command import run_tests
from kpimon.ruletest.loader import parse_test_file
from kpimon.ruletest.runner import Failure, FileResult, run_test_file
from kpimon.ruletest.series import SeriesError, expand_values, parse_metric

__all__ = [
    "Failure",
    "FileResult",
    "SeriesError",
    "expand_values",
    "parse_metric",
    "parse_test_file",
    "run_test_file",
    "run_tests",
]
