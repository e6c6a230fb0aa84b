"""The daemon config: defaults, inheritance, rule_files globbing, load_config, helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kpimon.config import load_config
from kpimon.config.daemon import check_target, parse_config
from kpimon.config.loader import build_config
from kpimon.config.models import (
    DEFAULT_BODY_SIZE_LIMIT,
    DaemonConfig,
    GlobalConfig,
    HostConfig,
    ScrapeConfig,
)
from kpimon.errors import ConfigError, Position

RULE = "kpis:\n  - {{name: {name}, owner: me, expr: '{expr}', levels: {{warning: {{above: 1}}}}}}\n"


def parse(text: str) -> DaemonConfig:
    config, _, problems = parse_config(text, "kpimon.yml")
    assert problems == []
    return config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_empty_config_is_all_defaults() -> None:
    config = parse("")
    assert config == DaemonConfig(path="kpimon.yml")
    assert config.global_config == GlobalConfig(
        scrape_interval_s=15.0, scrape_timeout_s=10.0, evaluation_interval_s=15.0
    )
    assert config.host == HostConfig(enabled=False, interval_s=15.0)
    assert config.scrape_configs == ()


def test_scrape_config_defaults_and_inheritance() -> None:
    config = parse(
        "global: {scrape_interval: 30s, scrape_timeout: 20s, evaluation_interval: 1m,"
        " external_labels: {site: dc1}}\n"
        "scrape_configs:\n"
        "  - job_name: node\n"
        "    static_configs: [{targets: ['127.0.0.1:9100', '[::1]:9100'], labels: {env: prod}}]\n"
        "  - job_name: fast\n"
        "    scrape_interval: 5s\n"
        "    static_configs: [{targets: [db.example.org:9187]}]\n"
    )
    g = config.global_config
    assert (g.scrape_interval_s, g.scrape_timeout_s, g.evaluation_interval_s) == (30.0, 20.0, 60.0)
    assert g.external_labels == (("site", "dc1"),)
    node, fast = config.scrape_configs
    assert node == ScrapeConfig(
        job_name="node",
        static_configs=node.static_configs,
        scrape_interval_s=30.0,
        scrape_timeout_s=20.0,
        position=Position("kpimon.yml", 3, 5),
    )
    assert node.metrics_path == "/metrics"
    assert node.scheme == "http"
    assert node.sample_limit == 0
    assert node.body_size_limit == DEFAULT_BODY_SIZE_LIMIT
    (static,) = node.static_configs
    assert static.targets == ("127.0.0.1:9100", "[::1]:9100")
    assert static.labels == (("env", "prod"),)
    # An unset timeout never exceeds the job's interval (as in Prometheus).
    assert (fast.scrape_interval_s, fast.scrape_timeout_s) == (5.0, 5.0)


def test_short_global_interval_caps_the_default_timeout() -> None:
    g = parse("global: {scrape_interval: 5s}\n").global_config
    assert (g.scrape_interval_s, g.scrape_timeout_s) == (5.0, 5.0)


def test_scrape_options() -> None:
    (sc,) = parse(
        "scrape_configs:\n"
        "  - job_name: blackbox\n"
        "    metrics_path: /probe\n"
        "    scheme: https\n"
        "    params: {module: [http_2xx], target: [example.org, 'a b']}\n"
        "    sample_limit: 5000\n"
        "    body_size_limit: 1MB\n"
        "    static_configs: [{targets: ['127.0.0.1:9115']}]\n"
    ).scrape_configs
    assert sc.params == (("module", ("http_2xx",)), ("target", ("example.org", "a b")))
    assert sc.sample_limit == 5000
    assert sc.body_size_limit == 1024 * 1024
    assert sc.url("127.0.0.1:9115") == (
        "https://127.0.0.1:9115/probe?module=http_2xx&target=example.org&target=a+b"
    )


@pytest.mark.parametrize(("written", "limit"), [("0", 0), ("2048", 2048), ("10MiB", 10 << 20)])
def test_body_size_limit(written: str, limit: int) -> None:
    (sc,) = parse(f"scrape_configs: [{{job_name: j, body_size_limit: {written}}}]\n").scrape_configs
    assert sc.body_size_limit == limit


def test_host_section() -> None:
    assert parse("host: {enabled: true}\n").host == HostConfig(enabled=True, interval_s=15.0)
    assert parse("global: {scrape_interval: 1m}\nhost: {enabled: true}\n").host.interval_s == 60.0
    assert parse("host: {enabled: true, interval: 5s}\n").host.interval_s == 5.0
    assert parse("host: {}\n").host.enabled is False


@pytest.mark.parametrize(
    "target", ["127.0.0.1:9100", "localhost:1", "db-1.example.org:65535", "[::1]:9100", "a_b:80"]
)
def test_valid_targets(target: str) -> None:
    assert check_target(target) is None


@pytest.mark.parametrize(
    "target",
    [
        "localhost",
        "localhost:0",
        "localhost:65536",
        "localhost:http",
        "http://localhost:9100",
        "localhost:9100/metrics",
        "::1:9100",
        "[::1]",
        "[nope]:9100",
        "-bad-:80",
        "",
        "9100",
    ],
)
def test_invalid_targets(target: str) -> None:
    why = check_target(target)
    assert why is not None
    assert why.startswith(f'invalid target "{target}"')


def test_rule_files_are_globbed_relative_to_the_config(tmp_path: Path) -> None:
    write(tmp_path / "rules" / "b.yaml", RULE.format(name="b", expr="up"))
    write(tmp_path / "rules" / "a.yaml", RULE.format(name="a", expr="node_load1"))
    write(tmp_path / "rules" / "notes.txt", "not a rule file")
    write(tmp_path / "extra.yaml", RULE.format(name="c", expr='{__name__=~"node_.*"}'))
    config_file = write(
        tmp_path / "kpimon.yml",
        "rule_files: ['rules/*.yaml', 'none/*.yaml', extra.yaml, 'rules/a.yaml']\n",
    )
    config = load_config(str(config_file))
    assert config.rule_files == ("rules/*.yaml", "none/*.yaml", "extra.yaml", "rules/a.yaml")
    assert config.rule_paths == (
        str(tmp_path / "rules" / "a.yaml"),
        str(tmp_path / "rules" / "b.yaml"),
        str(tmp_path / "extra.yaml"),
    )  # sorted within a pattern; a file named twice is loaded once
    assert [k.name for k in config.kpis] == ["a", "b", "c"]
    assert config.kpis[0].file == str(tmp_path / "rules" / "a.yaml")


def test_rule_file_names_are_shown_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "conf" / "rules" / "a.yaml", "kpis: [{name: a}]\n")
    write(tmp_path / "conf" / "kpimon.yml", "rule_files: ['rules/*.yaml']\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("conf/kpimon.yml")
    assert str(info.value).splitlines() == [
        f'{os.path.join("conf", "rules", "a.yaml")}:1:8: kpis[0]: missing required key "owner"',
        f'{os.path.join("conf", "rules", "a.yaml")}:1:8: kpis[0]: missing required key "expr"',
        f'{os.path.join("conf", "rules", "a.yaml")}:1:8: kpis[0]: missing required key "levels"',
    ]


def test_absolute_rule_file_patterns(tmp_path: Path) -> None:
    rules = write(tmp_path / "abs" / "r.yaml", RULE.format(name="r", expr="up"))
    config_file = write(tmp_path / "conf" / "kpimon.yml", f"rule_files: ['{rules}']\n")
    assert [k.name for k in load_config(str(config_file)).kpis] == ["r"]


def test_problems_of_all_files_at_once(tmp_path: Path) -> None:
    write(tmp_path / "r1.yaml", "kpis: [{name: a, owner: me, expr: up, levels: {warn: {}}}]\n")
    write(tmp_path / "r2.yaml", "kpis:\n  - name: b\n    bogus: 1\n")
    config_file = write(
        tmp_path / "kpimon.yml", "global: {scrape_interval: 1x}\nrule_files: ['r*.yaml']\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(config_file))
    files = {Path(p.position.file).name for p in info.value.problems}
    assert files == {"kpimon.yml", "r1.yaml", "r2.yaml"}
    assert len(info.value.problems) == 6


def test_unreadable_config(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yml")
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_bytes(b'global:\n  external_labels: {a: "caf\xe9"}\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}:2:28: not UTF-8 text (byte 0xe9)"


def test_embedded_default() -> None:
    config = load_config(None)
    assert config.path is None
    assert config.host == HostConfig(enabled=True, interval_s=15.0)
    assert config.scrape_configs == ()
    assert len(config.rule_paths) == 1
    assert config.rule_paths[0].endswith("host.yaml")
    assert config.kpis
    assert all(k.file == config.rule_paths[0] for k in config.kpis)


def test_wanted_metric_names_and_retention(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", RULE.format(name="a", expr="rate(node_cpu_seconds_total[10m])"))
    write(tmp_path / "b.yaml", RULE.format(name="b", expr="node_load1 offset 1h"))
    config_file = write(
        tmp_path / "kpimon.yml",
        "scrape_configs: [{job_name: slow, scrape_interval: 2m}]\nrule_files: [a.yaml, b.yaml]\n",
    )
    config = load_config(str(config_file))
    assert config.wanted_metric_names() == frozenset({"node_cpu_seconds_total", "node_load1"})
    assert config.retention_s() == 3600 + 300 + 120

    write(tmp_path / "c.yaml", RULE.format(name="c", expr='{__name__=~"node_.*"}'))
    config_file.write_text("rule_files: ['*.yaml']\nhost: {enabled: true, interval: 1m}\n")
    config = load_config(str(config_file))
    assert config.wanted_metric_names() is None
    assert config.retention_s() == 3600 + 300 + 60


def test_no_kpis() -> None:
    config = build_config("", "kpimon.yml")
    assert config.wanted_metric_names() == frozenset()
    assert config.retention_s() == 300 + 15
