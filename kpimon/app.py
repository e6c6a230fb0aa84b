"""The daemon: builds everything from the config, runs the loops, reloads and shuts down.

Start-up: load the config (exit 2 with every problem if invalid), open one HTTP client session,
bind the web server (not ready yet), start one scrape loop per target and the evaluation loop,
become ready after the first evaluation. Signals only set events: SIGTERM/SIGINT stop, SIGHUP
reloads (a valid config is swapped in keeping the state of unchanged KPIs; an invalid one is
logged problem by problem and the running config stays). Shutdown is the reverse of start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from kpimon import __version__, heap
from kpimon import labels as labelset
from kpimon.clock import SYSTEM_CLOCK, Clock
from kpimon.config import load_config
from kpimon.config.models import DaemonConfig, ScrapeConfig
from kpimon.errors import ConfigError, JournalError
from kpimon.ingest import IngestBuffer
from kpimon.journal import Journal, auxstate
from kpimon.kpi.engine import Engine
from kpimon.notify.dispatch import Notifications, policy_for
from kpimon.notify.outbox import Outbox
from kpimon.notify.policy import Planner
from kpimon.notify.registry import Hook, build_hooks
from kpimon.notify.silence_store import JournalSilenceStore
from kpimon.notify.silences import SilenceSet
from kpimon.scheduler import ScrapeManager
from kpimon.slo.health import services_health
from kpimon.slo.tracker import LEDGER_KEY_PREFIX, SloTracker
from kpimon.snapshots import SampleSnapshots
from kpimon.sources import Source
from kpimon.sources.probe import WINDOW_KEY_PREFIX, ProbeSource
from kpimon.sources.scrape import HostSource, HttpSource
from kpimon.store import Store, snapshot, tiers
from kpimon.store.core import replay
from kpimon.store.tiers import Tiers
from kpimon.web.app import build_app
from kpimon.web.render import (
    JournalView,
    MetricsView,
    NotificationView,
    SampleSnapshotView,
    TargetView,
)

log = logging.getLogger("kpimon")

SAMPLES_MAIN = "samples-main.npz"
SAMPLES_LONG = "samples-long.npz"
"""The sample snapshots under ``--storage.path`` (kpimon/store/snapshot.py)."""

USER_AGENT = f"kpimon/{__version__}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Command-line options of ``kpimon run``."""

    config_file: str | None
    listen_address: str = "127.0.0.1:8574"
    storage_path: str | None = None
    """Directory of the state journal; None keeps no state on disk (tests, embedding)."""
    enable_lifecycle: bool = False
    freeze_heap: bool = False
    """Freeze the heap once ready (:func:`kpimon.heap.settle`): what ``kpimon run`` does; off
    for daemons run inside another process (tests)."""


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``, ``:port`` for every interface) to a (host, port) pair."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f'invalid listen address "{address}": expected host:port')
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def build_sources(
    cfg: DaemonConfig, session: aiohttp.ClientSession, wanted: frozenset[bytes] | None
) -> list[Source]:
    """One source per scrape target and per probe, plus this host when enabled."""
    sources: list[Source] = []
    for sc in cfg.scrape_configs:
        sources.extend(_http_sources(sc, session, wanted))
    sources.extend(ProbeSource(probe, wanted=wanted) for probe in cfg.probes)
    if cfg.host.enabled:
        sources.append(
            HostSource(
                instance=socket.gethostname(),
                interval_s=cfg.host.interval_s,
                timeout_s=min(cfg.global_config.scrape_timeout_s, cfg.host.interval_s),
                wanted=wanted,
            )
        )
    return sources


def _http_sources(
    sc: ScrapeConfig, session: aiohttp.ClientSession, wanted: frozenset[bytes] | None
) -> list[Source]:
    out: list[Source] = []
    for static in sc.static_configs:
        for target in static.targets:
            labels = dict(static.labels)
            labels.update({"job": sc.job_name, "instance": target})
            out.append(
                HttpSource(
                    job=sc.job_name,
                    url=sc.url(target),
                    labels=tuple(sorted(labels.items())),
                    interval_s=sc.scrape_interval_s,
                    timeout_s=sc.scrape_timeout_s,
                    sample_limit=sc.sample_limit,
                    body_size_limit=sc.body_size_limit,
                    session=session,
                    wanted=wanted,
                    user_agent=USER_AGENT,
                )
            )
    return out


def _wanted(cfg: DaemonConfig) -> frozenset[bytes] | None:
    names = cfg.wanted_metric_names()
    return None if names is None else frozenset(n.encode() for n in names)


class Daemon:
    """A running kpimon: the config, the store, the engine, the scrape loops and the web app."""

    def __init__(self, cfg: DaemonConfig, opts: Options, clock: Clock = SYSTEM_CLOCK) -> None:
        self.cfg = cfg
        self.opts = opts
        self.clock = clock
        self.slo_tracker = SloTracker(cfg.slos, probe_delay_s=_probe_delay(cfg))
        """The kpimon_slo_* numbers, brought up to date after each tick (docs/slo.md)."""
        self.tiers = Tiers(
            self._tier_plan(cfg),
            padding_s=cfg.store_padding_s(),
            min_interval_s=_min_interval(cfg),
        )
        """The sample stores: long ranges keep long history only for the metrics they read."""
        self.store = self.tiers.main
        self._engine = Engine(
            cfg.kpis,
            self.store,
            interval_s=cfg.global_config.evaluation_interval_s,
            tiers=self.tiers,
        )
        self.journal: Journal | None = None
        self.notifications: Notifications | None = None
        """Planner, outbox and hook workers (kpimon.notify.dispatch), once running."""
        self._outbox: Outbox | None = None
        self.silences = SilenceSet(cfg.alerting.silences)
        """Config and API silences (kpimon.notify.silences); the same object for good."""
        self._planner = Planner(
            cfg.alerting, silences=self.silences, external_labels=cfg.global_config.external_labels
        )
        self.buffer = IngestBuffer(self.store, tiers=self.tiers)
        self.snapshots = SampleSnapshots(
            self._sample_files, clock, interval_s=cfg.sample_snapshot_interval_s
        )
        """The sample snapshots under the storage path, periodic and at shutdown."""
        self._snapshot_task: asyncio.Task[None] | None = None
        self.manager = ScrapeManager(self.buffer, clock)
        self.session: aiohttp.ClientSession | None = None
        self.reload_ok = True
        self.reload_success_wall = clock.wall()
        self._ready = False
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Future[list[str]]] = set()
        self.site_address: tuple[str, int] | None = None
        self._probe_hour: int | None = None  # the hour of the last save of the probe windows
        self._probe_restore = True  # probes may have a journaled window not restored yet
        self._probes_restored: set[str] = set()

    def _tier_plan(self, cfg: DaemonConfig) -> tiers.TierPlan:
        """What the stores keep for ``cfg``'s KPIs and SLO gauges (the tracker reloaded)."""
        return tiers.plan([*(kpi.expr for kpi in cfg.kpis), *self.slo_tracker.expressions()])

    # -- DaemonView -----------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def lifecycle_enabled(self) -> bool:
        return self.opts.enable_lifecycle

    def now(self) -> float:
        return self.clock.wall()

    @property
    def evaluation_interval_s(self) -> float:
        return self.cfg.global_config.evaluation_interval_s

    def metrics_view(self) -> MetricsView:
        targets = [
            TargetView(
                job=labelset.get(h.labels, "job"),
                instance=labelset.get(h.labels, "instance"),
                up=h.up,
                duration_s=h.duration_s,
                samples_scraped=h.samples_scraped,
                malformed=h.malformed_total,
            )
            for h in self.manager.health().values()
        ]
        return MetricsView(
            kpis=list(self._engine.kpis.values()),
            now=self.clock.wall(),
            targets=targets,
            last_eval_wall=self._engine.last_eval_wall,
            last_eval_duration_s=self._engine.last_eval_duration_s,
            store_series=sum(s.series_count for s in self.tiers.stores),
            reload_ok=self.reload_ok,
            reload_success_wall=self.reload_success_wall,
            version=__version__,
            slos=self.slo_tracker.readings(),
            services=services_health(self.cfg.services, self._engine.kpis),
            notifications=self._notification_view(),
            journal=None
            if self.journal is None
            else JournalView(
                write_failures=self.journal.write_failures_total,
                commit_duration_s=self.journal.last_commit_duration_s,
                pending_transitions=self.journal.pending_transitions,
            ),
            samples=None
            if self.opts.storage_path is None
            else SampleSnapshotView(
                last_success_wall=self.snapshots.last_success_wall,
                duration_s=self.snapshots.last_duration_s,
                failures=self.snapshots.failures_total,
            ),
        )

    async def reload(self) -> list[str]:
        """Load the config file anew; swap it in only if it is valid.

        Returns the problems found (empty when the new config is running). Whatever goes
        wrong, the running config stays and ``kpimon_config_last_reload_successful`` says so.
        """
        async with self._reload_lock:
            if self._stop.is_set() or self.session is None:
                return ["kpimon is starting or stopping; reload not attempted"]
            try:
                cfg = await asyncio.to_thread(load_config, self.opts.config_file)
                sources = build_sources(cfg, self.session, _wanted(cfg))
            except ConfigError as exc:
                return self._reload_failed([str(p) for p in exc.problems])
            except Exception as exc:  # never let a reload take the daemon down
                log.exception("config reload failed unexpectedly")
                return self._reload_failed([f"{type(exc).__name__}: {exc}"])
            # Nothing below awaits before the swap is complete, so no tick sees half of it.
            self.cfg = cfg
            self.silences.set_config(cfg.alerting.silences)  # API silences stay
            self._engine.reload(cfg.kpis)
            self.slo_tracker.reload(cfg.slos, probe_delay_s=_probe_delay(cfg))
            if self.journal is not None:
                self._restore_ledgers(self.journal)  # an SLO back in the config
            self.tiers.reconfigure(
                self._tier_plan(cfg),
                padding_s=cfg.store_padding_s(),
                min_interval_s=_min_interval(cfg),
            )
            self._engine.interval_s = cfg.global_config.evaluation_interval_s
            self.snapshots.configure(cfg.sample_snapshot_interval_s)
            if self.notifications is not None:
                self._configure_notifications(self.notifications, self._hooks(self.session))
            running = self.manager.sources()
            for source in sources:  # a probe redone for other wanted names keeps its window
                old = running.get(source.id)
                if isinstance(source, ProbeSource) and isinstance(old, ProbeSource):
                    source.keep_window_of(old)
            await self.manager.update(sources)
            self._probe_restore = True  # a new or redefined probe may have a saved window
            self.reload_ok = True
            self.reload_success_wall = self.clock.wall()
            log.info(
                "config reloaded kpis=%d targets=%d", len(cfg.kpis), len(self.manager.sources())
            )
            return []

    # -- notifications --------------------------------------------------------------------

    def _hooks(self, session: aiohttp.ClientSession) -> list[Hook]:
        return build_hooks(
            self.cfg.alerting,
            session,
            clock=self.clock,
            evaluation_interval_s=self.cfg.global_config.evaluation_interval_s,
        )

    def _configure_notifications(self, n: Notifications, hooks: list[Hook]) -> None:
        """Point the planner and the workers at the current config (start-up, reload):
        queued rows of hooks that still exist stay; those of removed hooks are dropped."""
        n.planner.configure(
            self.cfg.alerting,
            [h.name for h in hooks if h.name.startswith("alertmanager:")],
            external_labels=self.cfg.global_config.external_labels,
        )
        n.update(hooks, policy_for(self.cfg.alerting))

    async def _start_notifications(self, session: aiohttp.ClientSession) -> Notifications:
        outbox = self._outbox if self._outbox is not None else Outbox.memory()
        hooks = self._hooks(session)
        n = Notifications(self._planner, outbox, hooks, clock=self.clock)
        self._configure_notifications(n, hooks)
        self.notifications = n
        self._engine.notifier = n
        await n.start()
        return n

    async def _stop_notifications(self) -> None:
        self._engine.notifier = None
        if self.notifications is not None:
            await self.notifications.stop()

    def _notification_view(self) -> NotificationView | None:
        n = self.notifications
        if n is None:
            return None
        now = self.clock.wall()
        hooks = n.hook_names()
        return NotificationView(
            counts=n.counters(),
            queue={h: n.queue_length(h) for h in hooks},
            oldest_age_s={h: n.oldest_pending_age_s(h, now) for h in hooks},
            latency_buckets=n.latency.buckets,
            latency_counts=list(n.latency.counts),
            latency_sum=n.latency.total,
            latency_count=n.latency.count,
            planning_failures=n.planner.failures_total,
        )

    def _reload_failed(self, problems: list[str]) -> list[str]:
        self.reload_ok = False
        log.error("config reload failed, keeping the running config problems=%d", len(problems))
        for p in problems:
            log.error("config problem: %s", p)
        return problems

    def _on_sighup(self) -> None:
        task = asyncio.ensure_future(self.reload())
        self._reloads.add(task)  # keep a reference until it finishes
        task.add_done_callback(self._reloads.discard)

    def stop(self) -> None:
        self._stop.set()

    # -- loops ----------------------------------------------------------------------------

    async def _evaluation_loop(self) -> None:
        # The first evaluation waits for every target to have been tried once (bounded by one
        # scrape interval), so that it does not judge KPIs on an empty store.
        first_round = asyncio.ensure_future(self.manager.first_round_done())
        bound = asyncio.ensure_future(self.clock.sleep(_max_interval(self.cfg)))
        await asyncio.wait({first_round, bound}, return_when=asyncio.FIRST_COMPLETED)
        first_round.cancel()
        bound.cancel()
        interval = self.cfg.global_config.evaluation_interval_s
        start = self.clock.monotonic()
        k = 0
        while True:
            self._evaluate()
            if not self._ready:
                self._ready = True
                frozen = heap.settle() if self.opts.freeze_heap else 0
                log.info(
                    "first evaluation done, ready kpis=%d heap_frozen_objects=%d",
                    len(self._engine.kpis),
                    frozen,
                )
            if self.cfg.global_config.evaluation_interval_s != interval:
                # A reload changed the interval: the schedule starts again from this tick.
                interval = self.cfg.global_config.evaluation_interval_s
                start, k = self.clock.monotonic(), 0
            k += 1
            next_at = start + k * interval
            now = self.clock.monotonic()
            if now > next_at:  # overran: skip the missed ticks instead of bunching them
                skipped = int((now - next_at) // interval) + 1
                log.warning("evaluation overran its interval skipped_ticks=%d", skipped)
                k += skipped
                next_at = start + k * interval
            await self.clock.sleep(next_at - now)

    def _evaluate(self) -> None:
        """One tick: write the queued scrapes, evaluate every KPI. Never raises."""
        try:
            self.buffer.flush()
        except Exception:  # a store bug must not stop evaluation for good
            log.exception("writing scraped samples failed")
        t = self.clock.wall()
        try:
            self._engine.tick(t)
        except Exception:
            log.exception("evaluation tick failed")
        try:
            self.slo_tracker.update(
                t, self.tiers, interval_s=self.cfg.global_config.evaluation_interval_s
            )
            self._save_ledgers()
        except Exception:
            log.exception("SLO evaluation failed")
        try:
            self._journal_probe_windows(t)
        except Exception:
            log.exception("journaling the probes' 30-day windows failed")

    def _open_journal(self, stack: contextlib.AsyncExitStack) -> None:
        """Open the journal (raises JournalError) and restore every KPI's state from it."""
        if self.opts.storage_path is None:
            return
        journal = Journal.open(self.opts.storage_path)
        stack.callback(journal.close)  # registered first: closed last, after the final tick
        self.journal = journal
        self._engine.journal = journal
        self.silences.attach_store(
            JournalSilenceStore(journal.connection, journal.path), self.clock.wall()
        )
        try:  # pending notifications and the planner's memory, before anything commits
            self._outbox = Outbox.open(journal)
            self._planner.load(self._outbox.records)
        except (ValueError, TypeError, KeyError) as exc:
            raise JournalError(
                f"journal {journal.path}: the notification outbox is unreadable ({exc}); move "
                "the file aside (with its -wal and -shm files) to start with an empty journal"
            ) from None
        self._engine.restore(
            self.clock.wall(),
            outage_tolerance_s=self.cfg.global_config.outage_tolerance_s,
            grace_s=_max_interval(self.cfg),
        )
        self._restore_ledgers(journal, forget_removed=True)

    def _restore_ledgers(self, journal: Journal, *, forget_removed: bool = False) -> None:
        """Fill the SLOs' empty 30-day ledgers from the journal (docs/slo.md)."""
        conn = journal.connection

        def load(key: str, fingerprint: str) -> bytes | None:
            saved = auxstate.load(conn, key, fingerprint)
            return None if saved is None else saved[1]

        try:
            restored = self.slo_tracker.restore(load)
            if forget_removed:
                auxstate.keep_only(conn, LEDGER_KEY_PREFIX, self.slo_tracker.ledger_keys())
        except sqlite3.Error as exc:
            log.error(
                "reading SLO ledgers from the journal failed path=%s err=%s", journal.path, exc
            )
            return
        if restored:
            log.info("SLO ledgers restored from the journal slos=%d", restored)

    def _save_ledgers(self) -> None:
        """Save the SLO ledgers that recorded a bucket (every 5 minutes) to the journal."""
        journal = self.journal
        if journal is None:
            return
        saves = self.slo_tracker.unsaved_ledgers()
        if not saves:
            return
        t = self.clock.wall()
        try:
            for key, fingerprint, data in saves:
                auxstate.save(journal.connection, key, fingerprint, t, data)
        except sqlite3.Error as exc:
            self.slo_tracker.mark_unsaved()  # again at the next bucket
            log.warning(
                "saving SLO ledgers to the journal failed path=%s err=%s", journal.path, exc
            )

    def _journal_probe_windows(self, t: float, probes: list[ProbeSource] | None = None) -> None:
        """Keep the probes' 30-day windows in the journal: restore each probe's saved window
        once (at start-up, and after a reload for new probes), save them all when an hour ends
        (a bucket is complete), so a restart loses at most the hour under way."""
        journal = self.journal
        hour = int(t // 3600)
        if journal is None or (hour == self._probe_hour and not self._probe_restore):
            return
        if probes is None:  # (the running probes; a test may give its own)
            probes = [s for s in self.manager.sources().values() if isinstance(s, ProbeSource)]
        conn = journal.connection
        try:
            if self._probe_restore:
                for probe in probes:
                    if probe.window_key in self._probes_restored:
                        continue
                    saved = auxstate.load(conn, probe.window_key, probe.window_fingerprint)
                    if saved is not None:
                        probe.restore_window(saved[1])
                    self._probes_restored.add(probe.window_key)
                auxstate.keep_only(conn, WINDOW_KEY_PREFIX, [p.window_key for p in probes])
                self._probe_restore = False
            if hour != self._probe_hour:
                for probe in probes:
                    auxstate.save(
                        conn, probe.window_key, probe.window_fingerprint, t, probe.window_data()
                    )
                self._probe_hour = hour
        except (sqlite3.Error, ValueError) as exc:
            log.warning(
                "journaling the probes' 30-day windows failed, retrying next hour path=%s err=%s",
                journal.path,
                exc,
            )
            self._probe_hour = hour
            self._probe_restore = False

    def _sample_files(self) -> list[tuple[Path, Store]]:
        if self.opts.storage_path is None:
            return []
        directory = Path(self.opts.storage_path)
        files = [(directory / SAMPLES_MAIN, self.tiers.main)]
        if self.tiers.long is not None:
            files.append((directory / SAMPLES_LONG, self.tiers.long))
        return files

    def _restore_samples(self) -> None:
        """Replay the samples of the last snapshot (at a clean shutdown, or the last periodic
        one before a crash: kpimon/snapshots.py), so range functions see the history from
        before the restart; the outage, and after a crash the samples since that snapshot, are
        a gap."""
        for path, store in self._sample_files():
            if not path.exists():
                continue
            try:
                saved_at, histories = snapshot.load(path)
                replay(histories, store)
            except (snapshot.SnapshotError, OSError) as exc:
                log.error("sample snapshot ignored, starting without that history err=%s", exc)
                continue
            log.info(
                "samples restored file=%s targets=%d saved_s_ago=%.0f",
                path,
                len(histories),
                max(0.0, self.clock.wall() - saved_at),
            )

    def _save_samples(self) -> None:
        """At shutdown: save each store's samples for the next start. Never raises."""
        try:
            self.buffer.flush()
        except Exception:
            log.exception("writing the last scraped samples failed")
        self.snapshots.save_blocking()

    async def _stop_snapshots(self) -> None:
        """Stop the periodic snapshots, wait for a write still in flight, save the last one."""
        task, self._snapshot_task = self._snapshot_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a bug in the periodic loop must not cost the final snapshot
                log.exception("the periodic sample snapshots failed")
        await self.snapshots.idle()
        self._save_samples()

    async def run(self) -> int:
        """Run until stopped; returns the process exit code.

        Raises:
            JournalError: the journal under ``storage_path`` cannot be used (nothing started).
        """
        loop = asyncio.get_running_loop()
        host, port = split_address(self.opts.listen_address)
        async with contextlib.AsyncExitStack() as stack:
            self._open_journal(stack)
            self._restore_samples()
            # the last snapshot after the loops stopped, before the journal closes
            stack.push_async_callback(self._stop_snapshots)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self.session = await stack.enter_async_context(
                aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
            )
            await self._start_notifications(self.session)
            stack.push_async_callback(self._stop_notifications)  # before the session closes
            runner = web.AppRunner(
                build_app(self, self.silences), access_log=None, handle_signals=False
            )
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, host, port)
            await site.start()
            addresses = runner.addresses
            self.site_address = tuple(addresses[0][:2]) if addresses else (host, port)
            log.info(
                "kpimon started version=%s listen=%s:%d config=%s kpis=%d",
                __version__,
                self.site_address[0],
                self.site_address[1],
                self.opts.config_file or "(embedded default)",
                len(self.cfg.kpis),
            )
            stack.push_async_callback(self.manager.stop)
            await self.manager.update(build_sources(self.cfg, self.session, _wanted(self.cfg)))
            evaluation = asyncio.create_task(self._evaluation_loop(), name="evaluation")
            if self.opts.storage_path is not None:
                self._snapshot_task = asyncio.create_task(
                    self.snapshots.run(), name="sample snapshots"
                )
            stopped = asyncio.create_task(self._stop.wait(), name="stop")
            done, _ = await asyncio.wait({evaluation, stopped}, return_when=asyncio.FIRST_COMPLETED)
            evaluation.cancel()
            stopped.cancel()
            if self._snapshot_task is not None:
                self._snapshot_task.cancel()  # no new snapshot while shutting down
            with contextlib.suppress(asyncio.CancelledError):
                await evaluation
            if evaluation in done and evaluation.exception() is not None:
                raise evaluation.exception()  # type: ignore[misc]
            log.info("shutting down")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("stopped")
        return 0


def _intervals(cfg: DaemonConfig) -> list[float]:
    return cfg.scrape_intervals() or [cfg.global_config.scrape_interval_s]


def _min_interval(cfg: DaemonConfig) -> float:
    return min(_intervals(cfg))


def _probe_delay(cfg: DaemonConfig) -> float:
    """How long after its start a probe's result may reach the store: the longest probe
    timeout and a second for the scrape loop (0 without probes)."""
    return max((p.timeout_s + 1.0 for p in cfg.probes), default=0.0)


def _max_interval(cfg: DaemonConfig) -> float:
    return max(_intervals(cfg))
