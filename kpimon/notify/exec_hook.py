"""Exec hook: run a local command with the alerts as JSON on its standard input.

The command is an argv list, executed directly (never through a shell, so no quoting or
injection through label values). Its stdin is the webhook v4 JSON
(:func:`~kpimon.notify.webhook.webhook_v4`); it runs in its own process group, and when it
outlives the hook's ``timeout`` the whole group is killed (SIGKILL), so that children it
started cannot linger.

Exit status policy (documented in docs/alerting.md):

- 0: delivered.
- 64–78 except 75 (the ``sysexits.h`` codes for bad usage, data or configuration:
  ``EX_USAGE``, ``EX_DATAERR``, ``EX_CONFIG``, ...): permanent; running it again with the same
  input cannot help.
- any other non-zero status, death by a signal, or a timeout: retryable (a paging script
  typically fails because its own network call did; 75 is ``EX_TEMPFAIL``).
- the command cannot be started (missing, not executable): permanent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Sequence
from typing import IO

import aiohttp

from kpimon.clock import Clock
from kpimon.config.alerting import HookConfig
from kpimon.notify.model import AlertEvent, Outcome, SendResult
from kpimon.notify.webhook import webhook_v4

EX_TEMPFAIL = 75
_PERMANENT_EXITS = frozenset(range(64, 79)) - {EX_TEMPFAIL}
_MAX_STDERR = 300


def classify_exit(returncode: int) -> Outcome:
    """``ok``, ``permanent`` or ``retryable`` for a command's exit status (negative: signal)."""
    if returncode == 0:
        return "ok"
    if returncode in _PERMANENT_EXITS:
        return "permanent"
    return "retryable"


def _tail(file: IO[bytes], keep: int = 4096) -> bytes:
    """The last ``keep`` bytes written to ``file``."""
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - keep))
    return file.read()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group id is the pid: start_new_session


class ExecHook:
    """Runs the command once per call, with a group of alerts on stdin."""

    max_batch: int = 1000

    def __init__(
        self,
        config: HookConfig,
        session: aiohttp.ClientSession | None = None,
        *,
        clock: Clock,
        external_url: str = "",
    ) -> None:
        assert config.command
        self.name = config.name
        self._config = config
        self._external_url = external_url

    async def send(self, events: Sequence[AlertEvent]) -> SendResult:
        config = self._config
        label = f'exec hook "{self.name}" ({os.path.basename(config.command[0])})'
        data = json.dumps(
            webhook_v4(events, receiver=self.name, external_url=self._external_url),
            ensure_ascii=False,
        ).encode()
        # stderr goes to a file, not a pipe: asyncio's wait() also waits for every pipe to
        # close, and a background child the command started may hold stderr open long after the
        # command exited 0 (calling that a timeout would send the page again).
        with tempfile.TemporaryFile() as stderr_file:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *config.command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=stderr_file,
                    start_new_session=True,
                )
            except OSError as exc:
                return SendResult("permanent", f"{label}: cannot run: {exc.strerror or exc}")
            assert proc.stdin is not None
            try:
                async with asyncio.timeout(config.timeout_s):
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        proc.stdin.write(data)
                        await proc.stdin.drain()
                    proc.stdin.close()
                    await proc.wait()
            except TimeoutError:
                _kill_group(proc)
                await proc.wait()
                return SendResult(
                    "retryable", f"{label}: timed out after {config.timeout_s:g}s (killed)"
                )
            except BaseException:
                _kill_group(proc)  # cancelled: leave nothing behind
                await asyncio.shield(proc.wait())
                raise
            stderr = _tail(stderr_file)
        code = proc.returncode
        assert code is not None
        outcome = classify_exit(code)
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        tail = stderr.decode(errors="replace").strip().splitlines()
        reason = f"{label}: {how}" + (f": {tail[-1][:_MAX_STDERR]}" if tail else "")
        return SendResult(outcome, reason, status=code)
