"""Store tiers: long ranges keep long history only for their metrics, with the same answers."""

from __future__ import annotations

import math

import numpy as np

from kpimon.ingest import IngestBuffer
from kpimon.labels import format_key
from kpimon.promql import compile_expr
from kpimon.promql.evaluate import Vector, evaluate
from kpimon.store import Store
from kpimon.store.core import replay
from kpimon.store.tiers import LONG_RANGE_S, Tiers, plan

PADDING_S = 300.0 + 15.0
A = (("instance", "a:1"), ("job", "j"))
B = (("instance", "b:1"), ("job", "j"))
SHORT = compile_expr("rate(busy_total[5m])")
LONG = compile_expr("avg_over_time(probe_success[6h])")


def keys(*names: str) -> list[bytes]:
    return [format_key(n, {"k": str(i)}) for n in names for i in range(2)]


def test_plan_splits_by_range_and_keeps_only_the_long_names() -> None:
    p = plan([SHORT, LONG, compile_expr("max_over_time(up[1h])")])
    assert p.main_range_s == LONG_RANGE_S  # 1h is still short
    assert p.long_range_s == 6 * 3600
    assert p.long_names == frozenset({"probe_success"})
    assert plan([SHORT]).long_range_s is None
    # A selector without a metric name may read any metric: the long store keeps them all.
    assert plan([compile_expr('avg_over_time({job="j"}[2h])')]).long_names is None


def test_the_main_store_stays_short_and_the_long_store_holds_only_long_metrics() -> None:
    tiers = Tiers(plan([SHORT, LONG]), padding_s=PADDING_S, min_interval_s=15.0)
    assert tiers.long is not None
    assert tiers.main.capacity < 100  # ≈ 10 minutes of 15 s rows, not 6 hours
    assert tiers.long.capacity >= 6 * 3600 / 15
    assert tiers.for_expr(SHORT) is tiers.main
    assert tiers.for_expr(LONG) is tiers.long
    buffer = IngestBuffer(tiers.main, tiers=tiers)
    ks = keys("busy_total", "probe_success")
    buffer.ingest("a", A, ks, np.arange(4.0), 0.0)
    buffer.ingest("b", B, keys("busy_total"), np.arange(2.0), 0.0)  # nothing long in it
    buffer.flush()
    assert tiers.main.series_count == 6
    assert tiers.long.series_count == 2
    assert tiers.long.names() == ["probe_success"]
    assert not tiers.long.has_target("b")  # no ring of rows for a target it holds nothing of


def answers(store_for, exprs, times):  # type: ignore[no-untyped-def]
    out = []
    for expr in exprs:
        for t in times:
            got = evaluate(expr, store_for(expr), t)
            assert isinstance(got, Vector)
            out.append((t, sorted(zip(got.labels, got.values.tolist(), strict=True))))
    return out


def test_tiers_answer_as_one_big_store_would() -> None:
    """Eight hours of scrapes (with a failed scrape, a vanished series and a dropped target)
    into tiers and into one store keeping everything: every expression agrees, asked every
    hour right after that hour's scrapes are written (as the engine asks)."""
    exprs = [SHORT, LONG, compile_expr("probe_success"), compile_expr("busy_total")]
    tiers = Tiers(plan(exprs), padding_s=PADDING_S, min_interval_s=15.0)
    big = Store(retention_s=6 * 3600 + PADDING_S, min_interval_s=15.0)
    tiered = IngestBuffer(tiers.main, tiers=tiers)
    single = IngestBuffer(big)
    rng = np.random.default_rng(7)
    ks = keys("busy_total", "probe_success")
    got, want = [], []
    for k in range(8 * 240 + 1):
        t = 15.0 * k
        up = float(rng.random() < 0.9)
        for sink in (tiered, single):
            if k == 700:
                sink.mark_stale("a", t)
            elif 1200 <= k < 1300:
                sink.ingest("a", A, ks[:3], np.array([k, k, float(k % 2)]), t)  # k=1 gone
            else:
                sink.ingest("a", A, ks, np.array([k, k, 1.0, up]), t)
            if k < 1000:
                sink.ingest("b", B, ks[2:], np.array([1.0, 0.0]), t)
            elif k == 1000:
                sink.drop_target("b", t)
        if k % 4 == 0:  # a tick every minute
            tiered.flush()
            single.flush()
        if k % 240 == 0 and k:
            got += answers(tiers.for_expr, exprs, [t + 7.0])
            want += answers(lambda _: big, exprs, [t + 7.0])
    assert got == want
    long_values = [v for t, vs in got[1::4] for _, v in vs]
    assert len(long_values) >= 8
    assert not any(math.isnan(v) for v in long_values)


def test_a_reload_adds_and_drops_the_long_store() -> None:
    tiers = Tiers(plan([SHORT]), padding_s=PADDING_S, min_interval_s=15.0)
    assert tiers.long is None
    assert tiers.stores == [tiers.main]
    tiers.reconfigure(plan([SHORT, LONG]), padding_s=PADDING_S, min_interval_s=15.0)
    assert tiers.long is not None
    assert tiers.for_expr(LONG) is tiers.long
    buffer = IngestBuffer(tiers.main, tiers=tiers)
    buffer.ingest("a", A, keys("busy_total", "probe_success"), np.arange(4.0), 0.0)
    buffer.flush()
    assert tiers.long.names() == ["probe_success"]
    tiers.reconfigure(plan([SHORT]), padding_s=PADDING_S, min_interval_s=15.0)
    assert tiers.long is None
    assert tiers.for_expr(LONG) is tiers.main


def test_replaying_a_store_s_history_gives_the_same_answers() -> None:
    """Store.history + replay (how a reload seeds a new long store): samples, vanished series,
    a failed scrape's staleness markers and a target that stopped all come out the same."""
    src = Store(retention_s=600 + PADDING_S, min_interval_s=15.0)
    ks = keys("busy_total", "probe_success")
    for k in range(80):
        t = 15.0 * k
        if k == 50:
            src.mark_stale("a", t)
        elif 60 <= k < 70:
            src.ingest("a", A, ks[:3], np.array([k, k, 1.0]), t)  # one series vanishes
        else:
            src.ingest("a", A, ks, np.array([k, k, 1.0, float(k % 3 == 0)]), t)
        if k < 75:
            src.ingest("b", B, ks[2:], np.array([1.0, 0.0]), t)
    copy = Store(retention_s=600 + PADDING_S, min_interval_s=15.0)
    replay(src.history(None), copy)
    exprs = [
        compile_expr(e)
        for e in (
            "busy_total",
            "probe_success",
            "count_over_time(probe_success[5m])",
            "sum_over_time(busy_total[10m])",
            "rate(busy_total[5m])",
        )
    ]
    times = [15.0 * k + 7 for k in (45, 51, 62, 72, 79, 85)]
    assert answers(lambda _: copy, exprs, times) == answers(lambda _: src, exprs, times)
    only = Store(retention_s=600 + PADDING_S, min_interval_s=15.0)
    replay(src.history(frozenset({"probe_success"})), only)
    assert only.names() == ["probe_success"]
