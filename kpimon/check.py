"""``kpimon check FILE...``: validate daemon configs and KPI rule files, print every problem.

Each file is a daemon config (its ``rule_files`` are checked with it) or a rule file, told apart
by content: a mapping with a ``kpis`` key is a rule file. Problems go to ``err`` as
``FILE:LINE:COL: path: message``, one line each; a valid file gets one ``FILE: ok (...)`` line on
``out``. The CLI (``kpimon.cli``) wires :func:`run_check` to argparse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from kpimon.config.fields import Problems
from kpimon.config.loader import build_config, read_file
from kpimon.config.rules import is_rule_file, parse_rules_node
from kpimon.config.slos import RuleExtras
from kpimon.config.yamlload import load_yaml
from kpimon.errors import ConfigError
from kpimon.textfmt import count

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def run_check(paths: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Check each file in ``paths``.

    Returns:
        0 when every file is valid, 1 when any is invalid or unreadable, 2 when no file was
        given.
    """
    if not paths:
        print("usage: kpimon check FILE...", file=err)
        return EXIT_USAGE
    status = EXIT_OK
    for path in paths:
        try:
            line = _check_one(path)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=err)
            status = EXIT_INVALID
        else:
            print(line, file=out)
    return status


def _check_one(path: str) -> str:
    """The success line for ``path``; raises ConfigError otherwise."""
    text = read_file(path)
    root, yaml_problems = load_yaml(text, path)
    if is_rule_file(root):
        problems = Problems()
        problems.extend(yaml_problems)
        extras = RuleExtras()
        kpis = parse_rules_node(root, path, problems, {}, extras)
        if problems.items:
            raise ConfigError(problems.items)
        parts = [count(len(kpis), "KPI")]
        slos, services = len(extras.slos), len(extras.services)
    else:
        config = build_config(text, path)
        parts = [count(len(config.scrape_configs), "scrape config"), count(len(config.kpis), "KPI")]
        if config.probes:
            parts.append(count(len(config.probes), "probe"))
        slos, services = len(config.slos), len(config.services)
    if slos:
        parts.append(count(slos, "SLO"))
    if services:
        parts.append(count(services, "service"))
    return f"{path}: ok ({', '.join(parts)})"
