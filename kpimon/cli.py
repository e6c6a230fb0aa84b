"""kpimon's command line (Prometheus-style flags, ARCHITECTURE §3).

    kpimon run   [--config.file FILE] [--web.listen-address HOST:PORT] [--web.enable-lifecycle]
                 [--storage.path DIR]
                 [--log.level debug|info|warn|error] [--log.format logfmt|json]
    kpimon check FILE...
    kpimon test  FILE...
    kpimon explain NAME [--url http://127.0.0.1:8574] [--series SERIES]... [--format text|json]
    kpimon replay --rules FILE... --data FILE... [--from T] [--to T] [--restart-at T]...
                  [--step DURATION] [--format text|json] [--storage.path DIR]
    kpimon report [--period day|week|month] [--at DATE|T] [--tz ZONE] [--rules FILE...]
                  [--format markdown|html|json] [--storage.path DIR]
    kpimon --version

Exit codes: 0 success; 1 invalid configuration (every problem printed as FILE:LINE:COL: path:
message) or a runtime failure; 2 usage error. ``kpimon test``: 0 every rule unit test passed,
1 a test failed, 2 a test or rule file is unreadable or invalid (or no file was given).
``kpimon replay``: 0 replayed, 2 invalid rules, data (FILE:LINE: message) or options.
``kpimon report``: 0 printed (a period without data too), 2 no usable journal, an invalid
``--at``/``--tz`` or rule file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

from kpimon import __version__
from kpimon.errors import ConfigError, JournalError

DEFAULT_CONFIG = "kpimon.yml"
DEFAULT_LISTEN = "127.0.0.1:8574"
DEFAULT_STORAGE = "data/"
JOURNAL_FILE = "kpimon.db"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kpimon",
        description="Real-time IT-operations KPI monitor.",
    )
    p.add_argument("--version", action="version", version=f"kpimon {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument(
        "--config.file",
        dest="config_file",
        metavar="FILE",
        help=f"daemon config (default: ./{DEFAULT_CONFIG} if present, else the embedded default: "
        "this host and the packaged host KPIs)",
    )
    run.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to serve /metrics, the API and the status page (default {DEFAULT_LISTEN})",
    )
    run.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="allow POST /-/reload",
    )
    run.add_argument(
        "--storage.path",
        dest="storage_path",
        metavar="DIR",
        help=f"directory of the state journal, {JOURNAL_FILE} (default: storage.path in the "
        f"config, else {DEFAULT_STORAGE})",
    )
    run.add_argument(
        "--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"]
    )
    run.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"]
    )
    check = sub.add_parser("check", help="validate config and rule files")
    check.add_argument("files", nargs="*", metavar="FILE")
    test = sub.add_parser(
        "test", help="run rule unit tests (promtool's test-file format, kpimon rule files)"
    )
    test.add_argument("files", nargs="*", metavar="FILE")
    explain = sub.add_parser(
        "explain",
        help="ask a running kpimon why a KPI's series have their status",
        description="Query a running kpimon's /api/v1/kpis/NAME/explain and print, per series, "
        "why it has its status and why a level is (not yet) firing. Exit 0 printed, 1 kpimon "
        "unreachable or the KPI unknown, 2 usage error.",
    )
    explain.add_argument("name", metavar="NAME", help="the KPI's name")
    explain.add_argument(
        "--url",
        default=f"http://{DEFAULT_LISTEN}",
        help=f"where kpimon serves its API (default http://{DEFAULT_LISTEN})",
    )
    explain.add_argument(
        "--series",
        action="append",
        default=[],
        metavar="SERIES",
        help="only the series with exactly this label set ('{instance=\"db1\"}') or with this "
        "label value (instance=db1); repeatable",
    )
    explain.add_argument("--format", dest="fmt", default="text", choices=["text", "json"])
    _add_replay(sub)
    _add_report(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kpimon`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        from kpimon.check import run_check

        if not args.files:
            parser.error("check: at least one FILE is required")
        return run_check(args.files, sys.stdout, sys.stderr)
    if args.command == "test":
        from kpimon.ruletest import run_tests

        if not args.files:
            parser.error("test: at least one FILE is required")
        return run_tests(args.files, sys.stdout, sys.stderr)
    if args.command == "explain":
        from kpimon.explain_command import run_explain

        return run_explain(args.url, args.name, args.series, args.fmt, sys.stdout, sys.stderr)
    if args.command == "run":
        return _run(args)
    if args.command == "replay":
        return _replay(args)
    if args.command == "report":
        return _report(args)
    parser.print_help(sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    from kpimon import logs
    from kpimon.app import Daemon, Options, split_address
    from kpimon.config import load_config

    logs.setup(args.log_level, args.log_format)
    log = logging.getLogger("kpimon")
    config_file = args.config_file
    if config_file is None and os.path.exists(DEFAULT_CONFIG):
        config_file = DEFAULT_CONFIG
    opts = Options(
        config_file=config_file,
        listen_address=args.listen_address,
        enable_lifecycle=args.enable_lifecycle,
        storage_path=args.storage_path,
        freeze_heap=True,
    )
    try:
        split_address(opts.listen_address)
    except ValueError as exc:
        print(f"kpimon: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = load_config(opts.config_file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        log.error("invalid configuration, not starting problems=%d", len(exc.problems))
        return 1
    try:
        if opts.storage_path is None:  # the flag wins over the config, as in Prometheus
            opts = dataclasses.replace(opts, storage_path=cfg.storage_path or DEFAULT_STORAGE)
        return asyncio.run(Daemon(cfg, opts).run())
    except JournalError as exc:  # one line: the path, what is wrong, what to do
        print(f"kpimon: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the listen address is in use
        log.error("kpimon failed err=%s", exc)
        return 1


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = sub.add_parser(
        "replay",
        help="run KPI rules over recorded samples and print the transitions and a summary",
        description="Evaluate KPI rules over recorded samples (OpenMetrics text with a timestamp "
        "on every sample, or CSV timestamp,series,value) with a simulated clock, through the "
        "daemon's store and engine. Times (T) are RFC 3339 (2024-05-01T12:00:00Z) or Unix "
        "seconds. Exit 0 replayed, 2 invalid rules, data or options.",
    )
    replay.add_argument(
        "--rules",
        nargs="+",
        action="extend",
        required=True,
        metavar="FILE",
        help="KPI rule files, or a daemon config (its rule files and evaluation_interval)",
    )
    replay.add_argument(
        "--data",
        nargs="+",
        action="extend",
        required=True,
        metavar="FILE",
        help="recorded samples: *.csv as CSV, *.om, *.prom, *.txt as OpenMetrics, other files "
        "by their first line",
    )
    replay.add_argument(
        "--from",
        dest="start",
        type=_time_arg,
        metavar="T",
        help="first evaluation (default: the first sample)",
    )
    replay.add_argument(
        "--to",
        dest="end",
        type=_time_arg,
        metavar="T",
        help="last evaluation at or before T (default: the last sample)",
    )
    replay.add_argument(
        "--restart-at",
        dest="restarts",
        action="append",
        default=[],
        type=_time_arg,
        metavar="T",
        help="simulate a daemon restart at T (repeatable)",
    )
    replay.add_argument(
        "--step",
        type=_duration_arg,
        metavar="DURATION",
        help="evaluation interval (default: a daemon config's evaluation_interval, else 15s)",
    )
    replay.add_argument("--format", dest="fmt", default="text", choices=["text", "json"])
    replay.add_argument(
        "--storage.path",
        dest="storage_path",
        metavar="DIR",
        help="journal every tick to DIR; when DIR holds this replay's progress, resume after "
        "its last committed tick",
    )


def _time_arg(text: str) -> float:
    from kpimon.replay import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration_arg(text: str) -> float:
    from kpimon.config import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return seconds


def _replay(args: argparse.Namespace) -> int:
    from kpimon.replay import Request, run_replay

    request = Request(
        rules=tuple(args.rules),
        data=tuple(args.data),
        start=args.start,
        end=args.end,
        restarts=tuple(args.restarts),
        step_s=args.step,
        format=args.fmt,
        storage_path=args.storage_path,
    )
    return run_replay(request, sys.stdout, sys.stderr)


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report",
        help="print the KPI report of a day, week or month from the journal",
        description="Read the journal under --storage.path (read-only; a running kpimon may "
        "hold it) and print, per KPI and series: availability, time in each status, breaches, "
        "longest breach, MTTR, MTBF, owner, and the period's data coverage (docs/reports.md). "
        "Exit 0 printed (a period without data too), 2 no usable journal, invalid --at, --tz "
        "or rule file.",
    )
    report.add_argument("--period", default="day", choices=["day", "week", "month"])
    report.add_argument(
        "--at",
        metavar="DATE|T",
        help="a date (2024-05-01: that whole calendar day, week or month) or a time (RFC 3339 "
        "or Unix seconds: its period up to that time); default now",
    )
    report.add_argument(
        "--tz", default="UTC", metavar="ZONE", help="calendar zone (default UTC; Europe/Paris)"
    )
    report.add_argument(
        "--rules",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="rule files or a daemon config, for owners, thresholds and targets (default: "
        f"./{DEFAULT_CONFIG} if present)",
    )
    report.add_argument(
        "--format", dest="fmt", default="markdown", choices=["markdown", "html", "json"]
    )
    report.add_argument(
        "--storage.path",
        dest="storage_path",
        metavar="DIR",
        help=f"the journal's directory (default: storage.path of the config, else "
        f"{DEFAULT_STORAGE})",
    )


def _report(args: argparse.Namespace) -> int:
    from kpimon.clock import SystemClock
    from kpimon.report.command import Request, run_report

    rules = tuple(args.rules)
    if not rules and os.path.exists(DEFAULT_CONFIG):
        rules = (DEFAULT_CONFIG,)
    storage = args.storage_path
    if storage is None:
        storage = DEFAULT_STORAGE
        if DEFAULT_CONFIG in rules:
            from kpimon.config import load_config

            with contextlib.suppress(ConfigError):  # run_report prints its problems
                storage = load_config(DEFAULT_CONFIG).storage_path or DEFAULT_STORAGE
    request = Request(
        period=args.period,
        at=args.at,
        tz=args.tz,
        format=args.fmt,
        storage_path=storage,
        rules=rules,
    )
    return run_report(request, sys.stdout, sys.stderr, now=SystemClock().wall())
