"""The daemon config (``kpimon.yml``) → :class:`~kpimon.config.models.DaemonConfig`, pure.

:func:`parse_config` takes the config's text and returns the config (without KPIs), its
``rule_files`` entries (with positions) and every problem found: unknown keys with a hint, keys
not supported yet, types, durations, timeouts against intervals, targets, duplicate jobs.
Finding and reading the rule files is :mod:`kpimon.config.loader`'s job; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, cast

from kpimon import labels as labelset
from kpimon.config.alerting import parse_alerting
from kpimon.config.durations import format_duration
from kpimon.config.fields import (
    Problems,
    as_bool,
    as_int,
    as_map,
    as_seq,
    as_size,
    as_str,
    as_str_map,
    as_targets,
    check_keys,
    check_label_name,
    claim_name,
    duration_or,
    given_duration,
    one_of,
    require,
    timeout_within,
)
from kpimon.config.fields import (
    check_target as check_target,  # re-exported: tests and callers import it from here
)
from kpimon.config.models import (
    DEFAULT_BODY_SIZE_LIMIT,
    DEFAULT_EVALUATION_INTERVAL_S,
    DEFAULT_OUTAGE_TOLERANCE_S,
    DEFAULT_SAMPLE_SNAPSHOT_INTERVAL_S,
    DEFAULT_SCRAPE_INTERVAL_S,
    DEFAULT_SCRAPE_TIMEOUT_S,
    DaemonConfig,
    GlobalConfig,
    HostConfig,
    ScrapeConfig,
    StaticConfig,
)
from kpimon.config.probes import parse_probes
from kpimon.config.yamlload import Map, Node, join_index, join_key, load_yaml
from kpimon.errors import Position, Problem

_TOP_KEYS: Final = (
    "global",
    "scrape_configs",
    "probes",
    "host",
    "rule_files",
    "storage",
    "alerting",
)
_TOP_NOT_YET: Final = (
    "remote",
    "remote_write",
    "remote_read",
    "scrape_config_files",
    "tracing",
)
_GLOBAL_KEYS: Final = (
    "scrape_interval",
    "scrape_timeout",
    "evaluation_interval",
    "external_labels",
    "outage_tolerance",
)
_GLOBAL_NOT_YET: Final = (
    "scrape_protocols",
    "rule_query_offset",
    "query_log_file",
    "scrape_failure_log_file",
    "body_size_limit",
    "sample_limit",
    "label_limit",
    "target_limit",
)
_SCRAPE_KEYS: Final = (
    "job_name",
    "static_configs",
    "metrics_path",
    "scheme",
    "params",
    "scrape_interval",
    "scrape_timeout",
    "sample_limit",
    "body_size_limit",
)
_SCRAPE_NOT_YET: Final = (
    "file_sd_configs",
    "basic_auth",
    "authorization",
    "bearer_token",
    "bearer_token_file",
    "tls_config",
    "oauth2",
    "proxy_url",
    "follow_redirects",
    "enable_http2",
    "honor_labels",
    "honor_timestamps",
    "relabel_configs",
    "metric_relabel_configs",
    "label_limit",
    "target_limit",
    "scrape_protocols",
    "http_sd_configs",
    "dns_sd_configs",
    "kubernetes_sd_configs",
    "consul_sd_configs",
)
_HOST_JOB: Final = "host"


@dataclass(frozen=True, slots=True, kw_only=True)
class RulePattern:
    """One ``rule_files`` entry as written, with where it was written."""

    pattern: str
    position: Position
    path: str


def parse_config(
    text: str, file: str
) -> tuple[DaemonConfig, tuple[RulePattern, ...], list[Problem]]:
    """Parse the text of a daemon config, without touching its rule files.

    Returns:
        The config (with no KPIs yet; only meaningful when there are no problems), its
        ``rule_files`` entries, and every problem found.
    """
    root, yaml_problems = load_yaml(text, file)
    problems = Problems()
    problems.extend(yaml_problems)
    config, patterns = parse_config_node(root, file, problems)
    return config, patterns, problems.items


def parse_config_node(
    root: Node | None, file: str, problems: Problems
) -> tuple[DaemonConfig, tuple[RulePattern, ...]]:
    """Parse a daemon config's root node; see :func:`parse_config`."""
    if root is None:
        return DaemonConfig(path=file), ()  # an empty config is all defaults, as in Prometheus
    top = as_map(root, "", problems)
    if top is None:
        return DaemonConfig(path=file), ()
    check_keys(top, "", _TOP_KEYS, problems, not_yet=_TOP_NOT_YET)
    global_config = _global(top.get("global"), problems)
    host = _host(top.get("host"), global_config, problems)
    scrape_configs = _scrape_configs(top.get("scrape_configs"), global_config, host, problems)
    patterns = _rule_patterns(top.get("rule_files"), problems)
    storage_path, snapshot_interval_s = _storage(top.get("storage"), problems)
    config = DaemonConfig(
        path=file,
        global_config=global_config,
        scrape_configs=scrape_configs,
        host=host,
        rule_files=tuple(p.pattern for p in patterns),
        storage_path=storage_path,
        sample_snapshot_interval_s=snapshot_interval_s,
        alerting=parse_alerting(top.get("alerting"), problems),
        probes=parse_probes(
            top.get("probes"),
            file,
            problems,
            default_interval_s=global_config.scrape_interval_s,
            default_timeout_s=global_config.scrape_timeout_s,
            min_interval_s=MIN_INTERVAL_S,
        ),
    )
    return config, patterns


def _storage(node: Node | None, problems: Problems) -> tuple[str | None, float]:
    """``storage: {path: ..., sample_snapshot_interval: ...}``: where the journal and the
    sample snapshots live (the command-line flag wins), and how often the samples are saved."""
    default = (None, DEFAULT_SAMPLE_SNAPSHOT_INTERVAL_S)
    if node is None:
        return default
    m = as_map(node, "storage", problems)
    if m is None:
        return default
    check_keys(m, "storage", ("path", "sample_snapshot_interval"), problems)
    path_node = m.get("path")
    path = None if path_node is None else as_str(path_node, "storage.path", problems, nonempty=True)
    interval_node = m.get("sample_snapshot_interval")
    interval = given_duration(m, "sample_snapshot_interval", "storage", problems)
    if (
        interval_node is not None
        and interval is not None
        and 0 < interval < MIN_SNAPSHOT_INTERVAL_S
    ):
        problems.add(
            interval_node.pos,
            "storage.sample_snapshot_interval",
            f"must be 0s (only at shutdown) or at least "
            f"{format_duration(MIN_SNAPSHOT_INTERVAL_S)}, got {format_duration(interval)}",
        )
        interval = None
    return path, DEFAULT_SAMPLE_SNAPSHOT_INTERVAL_S if interval is None else interval


MIN_SNAPSHOT_INTERVAL_S = 1.0
"""Shortest ``storage.sample_snapshot_interval`` but 0 (off): a typo such as ``5ms`` for ``5m``
would rewrite every sample 200 times a second."""


MIN_INTERVAL_S = 1.0
"""Shortest scrape or evaluation interval: the store sizes every series' history from the
shortest interval, so a typo such as ``1ms`` for ``1m`` would reserve 60,000 times the memory."""


def _global(node: Node | None, problems: Problems) -> GlobalConfig:
    if node is None:
        return GlobalConfig()
    m = as_map(node, "global", problems)
    if m is None:
        return GlobalConfig()
    check_keys(m, "global", _GLOBAL_KEYS, problems, not_yet=_GLOBAL_NOT_YET)
    interval = duration_or(
        m, "scrape_interval", "global", problems, DEFAULT_SCRAPE_INTERVAL_S, minimum=MIN_INTERVAL_S
    )
    # As in Prometheus: an unset timeout is 10s, or the interval when that is shorter.
    timeout = timeout_within(
        m,
        "scrape_timeout",
        "global",
        problems,
        default=DEFAULT_SCRAPE_TIMEOUT_S,
        interval=interval,
        interval_name="scrape_interval",
    )
    evaluation = duration_or(
        m,
        "evaluation_interval",
        "global",
        problems,
        DEFAULT_EVALUATION_INTERVAL_S,
        minimum=MIN_INTERVAL_S,
    )
    labels_node = m.get("external_labels")
    external: labelset.Labels = labelset.EMPTY
    if labels_node is not None:
        pairs = as_str_map(
            labels_node, "global.external_labels", problems, check_key=_check_target_label
        )
        external = labelset.make(pairs or ())
    outage_tolerance = duration_or(
        m, "outage_tolerance", "global", problems, DEFAULT_OUTAGE_TOLERANCE_S, positive=True
    )
    return GlobalConfig(
        scrape_interval_s=interval,
        scrape_timeout_s=timeout,
        evaluation_interval_s=evaluation,
        external_labels=external,
        outage_tolerance_s=outage_tolerance,
    )


def _host(node: Node | None, global_config: GlobalConfig, problems: Problems) -> HostConfig:
    default = HostConfig(enabled=False, interval_s=global_config.scrape_interval_s)
    if node is None:
        return default
    m = as_map(node, "host", problems)
    if m is None:
        return default
    check_keys(m, "host", ("enabled", "interval"), problems)
    enabled_node = m.get("enabled")
    enabled = False
    if enabled_node is not None:
        enabled = bool(as_bool(enabled_node, "host.enabled", problems))
    interval = duration_or(
        m, "interval", "host", problems, default.interval_s, minimum=MIN_INTERVAL_S
    )
    return HostConfig(enabled=enabled, interval_s=interval)


def _scrape_configs(
    node: Node | None, global_config: GlobalConfig, host: HostConfig, problems: Problems
) -> tuple[ScrapeConfig, ...]:
    if node is None:
        return ()
    seq = as_seq(node, "scrape_configs", problems)
    if seq is None:
        return ()
    jobs: dict[str, Position] = {}
    out: list[ScrapeConfig] = []
    for i, item in enumerate(seq.items):
        sc = _scrape_config(
            item, join_index("scrape_configs", i), global_config, host, jobs, problems
        )
        if sc is not None:
            out.append(sc)
    return tuple(out)


def _scrape_config(
    node: Node,
    path: str,
    global_config: GlobalConfig,
    host: HostConfig,
    jobs: dict[str, Position],
    problems: Problems,
) -> ScrapeConfig | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _SCRAPE_KEYS, problems, not_yet=_SCRAPE_NOT_YET)
    job_name = _job_name(m, path, host, jobs, problems)
    static = _static_configs(m.get("static_configs"), join_key(path, "static_configs"), problems)

    metrics_path = "/metrics"
    path_node = m.get("metrics_path")
    if path_node is not None:
        value = as_str(path_node, join_key(path, "metrics_path"), problems)
        if value is not None and not value.startswith("/"):
            problems.add(path_node.pos, join_key(path, "metrics_path"), 'must start with "/"')
        metrics_path = value or metrics_path

    scheme = one_of(
        m,
        "scheme",
        path,
        ("http", "https"),
        "http",
        problems,
        unknown=lambda value: f'expected http or https, got "{value}"',
    )

    params = _params(m.get("params"), join_key(path, "params"), problems)
    interval = duration_or(
        m,
        "scrape_interval",
        path,
        problems,
        global_config.scrape_interval_s,
        minimum=MIN_INTERVAL_S,
    )
    timeout = timeout_within(
        m,
        "scrape_timeout",
        path,
        problems,
        default=global_config.scrape_timeout_s,
        interval=interval,
        interval_name="scrape_interval",
    )

    sample_limit = 0
    limit_node = m.get("sample_limit")
    if limit_node is not None:
        sample_limit = as_int(limit_node, join_key(path, "sample_limit"), problems) or 0
    body_size_limit = DEFAULT_BODY_SIZE_LIMIT
    size_node = m.get("body_size_limit")
    if size_node is not None:
        size = as_size(size_node, join_key(path, "body_size_limit"), problems)
        body_size_limit = DEFAULT_BODY_SIZE_LIMIT if size is None else size

    if len(problems) > before or job_name is None:
        return None
    return ScrapeConfig(
        job_name=job_name,
        static_configs=static,
        metrics_path=metrics_path,
        scheme=cast(Literal["http", "https"], scheme),
        params=params,
        scrape_interval_s=interval,
        scrape_timeout_s=timeout,
        sample_limit=sample_limit,
        body_size_limit=body_size_limit,
        position=m.pos,
    )


def _job_name(
    m: Map, path: str, host: HostConfig, jobs: dict[str, Position], problems: Problems
) -> str | None:
    node = require(m, "job_name", path, problems)
    if node is None:
        return None
    sub = join_key(path, "job_name")
    name = as_str(node, sub, problems, nonempty=True)
    if name is None:
        return None
    if not claim_name(name, node, sub, "job_name", jobs, problems):
        return None
    if name == _HOST_JOB and host.enabled:
        problems.add(
            node.pos, sub, 'job_name "host" is taken by the built-in host collector (host.enabled)'
        )
        return None
    return name


def _static_configs(node: Node | None, path: str, problems: Problems) -> tuple[StaticConfig, ...]:
    if node is None:
        return ()
    seq = as_seq(node, path, problems)
    if seq is None:
        return ()
    out: list[StaticConfig] = []
    for i, item in enumerate(seq.items):
        sub = join_index(path, i)
        m = as_map(item, sub, problems)
        if m is None:
            continue
        check_keys(m, sub, ("targets", "labels"), problems)
        targets = as_targets(m.get("targets"), join_key(sub, "targets"), problems)
        labels_node = m.get("labels")
        pairs = (
            as_str_map(
                labels_node, join_key(sub, "labels"), problems, check_key=_check_target_label
            )
            if labels_node is not None
            else ()
        )
        out.append(
            StaticConfig(targets=tuple(targets), labels=labelset.make(pairs or ()), position=m.pos)
        )
    return tuple(out)


def _check_target_label(name: str) -> str | None:
    why = check_label_name(name)
    if why is None and name.startswith("__"):
        return f'label "{name}" is reserved (names starting with __ are internal)'
    return why


def _params(
    node: Node | None, path: str, problems: Problems
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if node is None:
        return ()
    m = as_map(node, path, problems)
    if m is None:
        return ()
    out: list[tuple[str, tuple[str, ...]]] = []
    for key, value in m.entries:
        sub = join_key(path, key.text)
        seq = as_seq(value, sub, problems)
        if seq is None:
            continue
        values = [as_str(v, join_index(sub, j), problems) for j, v in enumerate(seq.items)]
        out.append((key.text, tuple(v for v in values if v is not None)))
    return tuple(out)


def _rule_patterns(node: Node | None, problems: Problems) -> tuple[RulePattern, ...]:
    if node is None:
        return ()
    seq = as_seq(node, "rule_files", problems)
    if seq is None:
        return ()
    out: list[RulePattern] = []
    for i, item in enumerate(seq.items):
        path = join_index("rule_files", i)
        pattern = as_str(item, path, problems, nonempty=True)
        if pattern is not None:
            out.append(RulePattern(pattern=pattern, position=item.pos, path=path))
    return tuple(out)
