"""Pure parts of alert delivery: events, templates, dedup keys, routing, retry, policies."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpimon.config.alerting import HookConfig, Secret, SecretError, parse_matcher
from kpimon.config.rules import parse_rules
from kpimon.errors import Position
from kpimon.notify import alertmanager as am
from kpimon.notify import exec_hook, pagerduty, slack, templates, webhook
from kpimon.notify.http import classify, parse_retry_after, redact_url, scrub
from kpimon.notify.model import (
    AlertEvent,
    SendResult,
    build_event,
    dedup_key,
    event_from_json,
    event_to_json,
    rfc3339,
)
from kpimon.notify.retry import RetryPolicy, backoff_s, next_retry_delay
from kpimon.notify.routing import route

RULES = """\
kpis:
  - name: cpu_utilization
    owner: platform-team
    unit: percent
    expr: 100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])))
    levels:
      warning: {above: 70, for: 45m}
      critical: {above: 90, for: 10m}
    labels: {team: platform}
    annotations:
      runbook_url: https://runbooks.example/cpu
"""
T0 = 1_790_000_000.0
POS = Position("k.yml", 1, 1)


def kpi(rules: str = RULES):
    kpis, problems = parse_rules(rules, "r.yaml")
    assert problems == []
    return kpis[0]


def firing(**kw) -> AlertEvent:
    rules = kw.pop("rules", RULES)
    args = {
        "level": "warning",
        "status": "firing",
        "series_labels": (("instance", "db1"), ("job", "node")),
        "value": 72.4,
        "threshold": 70.0,
        "active_at": T0 - 47 * 60,
        "fired_at": T0 - 2 * 60,
        "now": T0,
    }
    args.update(kw)
    return build_event(kpi(rules), **args)  # type: ignore[arg-type]


# --- events and templates ------------------------------------------------------------------


def test_an_empty_label_is_absent_from_the_event() -> None:
    """As Prometheus: a label whose value is empty is no label (and the value and threshold
    are the transition's, whatever the labels)."""
    e = firing(series_labels=(("instance", "db1"), ("job", ""), ("zone", "")))
    assert dict(e.labels) == {
        "alertname": "cpu_utilization",
        "instance": "db1",
        "severity": "warning",
        "team": "platform",
    }
    assert (e.value, e.threshold) == (72.4, 70.0)
    assert e.series_labels == (("instance", "db1"), ("job", ""), ("zone", ""))


def test_default_summary_is_unit_aware_and_names_owner() -> None:
    e = firing()
    assert e.summary == (
        "cpu_utilization on db1 has been at 72.4%, above warning (70), for 47m "
        "— owner platform-team"
    )
    assert dict(e.labels) == {
        "alertname": "cpu_utilization",
        "severity": "warning",
        "team": "platform",
        "instance": "db1",
        "job": "node",
    }
    assert e.annotation("runbook_url") == "https://runbooks.example/cpu"


def test_resolved_summary() -> None:
    e = firing(status="resolved", value=60.0, resolved_at=T0 + 600)
    assert e.summary.startswith("cpu_utilization on db1 is back at 60.0%, no longer above warning")


@pytest.mark.parametrize(
    ("unit", "value", "text"),
    [
        ("percent", 72.41, "72.4%"),
        ("bytes", 1.5 * 1024**3, "1.5GiB"),
        ("seconds", 2820, "47m"),
        ("seconds", 0.25, "250ms"),
        ("ratio", 0.5, "50.0%"),
        ("count", 1234567, "1234567"),
        ("none", 72.41234, "72.41"),
        ("percent", math.nan, "NaN"),
    ],
)
def test_format_value(unit: str, value: float, text: str) -> None:
    assert templates.format_value(value, unit) == text


def test_annotation_template_renders_all_variables() -> None:
    rules = RULES.replace(
        "      runbook_url: https://runbooks.example/cpu\n",
        '      summary: "{{ kpi }} on {{ labels.instance }} at {{ value | round(1) }}% > '
        '{{ threshold }} for {{ for_duration }} since {{ since }} ({{ owner }}, {{ level }})"\n'
        '      size: "{{ 1536 | humanize1024 }} {{ 0.5 | humanizePercentage }} '
        '{{ 90 | humanizeDuration }} {{ value | format_value(unit) }}"\n',
    )
    e = firing(rules=rules)
    assert e.summary == (
        "cpu_utilization on db1 at 72.4% > 70 for 47m since 2026-09-21T13:26:20Z "
        "(platform-team, warning)"
    )
    assert e.annotation("size") == "1.5Ki 50% 1m30s 72.4%"


def test_render_failure_keeps_text_and_still_notifies() -> None:
    rules = RULES.replace(
        "      runbook_url: https://runbooks.example/cpu\n",
        '      summary: "disk {{ labels.device }} is full"\n',
    )
    e = firing(rules=rules)
    assert e.summary.startswith("disk {{ labels.device }} is full (template error:")


def test_a_template_failing_in_its_own_arithmetic_still_notifies() -> None:
    """Not only Jinja's errors: ``{{ value / threshold }}`` with a threshold of 0 raises
    ZeroDivisionError, which must not cost the notification."""
    rules = RULES.replace(
        "      runbook_url: https://runbooks.example/cpu\n",
        '      summary: "ratio {{ value / 0 }}"\n',
    )
    e = firing(rules=rules)
    assert e.summary.startswith("ratio {{ value / 0 }} (template error:")


def test_retry_after_is_strict_and_utc() -> None:
    assert parse_retry_after("120", 0) == 120.0
    assert parse_retry_after("1_0", 0) is None  # float() would read 10
    assert parse_retry_after("inf", 0) is None
    # "-0000" is UTC too (RFC 5322), whatever the local zone
    assert parse_retry_after("Thu, 01 Jan 1970 00:02:00 -0000", 0) == 120.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:02:00 GMT", 0) == 120.0


def test_sandbox_forbids_python_internals() -> None:
    ctx = templates.Context(
        kpi="k", level="warning", labels=(), value=1.0, threshold=0.0, active_at=T0, now=T0
    )
    with pytest.raises(templates.TemplateError):
        templates.render("{{ value.__class__.__mro__[1].__subclasses__() }}", ctx)


@pytest.mark.parametrize(
    "text", ['{{ "x" * 100000000 }}', "{{ [1] * 100000000 }}", "{{ 2 ** 1000 }}"]
)
def test_sandbox_bounds_memory(text: str) -> None:
    ctx = templates.Context(
        kpi="k", level="warning", labels=(), value=1.0, threshold=0.0, active_at=T0, now=T0
    )
    with pytest.raises(templates.TemplateError):
        templates.render(text, ctx)
    assert templates.render('{{ "=" * 3 }}{{ 2 ** 3 }}{{ value * 2 }}', ctx) == "===82.0"


def test_check_finds_syntax_errors_and_unknown_variables() -> None:
    assert templates.check("{{ value }} {{ labels.x }}") == []
    [p] = templates.check("a\n{% if value %}")
    assert p.offset == 2
    assert "invalid template" in p.message
    [p] = templates.check("x {{ vaule }}")
    assert p.offset == 5
    assert '"vaule" (did you mean "value"?)' in p.message


def test_dedup_key_is_stable_across_processes_and_label_order() -> None:
    labels = (("instance", "db1"), ("job", "node"))
    key = dedup_key("cpu_utilization", "warning", labels)
    assert key == dedup_key("cpu_utilization", "warning", tuple(reversed(labels)))
    assert key != dedup_key("cpu_utilization", "critical", labels)
    code = (
        "from kpimon.notify.model import dedup_key;"
        "print(dedup_key('cpu_utilization', 'warning', (('instance','db1'),('job','node'))))"
    )
    # PYTHONHASHSEED differs per process; the key must not.
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=Path(__file__).resolve().parents[2],
        )
        assert out.stdout.strip() == key
    assert (
        key
        == "kpimon-"
        + __import__("hashlib")
        .sha256(
            b'{"kpi":"cpu_utilization","labels":[["instance","db1"],["job","node"]],'
            b'"level":"warning"}'
        )
        .hexdigest()
    )
    assert firing().dedup_key == key


_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from('"\\\n\t/'),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    kpi=_TEXT,
    level=_TEXT,
    labels=st.dictionaries(_TEXT, _TEXT, max_size=5).map(lambda d: tuple(d.items())),
)
def test_dedup_key_is_the_sha256_of_the_canonical_json(
    kpi: str, level: str, labels: tuple[tuple[str, str], ...]
) -> None:
    """The key is written by orjson for speed; it must stay byte for byte the key of the
    canonical JSON, or a restart would open a second incident for the same alert."""
    canonical = json.dumps(
        {"kpi": kpi, "level": level, "labels": sorted(labels)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    expected = "kpimon-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert dedup_key(kpi, level, labels) == expected


def test_an_event_survives_json_with_nan_and_non_ascii() -> None:
    event = firing()._replace(
        value=math.nan,
        threshold=math.inf,
        annotations=(("summary", 'Größe — "zitiert"\n'),),
    )
    text = event_to_json(event)
    back = event_from_json(text)
    assert math.isnan(back.value)
    assert back.threshold == math.inf
    assert back._replace(value=0.0) == event._replace(value=0.0)
    # What journals written before orjson hold: NaN spelled as the json module writes it.
    old = json.dumps(json.loads(text) | {"value": math.nan}, ensure_ascii=False)
    assert "NaN" in old
    assert math.isnan(event_from_json(old).value)


def test_rfc3339_has_milliseconds() -> None:
    assert rfc3339(0.5) == "1970-01-01T00:00:00.500Z"


# --- matchers and routing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ('severity="critical"', {"severity": "warning"}, False),
        ('team=~"db|infra"', {"team": "infra"}, True),
        ('team=~"db|infra"', {"team": "dbx"}, False),  # anchored
        ('team!~"db|infra"', {"team": "web"}, True),
        ('env!="prod"', {}, True),  # absent is ""
        ("env=", {}, True),
        ("env=prod", {"env": "prod"}, True),
        (' quoted = "a\\"b" ', {"quoted": 'a"b'}, True),
    ],
)
def test_matcher(text: str, labels: dict[str, str], hit: bool) -> None:
    assert parse_matcher(text).matches(tuple(sorted(labels.items()))) is hit


@pytest.mark.parametrize("text", ['x~="a"', '="a"', 'x="a', 'x=~"("'])
def test_bad_matcher(text: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_matcher(text)


def hook(name: str, *matchers: str, cont: bool = False) -> HookConfig:
    return HookConfig(
        name=name,
        kind="webhook",
        url=Secret(value="http://127.0.0.1:1/"),
        matchers=tuple(parse_matcher(m) for m in matchers),
        continue_=cont,
        position=POS,
    )


def test_route_first_match_continue_and_default() -> None:
    hooks = [
        hook("db", 'team=~"db|infra"', cont=True),
        hook("pager", 'severity="critical"'),
        hook("default"),
    ]
    names = lambda labels: [h.name for h in route(tuple(sorted(labels.items())), hooks)]  # noqa: E731
    assert names({"team": "db", "severity": "critical"}) == ["db", "pager"]
    assert names({"team": "db", "severity": "warning"}) == ["db", "default"]
    assert names({"team": "web", "severity": "critical"}) == ["pager"]
    assert names({"team": "web", "severity": "warning"}) == ["default"]
    assert route((), []) == ()


# --- retry ----------------------------------------------------------------------------------


def test_backoff_full_jitter_capped() -> None:
    policy = RetryPolicy(initial_s=1, cap_s=60, max_duration_s=3600)
    assert [backoff_s(a, policy, lambda: 0.999999) for a in range(8)] == pytest.approx(
        [1, 2, 4, 8, 16, 32, 60, 60], rel=1e-5
    )
    assert backoff_s(3, policy, lambda: 0.0) == 0.0
    assert backoff_s(3, policy, lambda: 0.5) == 4.0
    assert backoff_s(10_000, policy, lambda: 0.5) == 30.0  # no overflow


def test_next_retry_delay() -> None:
    policy = RetryPolicy(initial_s=2, cap_s=100, max_duration_s=1000)
    retry = SendResult("retryable", "x")
    half = lambda: 0.5  # noqa: E731
    kw = {"first_attempt_at": 0.0, "policy": policy, "rand": half}
    assert next_retry_delay(SendResult("ok"), attempt=0, now=1, **kw) is None
    assert next_retry_delay(SendResult("permanent", "400"), attempt=0, now=1, **kw) is None
    assert next_retry_delay(retry, attempt=2, now=10, **kw) == 4.0
    # Retry-After is honoured when longer than the backoff.
    assert next_retry_delay(SendResult("retryable", "", 30.0), attempt=0, now=10, **kw) == 30.0
    # Never past max_retry_duration: clipped, then given up.
    assert next_retry_delay(retry, attempt=20, now=990, **kw) == 10.0
    assert next_retry_delay(retry, attempt=0, now=1000, **kw) is None
    assert next_retry_delay(SendResult("retryable", "", 50.0), attempt=0, now=990, **kw) is None


# --- Alertmanager ---------------------------------------------------------------------------


def test_alertmanager_ends_at_and_resolved() -> None:
    e = firing()
    alert = am.to_alert(e, T0, evaluation_interval_s=15)
    assert alert["endsAt"] == rfc3339(T0 + 240)  # 4 × max(15s, 1m)
    assert am.to_alert(e, T0, evaluation_interval_s=120)["endsAt"] == rfc3339(T0 + 480)
    assert alert["startsAt"] == rfc3339(e.fired_at)
    assert alert["labels"]["alertname"] == "cpu_utilization"
    assert "generatorURL" not in alert
    r = firing(status="resolved", resolved_at=T0 + 5, external_url="http://kpimon:8574/")
    alert = am.to_alert(r, T0 + 60, evaluation_interval_s=15)
    assert alert["endsAt"] == rfc3339(T0 + 5)
    assert alert["generatorURL"].startswith("http://kpimon:8574/graph?g0.expr=100%20%2A")


def test_alertmanager_resend_policy() -> None:
    fresh = am.SendState(status="firing")
    assert am.resend_due(fresh, T0)
    sent = am.SendState(status="firing", last_sent_at=T0)
    assert not am.resend_due(sent, T0 + 59)
    assert am.resend_due(sent, T0 + 60)
    resolved = am.SendState(status="resolved", resolved_at=T0 + 10, last_sent_at=T0)
    assert am.resend_due(resolved, T0 + 11)  # newly resolved: at once
    resent = am.SendState(status="resolved", resolved_at=T0 + 10, last_sent_at=T0 + 11)
    assert not am.resend_due(resent, T0 + 30)
    assert am.resend_due(resent, T0 + 71)
    assert am.keep_sending(resent, T0 + 10 + 900)
    assert not am.keep_sending(resent, T0 + 10 + 901)
    assert not am.resend_due(resent, T0 + 10 + 901)


def test_batches() -> None:
    events = [firing()] * 2500
    assert [len(b) for b in am.batches(events)] == [1000, 1000, 500]


# --- payloads -------------------------------------------------------------------------------


def test_pagerduty_trigger_and_resolve() -> None:
    e = firing(level="critical", value=95.0, threshold=90.0)
    body = pagerduty.event_body(e, "R" * 32)
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == e.dedup_key
    assert body["routing_key"] == "R" * 32
    payload = body["payload"]
    assert payload["severity"] == "critical"
    assert payload["source"] == "db1"
    assert payload["custom_details"]["value"] == "95.0%"
    assert payload["summary"].startswith("cpu_utilization on db1 has been at 95.0%")
    assert body["links"] == [{"href": "https://runbooks.example/cpu", "text": "Runbook"}]
    assert pagerduty.event_body(firing(), "k")["payload"]["severity"] == "warning"
    resolved = pagerduty.event_body(
        firing(level="critical", status="resolved", resolved_at=T0), "k"
    )
    assert resolved == {"routing_key": "k", "event_action": "resolve", "dedup_key": e.dedup_key}


def test_slack_message() -> None:
    msg = slack.message(firing())
    assert msg["text"].startswith("[FIRING] warning: cpu_utilization — cpu_utilization on db1")
    assert msg["blocks"][0]["text"]["type"] == "mrkdwn"
    assert slack.message(firing(status="resolved", resolved_at=T0))["text"].startswith("[RESOLVED]")


def test_webhook_v4_body() -> None:
    events = [firing(), firing(series_labels=(("instance", "db2"), ("job", "node")))]
    body = webhook.webhook_v4(events, receiver="web", external_url="http://k")
    assert body["version"] == "4"
    assert body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": "cpu_utilization"}
    assert body["groupKey"] == '{}:{alertname="cpu_utilization"}'
    assert body["commonLabels"] == {
        "alertname": "cpu_utilization",
        "job": "node",
        "severity": "warning",
        "team": "platform",
    }
    assert [a["labels"]["instance"] for a in body["alerts"]] == ["db1", "db2"]
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert len(body["alerts"][0]["fingerprint"]) == 16
    data, ctype = webhook.render_body(
        '{"n": {{ alerts | length }}, "first": {{ alerts[0].labels.instance | tojson }}}', body
    )
    assert ctype == "application/json"
    assert json.loads(data) == {"n": 2, "first": "db1"}
    assert webhook.render_body("{{ status }}!", body) == (b"firing!", "text/plain; charset=utf-8")


# --- HTTP classification, secrets -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "ok"), (202, "ok"), (429, "retryable"), (500, "retryable"), (503, "retryable"),
     (408, "retryable"), (400, "permanent"), (403, "permanent"), (404, "permanent")],
)  # fmt: skip
def test_classify(status: int, outcome: str) -> None:
    assert classify(status, "", None, "h").outcome == outcome


def test_retry_after_forms() -> None:
    assert parse_retry_after("30", 0) == 30.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == 60.0
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None


def test_redact_and_scrub() -> None:
    assert redact_url("https://hooks.slack.com/services/T/B/XYZ?x=1") == "https://hooks.slack.com"
    assert redact_url("http://u:p@127.0.0.1:8080/x") == "http://127.0.0.1:8080"
    assert scrub("bad key abc123 here", ["abc123"]) == "bad key <secret> here"


def test_secret_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Secret(value="hunter2")
    assert repr(s) == str(s) == "<secret>"
    assert "hunter2" not in repr(hook("x"))
    assert "hunter2" not in f"{s}"
    key = tmp_path / "key"
    key.write_text("from-file\n")
    assert Secret(file=str(key)).reveal() == "from-file"
    monkeypatch.setenv("KPIMON_TEST_KEY", "from-env")
    assert Secret(env="KPIMON_TEST_KEY").reveal() == "from-env"
    with pytest.raises(SecretError, match="KPIMON_TEST_NOPE is not set"):
        Secret(env="KPIMON_TEST_NOPE").reveal()
    with pytest.raises(SecretError, match="cannot read secret file"):
        Secret(file=str(tmp_path / "missing")).reveal()


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(0, "ok"), (1, "retryable"), (75, "retryable"), (64, "permanent"), (78, "permanent"),
     (-9, "retryable")],
)  # fmt: skip
def test_exec_exit_policy(code: int, outcome: str) -> None:
    assert exec_hook.classify_exit(code) == outcome


def test_numbers_print_readably_and_still_compare() -> None:
    ctx = templates.Context(
        kpi="k", level="warning", labels=(), value=72.41234, threshold=70.0, active_at=T0, now=T0
    )
    text = "{{ value }} > {{ threshold }}{% if value > 72 %} high{% endif %} {{ value * 2 }}"
    assert templates.render(text, ctx) == "72.41 > 70 high 144.82468"


def test_prometheus_template_forms_are_understood() -> None:
    ctx = templates.Context(
        kpi="k",
        level="warning",
        labels=(("instance", "db1"),),
        value=72.5,
        threshold=70.0,
        active_at=T0,
        now=T0,
        external_labels=(("region", "eu"),),
        external_url="http://kpimon:8574",
    )
    text = (
        "{{ $labels.instance }} at {{ $value | humanize }} ({{ .Value }}) "
        "{{ $externalURL }}/{{ $externalLabels.region }} cost $5"
    )
    assert templates.check(text) == []
    assert templates.render(text, ctx) == "db1 at 72.5 (72.5) http://kpimon:8574/eu cost $5"
    [problem] = templates.check('{{ printf "%.1f" $value }}{{ $foo }}')
    assert problem.message.startswith("invalid template: expected token")
    [problem] = templates.check("x {{ $foo }}")
    assert "only $value, $labels, $externalLabels and $externalURL" in problem.message
