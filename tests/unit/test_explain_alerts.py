"""``kpimon.labels.alert_labels``: the identity of an alert (ARCHITECTURE §6)."""

from __future__ import annotations

from kpimon.labels import alert_labels


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


def test_external_labels_come_first_and_lose_to_everything_else() -> None:
    external = (("cluster", "eu1"), ("team", "ext"), ("severity", "ext"))
    assert alert_labels("cpu", (), "warning", (("team", "a"),), external) == (
        ("alertname", "cpu"),
        ("cluster", "eu1"),
        ("severity", "warning"),
        ("team", "a"),
    )
