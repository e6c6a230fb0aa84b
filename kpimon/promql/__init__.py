"""PromQL for KPI expressions: compile once at load time, evaluate every tick over the store.

``compile_expr`` parses with the ``promql-parser`` package and checks that every construct is in
the subset kpimon evaluates (docs/promql.md); anything else raises :class:`PromQLError` naming the
construct. The compiled form also tells the rest of kpimon what the expression reads:
``metric_names`` (the scraper keeps only these) and ``max_range_s`` (the store keeps this much
history plus the 5-minute lookback). ``evaluate`` computes an expression over the
:class:`~kpimon.store.Store` at a given time, with Prometheus 2.x semantics.

Modules: ``compile`` (parse, check, plan), ``plan`` (plan nodes), ``evaluate`` (result types and
the walk), ``select`` (selectors, lookback, windows), ``functions`` and ``overtime`` (range
functions), ``instant`` (functions of instant vectors and scalars), ``ops`` (operators, matching,
sum/avg/min/max/count), ``gomath`` (Go's ``^`` and ``atan2``), ``subquery`` (subquery steps and
their range vectors), ``aggregations`` (the other aggregations), ``tables`` (label tables cached
per series-set change).

This package never does I/O and never awaits.
"""

from __future__ import annotations

from kpimon.promql.compile import LOOKBACK_S, CompiledExpr, compile_expr
from kpimon.promql.evaluate import Scalar, Vector, evaluate

__all__ = ["LOOKBACK_S", "CompiledExpr", "Scalar", "Vector", "compile_expr", "evaluate"]
