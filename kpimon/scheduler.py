"""One fixed-rate collection loop per source, feeding the store.

Owns: when each source is collected (a stable per-target offset inside the interval, ticks on the
monotonic clock at ``anchor + offset + k * interval``, overruns skipping ticks rather than
bunching them), what a result does to the store (``ingest`` on success, ``mark_stale`` on
failure, ``drop_target`` when a target goes away), per-target health, and logging of transitions
(down once, recovered once, malformed lines once per change) on the ``kpimon.scrape`` logger.

It does not parse, evaluate or export anything, and never reads ``time.time()``: every "now" and
every sleep goes through the injected :class:`~kpimon.clock.Clock`, so tests drive it with
:class:`kpimon.testing.FakeClock`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Protocol, Self

import numpy as np
from numpy.typing import NDArray

from kpimon.clock import Clock
from kpimon.errors import ScrapeError
from kpimon.labels import Labels
from kpimon.sources import Source
from kpimon.sources.scrape import Batch

__all__ = ["SampleSink", "ScrapeManager", "TargetHealth", "offset_for"]

log = logging.getLogger("kpimon.scrape")

_MAX_ISSUES_LOGGED = 3
_EPS = 1e-9  # float slack when placing "now" on the tick grid


def offset_for(source_id: str, interval_s: float, seed: str = "") -> float:
    """A stable offset in ``[0, interval_s)`` for a target, from a hash of its id.

    Like Prometheus' per-target scrape offset: targets spread evenly over the interval (no
    thundering herd), and a target keeps its phase across restarts. ``seed`` (e.g. the external
    labels of a replica) gives replicas of one config different phases.

    Raises:
        ValueError: ``interval_s`` is not > 0.
    """
    if not interval_s > 0:
        raise ValueError(f"interval must be > 0, got {interval_s!r}")
    digest = hashlib.blake2b(f"{seed}\x00{source_id}".encode(), digest_size=8).digest()
    interval_ns = max(1, round(interval_s * 1e9))
    offset = (int.from_bytes(digest, "big") % interval_ns) / 1e9
    return min(offset, math.nextafter(interval_s, 0.0))


class SampleSink(Protocol):
    """What the scheduler feeds: :class:`kpimon.store.Store` implements it."""

    def ingest(
        self,
        target: str,
        target_labels: Labels,
        keys: list[bytes],
        values: NDArray[np.float64],
        t: float,
    ) -> object: ...

    def mark_stale(self, target: str, t: float) -> object: ...

    def drop_target(self, target: str, t: float) -> object: ...


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """The outcome of a target's latest collection.

    Attributes:
        id: the source id.
        labels: its target labels.
        up: whether the latest collection succeeded.
        last_scrape_wall: wall-clock time (Unix seconds) the latest collection started.
        duration_s: how long it took (monotonic clock).
        samples_scraped: samples in the payload (0 on failure).
        samples_kept: samples kept after filtering by wanted metric names (0 on failure).
        malformed_total: malformed lines skipped (0 on failure).
        last_error: the error of the latest collection, ``None`` when it succeeded.
    """

    id: str
    labels: Labels
    up: bool
    last_scrape_wall: float
    duration_s: float
    samples_scraped: int
    samples_kept: int
    malformed_total: int
    last_error: str | None


@dataclass(slots=True, eq=False)
class _Entry:
    """Mutable per-target bookkeeping, private to the manager."""

    source: Source
    task: asyncio.Task[None] | None = None
    health: TargetHealth | None = None
    next_tick: int | None = None  # index of the next tick this target may use
    up: bool | None = None  # None until the first collection
    failures: int = 0  # consecutive failed collections
    malformed_logged: int = 0
    bug_logged: tuple[type[BaseException], str] | None = None
    attempted: bool = False


class ScrapeManager:
    """Runs one named task (``scrape:<id>``) per source and keeps per-target health.

    Args:
        store: receives samples and staleness (see :class:`SampleSink`).
        clock: the only source of time.
        on_result: called with the new :class:`TargetHealth` after every collection (for
            self-metrics); exceptions from it are logged, not raised.
        seed: mixed into every target's offset (see :func:`offset_for`).

    Use as ``async with ScrapeManager(...) as manager: await manager.update(sources)``, or call
    :meth:`stop` yourself. Ticks fall at wall-clock times ``≡ offset (mod interval)``, so
    targets keep their phase across restarts.
    """

    def __init__(
        self,
        store: SampleSink,
        clock: Clock,
        *,
        on_result: Callable[[TargetHealth], object] | None = None,
        seed: str = "",
    ) -> None:
        self._store = store
        self._clock = clock
        self._on_result = on_result
        self._seed = seed
        self._mono0 = clock.monotonic()
        self._wall0 = clock.wall()
        self._entries: dict[str, _Entry] = {}
        self._lock = asyncio.Lock()
        self._stopped = False
        self._first_round = asyncio.Event()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def first_round_done(self) -> None:
        """Return once every source known so far has been collected at least once.

        For readiness: a failed attempt counts, sources added later do not make it wait again,
        and with no sources at all (after an ``update``) it returns at once.
        """
        await self._first_round.wait()

    @property
    def first_round_complete(self) -> bool:
        """Whether :meth:`first_round_done` would return at once."""
        return self._first_round.is_set()

    def health(self) -> Mapping[str, TargetHealth]:
        """Health of every target collected at least once, by source id (a snapshot)."""
        return MappingProxyType(
            {sid: e.health for sid, e in self._entries.items() if e.health is not None}
        )

    def sources(self) -> Mapping[str, Source]:
        """The sources currently scheduled, by id (a snapshot)."""
        return MappingProxyType({sid: e.source for sid, e in self._entries.items()})

    async def update(self, sources: Sequence[Source]) -> None:
        """Make the running loops match ``sources``.

        New ids get a loop; ids no longer present are stopped and dropped from the store; a
        source unequal to the running one of the same id has its loop restarted (same phase,
        no tick collected twice; a change of target labels also drops the old series).
        Duplicate ids keep the first and log a warning.

        Raises:
            RuntimeError: the manager was stopped.
            ValueError: a source's interval is not > 0.
        """
        wanted: dict[str, Source] = {}
        for source in sources:
            if not source.interval_s > 0:
                raise ValueError(f"{source.id}: interval must be > 0, got {source.interval_s!r}")
            if source.id in wanted:
                log.warning("duplicate target %s ignored", source.id)
                continue
            wanted[source.id] = source
        async with self._lock:
            if self._stopped:
                raise RuntimeError("ScrapeManager is stopped")
            for sid in [sid for sid in self._entries if sid not in wanted]:
                await _cancel(self._entries.pop(sid).task)
                self._store_call(self._store.drop_target, sid, self._clock.wall())
                log.info("target %s removed", sid)
            for sid, source in wanted.items():
                entry = self._entries.get(sid)
                if entry is None:
                    entry = self._entries[sid] = _Entry(source)
                    self._start(entry)
                    log.debug("target %s added", sid)
                elif entry.source != source:
                    await _cancel(entry.task)
                    if entry.source.labels != source.labels:
                        self._store_call(self._store.drop_target, sid, self._clock.wall())
                    if entry.source.interval_s != source.interval_s:
                        entry.next_tick = None  # another grid: start afresh on it
                    entry.source = source
                    self._start(entry)
                    log.info("target %s changed; its loop restarted", sid)
            self._check_first_round()

    async def stop(self) -> None:
        """Stop every loop and wait for them (the store is left as it is). Idempotent."""
        async with self._lock:
            self._stopped = True
            for entry in self._entries.values():
                await _cancel(entry.task)
                entry.task = None

    # --- the loop --------------------------------------------------------------------------------

    def _start(self, entry: _Entry) -> None:
        entry.task = asyncio.create_task(self._loop(entry), name=f"scrape:{entry.source.id}")
        entry.task.add_done_callback(_report_death)

    def _phase(self, source: Source) -> float:
        """Monotonic time of tick 0: ticks are at wall times ≡ offset (mod interval)."""
        interval = source.interval_s
        anchor = self._mono0 - math.fmod(self._wall0, interval)
        return anchor + offset_for(source.id, interval, self._seed)

    async def _loop(self, entry: _Entry) -> None:
        source = entry.source
        interval = source.interval_s
        phase = self._phase(source)
        k = math.ceil((self._clock.monotonic() - phase) / interval - _EPS)
        if entry.next_tick is not None:
            k = max(k, entry.next_tick)
        while True:
            await self._clock.sleep(phase + k * interval - self._clock.monotonic())
            entry.next_tick = k + 1
            await self._collect(entry)
            now = self._clock.monotonic()
            k_next = max(k + 1, math.ceil((now - phase) / interval - _EPS))
            if k_next > k + 1:
                log.debug(
                    "target %s: collection took %.3fs, longer than the %gs interval; "
                    "skipping %d tick(s)",
                    source.id,
                    now - (phase + k * interval),
                    interval,
                    k_next - k - 1,
                )
            k = k_next

    async def _collect(self, entry: _Entry) -> None:
        source = entry.source
        t = self._clock.wall()
        start = self._clock.monotonic()
        batch: Batch | None = None
        error: str | None = None
        try:
            batch = await source.collect()
        except ScrapeError as exc:
            error = str(exc)
        except Exception as exc:  # a bug in one source must not stop the others
            error = f"{source.id}: unexpected {type(exc).__name__}: {exc}"
            self._log_bug(entry, "collecting", exc)
        duration = self._clock.monotonic() - start
        if batch is not None:
            try:
                self._store.ingest(source.id, source.labels, batch.keys, batch.values, t)
            except Exception as exc:
                error = f"{source.id}: storing failed: {type(exc).__name__}: {exc}"
                self._log_bug(entry, "storing samples of", exc)
                batch = None
        if batch is None:
            self._store_call(self._store.mark_stale, source.id, t)
        health = TargetHealth(
            id=source.id,
            labels=source.labels,
            up=batch is not None,
            last_scrape_wall=t,
            duration_s=duration,
            samples_scraped=batch.samples_total if batch is not None else 0,
            samples_kept=len(batch.keys) if batch is not None else 0,
            malformed_total=batch.malformed_total if batch is not None else 0,
            last_error=error,
        )
        entry.health = health
        self._log_outcome(entry, health, batch)
        if not entry.attempted:
            entry.attempted = True
            self._check_first_round()
        if self._on_result is not None:
            try:
                self._on_result(health)
            except Exception:
                log.exception("on_result callback failed for target %s", source.id)

    # --- logging ---------------------------------------------------------------------------------

    def _log_outcome(self, entry: _Entry, health: TargetHealth, batch: Batch | None) -> None:
        sid = health.id
        if batch is None:
            entry.failures += 1
            if entry.up is not False:
                log.warning("target %s is down: %s", sid, health.last_error)
            else:
                log.debug(
                    "target %s still down (%d failures): %s",
                    sid,
                    entry.failures,
                    health.last_error,
                )
            entry.up = False
            return
        if entry.up is False:
            log.info("target %s is up again after %d failed collection(s)", sid, entry.failures)
        entry.up = True
        entry.failures = 0
        entry.bug_logged = None
        log.debug(
            "target %s: %d samples (%d kept, %d bytes) in %.3fs",
            sid,
            batch.samples_total,
            len(batch.keys),
            batch.body_bytes,
            health.duration_s,
        )
        if batch.malformed_total != entry.malformed_logged:
            if batch.malformed_total:
                log.warning(
                    "target %s: %d malformed line(s) skipped: %s",
                    sid,
                    batch.malformed_total,
                    "; ".join(
                        f"line {i.line}: {i.message}" for i in batch.issues[:_MAX_ISSUES_LOGGED]
                    ),
                )
            else:
                log.info("target %s: no malformed lines any more", sid)
            entry.malformed_logged = batch.malformed_total

    def _log_bug(self, entry: _Entry, what: str, exc: Exception) -> None:
        """A traceback at ERROR the first time a given bug hits a target, DEBUG after."""
        signature = (type(exc), str(exc))
        level = logging.DEBUG if entry.bug_logged == signature else logging.ERROR
        entry.bug_logged = signature
        log.log(level, "unexpected error %s target %s", what, entry.source.id, exc_info=exc)

    @staticmethod
    def _store_call(method: Callable[[str, float], object], sid: str, t: float) -> None:
        try:
            method(sid, t)
        except Exception:
            log.exception("store.%s failed for target %s", method.__name__, sid)

    def _check_first_round(self) -> None:
        if not self._first_round.is_set() and all(e.attempted for e in self._entries.values()):
            self._first_round.set()


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait until it has finished (without swallowing our own cancel)."""
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait([task])


def _report_death(task: asyncio.Task[None]) -> None:
    """A loop never ends on its own; if one does, say so loudly."""
    if task.cancelled():
        return
    exc = task.exception()
    log.error("scrape loop %s ended unexpectedly", task.get_name(), exc_info=exc if exc else None)
