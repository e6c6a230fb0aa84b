"""SLOs in a report: events, SLI and error budget spent over the period, from the SLO ledgers
the daemon saves in the journal (``aux_state``, :mod:`kpimon.journal.auxstate`).

A ledger holds the bad and total events of each 5-minute bucket of the SLO's window (30 days by
default) as of its last save; a report can count a period the ledger still covers. Error budget
spent over a period is its bad events over the bad events the objective allows for the period's
own events, ``bad / ((1 − objective) × total)``: 100% means errors at exactly the rate the
objective allows (the period's average burn rate), 25% a quarter of that. Pure but for
:func:`read_ledgers`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kpimon.journal import auxstate
from kpimon.report.period import Period
from kpimon.slo.model import LEDGER_STEP_S, Slo
from kpimon.slo.tracker import LEDGER_KEY_PREFIX, ledger_fingerprint, ledger_records


@dataclass(frozen=True, slots=True, kw_only=True)
class SloStats:
    """One SLO over a report's period.

    Attributes:
        name, owner, objective: the SLO's (objective as a percentage).
        total, bad: events in the period's buckets (None when the journal has no ledger for it).
        sli: good / total (None without events).
        budget_spent: ``bad / ((1 − objective) × total)`` (None without events).
        coverage: share of the period's buckets the ledger holds.
        note: why a number is missing, for people ("" when nothing is).
    """

    name: str
    owner: str
    objective: float
    total: float | None
    bad: float | None
    sli: float | None
    budget_spent: float | None
    coverage: float
    note: str = ""


def read_ledgers(conn: sqlite3.Connection, slos: Sequence[Slo]) -> dict[str, bytes]:
    """The journaled ledger of each SLO whose definition it was counted for (the journal has
    an ``aux_state`` table: schema v7 or later)."""
    out: dict[str, bytes] = {}
    for slo in slos:
        saved = auxstate.load(conn, LEDGER_KEY_PREFIX + slo.name, ledger_fingerprint(slo))
        if saved is not None:
            out[slo.name] = saved[1]
    return out


def slo_stats(slos: Sequence[Slo], ledgers: Mapping[str, bytes], period: Period) -> list[SloStats]:
    """Every SLO's numbers over ``period`` (a bucket counts when it ends inside the period)."""
    # Bucket b holds the events of ((b − 1) × step, b × step] (recorded at its first tick as
    # the increase over the step before it): it counts when (start, end] holds its end. The
    # bucket ending at the start holds time before the period (counted by the period before).
    first = math.floor(period.start / LEDGER_STEP_S) + 1
    last = math.floor(period.end / LEDGER_STEP_S)
    expected = max(0, last - first + 1)
    out = []
    for slo in slos:
        data = ledgers.get(slo.name)
        rec = None if data is None else ledger_records(data)
        if rec is None:
            out.append(_missing(slo, "no ledger of this SLO in the journal"))
            continue
        inside = (rec["id"] >= first) & (rec["id"] <= last)
        held = int(inside.sum())
        if not held:
            out.append(_missing(slo, "the journal's ledger does not reach into this period"))
            continue
        bad = float(rec["bad"][inside].sum())
        total = float(rec["total"][inside].sum())
        allowed = slo.budget * total  # (1 − 99.9 / 100 is 0.0010000000000000009)
        coverage = held / expected if expected else 0.0
        out.append(
            SloStats(
                name=slo.name,
                owner=slo.owner,
                objective=slo.objective,
                total=total,
                bad=bad,
                sli=None if total <= 0 else 1.0 - bad / total,
                budget_spent=None if allowed <= 0 else bad / allowed,
                coverage=min(1.0, coverage),
                note="" if total > 0 else "no events in this period",
            )
        )
    return out


def _missing(slo: Slo, note: str) -> SloStats:
    return SloStats(
        name=slo.name,
        owner=slo.owner,
        objective=slo.objective,
        total=None,
        bad=None,
        sli=None,
        budget_spent=None,
        coverage=0.0,
        note=note,
    )


def spent_by_slo(stats: Sequence[SloStats]) -> dict[str, float | None]:
    return {s.name: s.budget_spent for s in stats}
