"""IngestBuffer: deferred writes reach the store exactly as immediate writes would."""

from __future__ import annotations

import numpy as np
import pytest

from kpimon.ingest import IngestBuffer
from kpimon.labels import format_key
from kpimon.promql import compile_expr
from kpimon.promql.evaluate import Vector, evaluate
from kpimon.store import Store

A = (("instance", "a:1"), ("job", "j"))
B = (("instance", "b:1"), ("job", "j"))
KEYS = [format_key("x", {"k": "1"}), format_key("x", {"k": "2"})]


def _script(sink) -> None:  # type: ignore[no-untyped-def]
    sink.ingest("a", A, KEYS, np.array([1.0, 2.0]), 0.0)
    sink.ingest("b", B, KEYS[:1], np.array([5.0]), 5.0)
    sink.ingest("a", A, KEYS, np.array([3.0, 4.0]), 15.0)  # same target twice before a flush
    sink.mark_stale("b", 20.0)
    sink.ingest("a", A, KEYS[:1], np.array([6.0]), 30.0)  # k=2 vanishes: stale marker
    sink.drop_target("b", 31.0)


def _answers(store: Store) -> list[tuple[float, list[tuple[object, float]]]]:
    out = []
    for expr in ("x", "sum_over_time(x[1m])", "count_over_time(x[1m])"):
        for t in (0.0, 5.0, 15.0, 20.0, 30.0, 31.0, 60.0):
            got = evaluate(compile_expr(expr), store, t)
            assert isinstance(got, Vector)
            out.append((t, sorted(zip(got.labels, got.values.tolist(), strict=True))))
    return out


def test_flush_matches_immediate_writes() -> None:
    direct = Store(retention_s=600, min_interval_s=15)
    _script(direct)
    buffered_store = Store(retention_s=600, min_interval_s=15)
    buffer = IngestBuffer(buffered_store)
    _script(buffer)
    assert len(buffer) == 6
    assert buffered_store.series_count == 0  # nothing written before the flush
    buffer.flush()
    assert len(buffer) == 0
    assert _answers(buffered_store) == _answers(direct)


def test_a_rejected_scrape_does_not_lose_the_others(caplog: pytest.LogCaptureFixture) -> None:
    store = Store(retention_s=600, min_interval_s=15)
    buffer = IngestBuffer(store)
    buffer.ingest("a", A, KEYS, np.array([1.0, 2.0]), 0.0)
    buffer.ingest("b", B, KEYS, np.array([1.0]), 0.0)  # one value short: the store rejects it
    buffer.flush()
    got = evaluate(compile_expr("x"), store, 0.0)
    assert isinstance(got, Vector)
    assert sorted(dict(lab)["instance"] for lab in got.labels) == ["a:1", "a:1"]
    assert "scrape rejected target=b keys=2 values=1" in caplog.text


def test_a_long_stall_does_not_grow_the_buffer_without_bound() -> None:
    store = Store(retention_s=600, min_interval_s=15)
    buffer = IngestBuffer(store, max_pending=3)
    for i in range(7):
        buffer.ingest("a", A, KEYS, np.array([float(i), 0.0]), 15.0 * i)
    assert len(buffer) == 1  # written in batches of 3 as they came
    buffer.flush()
    got = evaluate(compile_expr('x{k="1"}'), store, 90.0)
    assert isinstance(got, Vector)
    assert got.values.tolist() == [6.0]
