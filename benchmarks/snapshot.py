"""Sample snapshots (kpimon/snapshots.py): what a periodic snapshot costs the event loop and
what it costs its worker thread.

For N = 10k and 100k series (1,000 targets), a store whose ring holds an SLO's 1h burn-rate
window at 15 s scrapes (1h + 5m15s of padding: 263 rows per target, every row written), prints
the median milliseconds of:
  copy    on the event loop: every target's history copied out of the store (``Store.history``,
          what :meth:`SampleSnapshots.save` does before handing the write to a thread),
  write   in the worker thread: ``kpimon.store.snapshot.save`` (``np.savez``, fsync, rename),
and the file size, then one ``SampleSnapshots.save()`` through a running event loop with the
longest the loop was late for a 1 ms timer while it ran (the loop's stall: the copy, plus
whatever the thread's GIL use costs it). Not a timed test; the figures go in the changelog.

    python benchmarks/snapshot.py [--quick] [--range 1h|10m] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kpimon.clock import SYSTEM_CLOCK
from kpimon.labels import format_key
from kpimon.snapshots import SampleSnapshots
from kpimon.store import Store, snapshot

INTERVAL = 15.0
TARGETS = 1000
PADDING_S = 300.0 + INTERVAL  # lookback + the longest interval, as DaemonConfig pads
T0 = 1_700_000_000.0


def filled_store(series: int, range_s: float) -> Store:
    """A store of ``series`` series over 1,000 targets, every row of its rings written."""
    store = Store(retention_s=range_s + PADDING_S, min_interval_s=INTERVAL)
    per = series // TARGETS
    keys = [
        format_key("http_requests_total", {"code": str(200 + j % 5), "path": f"/p{j}"})
        for j in range(per)
    ]
    rng = np.random.default_rng(1)
    rows = store.capacity
    for r in range(rows):
        t = T0 + r * INTERVAL
        values = rng.random((TARGETS, per)) * 1000 + r
        store.ingest_many(
            (f"t{i}", (("instance", f"host{i}:9100"), ("job", "app")), keys, values[i], t)
            for i in range(TARGETS)
        )
    return store


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def loop_stall_during_save(snaps: SampleSnapshots) -> tuple[float, float]:
    """One save on this loop; returns its duration and the longest lateness of a 1 ms timer."""
    late = 0.0
    done = False

    async def ticker() -> None:
        nonlocal late
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            late = max(late, time.perf_counter() - before - 0.001)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    ok = await snaps.save()
    elapsed = time.perf_counter() - started
    done = True
    await tick
    assert ok
    return elapsed, late


def bench(series: int, range_s: float, directory: Path, repeat: int) -> None:
    store = filled_store(series, range_s)
    path = directory / "samples-main.npz"
    copies, writes = [], []
    for _ in range(repeat):
        s = time.perf_counter()
        histories = list(store.history(None))
        copies.append(time.perf_counter() - s)
        s = time.perf_counter()
        snapshot.save(path, histories, T0)
        writes.append(time.perf_counter() - s)
    size = path.stat().st_size
    snaps = SampleSnapshots(lambda: [(path, store)], SYSTEM_CLOCK, interval_s=0.0)
    elapsed, late = asyncio.run(loop_stall_during_save(snaps))
    print(
        f"{series:>7,} series, {store.capacity} rows: copy (loop) {median_ms(copies):8.1f} ms   "
        f"write (thread) {median_ms(writes):8.1f} ms   file {size / 2**20:6.1f} MiB   "
        f"save() {elapsed * 1000:8.1f} ms, loop late at most {late * 1000:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k series only, one repeat")
    parser.add_argument("--range", default="1h", choices=("1h", "10m"), help="longest range read")
    parser.add_argument("--dir", help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    range_s = 3600.0 if args.range == "1h" else 600.0
    sizes = (10_000,) if args.quick else (10_000, 100_000)
    repeat = 1 if args.quick else 5
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in sizes:
            bench(n, range_s, Path(tmp), repeat)


if __name__ == "__main__":
    main()
