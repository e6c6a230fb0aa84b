"""One HTTP POST with a strict timeout, classified into a :class:`~.model.SendResult`.

Shared by the HTTP senders. The classification is the one Alertmanager's notifiers use: 2xx
success; 429 and 5xx (and 408, network errors, timeouts) retryable, with ``Retry-After``
honoured; any other status permanent. Redirects are not followed (a hook URL that redirects is
misconfigured). Reasons name the hook and the receiver's host only: a Slack or webhook URL's
path is a credential, and every secret is scrubbed from text the receiver sent back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import json
import math
from collections.abc import Iterable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp

from kpimon.clock import Clock
from kpimon.config.alerting import HookConfig
from kpimon.config.secrets import Secret
from kpimon.notify.model import SendResult

_MAX_REASON_BODY = 300
_MAX_READ = 64 * 1024


async def reveal(secret: Secret) -> str:
    """``secret.reveal()`` without blocking the event loop on a file read.

    Raises:
        SecretError: as :meth:`Secret.reveal`.
    """
    if secret.from_file:
        return await asyncio.to_thread(secret.reveal)
    return secret.reveal()


def redact_url(url: str) -> str:
    """``scheme://host:port`` of ``url``, without path, query or user info."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}"


def _forms(secret: str) -> set[str]:
    """``secret`` as a receiver may echo it: as is, JSON-escaped (``\\/``), and for a URL
    its path and query, where the credential is ("Cannot POST /services/T0/B0/XXXX")."""
    forms = {secret}
    if "://" in secret:
        with contextlib.suppress(ValueError):
            parts = urlsplit(secret)
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            forms.update(f for f in (tail, parts.path, parts.query) if len(f) > 1)
    return forms | {f.replace("/", "\\/") for f in forms}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (:func:`_forms`) replaced by
    ``<secret>``, longest first."""
    forms = {f for secret in secrets if secret for f in _forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "<secret>")
    return text


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():  # delta-seconds: digits only (float() would also take "1_0", "inf")
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": the time is UTC, of unknown local origin (RFC 5322)
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def classify(status: int, body: str, retry_after: float | None, label: str) -> SendResult:
    """The result of an HTTP answer with ``status``."""
    snippet = " ".join(body.split())[:_MAX_REASON_BODY]
    reason = f"{label}: HTTP {status}" + (f": {snippet}" if snippet else "")
    if 200 <= status < 300:
        return SendResult("ok", reason, status=status)
    if status == 429 or status == 408 or status >= 500:
        return SendResult("retryable", reason, retry_after_s=retry_after, status=status)
    return SendResult("permanent", reason, status=status)


async def post(
    session: aiohttp.ClientSession,
    url: str,
    data: bytes,
    *,
    content_type: str,
    timeout_s: float,
    label: str,
    now: float,
    secrets: Iterable[str] = (),
) -> SendResult:
    """POST ``data`` to ``url`` and classify the answer; never raises for network trouble.

    Args:
        label: names the hook in the reason, e.g. ``pagerduty hook "oncall" (https://host)``.
        now: wall-clock time, to read an HTTP-date ``Retry-After``.
        secrets: values to scrub from the reason.
    """
    secrets = tuple(secrets)
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(
                url,
                data=data,
                headers={"Content-Type": content_type, "User-Agent": _user_agent()},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                # Only the start of the answer matters for the reason; a huge body is not read.
                body = (await resp.content.read(_MAX_READ)).decode("utf-8", errors="replace")
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
                # Scrubbed before classify() cuts it: a secret across the cut would leak.
                result = classify(resp.status, scrub(body, secrets), retry_after, label)
    except TimeoutError:
        return SendResult("retryable", f"{label}: timed out after {timeout_s:g}s")
    except aiohttp.InvalidURL:
        return SendResult("permanent", f"{label}: invalid URL")
    except aiohttp.ClientError as exc:
        # aiohttp's messages may quote the URL; keep the exception's kind only (and errno text).
        detail = type(exc).__name__
        os_error = getattr(exc, "os_error", None)
        if isinstance(os_error, OSError) and os_error.strerror:
            detail += f": {os_error.strerror}"
        return SendResult("retryable", f"{label}: {detail}")
    return SendResult(
        result.outcome, scrub(result.reason, secrets), result.retry_after_s, result.status
    )


def json_bytes(doc: Any) -> bytes:
    """``doc`` as a UTF-8 JSON body (non-ASCII characters kept as they are)."""
    return json.dumps(doc, ensure_ascii=False).encode()


class HttpHook:
    """What the HTTP hooks (PagerDuty, Slack, webhook) share: their config, the session, the
    clock, and :meth:`post` with the hook's timeout."""

    max_batch: int = 1
    required: ClassVar[str] = "url"
    """The :class:`HookConfig` secret this kind of hook cannot do without."""

    def __init__(
        self,
        config: HookConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Clock,
        external_url: str = "",
    ) -> None:
        assert getattr(config, self.required) is not None
        self.name = config.name
        self._config = config
        self._session = session
        self._clock = clock
        self._external_url = external_url

    async def post(
        self,
        url: str,
        data: bytes,
        *,
        label: str,
        secret: str,
        content_type: str = "application/json",
    ) -> SendResult:
        """:func:`post` ``data`` to ``url`` within the hook's timeout, scrubbing ``secret``."""
        return await post(
            self._session,
            url,
            data,
            content_type=content_type,
            timeout_s=self._config.timeout_s,
            label=label,
            now=self._clock.wall(),
            secrets=(secret,),
        )


def _user_agent() -> str:
    from kpimon import __version__

    return f"kpimon/{__version__}"
