"""kpimon replay's driver and summary: transitions at hand-computed times, restarts, figures.

Most tests replay tests/data/replay (two queues sampled every 5 minutes; see the comments in
queues.csv) with a 1-minute step, so every expectation below can be checked with a pencil:

- orders: 20 at 12:00, above 100 from 12:05 to 12:15, 80 at 12:20. ``warning: above 100 for
  10m`` is pending at 12:05 and fires at 12:15 (12:15 - 12:05 = 10m); it resolves at 12:20.
- billing: 10, except 700 at 12:30. ``critical: above 500 for 2m`` is pending at 12:30, fires
  at 12:32 and resolves at 12:35 (the sample at 12:35 is 10); warning, pending since 12:30,
  is dropped at 12:35 without firing.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from kpimon.config.models import Kpi
from kpimon.config.rules import parse_rules
from kpimon.kpi.engine import Engine
from kpimon.kpi.machine import Transition
from kpimon.replay.command import load_data, load_rules
from kpimon.replay.csvdata import read_csv
from kpimon.replay.data import Recording, merge
from kpimon.replay.driver import ReplayError, ReplayOptions, ReplayResult, replay
from kpimon.replay.progress import Progress
from kpimon.replay.render import render_text
from kpimon.replay.restart import Persistence
from kpimon.store import Store

DATA = Path(__file__).parent.parent / "data" / "replay"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC).timestamp()


def at(minutes: float) -> float:
    """Unix time of 12:00 + ``minutes`` on the data's day."""
    return T0 + 60 * minutes


@pytest.fixture(autouse=True)
def _quiet_engine(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="kpimon.engine")


def kpis_of(text: str) -> tuple[Kpi, ...]:
    kpis, problems = parse_rules(text, "rules.yaml")
    assert not problems, problems
    return kpis


def csv_recording(text: str) -> Recording:
    return merge([read_csv(text, "data.csv")])


def timeline(result: ReplayResult) -> list[tuple[float, str, str, str, str, float]]:
    return [
        (
            (e.t - T0) / 60,
            dict(e.labels).get("queue", ""),
            e.level,
            e.from_phase,
            e.to_phase,
            e.value,
        )
        for e in result.events
    ]


def run_example(data: str = "queues.csv", **options: object) -> ReplayResult:
    kpis, _ = load_rules([str(DATA / "rules.yaml")])
    recording = load_data([str(DATA / data)])
    return replay(kpis, recording, ReplayOptions(step_s=60, **options))  # type: ignore[arg-type]


EXPECTED = [
    (5, "orders", "warning", "inactive", "pending", 150),
    (15, "orders", "warning", "pending", "firing", 160),
    (20, "orders", "warning", "firing", "inactive", 80),
    (30, "billing", "warning", "inactive", "pending", 700),
    (30, "billing", "critical", "inactive", "pending", 700),
    (32, "billing", "critical", "pending", "firing", 700),
    (35, "billing", "warning", "pending", "inactive", 10),
    (35, "billing", "critical", "firing", "inactive", 10),
]


def test_example_timeline_is_exact() -> None:
    result = run_example()
    assert timeline(result) == EXPECTED
    assert (result.start, result.end, result.ticks) == (at(0), at(40), 41)
    assert [e.notifies for e in result.events[:3]] == [False, True, True]
    assert result.events[1].reason == "value > 100 held for 600s"


def test_both_formats_give_the_same_timeline() -> None:
    from_csv = run_example("queues.csv")
    from_om = run_example("queues.om")
    assert from_csv.events == from_om.events
    assert render_text(from_csv) == render_text(from_om)


def test_example_summary_figures() -> None:
    (summary,) = run_example().summaries
    assert summary.kpi == "queue_depth"
    # orders: ok 12:00-12:15 and 12:20-12:40 (35m), warning 12:15-12:20 (5m);
    # billing: ok 12:00-12:32 and 12:35-12:40 (37m), critical 12:32-12:35 (3m).
    assert dict(summary.status_s) == {
        "ok": 72 * 60.0,
        "warning": 5 * 60.0,
        "critical": 3 * 60.0,
        "no_data": 0.0,
    }
    warning, critical = summary.levels
    assert (warning.level, warning.breaches, warning.resolved) == ("warning", 1, 1)
    assert (warning.longest_s, warning.mttr_s, warning.longest_open) == (300.0, 300.0, False)
    assert (critical.breaches, critical.longest_s, critical.mttr_s) == (1, 180.0, 180.0)
    billing, orders = summary.series  # sorted by labels
    assert dict(billing.labels) == {"queue": "billing"}
    assert dict(orders.status_s)["warning"] == 300.0
    assert [lv.breaches for lv in orders.levels] == [1, 0]
    assert [lv.breaches for lv in billing.levels] == [0, 1]


def test_range_options_clip_the_timeline_and_the_summary() -> None:
    result = run_example(start=at(10), end=at(16))
    # Samples before --from are history: the 12:10 tick sees 180 and starts pending there
    # (it would fire at 12:20: out of range).
    assert timeline(result) == [(10, "orders", "warning", "inactive", "pending", 180)]
    (summary,) = result.summaries
    assert sum(v for _, v in summary.status_s) == 2 * 6 * 60.0
    result = run_example(end=at(17))
    assert timeline(result) == EXPECTED[:2]
    (summary,) = result.summaries
    (warning, _) = summary.levels
    # Still open at the end of the range: counted as the longest breach, not in MTTR.
    assert (warning.breaches, warning.resolved, warning.open) == (1, 0, 1)
    assert (warning.longest_s, warning.longest_open, warning.mttr_s) == (120.0, True, None)


def test_restart_within_for_window_continues_the_timer() -> None:
    # Pending since 12:05; a restart at 12:10 keeps active_at, so it still fires at 12:15.
    result = run_example(restarts=(at(10),))
    assert timeline(result) == EXPECTED
    assert result.restarts == (at(10),)


def test_restart_without_state_would_restart_the_timer(tmp_path: Path) -> None:
    # The control experiment: a restart that forgets the state starts pending anew at 12:10,
    # so the level would need until 12:20 and never fires (80 at 12:20).
    class Forgetful(Persistence):
        def restart(
            self, kpis: Sequence[Kpi], store: Store, at: float, interval_s: float
        ) -> tuple[Engine, list[tuple[str, Transition]]]:
            return Engine(kpis, store), []

    kpis, _ = load_rules([str(DATA / "rules.yaml")])
    recording = load_data([str(DATA / "queues.csv")])
    options = ReplayOptions(step_s=60, restarts=(at(10),))
    forgetful = Forgetful(str(tmp_path), synchronous="OFF")
    result = replay(kpis, recording, options, persistence=forgetful)
    forgetful.close()
    assert [e[:5] for e in timeline(result)][:2] == [
        (5, "orders", "warning", "inactive", "pending"),
        (10, "orders", "warning", "inactive", "pending"),
    ]
    assert not any(e.to_phase == "firing" and e.level == "warning" for e in result.events)


def test_restart_between_samples_is_not_missing_data() -> None:
    # Samples every 5 minutes, a restart at 12:12: the new process has no sample of the series
    # until 12:15, but that is "not yet scraped" (the grace after a restart), not missing data,
    # so pending (max_gap 0) is not dropped and the level still fires at 12:15.
    assert timeline(run_example(restarts=(at(12),))) == EXPECTED


COUNT_SAMPLES = """
kpis:
  - name: samples_seen
    owner: o
    expr: count_over_time(queue_depth{queue="orders"}[30m])
    levels:
      warning: {above: 3}
"""


def test_restart_drops_the_store() -> None:
    # 4 samples in the window at 12:15 (12:00 .. 12:15): fires. Without a restart the count
    # only grows (up to 6); after a restart at 12:17 the new store holds no sample until
    # 12:20 (the series is absent: the level stays firing), then 1: resolved; it fires again
    # once the new store has 4 samples.
    recording = load_data([str(DATA / "queues.csv")])
    kpis = kpis_of(COUNT_SAMPLES)
    plain = replay(kpis, recording, ReplayOptions(step_s=60))
    assert [((e.t - T0) / 60, e.to_phase, e.value) for e in plain.events] == [(15, "firing", 4)]
    restarted = replay(kpis, recording, ReplayOptions(step_s=60, restarts=(at(17),)))
    assert [((e.t - T0) / 60, e.to_phase, e.value) for e in restarted.events] == [
        (15, "firing", 4),
        (20, "inactive", 1),
        (35, "firing", 4),  # 12:20, 12:25, 12:30, 12:35
    ]


def test_storage_path_resumes_after_the_last_committed_tick(tmp_path: Path) -> None:
    kpis, _ = load_rules([str(DATA / "rules.yaml")])
    recording = load_data([str(DATA / "queues.csv")])
    # A first run that "crashed" after 12:16: it committed every tick up to then.
    first = Persistence(str(tmp_path), synchronous="OFF")
    part = replay(kpis, recording, ReplayOptions(step_s=60, end=at(16)), persistence=first)
    first.close()
    assert timeline(part) == EXPECTED[:2]
    again = Persistence(str(tmp_path), synchronous="OFF")
    resumed = replay(kpis, recording, ReplayOptions(step_s=60), persistence=again)
    again.close()
    assert resumed.resumed_after == at(16)
    assert timeline(resumed) == EXPECTED  # the journal's two, then the rest
    (summary,) = resumed.summaries
    warning, critical = summary.levels
    assert (warning.breaches, warning.mttr_s, critical.breaches) == (1, 300.0, 1)
    # Status times cover the resumed ticks only: 12:17 .. 12:40 for two series.
    assert sum(v for _, v in summary.status_s) == 2 * 23 * 60.0
    other = Persistence(str(tmp_path), synchronous="OFF")
    with pytest.raises(ReplayError, match="progress of another replay"):
        replay(kpis, recording, ReplayOptions(step_s=45), persistence=other)
    other.close()


def test_restart_keeps_breach_accounting() -> None:
    # Firing from 12:15; a restart at 12:17 must not count a second breach or reset it.
    result = run_example(restarts=(at(17), at(20)))
    assert timeline(result) == EXPECTED
    (summary,) = result.summaries
    assert summary.levels[0].breaches == 1
    assert summary.levels[0].longest_s == 300.0


FOR_10M = """
kpis:
  - name: latency
    owner: web-team
    expr: latency_seconds
    levels:
      warning: {above: 0.5, for: 10m}
"""


def test_for_10m_over_csv_with_unaligned_samples() -> None:
    # One sample a minute at :30 seconds; ticks on the whole minute see the sample 30s old.
    # The value crosses 0.5 in the sample at 00:03:30 and falls back in the one at 00:20:30.
    rows = ["timestamp,series,value"]
    for m in range(30):
        v = 0.9 if 3 <= m < 20 else 0.1
        rows.append(f'{1_700_000_000 + 60 * m + 30},latency_seconds{{path="/"}},{v}')
    rec = csv_recording("\n".join(rows) + "\n")
    start = 1_700_000_000 + 60
    result = replay(kpis_of(FOR_10M), rec, ReplayOptions(start=start, step_s=60))
    got = [((e.t - 1_700_000_000) / 60, e.from_phase, e.to_phase) for e in result.events]
    # First tick seeing 0.9 is 00:04 (sample 00:03:30); fires 10m later at 00:14; the first
    # tick seeing 0.1 again is 00:21.
    assert got == [
        (4, "inactive", "pending"),
        (14, "pending", "firing"),
        (21, "firing", "inactive"),
    ]
    (summary,) = result.summaries
    assert summary.levels[0].mttr_s == 7 * 60.0
    # Range 00:01 .. 00:29:30 (the last sample): 28.5 minutes, of which 7 warning.
    assert result.end == 1_700_000_000 + 29 * 60 + 30
    assert dict(summary.status_s) == {
        "ok": 28.5 * 60 - 7 * 60,
        "warning": 7 * 60.0,
        "critical": 0.0,
        "no_data": 0.0,
    }


def test_missing_samples_are_no_sample_and_stale_ends_a_series() -> None:
    # "a" has a hole of 2 minutes (still within the 5m lookback: the value holds); "b" is
    # marked stale at 00:02, so from then on it is absent and its pending level is dropped.
    text = """\
1700000000,x{s="a"},9
1700000000,x{s="b"},9
1700000060,x{s="b"},9
1700000120,x{s="b"},stale
1700000180,x{s="a"},9
1700000240,x{s="a"},9
"""
    kpis = kpis_of(
        "kpis:\n  - {name: k, owner: o, expr: x, levels: {warning: {above: 5, for: 10m}}}\n"
    )
    result = replay(kpis, csv_recording(text), ReplayOptions(step_s=60))
    got = [((e.t - 1_700_000_000) / 60, dict(e.labels)["s"], e.to_phase) for e in result.events]
    assert got == [(0, "a", "pending"), (0, "b", "pending"), (2, "b", "inactive")]


def test_one_target_per_timestamp_pattern() -> None:
    # Series sampled at the same times share a synthetic target (one store row per time);
    # a series with its own times gets its own target. Either way each is read correctly.
    text = "\n".join(
        [f'{1_700_000_000 + 15 * i},m{{i="{j}"}},{j}' for i in range(8) for j in range(3)]
        + [f'{1_700_000_007 + 30 * i},m{{i="odd"}},7' for i in range(4)]
    )
    kpis = kpis_of("kpis:\n  - {name: k, owner: o, expr: m, levels: {warning: {above: 1.5}}}\n")
    result = replay(kpis, csv_recording(text), ReplayOptions(step_s=15))
    fired = sorted(dict(e.labels)["i"] for e in result.events if e.to_phase == "firing")
    assert fired == ["2", "odd"]
    odd = next(e for e in result.events if dict(e.labels)["i"] == "odd")
    assert odd.t == 1_700_000_015  # the first tick at or after its first sample


def test_options_that_do_not_fit_are_errors() -> None:
    kpis, _ = load_rules([str(DATA / "rules.yaml")])
    rec = load_data([str(DATA / "queues.csv")])
    with pytest.raises(ReplayError, match=r"ends .* before it starts"):
        replay(kpis, rec, ReplayOptions(start=at(10), end=at(5)))
    with pytest.raises(ReplayError, match="outside the replayed range"):
        replay(kpis, rec, ReplayOptions(restarts=(at(50),)))
    with pytest.raises(ReplayError, match="no samples"):
        replay(kpis, csv_recording(""), ReplayOptions())


def test_daemon_config_gives_kpis_and_evaluation_interval(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text((DATA / "rules.yaml").read_text())
    config = tmp_path / "kpimon.yml"
    config.write_text("global: {evaluation_interval: 1m}\nrule_files: [rules.yaml]\n")
    kpis, interval = load_rules([str(config)])
    assert [k.name for k in kpis] == ["queue_depth"]
    assert interval == 60.0


def test_many_series_through_the_batch_path() -> None:
    # A smoke test of the batch path: 200 series over 6 hours at 15s (1441 ticks).
    n, steps = 200, 6 * 240 + 1
    times = np.repeat(1_700_000_000_000 + 15_000 * np.arange(steps, dtype=np.int64), n)
    series = np.tile(np.arange(n, dtype=np.int32), steps)
    values = (series % 10).astype(np.float64) * 10
    rec = merge(
        [
            Recording(
                keys=tuple(f'load{{host="h{i}"}}'.encode() for i in range(n)),
                series=series,
                times_ms=times,
                values=values,
                files=("gen",),
                file_of=np.zeros(len(times), np.int32),
                lines=np.arange(len(times), dtype=np.int32),
            )
        ]
    )
    kpis = kpis_of(
        "kpis:\n  - {name: k, owner: o, expr: load, levels: {warning: {above: 85, for: 10m}}}\n"
    )
    result = replay(kpis, rec, ReplayOptions(step_s=15))
    assert result.ticks == steps
    assert len([e for e in result.events if e.to_phase == "firing"]) == n // 10
    (summary,) = result.summaries
    warning_s = dict(summary.status_s)["warning"]
    assert warning_s == (n // 10) * (6 * 3600 - 600)


class _Tty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_bar_only_on_a_terminal_and_at_most_ten_times_a_second() -> None:
    now = [0.0]
    stream = _Tty(tty=True)
    bar = Progress(stream, monotonic=lambda: now[0])
    total = 5000
    for i in range(1, total + 1):
        now[0] += 0.001  # a tick takes a millisecond: 5 seconds in all
        bar(i, total)
    draws = stream.getvalue().count("\r[")
    assert 45 <= draws <= 52  # ~10 a second, plus the final 100%
    assert stream.getvalue().endswith(f"] 100%  {total}/{total} ticks")
    bar.close()
    assert stream.getvalue().endswith("\r")
    quiet = _Tty(tty=False)
    bar = Progress(quiet, monotonic=lambda: now[0])
    for i in range(1, total + 1):
        bar(i, total)
    bar.close()
    assert quiet.getvalue() == ""
    short = _Tty(tty=True)
    bar = Progress(short, monotonic=lambda: now[0])
    bar(1, 41)
    assert short.getvalue() == ""


def test_the_documented_example_is_what_replay_prints() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "replay.md").read_text("utf-8")
    block = re.search(r"```console\n\$ kpimon replay (.*?)\n(.*?)```", doc, flags=re.S)
    assert block is not None
    assert block.group(1) == (
        "--rules tests/data/replay/rules.yaml --data tests/data/replay/queues.csv --step 1m"
    )
    assert block.group(2) == render_text(run_example())
    rules = re.search(r"`tests/data/replay/rules.yaml`:\n\n```yaml\n(.*?)```", doc, flags=re.S)
    assert rules is not None
    assert rules.group(1) in (DATA / "rules.yaml").read_text("utf-8")


def test_a_step_below_one_second_or_too_many_steps_is_refused() -> None:
    kpis, _ = load_rules([str(DATA / "rules.yaml")])
    recording = load_data([str(DATA / "queues.csv")])
    with pytest.raises(ReplayError, match="at least 1s"):
        replay(kpis, recording, ReplayOptions(step_s=0.001))
    with pytest.raises(ReplayError, match="more than 1,000,000"):
        replay(kpis, recording, ReplayOptions(step_s=1.0, start=0.0, end=2_000_000.0))


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Spreadsheet exports start with a UTF-8 byte-order mark."""
    path = tmp_path / "export"  # no suffix: the format is detected from the content
    path.write_bytes(b"\xef\xbb\xbftimestamp,series,value\n60,x,1\n120,x,2\n")
    recording = load_data([str(path)])
    assert len(recording) == 2
