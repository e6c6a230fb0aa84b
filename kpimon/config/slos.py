"""``slos:`` and ``services:`` in rule files → :class:`~kpimon.slo.model.Slo` (compiled into
KPIs by :mod:`kpimon.slo.compile`) and :class:`~kpimon.slo.model.Service`, every problem
collected with its position.

Called by :func:`kpimon.config.rules.parse_rules_node` after the file's ``kpis``; the generated
KPIs claim their names in the same ``seen`` dictionary as hand-written ones, so a clash is a
"duplicate KPI name" with both positions. A service may name any KPI (generated ones included)
of its own file or of a rule file loaded before it. Pure: positioned nodes in, models out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, cast

from kpimon import labels as labelset
from kpimon.config.alerting import as_annotations
from kpimon.config.durations import format_duration
from kpimon.config.fields import (
    Problems,
    as_int,
    as_labels,
    as_map,
    as_number,
    as_seq,
    as_str,
    check_keys,
    claim_name,
    duration_or,
    given_duration,
    list_items,
    one_of,
    require,
    required_str,
    str_or,
    suggestion,
    unique_name,
    value_pos,
)
from kpimon.config.models import Kpi
from kpimon.config.yamlload import Map, Node, join_index, join_key
from kpimon.errors import Position
from kpimon.slo.model import (
    DEFAULT_NO_DATA_FOR_S,
    DEFAULT_WINDOW_S,
    GOOGLE_ALERTS,
    SLO_LABEL,
    WINDOW_PLACEHOLDER,
    BurnAlert,
    Service,
    ServiceKpi,
    Severity,
    Sli,
    SliKind,
    Slo,
)
from kpimon.textfmt import plain_number

NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
"""SLO and service names: label-value friendly and usable in generated KPI names."""

_SLO_KEYS: Final = (
    "name",
    "help",
    "owner",
    "objective",
    "window",
    "sli",
    "min_events",
    "alerts",
    "no_data_alert",
    "labels",
    "annotations",
)
_SLI_KEYS: Final = ("error_query", "good_query", "total_query", "probe")
_ALERT_KEYS: Final = ("severity", "long", "short", "factor", "for")
_SERVICE_KEYS: Final = ("name", "help", "owner", "kpis", "labels")
_SEVERITIES: Final[tuple[Severity, ...]] = ("warning", "critical")
_RESERVED: Final = frozenset({"alertname", "severity", "kpi", SLO_LABEL})
_RATE: Final = re.compile(r"\b(?:i?rate)\s*\(")
MAX_IMPORTANCE: Final = 11


@dataclass
class RuleExtras:
    """What rule files define besides KPIs, collected across every file of a config."""

    slos: list[Slo] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    slo_names: dict[str, Position] = field(default_factory=dict)
    service_names: dict[str, Position] = field(default_factory=dict)


def parse_slos(
    node: Node | None,
    file: str,
    problems: Problems,
    seen: dict[str, Position],
    extras: RuleExtras,
) -> tuple[Kpi, ...]:
    """Parse a ``slos`` list; returns the KPIs the valid SLOs compile into."""
    # kpimon.slo.compile builds config models: imported here, not at the top, because
    # importing it first loads kpimon.config, whose loader imports this module.
    from kpimon.slo.compile import compile_slo

    kpis: list[Kpi] = []
    for i, item in enumerate(list_items(node, "slos", problems)):
        path = join_index("slos", i)
        slo = _slo(item, path, file, problems, extras)
        if slo is None:
            continue
        compiled, errors = compile_slo(slo)
        if errors:  # the KPIs share the templates: the first error says it
            kpi_name, message = errors[0]
            problems.add(slo.sli_position, join_key(path, "sli"), f"{kpi_name}: {message}")
            continue
        m = cast(Map, item)
        name_node = m.get("name")
        assert name_node is not None
        claimed = [
            claim_name(kpi.name, name_node, join_key(path, "name"), "KPI name", seen, problems)
            for kpi in compiled
        ]
        if all(claimed):
            extras.slos.append(slo)
            kpis.extend(compiled)
    return tuple(kpis)


def _slo(node: Node, path: str, file: str, problems: Problems, extras: RuleExtras) -> Slo | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _SLO_KEYS, problems)
    name = unique_name(m, "name", path, "SLO name", extras.slo_names, problems, pattern=NAME)
    owner = required_str(m, "owner", path, problems, nonempty=True)
    help_text = str_or(m, "help", path, problems, "")
    objective = _objective(m, path, problems)
    window_s = duration_or(m, "window", path, problems, DEFAULT_WINDOW_S, positive=True)
    sli_node = require(m, "sli", path, problems)
    sli = None if sli_node is None else _sli(sli_node, join_key(path, "sli"), problems)
    min_events = _min_events(m, path, problems, sli)
    alerts = _alerts(m, path, problems, window_s)
    no_data_for_s, no_data_severity = _no_data_alert(m, path, problems)
    labels = _labels(m, path, problems)
    annotations = as_annotations(m.get("annotations"), join_key(path, "annotations"), problems)
    if len(problems) > before:
        return None
    assert name is not None
    assert owner is not None
    assert objective is not None
    assert sli is not None
    assert sli_node is not None
    assert alerts is not None
    assert labels is not None
    assert annotations is not None
    return Slo(
        name=name,
        help=help_text,
        owner=owner,
        objective=objective,
        window_s=window_s,
        sli=sli,
        min_events=min_events,
        alerts=alerts,
        no_data_for_s=no_data_for_s,
        no_data_severity=no_data_severity,
        labels=labels,
        annotations=annotations,
        file=file,
        position=m.pos,
        sli_position=sli_node.pos,
    )


def _objective(m: Map, path: str, problems: Problems) -> float | None:
    node = require(m, "objective", path, problems)
    if node is None:
        return None
    sub = join_key(path, "objective")
    value = as_number(node, sub, problems)
    if value is not None and not 0 < value < 100:
        problems.add(
            node.pos,
            sub,
            f"objective is a percentage of good events between 0 and 100 (exclusive), e.g. "
            f"99.9; got {plain_number(value)}",
        )
        return None
    return value


def _sli(node: Node, path: str, problems: Problems) -> Sli | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _SLI_KEYS, problems)
    given = [k for k in ("error_query", "good_query", "probe") if k in m]
    if len(given) != 1:
        where = m.key(given[1]).pos if len(given) > 1 else m.pos  # type: ignore[union-attr]
        problems.add(
            where,
            path,
            'an SLI has exactly one of "error_query", "good_query" (each with "total_query") '
            'or "probe"' + (f", got {' and '.join(given)}" if given else ""),
        )
        return None
    kind_key = given[0]
    query = required_str(m, kind_key, path, problems, nonempty=True)
    if kind_key == "probe":
        if "total_query" in m:
            key = m.key("total_query")
            assert key is not None
            problems.add(
                key.pos, path, 'a probe SLI counts probe results itself; drop "total_query"'
            )
        if query is not None and WINDOW_PLACEHOLDER.search(query):
            problems.add(
                value_pos(m, "probe"),
                join_key(path, "probe"),
                'a probe SLI is a selector such as probe_success{job="web"}; kpimon adds the '
                "window itself (no {{.window}})",
            )
        if len(problems) > before or query is None:
            return None
        return Sli(kind="probe", query=query)
    total = required_str(m, "total_query", path, problems, nonempty=True)
    for name, text in ((kind_key, query), ("total_query", total)):
        if text is not None and not WINDOW_PLACEHOLDER.search(text):
            problems.add(
                value_pos(m, name),
                join_key(path, name),
                "the query must contain {{.window}} where the window goes, e.g. "
                'sum(increase(http_requests_total{code=~"5.."}[{{.window}}]))',
            )
    if len(problems) > before or query is None or total is None:
        return None
    kind: SliKind = "errors" if kind_key == "error_query" else "good"
    return Sli(kind=kind, query=query, total_query=total)


def _min_events(m: Map, path: str, problems: Problems, sli: Sli | None) -> float:
    node = m.get("min_events")
    if node is None:
        return 0.0
    sub = join_key(path, "min_events")
    value = as_number(node, sub, problems)
    if value is None:
        return 0.0
    if value < 0:
        problems.add(node.pos, sub, f"must be at least 0, got {plain_number(value)}")
        return 0.0
    if value > 0 and sli is not None and sli.kind != "probe" and _RATE.search(sli.total_query):
        problems.add(
            node.pos,
            sub,
            "min_events counts events, but total_query uses rate(): write increase() so that "
            "total_query counts events over the window",
        )
    return value


def _alerts(m: Map, path: str, problems: Problems, window_s: float) -> tuple[BurnAlert, ...] | None:
    node = m.get("alerts")
    if node is None:
        too_long = [a for a in GOOGLE_ALERTS if a.long_s > window_s]
        if too_long:
            problems.add(
                value_pos(m, "window"),
                join_key(path, "window"),
                f"the default burn-rate alerts read up to {format_duration(too_long[0].long_s)}, "
                f"longer than the SLO window {format_duration(window_s)}; set alerts",
            )
            return None
        return GOOGLE_ALERTS
    sub = join_key(path, "alerts")
    items = as_seq(node, sub, problems)
    if items is None:
        return None
    out: list[BurnAlert] = []
    windows: dict[tuple[float, float], Position] = {}
    ok = True
    for i, item in enumerate(items.items):
        alert = _alert(item, join_index(sub, i), problems, window_s)
        if alert is None:
            ok = False
            continue
        key = (alert.long_s, alert.short_s)
        first = windows.get(key)
        if first is not None:
            problems.add(
                item.pos,
                join_index(sub, i),
                f"another alert (line {first.line}, column {first.column}) has the same "
                f"windows {format_duration(alert.long_s)} and {format_duration(alert.short_s)}",
            )
            ok = False
            continue
        windows[key] = item.pos
        out.append(alert)
    return tuple(out) if ok else None


def _alert(node: Node, path: str, problems: Problems, window_s: float) -> BurnAlert | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _ALERT_KEYS, problems)
    severity = None
    if require(m, "severity", path, problems) is not None:
        severity = one_of(m, "severity", path, _SEVERITIES, "", problems)
    long_s = short_s = None
    if require(m, "long", path, problems) is not None:
        long_s = given_duration(m, "long", path, problems, positive=True)
    if require(m, "short", path, problems) is not None:
        short_s = given_duration(m, "short", path, problems, positive=True)
    factor = None
    factor_node = require(m, "factor", path, problems)
    if factor_node is not None:
        factor = as_number(factor_node, join_key(path, "factor"), problems)
        if factor is not None and factor <= 0:
            problems.add(
                factor_node.pos,
                join_key(path, "factor"),
                f"a burn-rate factor must be greater than 0, got {plain_number(factor)}",
            )
    for_s = duration_or(m, "for", path, problems, 0.0)
    if long_s is not None and short_s is not None and short_s >= long_s:
        problems.add(
            value_pos(m, "short"),
            join_key(path, "short"),
            f"the short window ({format_duration(short_s)}) must be shorter than the long one "
            f"({format_duration(long_s)}); the workbook uses 1/12 of it",
        )
    if long_s is not None and long_s > window_s:
        problems.add(
            value_pos(m, "long"),
            join_key(path, "long"),
            f"the long window ({format_duration(long_s)}) is longer than the SLO window "
            f"({format_duration(window_s)})",
        )
    if len(problems) > before:
        return None
    assert severity
    assert long_s is not None
    assert short_s is not None
    assert factor is not None
    return BurnAlert(
        severity=cast(Severity, severity),
        long_s=long_s,
        short_s=short_s,
        factor=factor,
        for_s=for_s,
    )


def _no_data_alert(m: Map, path: str, problems: Problems) -> tuple[float, Severity]:
    node = m.get("no_data_alert")
    if node is None:
        return DEFAULT_NO_DATA_FOR_S, "critical"
    sub = join_key(path, "no_data_alert")
    mm = as_map(node, sub, problems)
    if mm is None:
        return DEFAULT_NO_DATA_FOR_S, "critical"
    check_keys(mm, sub, ("for", "severity"), problems)
    for_s = duration_or(mm, "for", sub, problems, DEFAULT_NO_DATA_FOR_S)
    severity = one_of(mm, "severity", sub, _SEVERITIES, "critical", problems)
    return for_s, cast(Severity, severity)


def _labels(m: Map, path: str, problems: Problems) -> labelset.Labels | None:
    return as_labels(
        m.get("labels"),
        join_key(path, "labels"),
        problems,
        reserved=_RESERVED,
        reserved_why="is reserved (kpimon sets alertname, severity, kpi and slo itself)",
    )


# -- services ------------------------------------------------------------------------------


def parse_services(
    node: Node | None,
    file: str,
    problems: Problems,
    seen: dict[str, Position],
    extras: RuleExtras,
) -> None:
    """Parse a ``services`` list into ``extras.services``; KPI names are checked against
    ``seen`` (every KPI of this file and of the files loaded before it)."""
    for i, item in enumerate(list_items(node, "services", problems)):
        service = _service(item, join_index("services", i), file, problems, seen, extras)
        if service is not None:
            extras.services.append(service)


def _service(
    node: Node,
    path: str,
    file: str,
    problems: Problems,
    seen: dict[str, Position],
    extras: RuleExtras,
) -> Service | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _SERVICE_KEYS, problems)
    name = unique_name(
        m, "name", path, "service name", extras.service_names, problems, pattern=NAME
    )
    owner = required_str(m, "owner", path, problems, nonempty=True)
    help_text = str_or(m, "help", path, problems, "")
    labels = _labels(m, path, problems)
    members: list[ServiceKpi] = []
    kpis_node = require(m, "kpis", path, problems)
    if kpis_node is not None:
        sub = join_key(path, "kpis")
        items = as_seq(kpis_node, sub, problems)
        if items is not None and not items.items:
            problems.add(items.pos, sub, "a service needs at least one KPI")
        named: dict[str, Position] = {}
        for i, item in enumerate(() if items is None else items.items):
            member = _member(item, join_index(sub, i), problems, seen, named)
            if member is not None:
                members.append(member)
    if len(problems) > before:
        return None
    assert name is not None
    assert owner is not None
    assert labels is not None
    return Service(
        name=name,
        help=help_text,
        owner=owner,
        kpis=tuple(members),
        labels=labels,
        file=file,
        position=m.pos,
    )


def _member(
    node: Node,
    path: str,
    problems: Problems,
    seen: dict[str, Position],
    named: dict[str, Position],
) -> ServiceKpi | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, ("kpi", "importance"), problems)
    kpi = None
    kpi_node = require(m, "kpi", path, problems)
    if kpi_node is not None:
        kpi = as_str(kpi_node, join_key(path, "kpi"), problems, nonempty=True)
        if kpi is not None and kpi not in seen:
            problems.add(
                kpi_node.pos,
                join_key(path, "kpi"),
                f'unknown KPI "{kpi}"{suggestion(kpi, seen)} (a service names KPIs of its own '
                "rule file or of one loaded before it)",
            )
        elif kpi is not None:
            claim_name(kpi, kpi_node, join_key(path, "kpi"), "KPI in this service", named, problems)
    importance = None
    imp_node = require(m, "importance", path, problems)
    if imp_node is not None:
        importance = as_int(imp_node, join_key(path, "importance"), problems)
        if importance is not None and importance > MAX_IMPORTANCE:
            problems.add(
                imp_node.pos,
                join_key(path, "importance"),
                f"importance is 0 to 11 (0: not scored, 11: a critical KPI makes the service "
                f"critical), got {importance}",
            )
    if len(problems) > before:
        return None
    assert kpi is not None
    assert importance is not None
    return ServiceKpi(kpi=kpi, importance=importance, position=m.pos)
