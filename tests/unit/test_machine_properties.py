"""Properties of the state machine over random value and gap sequences (ARCHITECTURE §5).

(a) a level never fires before ``for`` has elapsed with the condition holding at every
    evaluated tick since ``active_at`` (ticks inside ``max_gap`` excepted);
(b) with ``max_gap`` 0 and no ``clear`` it is the Prometheus alerting rule, tick for tick,
    gaps included (``semantics: prometheus``, ``clear_for`` as ``keep_firing_for``);
(c) a firing level is never resolved by missing data alone before ``no_data.resolve_after``;
(d) hysteresis: once firing, a level is never resolved while the value stays beyond ``clear``.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kpimon.kpi.machine import (
    CLEARING,
    FIRING,
    INACTIVE,
    PENDING,
    KpiState,
    MachineRule,
    Transition,
)
from tests.helpers.machine import THRESHOLD
from tests.helpers.machine import warning_level as level

STEP = 15.0
A = (("instance", "a"),)

values = st.one_of(
    st.none(),  # series absent at this tick
    st.floats(0, 100, allow_nan=False),
    st.sampled_from([THRESHOLD, 65.0, float("nan")]),  # edges: at the threshold, at clear, NaN
)
ticks_st = st.lists(values, min_size=1, max_size=70)


def simulate(rule: MachineRule, ticks: list[float | None]) -> list[list[Transition]]:
    s = KpiState(rule)
    out = []
    for i, v in enumerate(ticks):
        labels, vals = ([], np.empty(0)) if v is None else ([A], np.array([v]))
        out.append(s.step(i * STEP, labels, vals))
    return out


def rule_st(prometheus: bool = False):
    return st.builds(
        lambda for_t, clear, clear_for_t, gap_t, after_t, resolve_t: MachineRule(
            levels=(
                level(
                    for_s=for_t * STEP,
                    clear=THRESHOLD if prometheus else clear,
                    clear_for_s=clear_for_t * STEP,
                ),
            ),
            max_gap_s=0.0 if prometheus else gap_t * STEP,
            no_data_after_s=after_t * STEP,
            no_data_resolve_after_s=(after_t + resolve_t) * STEP,
            prometheus=prometheus,
        ),
        for_t=st.integers(0, 6),
        clear=st.sampled_from([THRESHOLD, 65.0, 50.0]),
        clear_for_t=st.integers(0, 4),
        gap_t=st.integers(0, 4),
        after_t=st.integers(0, 4),
        resolve_t=st.integers(0, 12),
    )


def beyond(v: float | None, x: float) -> bool:
    return v is not None and v > x  # NaN > x is False


@settings(max_examples=150, deadline=None)
@given(rule=rule_st(), ticks=ticks_st)
def test_a_never_fires_before_for_with_the_condition_held(rule, ticks):
    lv = rule.levels[0]
    active_at: float | None = None
    for i, trs in enumerate(simulate(rule, ticks)):
        t = i * STEP
        for tr in trs:
            if tr.from_phase == INACTIVE and tr.to_phase in (PENDING, FIRING):
                active_at = t
            if tr.to_phase == FIRING and tr.from_phase != CLEARING:
                assert active_at is not None
                assert t - active_at >= lv.for_s
                last_present = None
                for j in range(int(active_at / STEP), i + 1):
                    v = ticks[j]
                    if v is None:
                        # absent ticks are held only within max_gap
                        assert last_present is not None
                        assert (j - last_present) * STEP <= rule.max_gap_s
                    else:
                        assert beyond(v, lv.threshold), (j, v)
                        last_present = j
                assert ticks[i] is not None


def prometheus_reference(ticks, threshold, for_s, keep_firing_for_s) -> list[str]:
    """The Prometheus alerting rule `expr > threshold` with `for` and `keep_firing_for`, per
    tick: an absent series, a NaN or a value not above the threshold yields no element."""
    out: list[str] = []
    state, active_at, keep_since = "inactive", 0.0, None
    for i, v in enumerate(ticks):
        t = i * STEP
        if beyond(v, threshold):
            keep_since = None
            if state == "inactive":
                state, active_at = "pending", t
            if state == "pending" and t - active_at >= for_s:
                state = "firing"
        elif state == "pending":
            state = "inactive"
        elif state == "firing":
            if keep_firing_for_s > 0:
                if keep_since is None:
                    keep_since = t
                if t - keep_since < keep_firing_for_s:
                    out.append(state)
                    continue
            state, keep_since = "inactive", None
        out.append(state)
    return out


def as_prometheus(phase: int) -> str:
    return {INACTIVE: "inactive", PENDING: "pending", FIRING: "firing", CLEARING: "firing"}[phase]


@settings(max_examples=200, deadline=None)
@given(rule=rule_st(prometheus=True), ticks=ticks_st)
def test_b_prometheus_semantics_match_the_alerting_rule_tick_for_tick(rule, ticks):
    lv = rule.levels[0]
    expected = prometheus_reference(ticks, lv.threshold, lv.for_s, lv.clear_for_s)
    s = KpiState(rule)
    for i, v in enumerate(ticks):
        labels, vals = ([], np.empty(0)) if v is None else ([A], np.array([v]))
        s.step(i * STEP, labels, vals)
        phase = int(s.phase[0, s.index[A]]) if A in s.index else INACTIVE
        assert as_prometheus(phase) == expected[i], (i, v)


def kpimon_reference(ticks, threshold, for_s, resolve_after_s) -> list[str]:
    """§5 with max_gap 0 and no clear: the Prometheus rule, except that an absent series keeps
    a firing level firing until data returns or it has been absent for resolve_after."""
    out: list[str] = []
    state, active_at, last_seen = "inactive", 0.0, 0.0
    for i, v in enumerate(ticks):
        t = i * STEP
        if v is None:
            expired = state == "firing" and t - last_seen >= resolve_after_s
            if state == "pending" or expired:
                state = "inactive"
            out.append(state)
            continue
        last_seen = t
        if beyond(v, threshold):
            if state == "inactive":
                state, active_at = "pending", t
            if state == "pending" and t - active_at >= for_s:
                state = "firing"
        else:
            state = "inactive"
        out.append(state)
    return out


@settings(max_examples=200, deadline=None)
@given(ticks=ticks_st, for_t=st.integers(0, 6), resolve_t=st.integers(0, 10))
def test_b_default_semantics_differ_from_prometheus_only_for_absent_firing(ticks, for_t, resolve_t):
    rule = MachineRule(
        levels=(level(for_s=for_t * STEP),),
        no_data_after_s=0.0,
        no_data_resolve_after_s=resolve_t * STEP,
    )
    expected = kpimon_reference(ticks, THRESHOLD, for_t * STEP, resolve_t * STEP)
    s = KpiState(rule)
    for i, v in enumerate(ticks):
        labels, vals = ([], np.empty(0)) if v is None else ([A], np.array([v]))
        s.step(i * STEP, labels, vals)
        phase = int(s.phase[0, s.index[A]]) if A in s.index else INACTIVE
        assert as_prometheus(phase) == expected[i], (i, v)


@settings(max_examples=150, deadline=None)
@given(
    ticks=st.lists(st.one_of(st.floats(0, 100, allow_nan=False), st.just(math.nan)), max_size=60),
    for_t=st.integers(0, 6),
)
def test_b_default_semantics_match_the_alerting_rule_without_gaps(ticks, for_t):
    rule = MachineRule(levels=(level(for_s=for_t * STEP),))
    expected = prometheus_reference(ticks, THRESHOLD, for_t * STEP, 0.0)
    s = KpiState(rule)
    for i, v in enumerate(ticks):
        s.step(i * STEP, [A], np.array([v]))
        assert as_prometheus(int(s.phase[0, 0])) == expected[i], i


@settings(max_examples=150, deadline=None)
@given(rule=rule_st(), ticks=ticks_st)
def test_c_missing_data_alone_never_resolves_before_resolve_after(rule, ticks):
    lv = rule.levels[0]
    last_present: int | None = None
    clearing_since: int | None = None
    for i, trs in enumerate(simulate(rule, ticks)):
        v = ticks[i]
        if v is not None:
            last_present = i
        for tr in trs:
            if tr.to_phase == CLEARING:
                clearing_since = i
            if tr.to_phase == INACTIVE and tr.from_phase in (FIRING, CLEARING):
                assert last_present is not None
                if v is None:
                    assert (i - last_present) * STEP >= rule.no_data_resolve_after_s
                    assert tr.reason == "no data"
                    continue
                assert not beyond(v, lv.clear)
                if tr.from_phase == CLEARING:
                    # clear_for ran with data: no gap longer than max_gap since clearing began
                    assert clearing_since is not None
                    seen = clearing_since
                    for j in range(clearing_since, i + 1):
                        if ticks[j] is not None:
                            # absent from seen+1 to j-1: the longest gap is (j-1-seen) ticks
                            assert (j - 1 - seen) * STEP <= rule.max_gap_s
                            seen = j


@settings(max_examples=150, deadline=None)
@given(rule=rule_st(), ticks=ticks_st)
def test_d_hysteresis_never_resolves_beyond_clear(rule, ticks):
    lv = rule.levels[0]
    clearing_since: int | None = None
    for i, trs in enumerate(simulate(rule, ticks)):
        v = ticks[i]
        for tr in trs:
            if tr.to_phase == CLEARING or (tr.from_phase == FIRING and tr.to_phase == INACTIVE):
                if v is not None:
                    assert not beyond(v, lv.clear), (i, v)
                clearing_since = i
            if tr.to_phase == INACTIVE and tr.from_phase in (FIRING, CLEARING) and v is not None:
                # every present value since clearing began was within clear
                assert clearing_since is not None
                window = [w for w in ticks[clearing_since : i + 1] if w is not None]
                assert not any(beyond(w, lv.clear) for w in window), (i, window)
            if tr.from_phase == CLEARING and tr.to_phase == FIRING and tr.reason.endswith("again"):
                assert beyond(v, lv.clear)
