"""Reading config and rule files: the one place kpimon's configuration touches the disk.

:func:`load_config` reads ``kpimon.yml`` (or returns the embedded default), :func:`build_config`
finds the config's ``rule_files`` (globs relative to the config's directory) and reads them.
Both raise :class:`~kpimon.errors.ConfigError` carrying every problem of every file at once; a
file that cannot be read at all is an :class:`UnreadableFile` problem (``FILE: cannot read: ...``).
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.resources
import os
import re
from collections.abc import Iterable
from typing import Final

from kpimon.config.daemon import RulePattern, parse_config
from kpimon.config.durations import format_duration
from kpimon.config.fields import Problems
from kpimon.config.models import DEFAULT_SCRAPE_INTERVAL_S, DaemonConfig, HostConfig, Kpi
from kpimon.config.rules import parse_rules_node
from kpimon.config.slos import RuleExtras
from kpimon.config.yamlload import load_yaml
from kpimon.errors import ConfigError, Position, Problem
from kpimon.slo.model import LEDGER_STEP_S

_GLOB_MAGIC = re.compile(r"[*?\[]")
EMBEDDED_RULES: Final = "rules/host.yaml"
"""The packaged rule file of the embedded default config (inside the ``kpimon`` package)."""


class UnreadableFile(Problem):
    """A file that cannot be read at all; shown as ``FILE: cannot read: reason`` (no position)."""

    __slots__ = ()

    @classmethod
    def of(cls, path: str, exc: OSError) -> UnreadableFile:
        return cls(Position(path, 0, 0), "", f"cannot read: {exc.strerror or exc}")

    def __str__(self) -> str:
        return f"{self.position.file}: {self.message}"


def build_config(text: str, file: str) -> DaemonConfig:
    """Parse a daemon config and load its rule files (found relative to ``file``'s directory).

    Raises:
        ConfigError: every problem of the config and of all its rule files.
    """
    config, patterns, found = parse_config(text, file)
    problems = Problems()
    problems.extend(found)
    paths = resolve_rule_files(file, patterns, problems)
    extras = RuleExtras()
    kpis = load_rule_paths(paths, problems, extras)
    _check_slo_interval(config.global_config.evaluation_interval_s, extras, problems)
    if problems.items:
        raise ConfigError(problems.items)
    return dataclasses.replace(
        config,
        rule_paths=tuple(p for p, _ in paths),
        kpis=kpis,
        slos=tuple(extras.slos),
        services=tuple(extras.services),
    )


def _check_slo_interval(interval_s: float, extras: RuleExtras, problems: Problems) -> None:
    """An SLO's ledger counts 5-minute buckets, one ``increase`` per bucket at the first tick
    in it: an evaluation interval that does not divide 5 minutes would skip or double-count
    stretches of events, so it is refused (docs/slo.md)."""
    ratio = LEDGER_STEP_S / interval_s
    if ratio >= 1 and abs(ratio - round(ratio)) < 1e-9:
        return
    for slo in extras.slos:
        problems.add(
            slo.position,
            "slos",
            f'SLO "{slo.name}" needs global.evaluation_interval to divide 5m (its error budget '
            f"is counted in 5-minute buckets), got {format_duration(interval_s)}",
        )


def load_config(path: str | None) -> DaemonConfig:
    """Read and validate a daemon config and its rule files.

    Args:
        path: the config file as the user named it; None for the embedded default (the built-in
            host collector plus the packaged host KPIs).

    Raises:
        ConfigError: every problem of the config and of all its rule files; a config file that
            cannot be read is one :class:`UnreadableFile` problem.
    """
    if path is None:
        return default_config()
    return build_config(read_file(path), path)


def read_file(path: str) -> str:
    """The text of ``path``; raises ConfigError (one :class:`UnreadableFile` problem) otherwise."""
    try:
        text, problem = read_text(path, path)
    except OSError as exc:
        raise ConfigError([UnreadableFile.of(path, exc)]) from None
    if problem is not None:
        raise ConfigError([problem])
    assert text is not None
    return text


def default_config() -> DaemonConfig:
    """The embedded default: host collector on, the packaged ``rules/host.yaml`` KPIs.

    Raises:
        ConfigError: the packaged rule file is invalid (a packaging bug).
    """
    resource = importlib.resources.files("kpimon").joinpath(EMBEDDED_RULES)
    display = str(resource)
    problems = Problems()
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        problems.add(Position(display, 1, 1), "", f"cannot read: {exc.strerror or exc}")
        raise ConfigError(problems.items) from None
    root, yaml_problems = load_yaml(text, display)
    problems.extend(yaml_problems)
    kpis = parse_rules_node(root, display, problems, {})
    if problems.items:
        raise ConfigError(problems.items)
    return DaemonConfig(
        path=None,
        host=HostConfig(enabled=True, interval_s=DEFAULT_SCRAPE_INTERVAL_S),
        rule_files=(display,),
        rule_paths=(display,),
        kpis=kpis,
    )


def read_text(path: str, display: str) -> tuple[str | None, Problem | None]:
    """The UTF-8 text of ``path``, or a problem at the first byte that is not UTF-8.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, Problem(
            Position(display, line, column), "", f"not UTF-8 text (byte 0x{data[exc.start]:02x})"
        )


def resolve_rule_files(
    config_file: str, patterns: Iterable[RulePattern], problems: Problems
) -> list[tuple[str, RulePattern]]:
    """The rule files ``patterns`` name, each with the entry that named it, in order.

    Patterns are relative to the config file's directory. A glob matching nothing is fine (as
    in Prometheus); a literal path that does not exist is a problem. A file named twice is
    loaded once.
    """
    base = os.path.dirname(config_file)
    out: list[tuple[str, RulePattern]] = []
    seen: set[str] = set()
    for entry in patterns:
        joined = os.path.join(base, entry.pattern)
        if _GLOB_MAGIC.search(entry.pattern):
            matches = sorted(m for m in glob.glob(joined) if os.path.isfile(m))
        elif os.path.isdir(joined):
            problems.add(
                entry.position,
                entry.path,
                f'"{joined}" is a directory; name files, e.g. "{entry.pattern.rstrip("/")}/*.yaml"',
            )
            continue
        elif not os.path.exists(joined):
            problems.add(entry.position, entry.path, f'rule file "{joined}" does not exist')
            continue
        else:
            matches = [joined]
        for match in matches:
            real = os.path.realpath(match)
            if real not in seen:
                seen.add(real)
                out.append((match, entry))
    return out


def load_rule_paths(
    paths: Iterable[tuple[str, RulePattern]],
    problems: Problems,
    extras: RuleExtras | None = None,
) -> tuple[Kpi, ...]:
    """Read and parse rule files; KPI names must be unique across all of them. Their SLOs and
    services go to ``extras`` (docs/slo.md)."""
    extras = RuleExtras() if extras is None else extras
    seen: dict[str, Position] = {}
    kpis: list[Kpi] = []
    for path, entry in paths:
        try:
            text, problem = read_text(path, path)
        except OSError as exc:
            problems.add(
                entry.position, entry.path, f'cannot read rule file "{path}": {exc.strerror or exc}'
            )
            continue
        if problem is not None:
            problems.add(problem.position, problem.path, problem.message)
            continue
        assert text is not None
        root, yaml_problems = load_yaml(text, path)
        problems.extend(yaml_problems)
        kpis.extend(parse_rules_node(root, path, problems, seen, extras))
    return tuple(kpis)
