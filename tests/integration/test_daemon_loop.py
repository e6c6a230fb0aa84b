"""The daemon's evaluation loop and reload, driven by a fake clock over real config files."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import aiohttp

from kpimon.app import Daemon, Options
from kpimon.config import load_config
from kpimon.testing import FakeClock

RULES = """
kpis:
  - name: k
    owner: team
    expr: "1"
    levels: {warning: {above: 5}}
"""


def write(tmp_path: Path, interval: str, rules: str = RULES) -> str:
    (tmp_path / "rules.yaml").write_text(rules)
    cfg = tmp_path / "kpimon.yml"
    cfg.write_text(f"global: {{evaluation_interval: {interval}}}\nrule_files: [rules.yaml]\n")
    return str(cfg)


async def test_a_reload_that_changes_the_interval_moves_the_schedule(tmp_path: Path) -> None:
    path = write(tmp_path, "15s")
    clock = FakeClock()
    daemon = Daemon(load_config(path), Options(config_file=path), clock)
    async with aiohttp.ClientSession() as session:
        daemon.session = session
        await daemon.manager.update([])  # no targets: the first round is done at once
        loop = asyncio.create_task(daemon._evaluation_loop())
        await clock.advance(0)
        assert daemon.ready
        await clock.advance(60)
        assert daemon.engine.ticks == 5  # at 0, 15, 30, 45, 60

        write(tmp_path, "1m")
        assert await daemon.reload() == []
        await clock.advance(15 + 3 * 60)
        # one more tick on the old schedule (75 s), then every minute from there
        assert daemon.engine.ticks == 5 + 1 + 3

        write(tmp_path, "5s")
        assert await daemon.reload() == []
        await clock.advance(60 + 60)
        assert daemon.engine.ticks == 9 + 1 + 12
        loop.cancel()


async def test_a_reload_that_fails_in_any_way_keeps_the_running_config(tmp_path: Path) -> None:
    path = write(tmp_path, "15s")
    clock = FakeClock()
    daemon = Daemon(load_config(path), Options(config_file=path), clock)
    async with aiohttp.ClientSession() as session:
        daemon.session = session
        running = daemon.engine.kpis["k"]
        (tmp_path / "rules.yaml").write_text("kpis:\n  - name: \x1b[31mk\n")
        problems = await daemon.reload()
        assert problems == [
            f"{tmp_path / 'rules.yaml'}:2:11: "
            "character U+001B is not allowed in YAML (a pasted control character?)"
        ]
        assert not daemon.reload_ok
        assert daemon.engine.kpis["k"] is running
        (tmp_path / "kpimon.yml").unlink()
        problems = await daemon.reload()
        assert len(problems) == 1
        assert "cannot read" in problems[0]
        assert daemon.engine.kpis["k"] is running
        write(tmp_path, "15s")
        assert await daemon.reload() == []
        assert daemon.reload_ok


async def test_a_ready_daemon_freezes_its_heap_when_asked(tmp_path: Path) -> None:
    """``kpimon run`` freezes the heap once ready (kpimon.heap): full passes of the garbage
    collector no longer walk the modules and the config. A daemon inside another process
    (these tests) does not, unless asked."""
    path = write(tmp_path, "15s")
    for freeze in (False, True):
        clock = FakeClock()
        daemon = Daemon(load_config(path), Options(config_file=path, freeze_heap=freeze), clock)
        try:
            async with aiohttp.ClientSession() as session:
                daemon.session = session
                await daemon.manager.update([])
                loop = asyncio.create_task(daemon._evaluation_loop())
                await clock.advance(0)
                assert daemon.ready
                assert (gc.get_freeze_count() > 1000) is freeze
                loop.cancel()
        finally:
            gc.unfreeze()
