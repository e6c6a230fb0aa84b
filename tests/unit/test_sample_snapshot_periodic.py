"""Periodic sample snapshots (kpimon/snapshots.py): written every
``storage.sample_snapshot_interval`` on the clock and not more, a failed write logged, counted
and retried at the next interval, one write at a time, the shutdown save after a write in
flight; the interval in the config; the self-metrics.

Real stores and files, a :class:`~kpimon.testing.FakeClock`, no sleeps: a test waits for a
write's thread with :meth:`SampleSnapshots.idle`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from kpimon.app import SAMPLES_MAIN, Daemon, Options
from kpimon.config import load_config
from kpimon.config.daemon import parse_config
from kpimon.labels import format_key
from kpimon.snapshots import SampleSnapshots
from kpimon.store import Store, snapshot
from kpimon.store.core import TargetHistory
from kpimon.testing import FakeClock
from kpimon.web.render import Renderer

T0 = 1_700_000_000.0
LABELS = (("instance", "a:1"), ("job", "app"))
KEY = format_key("busy_total", {"cpu": "0"})


class Recorder:
    """snapshot.save, recording each call's file and time, and how many ran at once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.running = 0
        self.most_at_once = 0
        self.gate: threading.Event | None = None  # when set up, writes wait for it
        self._lock = threading.Lock()

    def __call__(self, path: Path, histories: Iterable[TargetHistory], t: float) -> int:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.gate is not None:
                assert self.gate.wait(timeout=30)
            n = snapshot.save(path, histories, t)
            self.calls.append((path.name, t))
            return n
        finally:
            with self._lock:
                self.running -= 1


def store_with_samples(n: int, t0: float = T0) -> Store:
    store = Store(retention_s=3600.0, min_interval_s=15.0)
    for k in range(n):
        store.ingest("a", LABELS, [KEY], np.array([10.0 * k]), t0 + 15 * k)
    return store


async def advance(clock: FakeClock, snaps: SampleSnapshots, seconds: float) -> None:
    """Move the clock and wait for the writes it started (their threads) to finish."""
    await clock.advance(seconds)
    await snaps.idle()


async def test_the_periodic_writer_writes_at_the_interval_and_not_more(tmp_path: Path) -> None:
    clock = FakeClock(start_wall=T0)
    store = store_with_samples(4)
    path = tmp_path / SAMPLES_MAIN
    write = Recorder()
    snaps = SampleSnapshots(lambda: [(path, store)], clock, interval_s=300.0, write=write)
    task = asyncio.create_task(snaps.run())
    try:
        await advance(clock, snaps, 299.0)
        assert write.calls == []  # none at the start: the first one an interval after it
        await advance(clock, snaps, 1.0)
        assert write.calls == [(SAMPLES_MAIN, T0 + 300.0)]
        store.ingest("a", LABELS, [KEY], np.array([99.0]), T0 + 310.0)
        await advance(clock, snaps, 299.0)
        assert len(write.calls) == 1
        await advance(clock, snaps, 1.0)
        for _ in range(3):  # (a write is a real thread: one interval at a time)
            await advance(clock, snaps, 300.0)
        assert [t - T0 for _, t in write.calls] == [300.0, 600.0, 900.0, 1200.0, 1500.0]
        assert write.most_at_once == 1
        assert snaps.last_success_wall == T0 + 1500.0
        assert snaps.failures_total == 0
        saved_at, (history,) = snapshot.load(path)  # the last one holds the later sample
        assert saved_at == T0 + 1500.0
        assert history.values[-1].tolist() == [99.0]
        assert not task.done()
    finally:
        task.cancel()


async def test_interval_0_writes_nothing_until_a_reload_sets_one(tmp_path: Path) -> None:
    clock = FakeClock(start_wall=T0)
    store = store_with_samples(4)
    write = Recorder()
    snaps = SampleSnapshots(
        lambda: [(tmp_path / SAMPLES_MAIN, store)], clock, interval_s=0.0, write=write
    )
    task = asyncio.create_task(snaps.run())
    try:
        await advance(clock, snaps, 3600.0)
        assert write.calls == []
        snaps.configure(60.0)  # the schedule starts from now
        await advance(clock, snaps, 59.0)
        assert write.calls == []
        await advance(clock, snaps, 1.0)
        await advance(clock, snaps, 60.0)
        assert [t - T0 for _, t in write.calls] == [3660.0, 3720.0]
        snaps.configure(0.0)
        await advance(clock, snaps, 600.0)
        assert len(write.calls) == 2
    finally:
        task.cancel()


async def test_a_failed_write_is_logged_counted_and_the_next_interval_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(start_wall=T0)
    store = store_with_samples(4)
    directory = tmp_path / "data"
    directory.mkdir()
    path = directory / SAMPLES_MAIN
    snaps = SampleSnapshots(lambda: [(path, store)], clock, interval_s=60.0)
    task = asyncio.create_task(snaps.run())
    try:
        with caplog.at_level(logging.INFO, logger="kpimon"):
            await advance(clock, snaps, 60.0)
            assert snaps.last_success_wall == T0 + 60.0
            shutil.rmtree(directory)
            directory.write_text("not a directory")  # (root ignores a read-only directory)
            await advance(clock, snaps, 60.0)
            failed = [r for r in caplog.records if "snapshot" in r.getMessage()]
            assert len(failed) == 1, caplog.text
            assert failed[0].levelno == logging.ERROR
            message = failed[0].getMessage()
            assert "writing the sample snapshot failed, retrying at the next interval" in message
            assert f"file={path}" in message
            assert "Not a directory" in message
            assert snaps.failures_total == 1
            assert snaps.last_success_wall == T0 + 60.0
            assert not task.done()  # the daemon goes on
            directory.unlink()
            directory.mkdir()
            caplog.clear()
            await advance(clock, snaps, 60.0)
        assert snaps.failures_total == 1
        assert snaps.last_success_wall == T0 + 180.0
        assert f"sample snapshot written again file={path}" in caplog.text
        assert snapshot.load(path)[0] == T0 + 180.0
    finally:
        task.cancel()


def daemon(tmp_path: Path, clock: FakeClock, storage: str = "") -> Daemon:
    (tmp_path / "rules.yaml").write_text(
        "kpis:\n  - {name: busy, owner: team, expr: 'rate(busy_total[5m])',"
        " levels: {warning: {above: 100}}}\n"
    )
    (tmp_path / "kpimon.yml").write_text(f"rule_files: [rules.yaml]\n{storage}")
    cfg = load_config(str(tmp_path / "kpimon.yml"))
    opts = Options(config_file=str(tmp_path / "kpimon.yml"), storage_path=str(tmp_path / "data"))
    (tmp_path / "data").mkdir(exist_ok=True)
    return Daemon(cfg, opts, clock)


async def test_the_shutdown_save_waits_for_a_write_in_flight(tmp_path: Path) -> None:
    """A periodic write is in its thread when the daemon stops: the final save starts only
    after it, so the two never write at once, and the final one is the file left."""
    clock = FakeClock(start_wall=T0)
    d = daemon(tmp_path, clock, "storage: {sample_snapshot_interval: 1m}\n")
    for k in range(4):
        d.buffer.ingest("a", LABELS, [KEY], np.array([10.0 * k]), T0 + 15 * k)
    d.buffer.flush()
    write = Recorder()
    write.gate = threading.Event()
    d.snapshots = SampleSnapshots(d._sample_files, clock, interval_s=60.0, write=write)
    d._snapshot_task = asyncio.create_task(d.snapshots.run())
    await clock.advance(60.0)  # the periodic write starts and waits at the gate
    assert write.running == 1
    d.buffer.ingest("a", LABELS, [KEY], np.array([77.0]), T0 + 61.0)  # flushed by the final
    stopping = asyncio.create_task(d._stop_snapshots())
    await clock.settle()
    assert not stopping.done()  # waiting for the write in flight
    assert write.calls == []
    write.gate.set()
    await stopping
    assert [t - T0 for _, t in write.calls] == [60.0, 60.0]  # periodic, then final
    assert write.most_at_once == 1
    assert d.snapshots.failures_total == 0
    _, (history,) = snapshot.load(tmp_path / "data" / SAMPLES_MAIN)
    assert history.values[-1].tolist() == [77.0]


async def test_the_self_metrics(tmp_path: Path) -> None:
    clock = FakeClock(start_wall=T0)
    d = daemon(tmp_path, clock)
    text = Renderer().render(d.metrics_view()).decode()
    assert "kpimon_sample_snapshot_last_success_timestamp_seconds 0.0\n" in text
    assert "# TYPE kpimon_sample_snapshot_duration_seconds gauge\n" in text
    assert "kpimon_sample_snapshot_failures_total 0\n" in text
    d.buffer.ingest("a", LABELS, [KEY], np.array([1.0]), T0)
    assert await d.snapshots.save()
    shutil.rmtree(tmp_path / "data")
    (tmp_path / "data").write_text("")
    assert not await d.snapshots.save()
    text = Renderer().render(d.metrics_view()).decode()
    assert f"kpimon_sample_snapshot_last_success_timestamp_seconds {T0!r}\n" in text
    assert "kpimon_sample_snapshot_failures_total 1\n" in text
    without_storage = Daemon(d.cfg, Options(config_file=None), clock)
    assert (
        "kpimon_sample_snapshot" not in Renderer().render(without_storage.metrics_view()).decode()
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("", 300.0),
        ("storage: {path: d}\n", 300.0),
        ("storage: {sample_snapshot_interval: 0s}\n", 0.0),
        ("storage: {sample_snapshot_interval: 1s}\n", 1.0),
        ("storage: {sample_snapshot_interval: 1h}\n", 3600.0),
    ],
)
def test_the_interval_in_the_config(text: str, seconds: float) -> None:
    cfg, _, problems = parse_config(text, "kpimon.yml")
    assert problems == []
    assert cfg.sample_snapshot_interval_s == seconds


def test_an_interval_under_1s_is_refused_with_its_position() -> None:
    _, _, problems = parse_config("storage:\n  sample_snapshot_interval: 500ms\n", "kpimon.yml")
    assert [str(p) for p in problems] == [
        "kpimon.yml:2:29: storage.sample_snapshot_interval: must be 0s (only at shutdown) or at "
        "least 1s, got 500ms"
    ]
