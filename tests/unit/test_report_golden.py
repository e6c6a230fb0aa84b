"""Golden files of ``kpimon report`` over a journal built by ``kpimon replay``.

The journal: tests/data/report/rules.yaml over samples.csv (12 hours of 1-minute samples on
2024-05-01: warning and critical breaches, a series without data for an hour, a breach still
firing when the data ends) with a restart at noon. The report: that day (kpimon ran only
06:00-17:59 of it). Regenerate the goldens with ``KPIMON_UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kpimon.replay.command import Request as ReplayRequest
from kpimon.replay.command import run_replay
from kpimon.report.command import Request, run_report

DATA = Path(__file__).resolve().parents[1] / "data" / "report"
RULES = str(DATA / "rules.yaml")
UPDATE = os.environ.get("KPIMON_UPDATE_GOLDEN") == "1"
NOW = 1_800_000_000.0  # never used: --at is a date
GOLDEN = {"markdown": "day.md", "json": "day.json", "html": "day.html"}


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = str(tmp_path_factory.mktemp("report") / "data")
    out, err = io.StringIO(), io.StringIO()
    code = run_replay(
        ReplayRequest(
            rules=(RULES,),
            data=(str(DATA / "samples.csv"),),
            step_s=60.0,
            restarts=(1714564800.0,),  # 2024-05-01T12:00:00Z
            storage_path=directory,
        ),
        out,
        err,
    )
    assert code == 0, err.getvalue()
    return directory


def report(journal: str, fmt: str, **kw: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    request = Request(period="day", at="2024-05-01", format=fmt, storage_path=journal,  # type: ignore[arg-type]
                      rules=(RULES,), **kw)  # fmt: skip
    assert run_report(request, out, err, now=NOW) == 0, err.getvalue()
    assert err.getvalue() == ""
    return out.getvalue()


@pytest.mark.parametrize("fmt", list(GOLDEN))
def test_golden(journal: str, fmt: str) -> None:
    text = report(journal, fmt)
    path = DATA / GOLDEN[fmt]
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; KPIMON_UPDATE_GOLDEN=1 rewrites it"


def test_the_numbers_agree_with_the_replay_summary(journal: str) -> None:
    """The report rebuilds from the journal what the replay measured tick by tick."""
    doc = json.loads(report(journal, "json"))
    cpu, queue = doc["kpis"]
    series = {s["labels"]["instance"]: s["status_seconds"] for s in cpu["series"]}
    # kpimon replay's summary of the same run (docs/reports.md shows it):
    # cpu ok 21h52m, warning 50m, critical 25m, no_data 51m in series-seconds
    assert sum(s["ok"] for s in series.values()) == (21 * 60 + 52) * 60
    assert series["web1"] == {"ok": 38640.0, "warning": 3000.0, "critical": 1500.0, "no_data": 0}
    assert series["web2"]["no_data"] == 51 * 60
    assert queue["levels"]["critical"]["open_at_end"] == 1
    assert queue["levels"]["critical"]["longest_open"] is True
    assert doc["coverage"]["covered_seconds"] == 11 * 3600 + 59 * 60  # 06:00 .. 17:59
    # the restart at noon leaves no gap: the restarted process resumes at the last tick
    assert [g["start"] for g in doc["coverage"]["not_running"]] == [
        "2024-05-01T00:00:00Z",
        "2024-05-01T17:59:00Z",
    ]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href")]


def test_html_is_one_self_contained_file_with_one_svg_per_kpi(journal: str) -> None:
    text = report(journal, "html")
    parser = _Tags()
    parser.feed(text)
    parser.close()
    assert parser.tags.count("svg") == 2  # cpu_utilization, queue_depth
    assert "script" not in parser.tags
    assert "link" not in parser.tags
    assert "img" not in parser.tags
    assert parser.refs == []  # no external fonts, images or style sheets
    assert "@import" not in text
    assert "url(http" not in text


def test_a_day_in_another_zone(journal: str) -> None:
    doc = json.loads(report(journal, "json", tz="America/New_York"))
    assert doc["period"]["start"] == "2024-05-01T04:00:00Z"
    assert doc["coverage"]["covered_seconds"] == 11 * 3600 + 59 * 60


def test_a_journal_from_before_schema_6(journal: str, tmp_path: Path) -> None:
    """No status log, no runs: statuses rebuilt from the transition log (no no_data), the whole
    period counted as covered, and the report says so."""
    old = tmp_path / "old"
    shutil.copytree(journal, old)
    conn = sqlite3.connect(old / "kpimon.db")
    conn.executescript(
        "DROP TABLE status_log; DROP TABLE runs; UPDATE schema_version SET version = 5;"
    )
    conn.close()
    doc = json.loads(report(str(old), "json"))
    assert doc["coverage"]["known"] is False
    assert doc["coverage"]["covered_seconds"] == 86400
    assert "no run records" in doc["notes"][0]
    cpu = doc["kpis"][0]
    new = json.loads(report(journal, "json"))["kpis"][0]
    for level in ("warning", "critical"):
        for key in ("breaches", "resolved", "longest_seconds", "mttr_seconds"):
            assert cpu["levels"][level][key] == new["levels"][level][key]
    (web1,) = cpu["series"]  # web2 never changed phase: the transition log does not know it
    assert web1["status_seconds"]["critical"] == 25 * 60
    assert web1["status_seconds"]["warning"] == 50 * 60
    assert web1["status_seconds"]["no_data"] == 0
    # before its first transition (09:00) the series is unknown: the KPI has no series
    assert cpu["status_seconds"]["no_data"] == 9 * 3600
