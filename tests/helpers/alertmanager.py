"""A real Alertmanager (Debian's ``prometheus-alertmanager``) on a free loopback port.

Clustering is off (``--cluster.listen-address=`` empty), storage goes to a temporary directory,
and the only receiver does nothing: tests push alerts with ``POST /api/v2/alerts`` and read them
back with ``GET /api/v2/alerts``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.helpers.debian import binary, fetch, free_port, running

_CONFIG = """\
route:
  receiver: "null"
  group_wait: 1h
receivers:
  - name: "null"
"""


@contextlib.contextmanager
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """Run Alertmanager until the block ends; yields its base URL (``http://127.0.0.1:P``)."""
    exe = binary("prometheus-alertmanager")
    config = tmp_path / "alertmanager.yml"
    config.write_text(_CONFIG, encoding="utf-8")
    storage = tmp_path / "am-data"
    storage.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [
        exe,
        f"--config.file={config}",
        f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with running(args, f"{base}/-/ready"):
        yield base


def alerts(base: str) -> list[dict[str, Any]]:
    """``GET /api/v2/alerts``: every alert not yet resolved (active, silenced, inhibited or
    unprocessed); Alertmanager leaves resolved alerts out of this list."""
    query = "active=true&silenced=true&inhibited=true&unprocessed=true"
    result: list[dict[str, Any]] = json.loads(fetch(f"{base}/api/v2/alerts?{query}"))
    return result


def poll(what: Callable[[], Any], until: Callable[[Any], bool], timeout_s: float = 10.0) -> Any:
    """Call ``what`` until ``until(result)`` holds; the last result; fails at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = what()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s; last: {result!r}")
        time.sleep(0.05)
