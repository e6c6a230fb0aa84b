"""``alerting:`` in kpimon.yml: what valid configs become (the errors are golden cases in
tests/data/config_errors/alerting*.yaml)."""

from __future__ import annotations

import pytest

from kpimon.config.alerting import PAGERDUTY_URL, Secret
from kpimon.config.daemon import parse_config
from kpimon.config.rules import parse_rules
from kpimon.errors import ConfigError
from kpimon.notify.routing import repeat_due

CONFIG = """\
global: {evaluation_interval: 30s}
alerting:
  alertmanagers:
    - static_configs: [{targets: ["127.0.0.1:9093", "[::1]:9093"]}]
      scheme: https
      path_prefix: am
      timeout: 5s
      api_version: v2
    - static_configs: [{targets: ["am.example:9093"]}]
  hooks:
    - name: oncall
      type: pagerduty
      routing_key_file: /etc/kpimon/pagerduty.key
      matchers: ['severity="critical"', 'team=~"db|infra"']
      continue: true
      max_retry_duration: 2h
    - name: eu.pager
      type: pagerduty
      url: https://events.eu.pagerduty.com/v2/enqueue
      routing_key_env: PD_EU_KEY
    - name: chat
      type: slack
      url: https://hooks.slack.com/services/T000/B000/XXXX
      repeat_interval: 4h
    - name: web
      type: webhook
      url_env: WEBHOOK_URL
      body: '{"text": {{ alerts[0].annotations.summary | tojson }}}'
      timeout: 3s
    - name: run
      type: exec
      command: [/usr/local/bin/page, --team, db]
"""


def test_full_alerting_config() -> None:
    cfg, _, problems = parse_config(CONFIG, "k.yml")
    assert problems == []
    a = cfg.alerting
    first, second = a.alertmanagers
    assert first.urls() == (
        "https://127.0.0.1:9093/am/api/v2/alerts",
        "https://[::1]:9093/am/api/v2/alerts",
    )
    assert first.timeout_s == 5.0
    assert second.urls() == ("http://am.example:9093/api/v2/alerts",)
    assert second.timeout_s == 10.0
    oncall, eu, chat, web, run = a.hooks
    assert oncall.kind == "pagerduty"
    assert oncall.url == Secret(value=PAGERDUTY_URL)  # the public endpoint by default
    assert oncall.routing_key == Secret(file="/etc/kpimon/pagerduty.key")
    assert [str(m) for m in oncall.matchers] == ['severity="critical"', 'team=~"db|infra"']
    assert oncall.continue_ is True
    assert oncall.max_retry_duration_s == 7200.0
    assert oncall.timeout_s == 10.0
    assert eu.url is not None
    assert eu.url.reveal() == "https://events.eu.pagerduty.com/v2/enqueue"
    assert eu.routing_key == Secret(env="PD_EU_KEY")
    assert eu.max_retry_duration_s == 24 * 3600.0
    assert chat.repeat_interval_s == 4 * 3600.0
    assert web.url == Secret(env="WEBHOOK_URL")
    assert web.body is not None
    assert web.timeout_s == 3.0
    assert run.command == ("/usr/local/bin/page", "--team", "db")
    # The Slack URL is a credential: it never shows in the config's repr.
    assert "XXXX" not in repr(cfg)
    assert "<secret>" in repr(chat)


def test_no_alerting_is_empty() -> None:
    cfg, _, problems = parse_config("global: {}\n", "k.yml")
    assert problems == []
    assert cfg.alerting.alertmanagers == ()
    assert cfg.alerting.hooks == ()


def test_secret_values_never_appear_in_errors() -> None:
    text = """\
alerting:
  hooks:
    - name: chat
      type: slack
      url: "not a url but a leaked sekrit"
    - name: pd
      type: pagerduty
      routing_key: ""
"""
    _, _, problems = parse_config(text, "k.yml")
    messages = [str(p) for p in problems]
    assert messages == [
        "k.yml:5:12: alerting.hooks[0].url: expected an http:// or https:// URL",
        "k.yml:8:20: alerting.hooks[1].routing_key: must not be empty",
    ]
    assert all("sekrit" not in m for m in messages)
    assert "sekrit" not in str(ConfigError(problems))


@pytest.mark.parametrize(
    ("template", "column", "message"),
    [
        # a syntax error points at the start of its line in the template
        ("{{ value }", 17, "kpis[0].annotations.summary: invalid template: unexpected '}'"),
        # an unknown variable at the variable
        ("{{ vlaue }}", 23, 'unknown template variable "vlaue" (did you mean "value"?)'),
    ],
)
def test_annotation_templates_checked_at_position(template: str, column: int, message: str) -> None:
    text = f"""\
kpis:
  - name: k
    owner: me
    expr: up
    levels: {{warning: {{above: 1}}}}
    annotations:
      summary: "at {template}"
"""
    _, problems = parse_rules(text, "r.yaml")
    [problem] = problems
    assert (problem.position.line, problem.position.column) == (7, column)
    assert message in str(problem)


def test_repeat_due() -> None:
    assert repeat_due(None, 100.0, 0)
    assert not repeat_due(50.0, 10_000.0, 0)  # 0: never repeat
    assert not repeat_due(50.0, 100.0, 60)
    assert repeat_due(40.0, 100.0, 60)


def test_docs_example_is_valid() -> None:
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "alerting.md"
    blocks = re.findall(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    configs = [b for b in blocks if b.startswith("global:")]
    assert configs
    for text in configs:
        cfg, _, problems = parse_config(text, "docs/alerting.md")
        assert problems == []
        assert cfg.alerting.hooks
    [annotations] = [b for b in blocks if b.startswith("annotations:")]
    rule = "kpis:\n  - name: k\n    owner: me\n    expr: up\n    levels: {warning: {above: 1}}\n"
    rule += "".join(f"    {line}\n" for line in annotations.splitlines())
    _, problems = parse_rules(rule, "docs/alerting.md")
    assert problems == []
