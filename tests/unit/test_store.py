"""The sample store: series identity, honor_labels, positional reuse, staleness, rings, GC."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kpimon.labels import Labels
from kpimon.promql import Vector, compile_expr, evaluate
from kpimon.store import ABSENT, NO_TIME, STALE_NAN, Store, capacity_for, is_stale

T0 = 1_700_000_000.0
NODE: Labels = (("instance", "h1:9100"), ("job", "node"))


def values(*vs: float) -> np.ndarray:
    return np.array(vs, dtype=np.float64)


def read(store: Store, expr: str, t: float) -> dict[Labels, float]:
    res = evaluate(compile_expr(expr), store, t)
    assert isinstance(res, Vector)
    return dict(zip(res.labels, res.values.tolist(), strict=True))


def series_labels(store: Store) -> set[Labels]:
    return {store.labels(c) for name in store.names() for c in store.columns(name)}


def test_capacity_covers_retention() -> None:
    assert capacity_for(615, 15) == 43
    assert capacity_for(1, 15) == 3
    with pytest.raises(ValueError, match="positive"):
        capacity_for(0, 15)


def test_ingest_attaches_target_labels_and_name() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    s.ingest("t", NODE, [b"up", b'load{cpu="0"}'], values(1, 0.5), T0)
    assert s.series_count == 2
    assert series_labels(s) == {
        (("__name__", "up"), ("instance", "h1:9100"), ("job", "node")),
        (("__name__", "load"), ("cpu", "0"), ("instance", "h1:9100"), ("job", "node")),
    }
    assert read(s, "load", T0) == {
        (("__name__", "load"), ("cpu", "0"), ("instance", "h1:9100"), ("job", "node")): 0.5
    }


def test_clashing_scraped_labels_become_exported() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    key = b'x{job="app",instance="pod",exported_job="older",a="1"}'
    target = (("env", ""), ("instance", "h1:9100"), ("job", "node"))
    s.ingest("t", target, [key], values(1), T0)
    (lab,) = series_labels(s)
    assert dict(lab) == {
        "__name__": "x",
        "a": "1",
        "job": "node",
        "instance": "h1:9100",
        "exported_instance": "pod",
        "exported_job": "older",  # scraped, kept as is
        "exported_exported_job": "app",  # the first free exported_… name
    }


def test_target_label_with_empty_value_removes_the_label() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    s.ingest("t", (("zone", ""),), [b'x{zone="a"}'], values(1), T0)
    (lab,) = series_labels(s)
    assert dict(lab) == {"__name__": "x", "exported_zone": "a"}


def test_duplicate_label_sets_in_one_batch_keep_the_first() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    keys = [b'x{a="1",b="2"}', b'x{b="2",a="1"}', b'x{a="1",b="2"}', b"y"]
    s.ingest("t", (), keys, values(1, 2, 3, 4), T0)
    assert s.series_count == 2
    assert read(s, "x", T0) == {(("__name__", "x"), ("a", "1"), ("b", "2")): 1.0}
    s.ingest("t", (), list(keys), values(5, 6, 7, 8), T0 + 15)  # reused index, same rule
    assert read(s, "x", T0 + 15) == {(("__name__", "x"), ("a", "1"), ("b", "2")): 5.0}


def test_positional_index_is_reused_while_keys_are_unchanged() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    keys = [b'x{a="1"}', b'x{a="2"}']
    s.ingest("t", (), keys, values(1, 2), T0)
    assert s.index_rebuilds == 1
    s.ingest("t", (), [b'x{a="1"}', b'x{a="2"}'], values(3, 4), T0 + 15)  # equal, new list
    s.ingest("t", (), keys, values(5, 6), T0 + 30)  # the very same list
    assert s.index_rebuilds == 1
    assert read(s, "x", T0 + 30) == {
        (("__name__", "x"), ("a", "1")): 5.0,
        (("__name__", "x"), ("a", "2")): 6.0,
    }


def test_positional_index_is_rebuilt_when_keys_change_order() -> None:
    """Were the old positions reused, a="1" would get a="2"'s value here."""
    s = Store(retention_s=600, min_interval_s=15)
    s.ingest("t", (), [b'x{a="1"}', b'x{a="2"}'], values(1, 2), T0)
    s.ingest("t", (), [b'x{a="2"}', b'x{a="1"}'], values(20, 10), T0 + 15)
    assert s.index_rebuilds == 2
    assert s.series_count == 2  # same series, new positions
    assert read(s, "x", T0 + 15) == {
        (("__name__", "x"), ("a", "1")): 10.0,
        (("__name__", "x"), ("a", "2")): 20.0,
    }


def test_series_missing_from_a_scrape_get_one_staleness_marker() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    s.ingest("t", (), [b'x{a="1"}', b'x{a="2"}'], values(1, 2), T0)
    s.ingest("t", (), [b'x{a="1"}'], values(3), T0 + 15)
    view = s.view()
    col = s.columns("x")[1]
    assert s.labels(col) == (("__name__", "x"), ("a", "2"))
    assert view.stale_ms[col] == round((T0 + 15) * 1000)
    assert is_stale(view.values[1:2, col])[0]
    assert read(s, "x", T0 + 15) == {(("__name__", "x"), ("a", "1")): 3.0}
    s.ingest("t", (), [b'x{a="1"}'], values(4), T0 + 30)
    view = s.view()
    assert view.stale_ms[col] == round((T0 + 15) * 1000), "only one marker"
    assert view.values[2, col].tobytes() == np.float64(ABSENT).tobytes()
    s.ingest("t", (), [b'x{a="1"}', b'x{a="2"}'], values(5, 6), T0 + 45)
    assert read(s, "x", T0 + 45)[(("__name__", "x"), ("a", "2"))] == 6.0


def test_failed_scrape_marks_every_present_series_stale() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    keys = [b'x{a="1"}', b'x{a="2"}']
    s.ingest("t", (), keys, values(1, 2), T0)
    s.mark_stale("t", T0 + 15)
    assert read(s, "x", T0 + 15) == {}
    assert read(s, "x", T0 + 10) == {  # before the failure the samples are still seen
        (("__name__", "x"), ("a", "1")): 1.0,
        (("__name__", "x"), ("a", "2")): 2.0,
    }
    written = int(s.view().rows_written[0])
    s.mark_stale("t", T0 + 30)  # nothing present: no new row
    assert int(s.view().rows_written[0]) == written
    s.ingest("t", (), keys, values(3, 4), T0 + 45)
    assert read(s, "x", T0 + 45) == {
        (("__name__", "x"), ("a", "1")): 3.0,
        (("__name__", "x"), ("a", "2")): 4.0,
    }
    s.mark_stale("unknown", T0)  # no such target: nothing happens


def test_staleness_marker_values_are_markers_and_real_nan_is_a_value() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    s.ingest("t", (), [b'x{a="1"}', b'x{a="2"}'], values(math.nan, STALE_NAN), T0)
    res = read(s, "x", T0)
    assert list(res) == [(("__name__", "x"), ("a", "1"))]
    assert math.isnan(res[(("__name__", "x"), ("a", "1"))])
    assert read(s, "count_over_time(x[1m])", T0) == {(("a", "1"),): 1.0}


def test_out_of_order_ingest_is_ignored() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    s.ingest("t", (), [b"x"], values(1), T0)
    s.ingest("t", (), [b"x"], values(2), T0)
    s.ingest("t", (), [b"x"], values(3), T0 - 15)
    assert s.out_of_order_total == 2
    assert read(s, "x", T0) == {(("__name__", "x"),): 1.0}


def test_invalid_keys_are_skipped_and_counted() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    s.ingest("t", (), [b"x{a=}", b"y"], values(1, 2), T0)
    assert s.invalid_keys_total == 1
    assert s.series_count == 1
    with pytest.raises(ValueError, match="2 keys but 1 values"):
        s.ingest("t", (), [b"x", b"y"], values(1), T0 + 15)


def test_ring_wraps_around_and_keeps_the_newest_rows() -> None:
    s = Store(retention_s=60, min_interval_s=15)
    assert s.capacity == 6
    for i in range(20):
        s.ingest("t", (), [b"c"], values(float(i)), T0 + 15 * i)
    t = T0 + 15 * 19
    assert read(s, "c", t) == {(("__name__", "c"),): 19.0}
    assert read(s, "count_over_time(c[75s])", t) == {(): 6.0}
    assert read(s, "sum_over_time(c[1m])", t) == {(): 19.0 + 18 + 17 + 16 + 15}
    assert read(s, "c offset 1m", t) == {(("__name__", "c"),): 15.0}


def test_columns_and_targets_grow() -> None:
    s = Store(retention_s=60, min_interval_s=15)
    for tgt in range(70):
        keys = [f'x{{i="{i}"}}'.encode() for i in range(100)]
        s.ingest(f"t{tgt}", (("instance", str(tgt)),), keys, np.arange(100.0) + tgt, T0)
    assert s.series_count == 7000
    res = read(s, 'x{i="42"}', T0)
    assert len(res) == 70
    assert res[(("__name__", "x"), ("i", "42"), ("instance", "69"))] == 42.0 + 69


def test_generation_changes_only_when_the_series_set_changes() -> None:
    s = Store(retention_s=60, min_interval_s=15)
    s.ingest("t", (), [b"x", b"y"], values(1, 2), T0)
    gen, xgen, ygen = s.generation, s.name_generation("x"), s.name_generation("y")
    s.ingest("t", (), [b"x", b"y"], values(1, 2), T0 + 15)
    assert (s.generation, s.name_generation("x")) == (gen, xgen)
    s.ingest("t", (), [b"x", b"y", b'x{a="1"}'], values(1, 2, 3), T0 + 30)
    assert s.generation != gen
    assert s.name_generation("x") != xgen
    assert s.name_generation("y") == ygen


def test_garbage_collection_frees_old_series_and_reuses_columns() -> None:
    s = Store(retention_s=60, min_interval_s=15)
    s.ingest("t", (), [b"old", b"keep"], values(100, 1), T0)
    s.ingest("t", (), [b"keep"], values(2), T0 + 15)  # old: staleness marker at +15
    gen = s.generation
    for i in range(2, 12):
        s.ingest("t", (), [b"keep"], values(float(i + 1)), T0 + 15 * i)
    assert s.series_count == 1
    assert s.names() == ["keep"]
    assert s.generation != gen
    t = T0 + 15 * 12
    s.ingest("t", (), [b"keep", b"new"], values(13, 7), t)
    assert s.series_count == 2
    # the reused column holds nothing of "old"
    assert read(s, "count_over_time(new[10m])", t) == {(): 1.0}
    assert read(s, "max_over_time(new[10m])", t) == {(): 7.0}


def test_dropped_target_goes_stale_and_comes_back_as_the_same_series() -> None:
    s = Store(retention_s=120, min_interval_s=15)
    s.ingest("t", NODE, [b"x"], values(1), T0)
    s.drop_target("t", T0 + 15)
    assert read(s, "x", T0 + 15) == {}
    s.ingest("t", NODE, [b"x"], values(2), T0 + 30)
    assert s.series_count == 1
    assert read(s, "count_over_time(x[1m])", T0 + 30) == {NODE: 2.0}
    s.drop_target("t", T0 + 45)
    s.ingest("other", (), [b"y"], values(1), T0 + 600)  # time passes: GC frees x
    assert s.series_count == 1
    assert s.names() == ["y"]
    s.drop_target("nobody", T0)


def test_changed_target_labels_make_new_series() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    s.ingest("t", (("env", "a"),), [b"x"], values(1), T0)
    s.ingest("t", (("env", "b"),), [b"x"], values(2), T0 + 15)
    assert s.series_count == 2
    assert read(s, "x", T0 + 15) == {(("__name__", "x"), ("env", "b")): 2.0}
    col_a = next(c for c in s.columns("x") if ("env", "a") in s.labels(c))
    assert s.view().stale_ms[col_a] == round((T0 + 15) * 1000)


def test_reconfigure_keeps_the_newest_samples() -> None:
    s = Store(retention_s=300, min_interval_s=15)
    for i in range(30):
        s.ingest("t", (), [b"c"], values(float(i)), T0 + 15 * i)
    t = T0 + 15 * 29
    before = read(s, "sum_over_time(c[2m])", t)
    s.reconfigure(retention_s=150, min_interval_s=15)
    assert s.capacity == capacity_for(150, 15)
    assert read(s, "sum_over_time(c[2m])", t) == before
    s.reconfigure(retention_s=900, min_interval_s=15)
    assert read(s, "sum_over_time(c[2m])", t) == before
    s.ingest("t", (), [b"c"], values(30.0), t + 15)
    assert read(s, "c", t + 15) == {(("__name__", "c"),): 30.0}


def test_view_times_and_markers() -> None:
    s = Store(retention_s=600, min_interval_s=15)
    s.ingest("t", (), [b"c"], values(5), T0)
    s.ingest("t", (), [b"c"], values(3), T0 + 15)
    view = s.view()
    assert view.reset_ms[0] == round((T0 + 15) * 1000)
    assert view.last_value[0] == 3.0
    assert view.gap_ms[0] == NO_TIME
    assert view.column_target[0] == 0
    assert int(view.rows_written[0]) == 2


def test_ingest_many_is_ingest_in_a_loop() -> None:
    """Small and big scrapes, a target twice in one call, markers, gaps, out-of-order items."""
    rng = np.random.default_rng(7)
    sizes = {"a": 3, "b": 300, "c": 1, "d": 5}
    keys = {t: [f'x{{i="{i}"}}'.encode() for i in range(n)] for t, n in sizes.items()}
    scrapes = []
    for step in range(12):
        for tgt, n in sizes.items():
            if (step + len(tgt)) % 5 == 0:
                continue  # not scraped this round
            present = rng.random(n) > 0.1
            vals = rng.random(n) * 100
            vals[rng.random(n) < 0.05] = STALE_NAN
            vals[rng.random(n) < 0.05] = math.nan
            ks = [k for k, p in zip(keys[tgt], present, strict=True) if p]
            scrapes.append((tgt, (("job", tgt),), ks, vals[present], T0 + 15 * step))
        scrapes.append(("a", (("job", "a"),), keys["a"], rng.random(3), T0 + 15 * step + 7))
        scrapes.append(("c", (("job", "c"),), keys["c"], rng.random(1), T0 + 15 * step - 30))
    one, many = Store(retention_s=600, min_interval_s=5), Store(retention_s=600, min_interval_s=5)
    for s in scrapes:
        one.ingest(*s)
    for i in range(0, len(scrapes), 7):
        many.ingest_many(scrapes[i : i + 7])
    v1, v2 = one.view(), many.view()
    for field in ("values", "row_times", "last_value", "last_ms", "stale_ms", "gap_ms", "reset_ms"):
        a, b = getattr(v1, field), getattr(v2, field)
        assert a.tobytes() == b.tobytes(), field
    assert one.out_of_order_total == many.out_of_order_total > 0
    t = T0 + 15 * 11 + 7
    for expr in ("x", "rate(x[1m])", "count_over_time(x[2m])"):
        assert read(one, expr, t).keys() == read(many, expr, t).keys()


def test_a_key_list_changed_in_place_is_noticed() -> None:
    from kpimon.labels import format_key

    store = Store(retention_s=600, min_interval_s=15)
    keys = [format_key("x", {"k": "1"})]
    store.ingest("t", (("job", "j"),), keys, np.array([1.0]), 0.0)
    keys.append(format_key("x", {"k": "2"}))  # the caller reuses and grows its list
    store.ingest("t", (("job", "j"),), keys, np.array([2.0, 3.0]), 15.0)
    assert store.series_count == 2


def test_dropping_targets_with_no_series_frees_their_slots() -> None:
    store = Store(retention_s=600, min_interval_s=15)
    for i in range(50):
        name = f"t{i}"
        store.ingest(name, (("job", "j"), ("instance", name)), [], np.empty(0), 0.0)
        store.drop_target(name, 1.0)
    assert sum(s is not None for s in store._slots) == 0
    assert store._dropped == {}
