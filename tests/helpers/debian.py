"""Locate and start the Debian Prometheus-ecosystem binaries the tests use as real peers.

``scripts/test`` installs them (Debian packages ``prometheus``, ``prometheus-node-exporter``,
``prometheus-alertmanager``). A missing binary fails the test that needs it with a message saying
so: these checks are never skipped.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

_PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


def binary(name: str) -> str:
    """The path of Debian binary ``name``; fails the test when it is not installed."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(
            f"{name} is not installed (Debian package {_PACKAGES.get(name, name)}); "
            "run scripts/test, which installs everything the tests need",
            pytrace=False,
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Wait until ``url`` answers 200, failing early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{out[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response's socket
            last = exc
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s: {last}")


@contextlib.contextmanager
def running(args: list[str], ready_url: str, timeout_s: float = 30.0) -> Iterator[None]:
    """Run ``args`` until the block ends; ready when ``ready_url`` answers 200."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_http(ready_url, proc, timeout_s)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@contextlib.contextmanager
def node_exporter() -> Iterator[str]:
    """A real node_exporter listening on loopback; yields its base URL (``http://127.0.0.1:P``)."""
    exe = binary("prometheus-node-exporter")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running([exe, f"--web.listen-address=127.0.0.1:{port}"], f"{base}/metrics"):
        yield base


def fetch(url: str, timeout_s: float = 10.0) -> bytes:
    """GET ``url`` (loopback only) and return the body."""
    assert url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")), url
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        body: bytes = resp.read()
        return body


def promtool_check_metrics(body: bytes) -> subprocess.CompletedProcess[bytes]:
    """``promtool check metrics`` on an exposition body (silent and 0 when it is clean)."""
    return subprocess.run(
        [binary("promtool"), "check", "metrics"], input=body, capture_output=True, timeout=60
    )
