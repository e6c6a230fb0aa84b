"""What ``kpimon report`` needs besides the transition log: the status log and the runs.

- ``status_log`` (schema v6): every change of a series' *status* (ok, warning, critical,
  no_data, and "gone" when the series is forgotten), as one row per KPI and commit holding
  that commit's changes. The transition log alone cannot rebuild the status: ``no_data`` is not
  a phase change, so a series that goes missing while ok logs no transition at all. The rows
  written are found among the rows the commit writes anyway (``KpiState.dirty``, which a status
  change sets): a status changed since the previous commit iff its ``status_since`` is later
  than that commit's tick. No per-series work on a tick where nothing changed.
- ``runs`` (schema v6): one row per process that committed ticks: its first and its latest
  committed tick. The time between one run's latest tick and the next run's first is time
  kpimon was not running: a report's *data coverage* is the share of its period inside runs.
  One UPDATE of one row per commit.

Written only inside :meth:`Journal.commit <kpimon.journal.Journal.commit>`'s transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kpimon.journal.codec import parse_many_labels
from kpimon.kpi.machine import KpiState
from kpimon.labels import Labels

STATUS_GONE = -2
"""Status logged for a series the KPI forgot (absent and inactive for ``forget_after``)."""
STATUS_KPI_GONE = -3
"""Status logged (with an empty label set) when a KPI is removed or its definition changed:
every series of it known so far is gone."""

RECORD = np.dtype([("t", "<f8"), ("status", "i1")])


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One series' status from ``t`` on (-2 gone, -1 no data, 0 ok, 1 warning, 2 critical)."""

    t: float
    kpi: str
    labels: Labels
    status: int


def record_statuses(
    conn: sqlite3.Connection,
    kpi: str,
    t: float,
    state: KpiState,
    rows: npt.NDArray[np.intp],
    after: float | None,
    texts: Sequence[str],
    forgotten_texts: Iterable[str],
) -> None:
    """Log the status changes among ``rows`` (dirty rows) since the commit of tick ``after``;
    with ``after`` None, the status of every row of ``rows`` (a process's first commit of the
    KPI logs every series' status since ``status_since``, so a journal migrated from schema v5
    or a restored state is complete; a repeated record changes nothing).

    ``texts[r]``: the label-set JSON of row ``r``; ``forgotten_texts``: those of the series
    forgotten since (logged as :data:`STATUS_GONE` at ``t``).
    """
    since = state.status_since[rows]
    changed = rows[since > after] if after is not None else rows[~np.isnan(since)]
    gone = list(forgotten_texts)
    if not len(changed) and not gone:
        return
    rec = np.empty(len(changed) + len(gone), dtype=RECORD)
    rec["t"][: len(changed)] = state.status_since[changed]
    rec["status"][: len(changed)] = state.status[changed]
    rec["t"][len(changed) :] = t
    rec["status"][len(changed) :] = STATUS_GONE
    lines = [texts[r] for r in changed.tolist()] + gone
    conn.execute(
        "INSERT INTO status_log (kpi, t, labels, records) VALUES (?, ?, ?, ?)",
        (kpi, t, "\n".join(lines), rec.tobytes()),
    )


def record_kpi_gone(conn: sqlite3.Connection, kpi: str, t: float) -> None:
    """Log that KPI ``kpi``'s series are gone at ``t`` (removed, or redefined: it starts
    afresh)."""
    rec = np.array([(t, STATUS_KPI_GONE)], dtype=RECORD)
    conn.execute(
        "INSERT INTO status_log (kpi, t, labels, records) VALUES (?, ?, ?, ?)",
        (kpi, t, "[]", rec.tobytes()),
    )


def record_run(conn: sqlite3.Connection, run_id: int | None, t: float) -> int:
    """Stamp tick ``t`` on run ``run_id`` (a new run when None); return the run's id."""
    if run_id is not None:
        conn.execute("UPDATE runs SET last = ? WHERE run_id = ?", (t, run_id))
        return run_id
    cur = conn.execute("INSERT INTO runs (started, last) VALUES (?, ?)", (t, t))
    assert cur.lastrowid is not None
    return cur.lastrowid


def read_statuses(conn: sqlite3.Connection, before: float) -> Iterator[StatusChange]:
    """Every status change logged by commits of ticks before ``before``, in log order.

    Raises:
        ValueError: a row is unreadable.
    """
    import json

    cur = conn.execute(
        "SELECT kpi, labels, records FROM status_log WHERE t < ? ORDER BY id", (before,)
    )
    for kpi, labels, records in cur:
        rec = np.frombuffer(records, dtype=RECORD)
        lines = labels.split("\n")
        if len(lines) != len(rec):
            raise ValueError(f"status log row of KPI {kpi} does not hold {len(rec)} changes")
        label_sets = parse_many_labels(json.loads("[" + ",".join(lines) + "]"))
        for i in range(len(rec)):
            yield StatusChange(float(rec["t"][i]), kpi, label_sets[i], int(rec["status"][i]))


def read_runs(conn: sqlite3.Connection) -> list[tuple[float, float]]:
    """Every run as (first tick, latest tick), in order."""
    return [
        (float(a), float(b))
        for a, b in conn.execute("SELECT started, last FROM runs ORDER BY run_id")
    ]
