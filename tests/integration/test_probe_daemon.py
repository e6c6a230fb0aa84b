"""Probes inside the daemon: scheduled like scrapes, evaluated by KPIs, never in the way."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import aiohttp

from kpimon.app import Daemon, Options, build_sources
from kpimon.config import load_config
from kpimon.config.probes import HttpProbe, ProbeConfig
from kpimon.errors import Position
from kpimon.scheduler import ScrapeManager, TargetHealth
from kpimon.sources.probe import ProbeSource
from kpimon.testing import FakeClock
from tests.integration.test_probe_certs import Pki, probe_server
from tests.integration.test_probe_http import samples

ROOT = Path(__file__).resolve().parents[2]

RULES = """
kpis:
  - name: website_up
    owner: sre
    unit: ratio
    expr: probe_success
    levels: {critical: {below: 1}}
"""


async def test_a_stuck_probe_delays_neither_other_probes_nor_evaluation(tmp_path: Path) -> None:
    async with probe_server() as server:
        (tmp_path / "rules.yaml").write_text(RULES)
        path = tmp_path / "kpimon.yml"
        path.write_text(
            "global: {scrape_interval: 10s, evaluation_interval: 10s}\n"
            "probes:\n"
            f"  - {{name: stuck, timeout: 9s, http: {{url: '{server.base}/hang'}}}}\n"
            f"  - {{name: web, http: {{url: '{server.base}/ok'}}}}\n"
            "rule_files: [rules.yaml]\n"
        )
        clock = FakeClock()
        daemon = Daemon(load_config(str(path)), Options(config_file=str(path)), clock)
        reported: dict[str, TargetHealth] = {}
        web_done = asyncio.Event()

        def on_result(health: TargetHealth) -> None:
            reported[health.id] = health
            if health.id == "probe/web":
                web_done.set()

        daemon.manager = ScrapeManager(daemon.buffer, clock, on_result=on_result)
        async with aiohttp.ClientSession() as session:
            daemon.session = session
            wanted = frozenset({b"probe_success"})
            await daemon.manager.update(build_sources(daemon.cfg, session, wanted))
            evaluation = asyncio.create_task(daemon._evaluation_loop())
            try:
                await clock.advance(10)  # both probes start (their offsets are under 10s)
                async with asyncio.timeout(20):  # real seconds: a bound, not a measurement
                    await web_done.wait()
                assert server.hanging == 1  # the stuck probe is still waiting for its answer
                assert "probe/stuck" not in reported
                await clock.advance(10)  # the next evaluation tick is not held up
                assert daemon.engine.ticks >= 2
                state = daemon.engine.kpis["website_up"].state
                assert state.labels == [
                    (("instance", f"{server.base}/ok"), ("job", "probe"), ("probe", "web"))
                ]
                assert state.value.tolist() == [1.0]
                assert "probe/stuck" not in reported

                # a reload with the same probes keeps their sources (and their 30-day windows)
                before = daemon.manager.sources()["probe/web"]
                assert await daemon.reload() == []
                assert daemon.manager.sources()["probe/web"] is before
            finally:
                evaluation.cancel()
                await daemon.manager.stop()


async def test_the_30_day_window_forgets_what_is_older() -> None:
    clock = FakeClock()
    async with probe_server() as server:
        source = ProbeSource(
            ProbeConfig(
                name="flap",
                http=HttpProbe(url=server.base + "/flap"),  # 200, 500, 200, ...
                interval_s=30.0,
                timeout_s=5.0,
                position=Position("kpimon.yml", 1, 1),
            ),
            clock=clock,
        )
        first = samples(await source.collect())
        await clock.advance(10 * 86400)
        second = samples(await source.collect())
        await clock.advance(21 * 86400)  # the first probe is now 31 days old
        third = samples(await source.collect())
    ratio, attempts = "kpimon_probe_success_ratio_30d", "kpimon_probe_attempts_30d"
    assert (first[ratio], first[attempts]) == (1.0, 1.0)
    assert (second[ratio], second[attempts]) == (0.5, 2.0)
    assert (third[ratio], third[attempts]) == (0.5, 2.0)


async def test_only_wanted_metric_names_are_kept() -> None:
    async with probe_server() as server:
        config = ProbeConfig(
            name="web",
            http=HttpProbe(url=server.base + "/ok"),
            interval_s=30.0,
            timeout_s=5.0,
            position=Position("kpimon.yml", 1, 1),
        )
        wanted = frozenset({b"probe_success", b"probe_http_duration_seconds"})
        batch = await ProbeSource(config, wanted=wanted).collect()
    assert sorted(samples(batch)) == [
        'probe_http_duration_seconds{phase="connect"}',
        'probe_http_duration_seconds{phase="processing"}',
        'probe_http_duration_seconds{phase="resolve"}',
        'probe_http_duration_seconds{phase="tls"}',
        'probe_http_duration_seconds{phase="transfer"}',
        "probe_success",
    ]
    assert batch.samples_total > len(batch.keys)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    """docs/probes.md's example config is valid, with its certificate files in place."""
    doc = (ROOT / "docs" / "probes.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    certs = tmp_path / "certs"
    certs.mkdir()
    pki = Pki(certs)
    prober = pki.issue("client", client=True, hosts=())
    shutil.copy(pki.ca.cert_file, certs / "internal-ca.pem")
    shutil.copy(prober.cert_file, certs / "prober.pem")
    shutil.copy(prober.key_file, certs / "prober.key")
    (tmp_path / "rules").mkdir()
    shutil.copy(ROOT / "rules" / "availability.yaml", tmp_path / "rules" / "availability.yaml")
    (tmp_path / "kpimon.yml").write_text(example)
    config = load_config(str(tmp_path / "kpimon.yml"))
    assert [p.name for p in config.probes] == [
        "website",
        "api-with-client-cert",
        "postgres",
        "ldaps",
    ]
    assert len(config.kpis) == 6
    sources = [ProbeSource(p) for p in config.probes]  # every TLS context builds
    assert [s.id for s in sources] == [
        "probe/website",
        "probe/api-with-client-cert",
        "probe/postgres",
        "probe/ldaps",
    ]


async def test_the_30_day_window_survives_a_restart_through_the_journal(tmp_path: Path) -> None:
    """Saved when an hour ends, restored by the next process (which adds its own attempts)."""
    path = tmp_path / "kpimon.yml"
    config = "probes:\n  - {{name: flap, interval: 30s, http: {{url: '{base}/flap'}}}}\n"

    async def run(clock: FakeClock, base: str, probes: int) -> dict[str, float]:
        path.write_text(config.format(base=base))
        cfg = load_config(str(path))
        opts = Options(config_file=str(path), storage_path=str(tmp_path / "data"))
        daemon = Daemon(cfg, opts, clock)
        async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as session:
            daemon._open_journal(stack)
            (source,) = build_sources(cfg, session, None)
            assert isinstance(source, ProbeSource)
            # Collected here rather than by a scrape loop, so that the attempts are counted.
            daemon._journal_probe_windows(clock.wall(), [source])  # the first tick: restore
            got: dict[str, float] = {}
            for _ in range(probes):
                got = samples(await source.collect())
                await clock.advance(600)
            daemon._journal_probe_windows(clock.wall(), [source])  # an hour ended: save
        return got

    clock = FakeClock(start_wall=1_700_000_000.0 - 1_700_000_000.0 % 3600)
    async with probe_server() as server:
        first = await run(clock, server.base, 7)  # 70 minutes: into the next hour
        await clock.advance(3 * 3600)  # kpimon down for 3 hours
        second = await run(clock, server.base, 1)
    attempts = "kpimon_probe_attempts_30d"
    assert first[attempts] == 7.0
    assert second[attempts] == 8.0  # the 7 before the restart count
