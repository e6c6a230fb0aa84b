"""``kpimon.kpi.alerts``: the identity of an alert (ARCHITECTURE §6)."""

from __future__ import annotations

from kpimon.kpi.alerts import alert_labels


def test_kpi_labels_then_severity_and_alertname_win_over_series_labels() -> None:
    series = (("alertname", "scraped"), ("instance", "db1"), ("severity", "x"), ("team", "a"))
    assert alert_labels("cpu", (("team", "platform"),), "critical", series) == (
        ("alertname", "cpu"),
        ("instance", "db1"),
        ("severity", "critical"),
        ("team", "platform"),
    )


def test_no_labels_at_all() -> None:
    assert alert_labels("cpu", (), "warning", ()) == (("alertname", "cpu"), ("severity", "warning"))
