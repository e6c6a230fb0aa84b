"""PromQL for KPI expressions: compile once at load time, evaluate every tick over the store.

``compile_expr`` parses with the ``promql-parser`` package and checks that every construct is in
the subset kpimon evaluates (docs/promql.md); anything else raises :class:`PromQLError` naming the
construct. The compiled form also tells the rest of kpimon what the expression reads:
``metric_names`` (the scraper keeps only these) and ``max_range_s`` (the store keeps this much
history plus the 5-minute lookback).

This package never does I/O and never awaits.
"""

from __future__ import annotations

from kpimon.promql.compile import LOOKBACK_S, CompiledExpr, compile_expr

__all__ = ["LOOKBACK_S", "CompiledExpr", "compile_expr"]
