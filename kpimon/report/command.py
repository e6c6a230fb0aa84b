"""``kpimon report``: read the journal (read-only, beside a running daemon), print the report.

The one module of :mod:`kpimon.report` that touches files; :mod:`kpimon.cli` parses the flags
into :class:`Request` and calls :func:`run_report`.

Exit codes: 0 the report was printed (also for a period without data: the report says so);
2 no journal under ``--storage.path``, an unreadable or too new journal, an invalid ``--at``,
``--tz`` or rule file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path
from typing import Literal, TextIO

from kpimon.config.models import Kpi
from kpimon.config.slos import RuleExtras
from kpimon.errors import ConfigError, JournalError
from kpimon.journal import DB_NAME, SCHEMA_VERSION, TransitionRecord, reportlog, translog
from kpimon.journal.schema import schema_version
from kpimon.kpi.machine import SEVERITY
from kpimon.report.compute import KpiInfo, build_report
from kpimon.report.html import render_html
from kpimon.report.period import PeriodKind, period_at
from kpimon.report.render import render_json, render_markdown
from kpimon.report.slos import read_ledgers, slo_stats
from kpimon.slo.model import Slo

EXIT_OK = 0
EXIT_ERROR = 2

Format = Literal["markdown", "html", "json"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A report as asked for on the command line."""

    period: PeriodKind = "day"
    at: str | None = None
    tz: str = "UTC"
    format: Format = "markdown"
    storage_path: str = "data/"
    rules: tuple[str, ...] = ()


def run_report(request: Request, out: TextIO, err: TextIO, *, now: float) -> int:
    """Print the report of ``request`` to ``out``; errors (one line) go to ``err``."""
    try:
        period = period_at(request.period, request.at, now, request.tz)
    except ValueError as exc:
        print(f"kpimon report: {exc}", file=err)
        return EXIT_ERROR
    infos: dict[str, KpiInfo] = {}
    slos: list[Slo] = []
    if request.rules:
        from kpimon.replay.command import load_rules

        try:
            extras = RuleExtras()
            kpis, _ = load_rules(request.rules, extras)
            slos = extras.slos
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=err)
            return EXIT_ERROR
        infos = {k.name: kpi_info(k) for k in kpis}
    try:
        conn = open_readonly(request.storage_path)
    except JournalError as exc:
        print(f"kpimon report: {exc}", file=err)
        return EXIT_ERROR
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        # The log is in sequence order, which is time order: stop at the period's end.
        transitions = list(takewhile(lambda tr: tr.t < period.end, translog.read(conn)))
        statuses: list[reportlog.StatusChange] = []
        if "status_log" in tables:
            statuses = list(reportlog.read_statuses(conn, period.end + 1e-6))
        # A journal written by a kpimon before schema 6 (or migrated from one) has no status
        # log and no runs before some time: rebuild the statuses before then from the
        # transition log, and count that time as covered (the report notes it).
        first_status = min((c.t for c in statuses), default=math.inf)
        statuses[:0] = statuses_from_transitions([tr for tr in transitions if tr.t < first_status])
        runs = reportlog.read_runs(conn) if "runs" in tables else None
        ledgers = read_ledgers(conn, slos) if slos and "aux_state" in tables else {}
        unrecorded_before = None
        if runs is not None and transitions:
            first_run = min((a for a, _ in runs), default=math.inf)
            if transitions[0].t < first_run:
                unrecorded_before = first_run
    except (sqlite3.Error, ValueError, json.JSONDecodeError) as exc:
        print(f"kpimon report: journal {Path(request.storage_path) / DB_NAME} is unreadable "
              f"({exc})", file=err)  # fmt: skip
        return EXIT_ERROR
    finally:
        conn.close()
    report = build_report(
        period, runs, statuses, transitions, infos, unrecorded_before=unrecorded_before
    )
    if slos:
        report = dataclasses.replace(report, slos=tuple(slo_stats(slos, ledgers, period)))
    if request.format == "json":
        out.write(render_json(report))
    elif request.format == "html":
        out.write(render_html(report))
    else:
        out.write(render_markdown(report))
    return EXIT_OK


def kpi_info(kpi: Kpi) -> KpiInfo:
    """What a report shows of a KPI's definition."""
    labels = dict(kpi.labels)
    return KpiInfo(
        name=kpi.name,
        owner=kpi.owner,
        unit=kpi.unit,
        help=kpi.help,
        group=kpi.owner,
        levels=tuple((lv.name, lv.direction, lv.threshold) for lv in kpi.levels),
        target=None if kpi.target is None else (kpi.target.direction, kpi.target.value),
        slo=labels.get("slo"),
    )


def open_readonly(directory: str) -> sqlite3.Connection:
    """The journal under ``directory``, read-only (no lock: a running daemon may hold it).

    Raises:
        JournalError: one line: no journal there, not a journal, or newer than this kpimon.
    """
    db = Path(directory) / DB_NAME
    if not db.is_file():
        raise JournalError(
            f"no journal at {db}; point --storage.path at the directory kpimon run or "
            "kpimon replay --storage.path wrote"
        )
    uri = "file:" + urllib.parse.quote(str(db.resolve())) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
        version = schema_version(conn)
    except JournalError as exc:
        raise JournalError(f"journal {db} {exc}") from None
    except sqlite3.Error as exc:
        raise JournalError(f"journal {db} cannot be read ({exc})") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise JournalError(
            f"journal {db} was written by a newer kpimon (schema version {version}; this "
            f"kpimon reads up to {SCHEMA_VERSION})"
        )
    if version < 3:
        conn.close()
        raise JournalError(
            f"journal {db} has schema version {version}; run this kpimon on it once to migrate it"
        )
    return conn


def statuses_from_transitions(
    transitions: Sequence[TransitionRecord],
) -> Iterator[reportlog.StatusChange]:
    """For a journal without a status log (schema < 6): each series' status rebuilt from its
    levels' phases (critical while critical fires or clears, else warning, else ok). no_data
    is not a phase, so it never appears."""
    breaching: dict[tuple[str, object], dict[str, int]] = {}
    for tr in transitions:
        key = (tr.kpi, tr.labels)
        levels = breaching.get(key)
        if levels is None:  # first seen: ok until its first breach (unknown before)
            levels = breaching[key] = {}
            yield reportlog.StatusChange(tr.t, tr.kpi, tr.labels, 0)
        before = max(levels.values(), default=0)
        if tr.to_phase in ("firing", "clearing"):
            levels[tr.level] = SEVERITY.get(tr.level, 1)
        else:
            levels.pop(tr.level, None)
        after = max(levels.values(), default=0)
        if after != before:
            yield reportlog.StatusChange(tr.t, tr.kpi, tr.labels, after)


__all__ = ["Request", "kpi_info", "open_readonly", "run_report"]
