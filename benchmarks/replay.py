"""``kpimon replay`` over a day of 1,000 series sampled every 15 s (ARCHITECTURE §11 spirit:
"seconds, not minutes").

Writes a synthetic recording (5.76M samples: OpenMetrics, ~250 MB, and the same as CSV) to a
temporary directory, then prints the CPU seconds of each phase: reading the file, sorting and
checking the samples, and replaying them (store + engine at every 15 s tick, 5,761 ticks) for a
KPI ``load > 80 for 10m`` whose series cross the threshold now and then.

    python benchmarks/replay.py [--quick]     # --quick: 3 hours instead of a day
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kpimon.config.rules import parse_rules
from kpimon.replay.command import read_data_file
from kpimon.replay.data import merge
from kpimon.replay.driver import ReplayOptions, replay

T0 = 1_714_521_600
STEP = 15
SERIES = 1000
RULES = """
kpis:
  - name: load_high
    owner: bench
    expr: load
    levels:
      warning: {above: 80, for: 10m}
      critical: {above: 95, for: 5m}
"""


def write(directory: Path, steps: int) -> tuple[Path, Path]:
    """The recording as OpenMetrics and as CSV; each series a slow wave plus noise."""
    rng = np.random.default_rng(1)
    times = (T0 + STEP * np.arange(steps)).tolist()
    om, csv = directory / "day.om", directory / "day.csv"
    with om.open("w") as f_om, csv.open("w") as f_csv:
        f_om.write("# TYPE load gauge\n")
        f_csv.write("timestamp,series,value\n")
        for s in range(SERIES):
            phase = rng.uniform(0, 2 * np.pi)
            wave = 50 + 35 * np.sin(np.arange(steps) / 400 + phase) + rng.normal(0, 1.5, steps)
            values = np.round(wave, 2).tolist()
            key = f'load{{host="h{s}",dc="dc{s % 4}"}}'
            quoted = '"' + key.replace('"', '""') + '"'
            f_om.writelines(f"{key} {v} {t}\n" for v, t in zip(values, times, strict=True))
            f_csv.writelines(f"{t},{quoted},{v}\n" for v, t in zip(values, times, strict=True))
        f_om.write("# EOF\n")
    return om, csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 hours instead of a day")
    args = parser.parse_args()
    logging.getLogger("kpimon.engine").setLevel(logging.CRITICAL + 1)
    steps = (3 if args.quick else 24) * 3600 // STEP + 1
    kpis, problems = parse_rules(RULES, "bench.yaml")
    assert not problems, problems
    with tempfile.TemporaryDirectory() as tmp:
        om, csv = write(Path(tmp), steps)
        print(f"{SERIES} series x {steps} samples = {SERIES * steps:,} samples")
        for path in (om, csv):
            size = path.stat().st_size / 1e6
            started = time.process_time()
            raw = read_data_file(str(path))
            read_s = time.process_time() - started
            started = time.process_time()
            recording = merge([raw])
            merge_s = time.process_time() - started
            del raw
            started = time.process_time()
            result = replay(kpis, recording, ReplayOptions(step_s=STEP))
            replay_s = time.process_time() - started
            print(
                f"{path.suffix[1:]:>3} ({size:.0f} MB): read {read_s:.1f} s, sort+check "
                f"{merge_s:.1f} s, replay {replay_s:.1f} s ({result.ticks} ticks, "
                f"{len(result.events)} transitions), total {read_s + merge_s + replay_s:.1f} "
                "CPU-s"
            )


if __name__ == "__main__":
    main()
