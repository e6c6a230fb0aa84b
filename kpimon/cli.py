"""kpimon's command line (Prometheus-style flags, ARCHITECTURE §3).

    kpimon run   [--config.file FILE] [--web.listen-address HOST:PORT] [--web.enable-lifecycle]
                 [--log.level debug|info|warn|error] [--log.format logfmt|json]
    kpimon check FILE...
    kpimon --version

Exit codes: 0 success; 1 invalid configuration (every problem printed as FILE:LINE:COL: path:
message) or a runtime failure; 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from kpimon import __version__
from kpimon.errors import ConfigError

DEFAULT_CONFIG = "kpimon.yml"
DEFAULT_LISTEN = "127.0.0.1:8574"


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
        "--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"]
    )
    run.add_argument(
        "--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"]
    )
    check = sub.add_parser("check", help="validate config and rule files")
    check.add_argument("files", nargs="*", metavar="FILE")
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
    if args.command == "run":
        return _run(args)
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
        return asyncio.run(Daemon(cfg, opts).run())
    except OSError as exc:  # e.g. the listen address is in use
        log.error("kpimon failed err=%s", exc)
        return 1
