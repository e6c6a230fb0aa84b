"""``kpimon replay``: load rule files and data files, run the replay, print the report.

The one module of :mod:`kpimon.replay` that touches files and streams; the CLI
(:mod:`kpimon.cli`) parses the flags into :class:`Request` and calls :func:`run_replay`.

Exit codes: 0 the replay ran (whatever fired); 2 a rule file is invalid (every problem printed as
``kpimon check`` prints it), a data file is unreadable or malformed (``FILE:LINE: message``), the
options do not fit the data, or the journal under ``--storage.path`` cannot be used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TextIO

from kpimon.config.fields import Problems
from kpimon.config.loader import build_config, read_file
from kpimon.config.models import Kpi
from kpimon.config.rules import is_rule_file, parse_rules_node
from kpimon.config.slos import RuleExtras
from kpimon.config.yamlload import load_yaml
from kpimon.errors import ConfigError, JournalError, Position, Problem
from kpimon.logs import silenced
from kpimon.replay.csvdata import read_csv
from kpimon.replay.data import DataError, Recording, merge
from kpimon.replay.driver import DEFAULT_STEP_S, ReplayError, ReplayOptions, replay
from kpimon.replay.openmetrics import read_openmetrics
from kpimon.replay.progress import Progress
from kpimon.replay.render import render_json, render_text
from kpimon.replay.restart import STORAGE_SYNCHRONOUS, Persistence

EXIT_OK = 0
EXIT_ERROR = 2

Format = Literal["text", "json"]
_CSV_SUFFIXES = (".csv",)
_OPENMETRICS_SUFFIXES = (".om", ".openmetrics", ".prom", ".txt")


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A replay as asked for on the command line (times in Unix seconds)."""

    rules: tuple[str, ...]
    data: tuple[str, ...]
    start: float | None = None
    end: float | None = None
    restarts: tuple[float, ...] = ()
    step_s: float | None = None
    format: Format = "text"
    storage_path: str | None = None


def run_replay(request: Request, out: TextIO, err: TextIO) -> int:
    """Run ``request``; the report goes to ``out``, errors and the progress bar to ``err``."""
    try:
        kpis, interval_s = load_rules(request.rules)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return EXIT_ERROR
    try:
        recording = load_data(request.data)
    except DataError as exc:
        print(exc, file=err)
        return EXIT_ERROR
    options = ReplayOptions(
        start=request.start,
        end=request.end,
        step_s=request.step_s or interval_s or DEFAULT_STEP_S,
        restarts=request.restarts,
    )
    progress = Progress(err)
    persistence = None
    try:
        with silenced("kpimon.engine"):  # transitions and errors are the report's business
            if request.storage_path is not None:
                persistence = Persistence(request.storage_path, synchronous=STORAGE_SYNCHRONOUS)
            result = replay(kpis, recording, options, progress=progress, persistence=persistence)
    except (ReplayError, JournalError) as exc:
        print(f"kpimon replay: {exc}", file=err)
        return EXIT_ERROR
    finally:
        progress.close()
        if persistence is not None:
            persistence.close()
    out.write(render_json(result) if request.format == "json" else render_text(result))
    return EXIT_OK


def load_rules(
    paths: Sequence[str], extras: RuleExtras | None = None
) -> tuple[tuple[Kpi, ...], float | None]:
    """The KPIs of rule files (or daemon configs: their rule files' KPIs), and the evaluation
    interval of the last daemon config among them (None when there is none). Their SLOs and
    services go to ``extras`` when given.

    Raises:
        ConfigError: every problem of every file, as ``kpimon check`` reports them.
    """
    problems: list[Problem] = []
    kpis: list[Kpi] = []
    seen: dict[str, Position] = {}
    interval_s: float | None = None
    for path in paths:
        try:
            text = read_file(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        root, yaml_problems = load_yaml(text, path)
        if is_rule_file(root):
            file_problems = Problems()
            file_problems.extend(yaml_problems)
            kpis.extend(parse_rules_node(root, path, file_problems, seen, extras))
            problems.extend(file_problems.items)
            continue
        try:
            config = build_config(text, path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        for kpi in config.kpis:
            if kpi.name in seen:
                problems.append(
                    Problem(kpi.position, "", f'KPI "{kpi.name}" is already defined at '
                            f"{seen[kpi.name]}")
                )  # fmt: skip
                continue
            seen[kpi.name] = kpi.position
            kpis.append(kpi)
        interval_s = config.global_config.evaluation_interval_s
        if extras is not None:
            extras.slos.extend(config.slos)
            extras.services.extend(config.services)
    if problems:
        raise ConfigError(problems)
    return tuple(kpis), interval_s


def load_data(paths: Sequence[str]) -> Recording:
    """Every sample of the data files, merged.

    Raises:
        DataError: a file cannot be read, is malformed, or repeats a sample.
    """
    return merge([read_data_file(path) for path in paths])


def read_data_file(path: str) -> Recording:
    """The samples of one data file: CSV by its ``.csv`` suffix or its content, else OpenMetrics.

    Raises:
        DataError: the file cannot be read or is malformed.
    """
    try:
        if _is_csv(path):
            with open(path, "rb") as f:
                text = _decode(f.read(), path)
            return read_csv(text, path)
        with open(path, "rb") as f:
            data = f.read()
        return read_openmetrics(data, path)
    except OSError as exc:
        raise DataError(path, 0, f"cannot read: {exc.strerror or exc}") from None


def _is_csv(path: str) -> bool:
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _CSV_SUFFIXES:
        return True
    if suffix in _OPENMETRICS_SUFFIXES:
        return False
    with open(path, "rb") as f:
        head = f.read(4096).removeprefix(b"\xef\xbb\xbf")
    for line in head.splitlines():
        text = line.strip()
        if not text:
            continue
        if text.startswith(b"#"):
            return False
        first = text.split(b",", 1)[0].strip().lower()
        return (
            first == b"timestamp"
            or first.replace(b".", b"", 1).isdigit()
            or (len(first) >= 10 and first[:4].isdigit() and first[4:5] == b"-")
        )
    return False


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8-sig")  # a byte-order mark (spreadsheet exports) is dropped
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(path, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


__all__ = ["Request", "load_data", "load_rules", "read_data_file", "run_replay"]
