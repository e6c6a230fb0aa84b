"""Logging set-up: logfmt (default) or JSON lines on stderr, one named logger per subsystem.

Loggers: ``kpimon`` (daemon lifecycle), ``kpimon.scrape``, ``kpimon.engine``, ``kpimon.http``,
``kpimon.config``. Messages are written ``"event key=value ..."`` with ``%``-style arguments.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def _ts(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds")


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\t\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=kpimon.scrape msg="..."`` (the message is kept whole)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={_ts(record)}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": _ts(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup(level: str = "info", fmt: str = "logfmt") -> None:
    """Send kpimon's logs to stderr at ``level`` in ``fmt`` (``logfmt`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger("kpimon")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    root.propagate = False
    # aiohttp's own access log is noisy at info; keep its errors.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@contextlib.contextmanager
def silenced(name: str) -> Iterator[None]:
    """Logger ``name`` logs nothing inside the block; its level is restored afterwards."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        log.setLevel(level)
