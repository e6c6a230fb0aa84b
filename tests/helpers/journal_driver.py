"""Drive an Engine with a Journal over deterministic synthetic data and a simulated clock.

    python -m tests.helpers.journal_driver DIR TICKS

Evaluates ticks ``T0 + 15 s × k`` for k < TICKS, journaling to ``DIR/data``. When the journal
already has a heartbeat (a previous run was killed), it resumes from the tick after it, as a
restart with no outage would: the KPIs' state comes from the journal, the sample store is warmed
with the few ticks before it (what an instant selector can still see). So any number of SIGKILLs
followed by restarts must leave the very transition log an uninterrupted run leaves.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from kpimon.config.loader import build_config
from kpimon.config.models import DaemonConfig
from kpimon.journal import Journal
from kpimon.kpi.engine import Engine
from kpimon.labels import format_key
from kpimon.store import Store

T0 = 1_700_000_000.0
STEP = 15.0
SERIES = 60
WARM = 3

RULES = """
kpis:
  - name: latency
    owner: test
    expr: x
    max_gap: 30s
    no_data: {after: 1m, resolve_after: 3m}
    levels:
      warning: {above: 50, for: 45s, clear: 40, clear_for: 30s}
      critical: {above: 85, for: 15s}
  - name: errors
    owner: test
    expr: x * 2 - 60
    levels:
      warning: {above: 30, for: 30s}
"""


def config(directory: Path) -> DaemonConfig:
    (directory / "rules.yaml").write_text(RULES)
    return build_config("rule_files: [rules.yaml]\n", str(directory / "kpimon.yml"))


def sample(k: int) -> tuple[list[bytes], np.ndarray]:
    """The scrape at tick ``k``: which series are present, and their values (deterministic)."""
    rng = np.random.default_rng([7, k])
    i = np.arange(SERIES)
    values = 50 + 45 * np.sin(k / 6.0 + i * 0.7) + rng.normal(0, 6, SERIES)
    present = (rng.random(SERIES) > 0.06) | (k == 0)
    keys = [format_key("x", {"s": f"{n:03d}"}) for n in np.flatnonzero(present).tolist()]
    return keys, values[present]


def ingest(store: Store, k: int) -> None:
    keys, values = sample(k)
    store.ingest("t", (("instance", "i"), ("job", "j")), keys, values, T0 + STEP * k)


def engine(directory: Path, journal: Journal | None) -> Engine:
    cfg = config(directory)
    store = Store(retention_s=cfg.retention_s(), min_interval_s=STEP)
    return Engine(cfg.kpis, store, journal)


def main(directory: Path, ticks: int, *, announce: bool = False) -> int:
    """Run (or resume) the ticks; with ``announce``, print ``ready K`` once resumed at tick K."""
    journal = Journal.open(directory / "data")
    e = engine(directory, journal)
    start = 0
    if journal.heartbeat is not None:
        start = round((journal.heartbeat - T0) / STEP) + 1
        for k in range(max(0, start - WARM), start):
            ingest(e.store, k)
        e.restore(journal.heartbeat, outage_tolerance_s=3600.0, grace_s=0.0)
    if announce:
        print(f"ready {start}", flush=True)
    for k in range(start, ticks):
        ingest(e.store, k)
        e.tick(T0 + STEP * k)
    journal.close()
    return 0


if __name__ == "__main__":
    logging.getLogger("kpimon").setLevel(logging.CRITICAL)  # transitions are logged; not here
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), announce=True))
