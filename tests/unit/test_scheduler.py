"""The scrape scheduler: offsets, fixed-rate ticks, overruns, update(), transitions, health.

Everything runs on :class:`kpimon.testing.FakeClock` with scripted sources and a recording store:
no network, no real sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from kpimon.errors import ScrapeError
from kpimon.labels import make
from kpimon.scheduler import ScrapeManager, TargetHealth, offset_for
from kpimon.sources.exposition import ParseIssue
from kpimon.testing import FakeClock
from tests.helpers.scrape import RecordingStore, ScriptedSource, batch

INTERVAL = 15.0


def first_tick(clock: FakeClock, source_id: str, interval: float = INTERVAL) -> float:
    """The monotonic time of a target's first tick: its wall-clock phase is its offset."""
    return (offset_for(source_id, interval) - clock.wall()) % interval + clock.monotonic()


def scrape_task_names() -> set[str]:
    return {
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith("scrape:") and not t.done()
    }


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "kpimon.scrape" and r.levelno == level]


# --- offsets -------------------------------------------------------------------------------------


def test_offset_is_stable_and_inside_the_interval() -> None:
    for interval in (0.001, 1.0, 15.0, 60.0, 3600.0):
        for i in range(200):
            sid = f"node/http://10.0.0.{i}:9100/metrics"
            off = offset_for(sid, interval)
            assert 0.0 <= off < interval
            assert off == offset_for(sid, interval)
    assert offset_for("a", 15.0) == pytest.approx(offset_for("a", 15.0))
    assert offset_for("a", 15.0, seed="replica-1") != offset_for("a", 15.0, seed="replica-2")


@pytest.mark.parametrize("interval", [0.0, -1.0, math.nan])
def test_offset_rejects_a_bad_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        offset_for("a", interval)


def test_offsets_spread_over_the_interval() -> None:
    offsets = [offset_for(f"job/http://host-{i}:9100/metrics", 10.0) for i in range(2000)]
    buckets = [0] * 10
    for off in offsets:
        buckets[int(off)] += 1
    # 200 expected per bucket; a thundering herd or a biased hash would put far more in some.
    assert all(150 <= b <= 250 for b in buckets), buckets
    assert len(set(offsets)) == len(offsets)


# --- the fixed-rate loop -------------------------------------------------------------------------


async def test_loop_ticks_exactly_on_schedule_for_an_hour(clock: FakeClock) -> None:
    store = RecordingStore()
    source = ScriptedSource("a", clock)
    first = first_tick(clock, "a")
    async with ScrapeManager(store, clock) as manager:
        await manager.update([source])
        await clock.advance(3600)

    assert len(source.starts) == 240
    for k, start in enumerate(source.starts):
        assert start == pytest.approx(first + k * INTERVAL, abs=1e-6)
    # Phase is anchored on the wall clock: it survives a restart of the daemon.
    offset = offset_for("a", INTERVAL)
    for wall in source.walls:
        phase = (wall - offset) % INTERVAL
        assert min(phase, INTERVAL - phase) == pytest.approx(0.0, abs=1e-6)
    ingests = store.of("ingest", "a")
    assert [c.t for c in ingests] == source.walls
    assert ingests[0].labels == source.labels
    assert ingests[0].keys == (b"up",)
    assert ingests[0].values == (1.0,)


async def test_schedule_does_not_drift_with_slow_collections(clock: FakeClock) -> None:
    source = ScriptedSource("a", clock, duration_s=6.0)  # under the interval: no tick skipped
    first = first_tick(clock, "a")
    async with ScrapeManager(RecordingStore(), clock) as manager:
        await manager.update([source])
        await clock.advance(600)
    assert len(source.starts) == 40
    for k, start in enumerate(source.starts):
        assert start == pytest.approx(first + k * INTERVAL, abs=1e-6)


async def test_targets_start_at_their_own_offsets(clock: FakeClock) -> None:
    sources = [ScriptedSource(f"t{i}", clock) for i in range(5)]
    async with ScrapeManager(RecordingStore(), clock) as manager:
        await manager.update(sources)
        await clock.advance(INTERVAL)
    for source in sources:
        assert source.starts == [pytest.approx(first_tick(clock, source.id) - INTERVAL)]
    assert len({s.starts[0] for s in sources}) == 5


async def test_an_overrunning_collection_skips_ticks(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kpimon.scrape")
    source = ScriptedSource("slow", clock, duration_s=40.0)  # spans the next two ticks
    first = first_tick(clock, "slow")
    async with ScrapeManager(RecordingStore(), clock) as manager:
        await manager.update([source])
        await clock.advance(first + 450.5)
    # Ticks first+15 and first+30 are skipped, not bunched: the next starts at first+45.
    assert source.starts == [pytest.approx(first + 45 * k, abs=1e-6) for k in range(11)]
    skipped = [r for r in records(caplog, logging.DEBUG) if "skipping" in r.getMessage()]
    assert skipped
    assert "skipping 2 tick(s)" in skipped[0].getMessage()


# --- update() ------------------------------------------------------------------------------------


async def test_update_starts_stops_and_restarts_loops(clock: FakeClock) -> None:
    store = RecordingStore()
    a, b = ScriptedSource("a", clock), ScriptedSource("b", clock)
    async with ScrapeManager(store, clock) as manager:
        await manager.update([a, b])
        assert scrape_task_names() == {"scrape:a", "scrape:b"}
        await clock.advance(INTERVAL)
        assert len(a.starts) == len(b.starts) == 1
        assert set(manager.health()) == {"a", "b"}

        # b goes away: its loop stops and its series are dropped from the store.
        await manager.update([a])
        assert scrape_task_names() == {"scrape:a"}
        assert [c.target for c in store.of("drop_target")] == ["b"]
        assert set(manager.health()) == {"a"}
        await clock.advance(INTERVAL)
        assert len(a.starts) == 2
        assert len(b.starts) == 1

        # An equal definition (a new object) keeps the running loop.
        task_before = {t for t in asyncio.all_tasks() if t.get_name() == "scrape:a"}
        await manager.update([ScriptedSource("a", clock)])
        assert {t for t in asyncio.all_tasks() if t.get_name() == "scrape:a"} == task_before
        await clock.advance(INTERVAL)
        assert len(a.starts) == 3

        # A changed definition restarts the loop on the same grid; new labels drop old series.
        a2 = ScriptedSource("a", clock, labels=make({"job": "test", "instance": "a", "env": "x"}))
        await manager.update([a2])
        assert {t for t in asyncio.all_tasks() if t.get_name() == "scrape:a"} != task_before
        assert [c.target for c in store.of("drop_target")] == ["b", "a"]
        await clock.advance(2 * INTERVAL)
        assert len(a.starts) == 3
        assert len(a2.starts) == 2
        assert a2.starts[0] == pytest.approx(a.starts[-1] + INTERVAL, abs=1e-6)
        assert store.of("ingest", "a")[-1].labels == a2.labels

        await manager.update([])
        assert scrape_task_names() == set()
    assert scrape_task_names() == set()


async def test_restart_mid_collection_does_not_collect_a_tick_twice(clock: FakeClock) -> None:
    store = RecordingStore()
    a = ScriptedSource("a", clock, duration_s=5.0)
    first = first_tick(clock, "a")
    async with ScrapeManager(store, clock) as manager:
        await manager.update([a])
        await clock.advance(first + 1)  # a's first collection is under way
        assert len(a.starts) == 1
        a2 = ScriptedSource("a", clock, version=1)
        await manager.update([a2])
        await clock.advance(INTERVAL)
    assert a2.starts == [pytest.approx(first + INTERVAL, abs=1e-6)]
    assert [c.t for c in store.of("ingest")] == a2.walls  # the cancelled one stored nothing


async def test_stop_ends_every_loop(clock: FakeClock) -> None:
    a = ScriptedSource("a", clock, duration_s=100.0)
    manager = ScrapeManager(RecordingStore(), clock)
    await manager.update([a, ScriptedSource("b", clock)])
    await clock.advance(INTERVAL)
    await manager.stop()
    await manager.stop()  # idempotent
    assert scrape_task_names() == set()
    starts = len(a.starts)
    await clock.advance(10 * INTERVAL)
    assert len(a.starts) == starts
    with pytest.raises(RuntimeError, match="stopped"):
        await manager.update([a])


async def test_duplicate_ids_keep_the_first(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    a1, a2 = ScriptedSource("a", clock), ScriptedSource("a", clock, version=2)
    async with ScrapeManager(RecordingStore(), clock) as manager:
        await manager.update([a1, a2])
        await clock.advance(INTERVAL)
    assert len(a1.starts) == 1
    assert a2.starts == []
    assert any("duplicate target a" in r.getMessage() for r in records(caplog, logging.WARNING))


async def test_update_rejects_a_bad_interval(clock: FakeClock) -> None:
    async with ScrapeManager(RecordingStore(), clock) as manager:
        with pytest.raises(ValueError, match="interval"):
            await manager.update([ScriptedSource("a", clock, interval_s=0.0)])


# --- failures, transitions and logging -----------------------------------------------------------


async def test_failures_mark_stale_and_log_transitions_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kpimon.scrape")
    store = RecordingStore()
    url = "http://127.0.0.1:9/metrics"
    source = ScriptedSource(f"node/{url}", clock)
    first = first_tick(clock, source.id)
    async with ScrapeManager(store, clock) as manager:
        await manager.update([source])
        await clock.advance(first + 0.5)  # one good collection
        source.outcome = ScrapeError(url, "server returned HTTP status 500 Internal Server Error")
        await clock.advance(10 * INTERVAL)
        health = manager.health()[source.id]
        assert not health.up
        assert health.last_error is not None
        assert url in health.last_error
        assert "500" in health.last_error
        assert health.samples_scraped == 0

        source.outcome = batch({b"up": 1.0, b"x": 2.0})
        await clock.advance(3 * INTERVAL)
        assert manager.health()[source.id].up
        source.outcome = ScrapeError(url, "connection refused")
        await clock.advance(INTERVAL)

    stale = store.of("mark_stale", source.id)
    assert len(stale) == 11
    assert stale[0].t == pytest.approx(source.walls[1])
    warnings = records(caplog, logging.WARNING)
    infos = [r for r in records(caplog, logging.INFO) if "up again" in r.getMessage()]
    assert len(warnings) == 2
    assert url in warnings[0].getMessage()
    assert "500" in warnings[0].getMessage()
    assert "connection refused" in warnings[1].getMessage()
    assert len(infos) == 1
    assert "after 10 failed" in infos[0].getMessage()
    assert not records(caplog, logging.ERROR)


async def test_first_collection_failing_logs_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    source = ScriptedSource("a", clock)
    source.outcome = ScrapeError("http://a/metrics", "timed out")
    async with ScrapeManager(RecordingStore(), clock) as manager:
        await manager.update([source])
        await clock.advance(5 * INTERVAL)
    assert len(records(caplog, logging.WARNING)) == 1


async def test_malformed_lines_are_logged_once_per_change(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kpimon.scrape")
    source = ScriptedSource("job/http://h:1/metrics", clock)
    issues = tuple(ParseIssue(line=n, message=f"bad sample {n}") for n in (3, 7, 9, 12))
    async with ScrapeManager(RecordingStore(), clock) as manager:
        await manager.update([source])
        source.outcome = batch(malformed=issues)
        await clock.advance(5 * INTERVAL)
        assert manager.health()[source.id].malformed_total == 4
        assert manager.health()[source.id].up
        source.outcome = batch(malformed=issues[:1])
        await clock.advance(5 * INTERVAL)
        source.outcome = batch()
        await clock.advance(5 * INTERVAL)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 2
    first = warnings[0].getMessage()
    assert "job/http://h:1/metrics" in first
    assert "4 malformed" in first
    assert "line 3: bad sample 3" in first
    assert "line 9" in first
    assert "line 12" not in first  # only the first few
    assert "1 malformed" in warnings[1].getMessage()
    assert len([r for r in records(caplog, logging.INFO) if "malformed" in r.getMessage()]) == 1


async def test_a_buggy_source_is_logged_with_traceback_and_does_not_stop_others(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = RecordingStore()
    buggy, good = ScriptedSource("buggy", clock), ScriptedSource("good", clock)
    buggy.outcome = ZeroDivisionError("division by zero")
    async with ScrapeManager(store, clock) as manager:
        await manager.update([buggy, good])
        await clock.advance(4 * INTERVAL)
        health = manager.health()
        assert not health["buggy"].up
        assert "ZeroDivisionError" in (health["buggy"].last_error or "")
        assert health["good"].up
        assert scrape_task_names() == {"scrape:buggy", "scrape:good"}
    assert len(good.starts) == len(buggy.starts) == 4
    assert len(store.of("mark_stale", "buggy")) == 4
    errors = records(caplog, logging.ERROR)
    assert len(errors) == 1  # the same bug again goes to DEBUG
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is ZeroDivisionError


async def test_a_failing_store_counts_as_a_failed_collection(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenStore(RecordingStore):
        def ingest(self, *args: object, **kwargs: object) -> None:
            raise KeyError("boom")

    store = BrokenStore()
    source = ScriptedSource("a", clock)
    async with ScrapeManager(store, clock) as manager:
        await manager.update([source])
        await clock.advance(INTERVAL)
        assert not manager.health()["a"].up
    assert len(store.of("mark_stale", "a")) == 1
    assert len(records(caplog, logging.ERROR)) == 1


# --- readiness and results -----------------------------------------------------------------------


async def test_first_round_done_once_every_source_was_tried(clock: FakeClock) -> None:
    a, b = ScriptedSource("a", clock), ScriptedSource("b", clock)
    b.outcome = ScrapeError("http://b/metrics", "down")  # a failed attempt counts
    async with ScrapeManager(RecordingStore(), clock) as manager:
        await manager.update([a, b])
        assert not manager.first_round_complete
        ticks = sorted([first_tick(clock, "a"), first_tick(clock, "b")])
        await clock.advance(ticks[0] + 0.1)
        assert not manager.first_round_complete
        waiter = asyncio.create_task(manager.first_round_done())
        await clock.advance(ticks[1] - ticks[0])
        assert manager.first_round_complete
        assert waiter.done()


async def test_first_round_done_with_no_sources(clock: FakeClock) -> None:
    async with ScrapeManager(RecordingStore(), clock) as manager:
        await manager.update([])
        assert manager.first_round_complete


async def test_on_result_sees_every_collection(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    results: list[TargetHealth] = []

    def on_result(health: TargetHealth) -> None:
        results.append(health)
        if len(results) == 2:
            raise RuntimeError("exporter bug")

    source = ScriptedSource("a", clock, duration_s=2.0)
    source.outcome = batch({b"a": 1.0, b"b": 2.0}, samples_total=5)
    async with ScrapeManager(RecordingStore(), clock, on_result=on_result) as manager:
        await manager.update([source])
        await clock.advance(3 * INTERVAL)
    assert len(results) == 3
    assert results[0] == TargetHealth(
        id="a",
        labels=source.labels,
        up=True,
        last_scrape_wall=source.walls[0],
        duration_s=2.0,
        samples_scraped=5,
        samples_kept=2,
        malformed_total=0,
        last_error=None,
    )
    assert len(records(caplog, logging.ERROR)) == 1
