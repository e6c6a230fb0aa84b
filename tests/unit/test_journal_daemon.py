"""The daemon opens the journal from --storage.path, restores, and a fake clock shows the
45m/30m/15m example end to end: a `for` that had run 30m fires 15m after the restart."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp

from kpimon.app import Daemon, Options
from kpimon.config import load_config
from kpimon.journal import Journal
from kpimon.kpi.machine import FIRING, PENDING
from kpimon.testing import FakeClock

RULES = """
kpis:
  - name: k
    owner: team
    expr: "80"
    levels: {warning: {above: 70, for: 45m}}
"""
W = 1_700_000_000.0


def write(tmp_path: Path) -> str:
    (tmp_path / "rules.yaml").write_text(RULES)
    cfg = tmp_path / "kpimon.yml"
    cfg.write_text(
        "global: {evaluation_interval: 1m}\nstorage: {path: ignored}\nrule_files: [rules.yaml]\n"
    )
    return str(cfg)


async def run_for(daemon: Daemon, clock: FakeClock, seconds: float) -> None:
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as session:
        daemon._open_journal(stack)
        daemon.session = session
        await daemon.manager.update([])  # no targets: the first evaluation runs at once
        loop = asyncio.create_task(daemon._evaluation_loop())
        await clock.advance(seconds)
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def test_the_daemon_restores_state_and_the_timer_continues(tmp_path: Path) -> None:
    path = write(tmp_path)
    cfg = load_config(path)
    assert cfg.storage_path == "ignored"  # Options (the flag, resolved by the CLI) wins
    opts = Options(config_file=path, storage_path=str(tmp_path / "data"))

    clock = FakeClock(start_wall=W)
    first = Daemon(cfg, opts, clock)
    await run_for(first, clock, 30 * 60)
    assert first.engine.kpis["k"].state.phase[0].tolist() == [PENDING]
    assert first.journal is not None
    assert first.metrics_view().journal is not None
    assert (tmp_path / "data" / "kpimon.db").exists()
    assert not (tmp_path / "ignored").exists()

    clock = FakeClock(start_wall=W + 40 * 60)  # 10 minutes later
    second = Daemon(load_config(path), opts, clock)
    await run_for(second, clock, 15 * 60)
    state = second.engine.kpis["k"].state
    assert state.phase[0].tolist() == [FIRING]
    assert state.fired_at[0].tolist() == [W + 55 * 60]  # 15m after the restart, not 45m
    assert state.active_at[0].tolist() == [W + 10 * 60]  # the outage does not count

    with Journal.open(tmp_path / "data") as j:
        log = [(r.t, r.from_phase, r.to_phase) for r in j.transitions()]
    assert log == [(W, "inactive", "pending"), (W + 55 * 60, "pending", "firing")]
