"""The daemon's sample snapshots: written every ``storage.sample_snapshot_interval`` while it
runs, and once more at a clean shutdown (the file format is :mod:`kpimon.store.snapshot`'s).

A crash (SIGKILL, OOM, power loss) writes nothing, so without periodic snapshots the next start
would have only the samples it scrapes itself. With them it replays the last snapshot, and
loses only the samples scraped between that snapshot and the crash: one more gap, as the outage
itself is.

The event loop never waits for the disk: :meth:`SampleSnapshots.save` copies each store's
history on the loop (between two evaluation ticks, so the copy is consistent with the store),
then writes, fsyncs and renames the files in a worker thread (``asyncio.to_thread``). One write
at a time: a save first waits for a write still in flight (one whose saver was cancelled, at
shutdown), and every file write, periodic or final, holds one lock. A failed write is logged
once per file and failure, counted, and tried again at the next interval; it never stops the
daemon. Samples queued in the ingest buffer since the last tick are in the next snapshot (only
the shutdown save flushes the buffer first).

No parsing, no evaluation; the only I/O is :func:`kpimon.store.snapshot.save`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kpimon.clock import Clock
from kpimon.store import Store, snapshot
from kpimon.store.core import TargetHistory

log = logging.getLogger("kpimon.samples")

SnapshotFiles = Callable[[], Sequence[tuple[Path, Store]]]
"""The files to write and the store each one holds (the daemon's ``_sample_files``)."""

Writer = Callable[[Path, list[TargetHistory], float], int]
"""Writes one file: :func:`kpimon.store.snapshot.save`'s signature."""


@dataclass(frozen=True, slots=True)
class FileResult:
    """How writing one snapshot file went: the targets written, or the error."""

    path: Path
    targets: int
    error: BaseException | None = None


class SampleSnapshots:
    """Periodic and final sample snapshots of a daemon's stores.

    Attributes:
        interval_s: seconds between periodic snapshots; 0: only the one at shutdown.
        failures_total: snapshot files that could not be written (``..._failures_total``).
        last_success_wall: Unix time of the last snapshot whose files were all written; 0 before
            the first one.
        last_duration_s: how long the last snapshot took, history copy and write (failed or
            not).
    """

    def __init__(
        self,
        files: SnapshotFiles,
        clock: Clock,
        *,
        interval_s: float,
        write: Writer = snapshot.save,
    ) -> None:
        """``files`` is called at each snapshot (a reload may add or remove the long store);
        ``write`` writes one file (tests pass one that fails or blocks)."""
        self.interval_s = interval_s
        self.failures_total = 0
        self.last_success_wall = 0.0
        self.last_duration_s = 0.0
        self._files = files
        self._clock = clock
        self._write = write
        self._write_lock = threading.Lock()  # held by every file write, in any thread
        self._save_lock = asyncio.Lock()
        self._inflight: asyncio.Future[list[FileResult]] | None = None
        self._changed = asyncio.Event()
        self._failing: set[Path] = set()  # files whose last write failed

    def configure(self, interval_s: float) -> None:
        """Set the interval (a reload); the schedule starts again from now if it changed."""
        if interval_s != self.interval_s:
            self.interval_s = interval_s
            self._changed.set()

    async def run(self) -> None:
        """Save every ``interval_s`` of the clock (fixed rate from the start, the first one an
        interval after it; a save that overruns skips the snapshots it missed). Runs until
        cancelled; never raises otherwise."""
        start, k = self._clock.monotonic(), 0
        while True:
            interval = self.interval_s
            if interval <= 0:
                await self._changed.wait()
            else:
                now = self._clock.monotonic()
                k = max(k + 1, int((now - start) // interval) + 1)
                if await self._sleep_unless_changed(start + k * interval - now):
                    await self.save()
            if self._changed.is_set():
                self._changed.clear()
                start, k = self._clock.monotonic(), 0

    async def _sleep_unless_changed(self, seconds: float) -> bool:
        """Sleep ``seconds``; False if the interval changed first."""
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            changed.cancel()
        return not self._changed.is_set()

    async def idle(self) -> None:
        """Return once no write is in flight (a saver cancelled at shutdown leaves its thread
        writing: the final save waits for it)."""
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            await asyncio.wait({inflight})

    async def save(self) -> bool:
        """One snapshot: the histories copied on the loop, the files written in a thread.

        Returns whether every file was written. Never raises (but CancelledError: the thread
        then finishes its write and accounts for it on its own).
        """
        async with self._save_lock:
            await self.idle()
            started = self._clock.monotonic()
            try:
                jobs = self._copy()
            except Exception:  # a store bug must not stop the daemon: no snapshot this time
                log.exception("copying the samples for a snapshot failed")
                self.failures_total += 1
                return False
            t = self._clock.wall()
            fut = asyncio.ensure_future(asyncio.to_thread(self._write_all, jobs, t))
            self._inflight = fut
            fut.add_done_callback(lambda f: self._account(f, t, started))
            results = await asyncio.shield(fut)
            return all(r.error is None for r in results)

    def save_blocking(self) -> bool:
        """The final snapshot at shutdown, written on the calling thread (nothing else runs
        then). Waits for the file lock, so it never overlaps a write still in flight; callers
        on the loop await :meth:`idle` first, so that the loop is not blocked on it."""
        started = self._clock.monotonic()
        t = self._clock.wall()
        try:
            results = self._write_all(self._copy(), t)
        except Exception:
            log.exception("copying the samples for the final snapshot failed")
            self.failures_total += 1
            return False
        self._record(results, t, started, final=True)
        return all(r.error is None for r in results)

    def _copy(self) -> list[tuple[Path, list[TargetHistory]]]:
        """Each file's histories, copied now (``Store.history`` copies the rows it yields)."""
        return [(path, list(store.history(None))) for path, store in self._files()]

    def _write_all(
        self, jobs: list[tuple[Path, list[TargetHistory]]], t: float
    ) -> list[FileResult]:
        """Write every file (in a worker thread, or the caller's at shutdown). Never raises."""
        out = []
        with self._write_lock:
            for path, histories in jobs:
                try:
                    out.append(FileResult(path, self._write(path, histories, t)))
                except Exception as exc:  # OSError mostly; whatever it is, the daemon goes on
                    out.append(FileResult(path, 0, exc))
        return out

    def _account(self, fut: asyncio.Future[list[FileResult]], t: float, started: float) -> None:
        if self._inflight is fut:
            self._inflight = None
        if fut.cancelled():  # (to_thread's future is not cancelled by cancelling its awaiter)
            return
        exc = fut.exception()
        if exc is not None:
            log.error("writing the sample snapshot failed err=%s", exc)
            self.failures_total += 1
            return
        self._record(fut.result(), t, started, final=False)

    def _record(self, results: list[FileResult], t: float, started: float, *, final: bool) -> None:
        """Count, time and log one snapshot's results (on the loop's thread)."""
        self.last_duration_s = self._clock.monotonic() - started
        for r in results:
            if r.error is not None:
                self.failures_total += 1
                self._failing.add(r.path)
                when = "" if final else ", retrying at the next interval"
                log.error(
                    "writing the sample snapshot failed%s file=%s err=%s", when, r.path, r.error
                )
            elif final:
                self._failing.discard(r.path)
                log.info("samples saved file=%s targets=%d", r.path, r.targets)
            elif r.path in self._failing:
                self._failing.discard(r.path)
                log.info("sample snapshot written again file=%s targets=%d", r.path, r.targets)
            else:
                log.debug(
                    "samples saved file=%s targets=%d duration_s=%.3f",
                    r.path,
                    r.targets,
                    self.last_duration_s,
                )
        if all(r.error is None for r in results):
            self.last_success_wall = t
