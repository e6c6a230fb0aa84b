"""Run ``python -m kpimon run`` as a real subprocess on loopback, for process-level tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.debian import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Kpimon:
    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            with exc:  # it holds the response's socket
                return exc.code, exc.read()

    def json(self, path: str) -> dict:  # type: ignore[type-arg]
        status, body = self.get(path)
        assert status == 200, (status, body)
        return json.loads(body)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, what: str, check, timeout_s: float = 60.0):  # type: ignore[no-untyped-def]
        """Poll ``check()`` until it returns something truthy; fail with the daemon's log."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"kpimon exited ({self.proc.returncode}) waiting for {what}:\n{self.log()}"
                )
            try:
                got = check()
            except (OSError, AssertionError):
                got = None
            if got:
                return got
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; log:\n{self.log()[-4000:]}")

    def log_line(self, text: str, timeout_s: float = 60.0) -> str:
        """The first log line containing ``text``, once it is written."""
        found: str = self.wait_for(
            f"a log line with {text!r}",
            lambda: next((x for x in self.log().splitlines() if text in x), None),
            timeout_s,
        )
        return found

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)


@contextlib.contextmanager
def kpimon(tmp_path: Path, *args: str, cwd: Path | None = None) -> Iterator[Kpimon]:
    port = free_port()
    log_path = tmp_path / f"kpimon-{port}.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kpimon",
                "run",
                f"--web.listen-address=127.0.0.1:{port}",
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd or tmp_path,
            env=env,
        )
    k = Kpimon(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        yield k
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
