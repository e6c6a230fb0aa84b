"""Service health: ITSI's importance-weighted score, hand-computed and property-tested."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from kpimon.errors import Position
from kpimon.slo.health import (
    health_score,
    kpi_status,
    score_status,
    service_health,
)
from kpimon.slo.model import Service, ServiceKpi

POS = Position("rules.yaml", 1, 1)
NO_DATA, OK, WARNING, CRITICAL = -1, 0, 1, 2


def service(*members: tuple[str, int]) -> Service:
    return Service(
        name="checkout",
        owner="team",
        kpis=tuple(ServiceKpi(kpi=k, importance=i, position=POS) for k, i in members),
        file="rules.yaml",
        position=POS,
    )


def test_itsi_two_kpis_one_critical_one_ok_is_50() -> None:
    # ITSI's own example ("How service health scores work"): equal importance, one Critical
    # (0), one Normal (100): 50.
    assert health_score([(5, CRITICAL), (5, OK)]) == 50.0
    assert score_status(50.0) == WARNING


def test_weighted_average_by_hand() -> None:
    # (100 × 10 + 50 × 7 + 0 × 5) / 22 = 1350 / 22 = 61.36…
    assert health_score([(10, OK), (7, WARNING), (5, CRITICAL)]) == 1350 / 22
    h = service_health(
        service(("a", 10), ("b", 7), ("c", 5)), {"a": OK, "b": WARNING, "c": CRITICAL}
    )
    assert h.score == 1350 / 22
    assert h.status == WARNING
    assert h.kpi_status == (("a", OK), ("b", WARNING), ("c", CRITICAL))


def test_importance_11_critical_makes_the_service_critical_whatever_the_others() -> None:
    members = [(11, CRITICAL), (10, OK), (10, OK), (10, OK)]
    assert health_score(members) == 0.0
    assert score_status(health_score(members)) == CRITICAL
    # Warning at importance 11 is an ordinary weight of 11: (11 × 50 + 30 × 100) / 41.
    assert health_score([(11, WARNING), (10, OK), (10, OK), (10, OK)]) == 3550 / 41


def test_no_data_kpis_are_left_out_and_all_missing_is_no_data() -> None:
    assert health_score([(5, NO_DATA), (5, OK)]) == 100.0
    assert math.isnan(health_score([(5, NO_DATA), (0, CRITICAL)]))
    h = service_health(service(("a", 5), ("gone", 3)), {"a": NO_DATA})
    assert math.isnan(h.score)
    assert h.status == NO_DATA
    assert h.kpi_status == (("a", NO_DATA), ("gone", NO_DATA))


def test_status_bands() -> None:
    assert [score_status(s) for s in (100, 80, 79.9, 50, 20, 19.9, 0)] == [
        OK,
        OK,
        WARNING,
        WARNING,
        WARNING,
        CRITICAL,
        CRITICAL,
    ]


def test_a_kpi_counts_with_its_worst_series() -> None:
    assert kpi_status([OK, WARNING, NO_DATA]) == WARNING
    assert kpi_status([OK, CRITICAL, WARNING]) == CRITICAL
    assert kpi_status([NO_DATA, NO_DATA]) == NO_DATA
    assert kpi_status([]) == NO_DATA


statuses = st.sampled_from([NO_DATA, OK, WARNING, CRITICAL])
members = st.lists(st.tuples(st.integers(0, 11), statuses), max_size=12)


@given(members)
def test_score_is_between_0_and_100_or_nan(ms: list[tuple[int, int]]) -> None:
    score = health_score(ms)
    scored = [m for m in ms if m[0] > 0 and m[1] != NO_DATA]
    if scored:
        assert 0.0 <= score <= 100.0
    else:
        assert math.isnan(score)
        assert score_status(score) == NO_DATA


@given(members, st.integers(0, 12))
def test_a_critical_importance_11_kpi_makes_the_service_critical(
    ms: list[tuple[int, int]], at: int
) -> None:
    ms = [*ms[:at], (11, CRITICAL), *ms[at:]]
    assert score_status(health_score(ms)) == CRITICAL


@given(members, st.lists(statuses, max_size=5), st.integers(0, 12))
def test_importance_0_kpis_never_change_the_score(
    ms: list[tuple[int, int]], zero_statuses: list[int], at: int
) -> None:
    with_zeros = [*ms[:at], *((0, s) for s in zero_statuses), *ms[at:]]
    before, after = health_score(ms), health_score(with_zeros)
    assert (math.isnan(before) and math.isnan(after)) or before == after


@given(members)
def test_all_ok_is_100_and_ok(ms: list[tuple[int, int]]) -> None:
    ms = [(i, OK) for i, _ in ms] + [(1, OK)]
    assert health_score(ms) == 100.0
    assert score_status(100.0) == OK


@given(members, st.integers(1, 10))
def test_a_kpi_getting_worse_never_raises_the_score(ms: list[tuple[int, int]], imp: int) -> None:
    ok, warn, crit = (health_score([*ms, (imp, s)]) for s in (OK, WARNING, CRITICAL))
    if any(m[0] == 11 and m[1] == CRITICAL for m in ms):
        assert ok == warn == crit == 0.0
    else:
        assert ok >= warn >= crit
