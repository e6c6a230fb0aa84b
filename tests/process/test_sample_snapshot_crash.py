"""A real ``kpimon run`` killed with SIGKILL after a periodic sample snapshot: the next start
replays it (kpimon/snapshots.py), so the history from before the crash is served again."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import numpy as np

from kpimon.store import snapshot
from kpimon.store.layout import ABSENT_BITS, STALE_BITS
from tests.helpers.daemon import kpimon
from tests.helpers.web import exposition_target

EXPOSITION = b'app_queue_depth{queue="mail"} 42\n'
RULES = """
kpis:
  - name: mail_samples
    owner: messaging-team
    expr: count_over_time(app_queue_depth{queue="mail"}[10m])
    levels:
      warning: {above: 100000}
"""


def samples_in(path: Path) -> int:
    """How many samples of the mail queue's series the snapshot holds."""
    _, histories = snapshot.load(path)
    (history,) = histories
    (j,) = [i for i, key in enumerate(history.keys) if b'queue="mail"' in key]
    bits = np.ascontiguousarray(history.values[:, j]).view(np.int64)
    return int(np.count_nonzero((bits != ABSENT_BITS) & (bits != STALE_BITS)))


def mail_samples(k) -> float | None:  # type: ignore[no-untyped-def]
    for doc in k.json("/api/v1/kpis")["data"]:
        if doc["kpi"] == "mail_samples":
            return float(doc["value"])
    return None


async def test_a_crash_after_a_periodic_snapshot_keeps_the_history(tmp_path: Path) -> None:
    path = tmp_path / "data" / "samples-main.npz"
    async with exposition_target(EXPOSITION) as target:
        (tmp_path / "rules.yaml").write_text(RULES)
        cfg = tmp_path / "kpimon.yml"
        cfg.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['{target}']}}]\n"
            "rule_files: [rules.yaml]\n"
            "storage: {sample_snapshot_interval: 1s}\n"
        )
        with kpimon(tmp_path, f"--config.file={cfg}") as k:
            await asyncio.to_thread(k.wait_for, "ready", lambda: k.get("/-/ready")[0] == 200)
            # A few periodic snapshots (the file is renamed into place whole).
            await asyncio.to_thread(
                k.wait_for, "a periodic snapshot", lambda: path.is_file() and samples_in(path) >= 3
            )
            k.signal(signal.SIGKILL)
            assert await asyncio.to_thread(k.proc.wait, 30) == -signal.SIGKILL
            assert "samples saved" not in k.log()  # (what there is, a periodic snapshot wrote)
    # The target is gone: the restarted kpimon scrapes nothing, what it serves is restored.
    saved = samples_in(path)
    with kpimon(tmp_path, f"--config.file={cfg}") as k:
        line = await asyncio.to_thread(k.log_line, "samples restored")
        assert "targets=1" in line
        await asyncio.to_thread(k.wait_for, "ready", lambda: k.get("/-/ready")[0] == 200)
        assert await asyncio.to_thread(k.wait_for, "the KPI", lambda: mail_samples(k)) == saved
        k.signal(signal.SIGTERM)
        assert await asyncio.to_thread(k.proc.wait, 30) == 0
