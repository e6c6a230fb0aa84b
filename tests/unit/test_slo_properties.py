"""Property-based tests of the SLO arithmetic: the generated PromQL over a real store, the
ledger, and the numbers exported from them."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kpimon.errors import Position
from kpimon.labels import format_key
from kpimon.promql.compile import compile_expr
from kpimon.promql.evaluate import Vector, evaluate
from kpimon.slo.compile import burn_rate
from kpimon.slo.model import Sli, Slo
from kpimon.slo.tracker import Ledger, reading
from kpimon.store import Store

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600
POS = Position("rules.yaml", 1, 1)

objectives = st.sampled_from([90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999])


def slo(objective: float) -> Slo:
    return Slo(
        name="s",
        owner="o",
        objective=objective,
        sli=Sli(
            kind="errors",
            query='sum(increase(req_total{code="500"}[{{.window}}]))',
            total_query="sum(increase(req_total[{{.window}}]))",
        ),
        file="rules.yaml",
        position=POS,
        sli_position=POS,
    )


def promql_burn(objective: float, total: int, errors: int) -> float:
    """The generated burn-rate expression over 1h, evaluated over counters that grew by
    ``total`` requests, ``errors`` of them failed, between two scrapes one hour apart."""
    store = Store(retention_s=4000, min_interval_s=3600)
    keys = [format_key("req_total", {"code": "200"}), format_key("req_total", {"code": "500"})]
    target = (("job", "j"),)
    store.ingest("t", target, keys, np.array([0.0, 0.0]), T0)
    store.ingest("t", target, keys, np.array([float(total - errors), float(errors)]), T0 + 3600)
    result = evaluate(compile_expr(burn_rate(slo(objective), "1h")), store, T0 + 3600)
    assert isinstance(result, Vector)
    assert len(result.values) == 1
    return float(result.values[0])


@settings(max_examples=40, deadline=None)
@given(
    objective=objectives,
    total=st.integers(1, 10**7),
    a=st.floats(0, 1),
    b=st.floats(0, 1),
)
def test_burn_rate_is_monotone_in_errors(objective: float, total: int, a: float, b: float) -> None:
    e1, e2 = sorted((int(a * total), int(b * total)))
    low, high = promql_burn(objective, total, e1), promql_burn(objective, total, e2)
    assert low <= high
    assert low == (e1 / total) / slo(objective).budget  # exactly the written formula


@settings(max_examples=40, deadline=None)
@given(objective=objectives, total=st.integers(1, 10**7))
def test_zero_errors_burn_nothing_and_leave_the_whole_budget(objective: float, total: int) -> None:
    assert promql_burn(objective, total, 0) == 0.0
    r = reading(30 * 86400.0, 0.0, float(total), slo(objective).budget)
    assert r.burn_rate == 0.0
    assert 1.0 - r.burn_rate == 1.0
    assert r.sli == 1.0


@settings(max_examples=60, deadline=None)
@given(objective=objectives, k=st.integers(1, 10**5))
def test_errors_equal_to_the_budget_leave_none(objective: float, k: int) -> None:
    # total chosen so that (1 − objective) × total is a whole number of errors
    budget = slo(objective).budget
    per_error = round(1 / budget)
    total, errors = k * per_error, k
    r = reading(30 * 86400.0, float(errors), float(total), budget)
    assert math.isclose(r.burn_rate, 1.0, rel_tol=1e-12)
    assert math.isclose(1.0 - r.burn_rate, 0.0, abs_tol=1e-12)
    assert math.isclose(promql_burn(objective, total, errors), 1.0, rel_tol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    buckets=st.lists(
        st.tuples(st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=50
    ),
    gap=st.integers(0, 20),
)
def test_ledger_sums_are_the_buckets_of_the_window(
    buckets: list[tuple[int, int]], gap: int
) -> None:
    # A 1-hour ledger of 5-minute buckets (12 of them) recorded one bucket after another,
    # with ``gap`` buckets missed before the last one.
    ledger = Ledger(window_s=3600.0)
    t = T0
    times = []
    for i, (bad, good) in enumerate(buckets):
        t = T0 + 300.0 * (i + (gap if i == len(buckets) - 1 else 0))
        assert ledger.due(t)
        ledger.record(t, float(bad), float(bad + good))
        times.append(t)
    assert not ledger.due(t)
    in_window = [(b, b + g) for (b, g), tb in zip(buckets, times, strict=True) if tb > t - 3600.0]
    bad_sum, total_sum, coverage = ledger.sums(t)
    assert bad_sum == sum(b for b, _ in in_window)
    assert total_sum == sum(tot for _, tot in in_window)
    assert coverage == len(in_window) / 12
    assert 0 < coverage <= 1
