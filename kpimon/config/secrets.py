"""Secrets in config: inline, in a file, or in an environment variable; never shown.

A :class:`Secret` is what ``routing_key`` / ``routing_key_file`` / ``routing_key_env`` (and every
other secret field ``X``, ``X_file``, ``X_env``) become. ``repr()`` and ``str()`` are
``<secret>``, so a secret cannot leak through a log line, a dataclass repr, the API or an error
message; :meth:`Secret.reveal` reads the value when a hook sends (a rotated key file is picked
up, as Prometheus does). Parsing reads no file and no variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from kpimon.errors import KpimonError


class SecretError(KpimonError):
    """A secret's file or environment variable cannot be read (the message names the file or
    variable, never the value)."""


class Secret:
    """A value that must not be shown: inline, or read from a file or environment variable.

    ``repr()`` and ``str()`` are ``<secret>``; :meth:`reveal` returns the value (read at each
    call, so a rotated key file is picked up as Prometheus does).
    """

    __slots__ = ("_env", "_file", "_value")

    def __init__(
        self, *, value: str | None = None, file: str | None = None, env: str | None = None
    ) -> None:
        if sum(x is not None for x in (value, file, env)) != 1:
            raise ValueError("a Secret has exactly one of value, file, env")
        self._value = value
        self._file = file
        self._env = env

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return (self._value, self._file, self._env) == (other._value, other._file, other._env)

    def __hash__(self) -> int:
        return hash((self._value, self._file, self._env))

    @property
    def from_file(self) -> bool:
        """Whether :meth:`reveal` reads a file (callers on an event loop use a thread)."""
        return self._file is not None

    @property
    def source(self) -> str:
        """Where the secret comes from, safe to show: ``inline``, ``file /x`` or ``env $X``."""
        if self._file is not None:
            return f"file {self._file}"
        if self._env is not None:
            return f"environment variable {self._env}"
        return "inline"

    def reveal(self) -> str:
        """The secret's value, surrounding whitespace stripped.

        Raises:
            SecretError: the file cannot be read, the variable is unset, or the value is empty.
        """
        if self._value is not None:
            value = self._value
        elif self._file is not None:
            try:
                value = Path(self._file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
                raise SecretError(f"cannot read secret file {self._file}: {why}") from None
        else:
            assert self._env is not None
            found = os.environ.get(self._env)
            if found is None:
                raise SecretError(f"environment variable {self._env} is not set")
            value = found
        value = value.strip()
        if not value:
            raise SecretError(f"secret from {self.source} is empty")
        return value
