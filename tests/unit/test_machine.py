"""The sustained-threshold state machine (ARCHITECTURE §5), driven tick by tick."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpimon.kpi.machine import (
    CLEARING,
    FIRING,
    INACTIVE,
    PENDING,
    KpiState,
    LevelRule,
    MachineRule,
    Transition,
)
from tests.helpers.machine import warning_level as warning

A: tuple[tuple[str, str], ...] = (("instance", "db1"),)
B: tuple[tuple[str, str], ...] = (("instance", "db2"),)


def run(state: KpiState, series: list[tuple[float, dict[tuple[tuple[str, str], ...], float]]]):
    out: list[Transition] = []
    for t, vec in series:
        labels = list(vec)
        out += state.step(t, labels, np.array([vec[k] for k in labels], dtype=float))
    return out


def phases(state: KpiState, labels=A) -> list[int]:
    return [int(p) for p in state.phase[:, state.index[labels]]]


def test_fires_after_for_and_resolves():
    s = KpiState(MachineRule(levels=(warning(for_s=60),)))
    tr = run(s, [(0, {A: 50}), (15, {A: 75}), (30, {A: 80}), (60, {A: 80}), (75, {A: 90})])
    assert [(x.t, x.from_phase, x.to_phase) for x in tr] == [
        (15, INACTIVE, PENDING),
        (75, PENDING, FIRING),
    ]
    assert tr[-1].notifies
    assert not tr[0].notifies
    assert s.status[s.index[A]] == 1
    assert s.status_since[s.index[A]] == 75
    assert s.breaches[0, 0] == 1
    tr = run(s, [(90, {A: 60})])
    assert [(x.from_phase, x.to_phase, x.notifies) for x in tr] == [(FIRING, INACTIVE, True)]
    assert s.status[0] == 0
    assert s.status_since[0] == 90
    assert s.breach_s[0, 0] == 15


def test_pending_resets_when_condition_fails():
    s = KpiState(MachineRule(levels=(warning(for_s=60),)))
    tr = run(s, [(0, {A: 75}), (30, {A: 60}), (45, {A: 75}), (90, {A: 75}), (105, {A: 75})])
    assert [(x.t, x.to_phase) for x in tr] == [
        (0, PENDING),
        (30, INACTIVE),
        (45, PENDING),
        (105, FIRING),
    ]


def test_hysteresis_and_clear_for():
    s = KpiState(MachineRule(levels=(warning(clear=65, clear_for_s=60),)))
    tr = run(
        s,
        [
            (0, {A: 72}),
            (15, {A: 68}),
            (30, {A: 64}),
            (45, {A: 66}),
            (60, {A: 64}),
            (105, {A: 60}),
            (120, {A: 60}),
        ],
    )
    got = [(x.t, x.from_phase, x.to_phase, x.notifies) for x in tr]
    assert got == [
        (0, INACTIVE, FIRING, True),  # for 0 fires at once
        (30, FIRING, CLEARING, False),  # 68 is still above clear 65; 64 is not
        (45, CLEARING, FIRING, False),  # back above clear: firing again, no new page
        (60, FIRING, CLEARING, False),
        (120, CLEARING, INACTIVE, True),  # within clear for 60 s
    ]
    assert s.breaches[0, 0] == 1  # one breach episode, not two


def test_below_levels():
    lv = LevelRule(name="critical", above=False, threshold=10, clear=15, for_s=30)
    s = KpiState(MachineRule(levels=(lv,)))
    tr = run(s, [(0, {A: 9}), (30, {A: 9}), (45, {A: 12}), (60, {A: 16})])
    assert [(x.t, x.to_phase) for x in tr] == [(0, PENDING), (30, FIRING), (60, INACTIVE)]
    assert "value >= 15" in tr[-1].reason


def test_status_takes_most_severe_breaching_level():
    crit = LevelRule(name="critical", above=True, threshold=90, clear=90)
    s = KpiState(MachineRule(levels=(warning(), crit)))
    run(s, [(0, {A: 95, B: 75})])
    assert s.status[s.index[A]] == 2
    assert s.status[s.index[B]] == 1


def test_missing_data_within_max_gap_keeps_timer():
    s = KpiState(MachineRule(levels=(warning(for_s=60),), max_gap_s=30))
    tr = run(s, [(0, {A: 80}), (15, {}), (30, {}), (45, {A: 80}), (60, {A: 80})])
    assert [(x.t, x.to_phase) for x in tr] == [(0, PENDING), (60, FIRING)]


def test_missing_data_drops_pending_past_max_gap():
    s = KpiState(MachineRule(levels=(warning(for_s=60),)))  # max_gap 0 = Prometheus
    tr = run(s, [(0, {A: 80}), (15, {}), (30, {A: 80})])
    assert [(x.t, x.to_phase) for x in tr] == [(0, PENDING), (15, INACTIVE), (30, PENDING)]
    assert tr[1].reason == "series missing longer than max_gap"


def test_firing_is_not_resolved_by_missing_data_until_resolve_after():
    rule = MachineRule(levels=(warning(),), no_data_after_s=300, no_data_resolve_after_s=3600)
    s = KpiState(rule)
    run(s, [(0, {A: 80})])
    tr = run(s, [(t, {}) for t in range(15, 3600, 15)])
    assert tr == []
    i = s.index[A]
    assert phases(s) == [FIRING]
    assert s.status[i] == -1
    assert s.status_since[i] == 300
    tr = run(s, [(3600, {})])
    assert [(x.to_phase, x.reason, x.notifies) for x in tr] == [(INACTIVE, "no data", True)]
    assert math.isnan(tr[0].value)


def test_prometheus_semantics_resolve_on_absence():
    s = KpiState(MachineRule(levels=(warning(),), prometheus=True))
    tr = run(s, [(0, {A: 80}), (15, {})])
    assert [(x.to_phase, x.notifies) for x in tr] == [(FIRING, True), (INACTIVE, True)]


def test_prometheus_semantics_keep_firing_for_covers_absence():
    s = KpiState(MachineRule(levels=(warning(clear_for_s=30),), prometheus=True))
    tr = run(s, [(0, {A: 80}), (15, {}), (30, {}), (45, {})])
    assert [(x.t, x.to_phase, x.notifies) for x in tr] == [
        (0, FIRING, True),
        (15, CLEARING, False),
        (45, INACTIVE, True),
    ]


def test_nan_value_fails_the_condition():
    s = KpiState(MachineRule(levels=(warning(),)))
    tr = run(s, [(0, {A: 80}), (15, {A: float("nan")})])
    assert [x.to_phase for x in tr] == [FIRING, INACTIVE]


def test_absent_series_are_forgotten_eventually():
    s = KpiState(MachineRule(levels=(warning(),), no_data_after_s=60, no_data_resolve_after_s=120))
    run(s, [(0, {A: 1, B: 2}), (60, {B: 2}), (121, {B: 2})])
    assert s.labels == [B]
    assert s.index == {B: 0}


def test_labels_order_may_change_between_ticks():
    s = KpiState(MachineRule(levels=(warning(for_s=30),)))
    run(s, [(0, {A: 80, B: 10}), (15, {B: 10, A: 80}), (30, {A: 10, B: 80})])
    assert phases(s, A) == [INACTIVE]
    assert phases(s, B) == [PENDING]


def test_pending_seconds():
    s = KpiState(MachineRule(levels=(warning(for_s=600),)))
    run(s, [(0, {A: 80}), (120, {A: 80})])
    assert s.pending_seconds(150)[0, 0] == 150


# -- compatibility with the Prometheus alerting rule, tick for tick ---------------------------


def prometheus_alert(values: list[float], threshold: float, for_ticks: int) -> list[str]:
    """What the Prometheus rule `expr > threshold` with `for:` reports at each tick (no gaps)."""
    out, active_at = [], None
    for i, v in enumerate(values):
        if v > threshold:
            if active_at is None:
                active_at = i
            out.append("firing" if i - active_at >= for_ticks else "pending")
        else:
            active_at = None
            out.append("inactive")
    return out


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.floats(0, 100, allow_nan=False), st.just(float("nan"))),
        min_size=1,
        max_size=60,
    ),
    for_ticks=st.integers(0, 6),
)
def test_default_levels_match_prometheus_tick_for_tick(values, for_ticks):
    step = 15.0
    s = KpiState(MachineRule(levels=(warning(for_s=for_ticks * step),)))
    expected = prometheus_alert(values, 70, for_ticks)
    for i, v in enumerate(values):
        s.step(i * step, [A], np.array([v]))
        assert ("inactive", "pending", "firing", "clearing")[phases(s)[0]] == expected[i], i


@settings(max_examples=300, deadline=None)
@given(
    ticks=st.lists(
        st.one_of(st.none(), st.floats(0, 100, allow_nan=False)), min_size=1, max_size=80
    ),
    for_ticks=st.integers(0, 8),
    clear=st.floats(50, 70),
    clear_for_ticks=st.integers(0, 4),
    max_gap_ticks=st.integers(0, 4),
    resolve_after_ticks=st.integers(1, 20),
)
def test_invariants_with_gaps(
    ticks, for_ticks, clear, clear_for_ticks, max_gap_ticks, resolve_after_ticks
):
    """Never fires before `for` has elapsed with the condition holding at every sample; a firing
    level is never resolved by missing data alone before no_data.resolve_after."""
    step = 15.0
    rule = MachineRule(
        levels=(warning(for_s=for_ticks * step, clear=clear, clear_for_s=clear_for_ticks * step),),
        max_gap_s=max_gap_ticks * step,
        no_data_after_s=step,
        no_data_resolve_after_s=resolve_after_ticks * step,
    )
    s = KpiState(rule)
    last_seen = None
    for i, v in enumerate(ticks):
        t = i * step
        vec = {} if v is None else {A: v}
        tr = run(s, [(t, vec)])
        if v is not None:
            last_seen = t
        for x in tr:
            if x.to_phase == FIRING and x.from_phase != CLEARING:
                # the condition held at every present sample since the episode began
                start = t - for_ticks * step
                window = [ticks[j] for j in range(len(ticks)) if start <= j * step <= t]
                assert all(w is None or w > 70 for w in window)
                assert v is not None
                assert v > 70
            if x.to_phase == INACTIVE and x.from_phase in (FIRING, CLEARING) and v is None:
                assert last_seen is not None
                assert t - last_seen >= resolve_after_ticks * step


def test_vectorised_over_many_series():
    n = 10_000
    labels = [(("instance", f"h{i}"),) for i in range(n)]
    s = KpiState(MachineRule(levels=(warning(for_s=30),)))
    vals = np.where(np.arange(n) % 10 == 0, 90.0, 10.0)
    assert len(s.step(0, labels, vals)) == n // 10
    assert s.step(15, labels, vals) == []
    tr = s.step(30, labels, vals)
    assert len(tr) == n // 10
    assert all(x.to_phase == FIRING for x in tr)


@pytest.mark.parametrize("bad", [float("inf"), -float("inf")])
def test_infinities_compare_as_numbers(bad):
    s = KpiState(MachineRule(levels=(warning(),)))
    tr = run(s, [(0, {A: bad})])
    assert [x.to_phase for x in tr] == ([FIRING] if bad > 0 else [])


def test_clearing_past_max_gap_is_firing_again():
    """The clear_for timer, like the for timer, survives gaps up to max_gap only: a level does
    not resolve on data that returns after a long gap without having stayed clear for
    clear_for."""
    s = KpiState(MachineRule(levels=(warning(clear_for_s=30),), max_gap_s=15))
    tr = run(s, [(0, {A: 80}), (15, {A: 60}), (30, {}), (45, {}), (60, {A: 60})])
    assert [(x.t, x.from_phase, x.to_phase, x.notifies) for x in tr] == [
        (0, INACTIVE, FIRING, True),
        (15, FIRING, CLEARING, False),
        (45, CLEARING, FIRING, False),
        (60, FIRING, CLEARING, False),
    ]
    assert tr[2].reason == "series missing longer than max_gap while clearing"
    tr = run(s, [(75, {A: 60}), (90, {A: 60})])
    assert [(x.t, x.to_phase, x.notifies) for x in tr] == [(90, INACTIVE, True)]


def test_clearing_within_max_gap_keeps_its_timer():
    s = KpiState(MachineRule(levels=(warning(clear_for_s=45),), max_gap_s=15))
    tr = run(s, [(0, {A: 80}), (15, {A: 60}), (30, {}), (45, {A: 60}), (60, {A: 60})])
    assert [(x.t, x.to_phase) for x in tr] == [(0, FIRING), (15, CLEARING), (60, INACTIVE)]


def test_state_arrays_name_every_per_series_array():
    s = KpiState(MachineRule(levels=(warning(), warning())))
    s.step(0, [A, B], np.array([1.0, 2.0]))
    for name in KpiState.STATE_ARRAYS:
        assert getattr(s, name).shape[-1] == 2, name
    per_series = {
        k
        for k, v in vars(s).items()
        if isinstance(v, np.ndarray) and v.shape[-1:] == (2,) and not k.startswith("_")
    }
    assert per_series <= set(KpiState.STATE_ARRAYS) | {"dirty"}
