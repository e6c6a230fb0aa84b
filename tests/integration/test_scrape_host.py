"""HostSource: this machine as a source, run off the loop under a timeout.

One test waits on real time (a 0.2 s timeout): the collector blocks in a thread the way a
``statvfs`` on a dead mount does, and only a real timeout can cut it short.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import numpy as np
import pytest

from kpimon.errors import ScrapeError
from kpimon.labels import make
from kpimon.sources.host import HostCollector, HostSamples
from kpimon.sources.registry import SOURCE_TYPES
from kpimon.sources.scrape import HostSource, HttpSource


def samples(errors: tuple[str, ...] = ()) -> HostSamples:
    keys = [b"node_load1", b'node_cpu_seconds_total{cpu="0",mode="idle"}', b"node_load5"]
    return HostSamples(keys, np.array([0.5, 100.0, 0.25]), errors, 1_700_000_000.0)


class StubCollector:
    """Returns fixed samples; the first ``block`` calls wait for ``release`` (like a hung mount)."""

    def __init__(self, result: HostSamples | BaseException, block: int = 0) -> None:
        self.result = result
        self.block = block
        self.calls = 0
        self.release = threading.Event()

    def collect(self) -> HostSamples:
        self.calls += 1
        if self.calls <= self.block:
            self.release.wait(30)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


async def test_collects_this_host() -> None:
    source = HostSource(interval_s=15, timeout_s=10, collector=HostCollector())
    assert source.id == "host"
    assert source.labels == make({"job": "host", "instance": socket.gethostname()})
    batch = await source.collect()
    assert b"node_load1" in batch.keys
    assert len(batch.keys) == len(batch.values) == batch.samples_total
    assert batch.body_bytes == 0


async def test_wanted_names_and_collector_errors() -> None:
    collector = StubCollector(samples(errors=("/proc/meminfo: unreadable",)))
    source = HostSource(
        interval_s=15,
        timeout_s=5,
        collector=collector,
        instance="web-1",
        labels=make({"env": "prod"}),
        wanted=frozenset({b"node_load1", b"node_cpu_seconds_total"}),
    )
    assert source.labels == make({"env": "prod", "instance": "web-1", "job": "host"})
    batch = await source.collect()
    assert batch.keys == [b"node_load1", b'node_cpu_seconds_total{cpu="0",mode="idle"}']
    assert batch.values.tolist() == [0.5, 100.0]
    assert batch.samples_total == 3
    assert batch.malformed_total == 1
    assert [(i.line, i.message) for i in batch.issues] == [(0, "/proc/meminfo: unreadable")]


async def test_collector_failures() -> None:
    source = HostSource(interval_s=15, timeout_s=5, collector=StubCollector(PermissionError("no")))
    with pytest.raises(ScrapeError, match="host: PermissionError: no"):
        await source.collect()
    # Anything else is a bug: it propagates for the scheduler to log with its traceback.
    source = HostSource(interval_s=15, timeout_s=5, collector=StubCollector(KeyError("bug")))
    with pytest.raises(KeyError):
        await source.collect()


async def test_a_hung_collection_times_out_and_stuck_threads_are_bounded() -> None:
    collector = StubCollector(samples(), block=2)
    source = HostSource(interval_s=15, timeout_s=0.2, collector=collector, max_stuck=2)
    try:
        with pytest.raises(ScrapeError, match=r"host: collection timed out after 0\.2s"):
            await source.collect()
        assert source.stuck == 1
        with pytest.raises(ScrapeError, match="timed out"):
            await source.collect()
        assert source.stuck == 2
        # No third thread while two are stuck.
        with pytest.raises(ScrapeError, match="2 earlier collections are still stuck"):
            await source.collect()
        assert collector.calls == 2
    finally:
        collector.release.set()
    async with asyncio.timeout(10):
        # The count drops in callbacks the released threads post to the loop; nothing to await.
        while source.stuck:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert (await source.collect()).samples_total == 3


def test_equality_and_registry() -> None:
    def make_source(**kw: object) -> HostSource:
        args: dict[str, object] = {"interval_s": 15, "timeout_s": 5, "instance": "h"}
        args.update(kw)
        return HostSource(collector=StubCollector(samples()), **args)  # type: ignore[arg-type]

    assert make_source() == make_source()  # the collector is not part of the definition
    assert make_source() != make_source(interval_s=30)
    assert make_source() != make_source(wanted=frozenset({b"x"}))
    assert SOURCE_TYPES["host"] is HostSource
    assert SOURCE_TYPES["scrape"] is HttpSource
    with pytest.raises(ValueError, match="> 0"):
        make_source(timeout_s=0)
