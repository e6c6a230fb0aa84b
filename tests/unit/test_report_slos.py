"""SLOs in `kpimon report`: events, SLI and error budget spent from the journaled ledgers."""

from __future__ import annotations

import io
import json

import pytest

from kpimon.journal import Journal, auxstate
from kpimon.kpi.summary import rfc3339
from kpimon.report.command import Request, run_report
from tests.unit.test_slo_engine import RATIO_SLO, T0, Rig, hour


def report(tmp_path, fmt: str, at: str):  # type: ignore[no-untyped-def]
    out, err = io.StringIO(), io.StringIO()
    code = run_report(
        Request(
            period="day",
            at=at,
            format=fmt,  # type: ignore[arg-type]
            storage_path=str(tmp_path / "data"),
            rules=(str(tmp_path / "rules.yaml"),),
        ),
        out,
        err,
        now=T0 + 86400 * 3,
    )
    assert code == 0, err.getvalue()
    return out.getvalue()


def test_budget_spent_over_the_period_from_the_journaled_ledger(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(tmp_path, RATIO_SLO)
    t = rig.run(*hour(1200, {10: 2, 100: 1}))  # 3 bad of 1,200 at 99.9%: 1.2 allowed
    with Journal.open(tmp_path / "data") as journal:
        for key, fingerprint, data in rig.tracker.unsaved_ledgers():
            auxstate.save(journal.connection, key, fingerprint, t, data)
    day = rfc3339(T0)[:10]
    data = json.loads(report(tmp_path, "json", day))
    (slo,) = data["slos"]
    assert slo["slo"] == "checkout"
    assert slo["objective"] == pytest.approx(0.999)
    assert slo["events"] == pytest.approx(1200, rel=0.01)
    assert slo["bad_events"] == pytest.approx(3)
    assert slo["error_budget_spent"] == pytest.approx(3 / (0.001 * slo["events"]))  # ≈ 250%
    assert 0 < slo["ledger_coverage"] < 0.1  # one hour of a day's 5-minute buckets
    burn = next(k for k in data["kpis"] if k["kpi"] == "checkout:burn_1h_5m")
    assert burn["error_budget_spent"] == slo["error_budget_spent"]
    text = report(tmp_path, "markdown", day)
    assert "## SLOs" in text
    assert "| checkout | payments | 99.9% | " in text
    html = report(tmp_path, "html", day)
    assert "<h2>SLOs</h2>" in html
    # A day the ledger does not reach: no numbers, and the report says why.
    (before,) = json.loads(report(tmp_path, "json", rfc3339(T0 - 86400)[:10]))["slos"]
    assert before["error_budget_spent"] is None
    assert before["note"] == "the journal's ledger does not reach into this period"


def test_an_slo_without_a_ledger_is_listed_with_the_reason(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(tmp_path, RATIO_SLO)
    rig.run(*hour(100, {}))
    Journal.open(tmp_path / "data").close()  # a journal, but no ledger saved in it
    (slo,) = json.loads(report(tmp_path, "json", rfc3339(T0)[:10]))["slos"]
    assert slo["events"] is None
    assert slo["error_budget_spent"] is None
    assert slo["note"] == "no ledger of this SLO in the journal"
