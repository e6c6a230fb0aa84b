"""Blackbox-style probes: one HTTP(S) request or TCP connect per collection, as samples.

A :class:`ProbeSource` is a :class:`~kpimon.sources.Source` like a scrape target, scheduled by
:class:`kpimon.scheduler.ScrapeManager` at its own interval in its own task. Each
:meth:`ProbeSource.collect` runs one probe and always returns a :class:`Batch` of
blackbox_exporter's series (``probe_success`` 0 or 1, ``probe_duration_seconds``,
``probe_http_status_code``, ``probe_http_duration_seconds{phase}``,
``probe_ssl_earliest_cert_expiry``...); a failing probe is data (``probe_success 0``), not a
failed scrape, so it never raises. Its error is logged on the ``kpimon.probe`` logger once per
change (failed, failed differently, succeeded again), with the probe's name and instance.

Bounds: at most :data:`PROBE_CONCURRENCY` probes run at once per event loop (the others wait
for a slot; the wait is not part of the probe's timeout or duration), and each probe runs under
one ``asyncio.timeout(timeout)`` covering resolve, connect, TLS, request and body.

Phases of ``probe_http_duration_seconds`` (summed over redirect hops, as blackbox_exporter), from
aiohttp's request tracing and the TLS context:

* ``resolve``: DNS lookup (``on_dns_resolvehost_start`` → ``_end``; 0 for an IP address);
* ``connect``: TCP connect (``on_connection_create_start`` → the TLS handshake's start, or
  ``on_connection_create_end`` without TLS, less the lookup);
* ``tls``: TLS handshake (asyncio asks the context for its ``SSLObject`` when the TCP connection
  is up → ``on_connection_create_end``);
* ``processing``: request sent (``on_request_headers_sent`` / ``on_request_chunk_sent``) → the
  response's headers parsed (``on_request_redirect`` / ``on_request_end``);
* ``transfer``: the response's headers → its body read.

Every probe opens fresh connections (no keep-alive, no DNS cache), so each phase is measured
every time, as blackbox_exporter does.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import hashlib
import logging
import re
import socket
import ssl
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Final

import aiohttp
import numpy as np
from multidict import CIMultiDict

from kpimon import labels as labelset
from kpimon.clock import SYSTEM_CLOCK, Clock
from kpimon.config.probes import (
    MAX_REDIRECTS,
    HttpProbe,
    ProbeConfig,
    TcpProbe,
    TlsConfig,
    ssl_context,
)
from kpimon.labels import Labels
from kpimon.sources.scrape import USER_AGENT, Batch, only_wanted

__all__ = [
    "JOB",
    "PHASES",
    "PROBE_CONCURRENCY",
    "WINDOW_S",
    "ProbeSource",
    "der_not_after",
]

log = logging.getLogger("kpimon.probe")

JOB: Final = "probe"
"""The ``job`` label of every probe's series."""

PROBE_CONCURRENCY: Final = 32
"""Probes running at once per event loop; the others wait for a slot."""

PHASES: Final = ("resolve", "connect", "tls", "processing", "transfer")
"""The ``phase`` values of ``probe_http_duration_seconds``."""

WINDOW_S: Final = 30 * 86400
"""The window of ``kpimon_probe_success_ratio_30d``, kept in the probe in hourly buckets."""

WINDOW_KEY_PREFIX: Final = "probe-window:"
"""Journal keys of the probes' 30-day windows: this plus the probe's name."""

_BUCKET_S: Final = 3600
_WINDOW_BUCKETS: Final = WINDOW_S // _BUCKET_S
_READ_CHUNK: Final = 1 << 16

_current: ContextVar[_Trace | None] = ContextVar("kpimon_probe_trace", default=None)
_limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


class _TracingContext(ssl.SSLContext):
    """An SSL context that tells the running probe when its TLS handshake starts.

    asyncio calls :meth:`wrap_bio` once the TCP connection is established, right before the
    handshake; the ``SSLObject`` it returns is also where the peer's certificate is read.
    """

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        obj = super().wrap_bio(
            incoming,
            outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
        )
        trace = _current.get()
        if trace is not None:
            trace.tls_started(obj)
        return obj


_shared_contexts: dict[bool, ssl.SSLContext] = {}


def _context_for(tls: TlsConfig) -> ssl.SSLContext:
    """The context of ``tls``; file-less ones are shared (the system CAs are loaded once)."""
    if tls.ca_file or tls.cert_file:
        return ssl_context(tls, _TracingContext)
    ctx = _shared_contexts.get(tls.insecure_skip_verify)
    if ctx is None:
        ctx = _shared_contexts[tls.insecure_skip_verify] = ssl_context(tls, _TracingContext)
    return ctx


@dataclass(slots=True, eq=False)
class _Trace:
    """Phase durations of one probe, accumulated from tracing callbacks."""

    now: Callable[[], float]
    resolve: float = 0.0
    connect: float = 0.0
    tls: float = 0.0
    processing: float = 0.0
    transfer: float = 0.0
    ssl_object: ssl.SSLObject | None = None
    _dns_start: float | None = None
    _dns_in_connect: float = 0.0
    _conn_start: float | None = None
    _tls_start: float | None = None
    _sent: float | None = None

    def dns_start(self) -> None:
        self._dns_start = self.now()

    def dns_end(self) -> None:
        if self._dns_start is not None:
            spent = self.now() - self._dns_start
            self.resolve += spent
            self._dns_in_connect += spent
            self._dns_start = None

    def connect_start(self) -> None:
        self._conn_start = self.now()
        self._dns_in_connect = 0.0
        self._tls_start = None

    def tls_started(self, obj: ssl.SSLObject) -> None:
        self._tls_start = self.now()
        self.ssl_object = obj

    def connect_end(self) -> None:
        if self._conn_start is None:
            return
        end = self.now()
        tcp_end = end if self._tls_start is None else self._tls_start
        self.connect += max(0.0, tcp_end - self._conn_start - self._dns_in_connect)
        if self._tls_start is not None:
            self.tls += end - self._tls_start
        self._conn_start = None

    def sent(self) -> None:
        self._sent = self.now()

    def answered(self) -> None:
        if self._sent is not None:
            self.processing += self.now() - self._sent
            self._sent = None


_Hook = Callable[[aiohttp.ClientSession, SimpleNamespace, object], Awaitable[None]]


def _trace_config() -> aiohttp.TraceConfig:
    tc = aiohttp.TraceConfig()

    def hook(action: Callable[[_Trace], None]) -> _Hook:
        async def on_event(
            _session: aiohttp.ClientSession, ctx: SimpleNamespace, _params: object
        ) -> None:
            trace = ctx.trace_request_ctx
            if isinstance(trace, _Trace):
                action(trace)

        return on_event

    tc.on_dns_resolvehost_start.append(hook(_Trace.dns_start))
    tc.on_dns_resolvehost_end.append(hook(_Trace.dns_end))
    tc.on_connection_create_start.append(hook(_Trace.connect_start))
    tc.on_connection_create_end.append(hook(_Trace.connect_end))
    tc.on_request_headers_sent.append(hook(_Trace.sent))
    tc.on_request_chunk_sent.append(hook(_Trace.sent))
    tc.on_request_redirect.append(hook(_Trace.answered))
    tc.on_request_end.append(hook(_Trace.answered))
    return tc


# --- certificates --------------------------------------------------------------------------------


def _tlv(data: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``data[i]``."""
    tag, length = data[i], data[i + 1]
    i += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[i : i + n], "big")
        i += n
    if i + length > len(data):
        raise ValueError("truncated DER")
    return tag, i, i + length


def der_not_after(der: bytes) -> float:
    """The ``notAfter`` of a DER X.509 certificate, as Unix seconds.

    Raises:
        ValueError: not a certificate this can read.
    """
    try:
        _, cert, _ = _tlv(der, 0)  # Certificate
        _, i, _ = _tlv(der, cert)  # tbsCertificate
        tag, _, end = _tlv(der, i)
        if tag == 0xA0:  # [0] version
            i = end
        for _ in range(3):  # serialNumber, signature, issuer
            _, _, i = _tlv(der, i)
        _, validity, _ = _tlv(der, i)
        _, _, after = _tlv(der, validity)  # notBefore
        tag, start, end = _tlv(der, after)
        text = der[start:end].decode("ascii")
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a DER certificate: {exc}") from None
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ (RFC 5280: YY < 50 is 20YY)
        year = int(text[:2])
        text = f"{2000 + year if year < 50 else 1900 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError(f"unexpected time tag 0x{tag:02x}")
    if not re.fullmatch(r"\d{14}Z", text):
        raise ValueError(f"unexpected time {text!r}")
    parts = [int(text[a:b]) for a, b in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14))]
    return float(calendar.timegm((*parts, 0, 0, 0)))


def _earliest_expiry(obj: ssl.SSLObject | None) -> float | None:
    """The earliest ``notAfter`` of the certificates the peer presented.

    Python 3.13+ exposes the chain as sent (``get_unverified_chain``, what blackbox_exporter
    reads); before that only the leaf certificate is available.
    """
    if obj is None:
        return None
    ders: list[bytes] = []
    chain = getattr(obj, "get_unverified_chain", None)
    if chain is not None:
        try:
            ders = [c for c in chain() or () if isinstance(c, bytes)]
        except (ssl.SSLError, ValueError):
            ders = []
    if not ders:
        try:
            leaf = obj.getpeercert(binary_form=True)
        except (ssl.SSLError, ValueError):
            return None
        ders = [leaf] if leaf else []
    expiries: list[float] = []
    for der in ders:
        try:
            expiries.append(der_not_after(der))
        except ValueError:
            continue
    return min(expiries) if expiries else None


# --- the source ----------------------------------------------------------------------------------


class _Window:
    """Attempts and successes over the last :data:`WINDOW_S`, in hourly buckets."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()  # [hour, attempts, successes]

    def pack(self) -> bytes:
        """The buckets as little-endian int64 triples (hour, attempts, successes)."""
        return np.array(list(self._buckets), dtype="<i8").reshape(-1, 3).tobytes()

    def merge(self, data: bytes) -> None:
        """Add the buckets :meth:`pack` made (a journaled copy from before a restart): counts
        of the same hour add up (they are different attempts); the window keeps its length.

        Raises:
            ValueError: ``data`` is not such buckets.
        """
        if len(data) % 24:
            raise ValueError("not a probe window")
        rows = np.frombuffer(data, dtype="<i8").reshape(-1, 3).tolist()
        merged: dict[int, list[int]] = {}
        for hour, attempts, successes in [*rows, *self._buckets]:
            b = merged.setdefault(hour, [hour, 0, 0])
            b[1] += attempts
            b[2] += successes
        if not merged:
            return
        newest = max(merged)
        self._buckets = deque(merged[h] for h in sorted(merged) if h > newest - _WINDOW_BUCKETS)

    def add(self, t: float, ok: bool) -> tuple[float, int]:
        """Count one probe at wall time ``t``; the window's success ratio and attempts."""
        hour = int(t // _BUCKET_S)
        if not self._buckets or hour > self._buckets[-1][0]:
            self._buckets.append([hour, 0, 0])
        bucket = self._buckets[-1]  # a clock stepping back counts in the newest bucket
        bucket[1] += 1
        bucket[2] += ok
        while self._buckets[0][0] <= hour - _WINDOW_BUCKETS:
            self._buckets.popleft()
        attempts = sum(b[1] for b in self._buckets)
        return sum(b[2] for b in self._buckets) / attempts, attempts


@dataclass(slots=True)
class _Outcome:
    """What one probe found; turned into samples by :meth:`ProbeSource._batch`."""

    error: str | None = None
    status: int = 0
    content_length: int = -1
    body_length: int = 0
    redirects: int = 0
    version: float = 0.0
    tls: bool = False
    regex_failed: bool = False
    cert_expiry: float | None = None
    extra: list[tuple[bytes, float]] = field(default_factory=list)


class ProbeSource:
    """One configured probe (a :class:`kpimon.sources.Source`), id ``probe/<name>``.

    Target labels: ``job="probe"``, ``instance`` (the URL without user info, or the TCP
    ``host:port``), ``probe`` (the name) and the probe's own ``labels``.

    Args:
        config: the probe's definition.
        wanted: metric names to keep (None: all).
        clock: wall time for the 30-day window.
        limit: the semaphore bounding concurrent probes (default: one per event loop of
            :data:`PROBE_CONCURRENCY` slots).

    Two sources are equal when their configs and wanted names are.
    """

    __slots__ = (
        "_clock",
        "_config",
        "_context",
        "_context_error",
        "_labels",
        "_last_error",
        "_limit",
        "_must",
        "_must_not",
        "_wanted",
        "_window",
    )

    def __init__(
        self,
        config: ProbeConfig,
        *,
        wanted: frozenset[bytes] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        limit: asyncio.Semaphore | None = None,
    ) -> None:
        self._config = config
        self._wanted = wanted
        self._clock = clock
        self._limit = limit
        self._labels = labelset.make(
            {**dict(config.labels), "job": JOB, "instance": config.instance, "probe": config.name}
        )
        tls = config.http.tls_config if config.http is not None else TlsConfig()
        if config.tcp is not None:
            tls = config.tcp.tls_config
        self._context: ssl.SSLContext | None = None
        self._context_error: str | None = None
        if config.http is not None or (config.tcp is not None and config.tcp.tls):
            try:
                self._context = _context_for(tls)
            except (OSError, ssl.SSLError) as exc:  # the files changed since the config check
                self._context_error = f"cannot load the TLS files: {exc}"
        http = config.http
        self._must_not = [re.compile(r) for r in http.fail_if_body_matches_regexp] if http else []
        self._must = [re.compile(r) for r in http.fail_if_body_not_matches_regexp] if http else []
        self._last_error: str | None = None
        self._window = _Window()

    @property
    def id(self) -> str:
        return f"{JOB}/{self._config.name}"

    @property
    def labels(self) -> Labels:
        return self._labels

    @property
    def interval_s(self) -> float:
        return self._config.interval_s

    @property
    def config(self) -> ProbeConfig:
        return self._config

    @property
    def last_error(self) -> str | None:
        """The error of the latest probe, None when it succeeded (or none ran yet)."""
        return self._last_error

    @property
    def window_key(self) -> str:
        """The journal key of this probe's 30-day window (:mod:`kpimon.journal.auxstate`)."""
        return WINDOW_KEY_PREFIX + self._config.name

    @property
    def window_fingerprint(self) -> str:
        """What the window counts: a journaled window is restored only into a probe of the
        same name, kind and instance."""
        text = repr((self._config.name, self._config.kind, self._config.instance, _BUCKET_S))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def window_data(self) -> bytes:
        """The 30-day window's buckets, to journal."""
        return self._window.pack()

    def restore_window(self, data: bytes) -> None:
        """Add a journaled copy of the window (from before a restart) to this one.

        Raises:
            ValueError: ``data`` is not a window.
        """
        self._window.merge(data)

    def keep_window_of(self, running: ProbeSource) -> None:
        """Take over the 30-day window of ``running``, the probe this one replaces at a
        reload, when the definition is the same (only the wanted metric names changed)."""
        if running._config == self._config:
            self._window = running._window

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProbeSource):
            return NotImplemented
        return (self._config, self._wanted) == (other._config, other._wanted)

    def __hash__(self) -> int:
        return hash((self._config, self._wanted))

    def __repr__(self) -> str:
        return f"ProbeSource({self._config.name!r})"

    async def collect(self) -> Batch:
        """Probe once; a failed probe is ``probe_success 0``, never an exception."""
        limit = self._limit
        if limit is None:
            loop = asyncio.get_running_loop()
            limit = _limits.get(loop)
            if limit is None:
                limit = _limits[loop] = asyncio.Semaphore(PROBE_CONCURRENCY)
        async with limit:
            t = self._clock.wall()
            loop = asyncio.get_running_loop()
            trace = _Trace(loop.time)
            outcome = _Outcome()
            start = loop.time()
            token = _current.set(trace)
            try:
                await self._probe(trace, outcome)
            except Exception as exc:  # a bug must not stop the probe's loop
                outcome.error = f"unexpected {type(exc).__name__}: {exc}"
                if outcome.error != self._last_error:  # a traceback once, not every interval
                    log.error("probe %s: unexpected error", self._config.name, exc_info=exc)
            finally:
                _current.reset(token)
            duration = loop.time() - start
        self._log(outcome.error)
        return self._batch(trace, outcome, duration, t)

    async def _probe(self, trace: _Trace, outcome: _Outcome) -> None:
        config = self._config
        if self._context_error is not None:
            outcome.error = self._context_error
            return
        try:
            async with asyncio.timeout(config.timeout_s):
                if config.http is not None:
                    await self._http(config.http, trace, outcome)
                else:
                    assert config.tcp is not None
                    await self._tcp(config.tcp, trace, outcome)
        except TimeoutError:
            outcome.error = f"timed out after {config.timeout_s:g}s"
        except aiohttp.TooManyRedirects:
            outcome.error = f"more than {MAX_REDIRECTS} redirects"
        except (aiohttp.ClientError, OSError) as exc:
            outcome.error = _describe(exc)

    async def _http(self, p: HttpProbe, trace: _Trace, outcome: _Outcome) -> None:
        connector = aiohttp.TCPConnector(
            ssl=self._context if self._context is not None else True,
            force_close=True,  # fresh connections: every phase is measured every time
            use_dns_cache=False,
            limit=0,
        )
        headers: CIMultiDict[str] = CIMultiDict(p.headers)
        headers.setdefault("User-Agent", USER_AGENT)
        async with (
            aiohttp.ClientSession(
                connector=connector,
                trace_configs=[_trace_config()],
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),  # the probe's own timeout bounds it
            ) as session,
            session.request(
                p.method,
                p.url,
                headers=headers,
                data=None if p.body is None else p.body.encode(),
                allow_redirects=p.follow_redirects,
                max_redirects=MAX_REDIRECTS,
                server_hostname=p.tls_config.server_name,
                trace_request_ctx=trace,
            ) as resp,
        ):
            answered = trace.now()
            outcome.status = resp.status
            outcome.redirects = len(resp.history)
            if resp.version is not None:
                outcome.version = float(f"{resp.version.major}.{resp.version.minor}")
            outcome.content_length = resp.content_length if resp.content_length is not None else -1
            outcome.tls = resp.url.scheme == "https"
            if outcome.tls:
                outcome.cert_expiry = _earliest_expiry(trace.ssl_object)
            keep = bool(self._must or self._must_not)
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(_READ_CHUNK):
                size += len(chunk)
                if p.body_size_limit and size > p.body_size_limit:
                    outcome.body_length = size
                    outcome.error = f"body larger than body_size_limit ({p.body_size_limit} bytes)"
                    return
                if keep:
                    chunks.append(chunk)
            outcome.body_length = size
            trace.transfer += trace.now() - answered
        outcome.error = self._check_http(p, outcome, b"".join(chunks))

    def _check_http(self, p: HttpProbe, outcome: _Outcome, body: bytes) -> str | None:
        status = outcome.status
        if p.valid_status_codes:
            if status not in p.valid_status_codes:
                codes = ", ".join(str(c) for c in p.valid_status_codes)
                return f"status code {status} not in valid_status_codes ({codes})"
        elif not 200 <= status < 300:
            return f"status code {status} is not 2xx"
        if p.fail_if_ssl and outcome.tls:
            return "answered over TLS (fail_if_ssl)"
        if p.fail_if_not_ssl and not outcome.tls:
            return "answered without TLS (fail_if_not_ssl)"
        if self._must_not or self._must:
            text = body.decode("utf-8", "replace")
            for rx in self._must_not:
                if rx.search(text):
                    outcome.regex_failed = True
                    return f"body matched fail_if_body_matches_regexp {rx.pattern!r}"
            for rx in self._must:
                if not rx.search(text):
                    outcome.regex_failed = True
                    return f"body did not match fail_if_body_not_matches_regexp {rx.pattern!r}"
        return None

    async def _tcp(self, p: TcpProbe, trace: _Trace, outcome: _Outcome) -> None:
        host, _, port_text = p.address.rpartition(":")
        host = host.strip("[]")
        port = int(port_text)
        loop = asyncio.get_running_loop()
        trace.dns_start()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        trace.dns_end()
        use_tls = p.tls and self._context is not None
        error: OSError | None = None
        for family, _, _, _, sockaddr in infos:
            trace.connect_start()
            try:
                _, writer = await asyncio.open_connection(
                    str(sockaddr[0]),
                    int(sockaddr[1]),
                    family=family,
                    ssl=self._context if use_tls else None,
                    server_hostname=(p.tls_config.server_name or host) if use_tls else None,
                )
            except OSError as exc:  # ssl.SSLError included
                error = exc
                continue
            trace.connect_end()
            outcome.tls = use_tls
            if use_tls:
                outcome.cert_expiry = _earliest_expiry(writer.get_extra_info("ssl_object"))
            writer.close()
            with contextlib.suppress(OSError):  # connected: how it ends does not matter
                await writer.wait_closed()
            return
        if error is not None:
            raise error
        outcome.error = f"{host} resolved to no address"

    def _batch(self, trace: _Trace, outcome: _Outcome, duration: float, t: float) -> Batch:
        ok = outcome.error is None
        ratio, attempts = self._window.add(t, ok)
        samples: list[tuple[bytes, float]] = [
            (b"probe_success", 1.0 if ok else 0.0),
            (b"probe_duration_seconds", duration),
            (b"probe_dns_lookup_time_seconds", trace.resolve),
        ]
        if self._config.http is not None:
            phases = (trace.resolve, trace.connect, trace.tls, trace.processing, trace.transfer)
            samples.extend(
                (labelset.format_key("probe_http_duration_seconds", {"phase": name}), value)
                for name, value in zip(PHASES, phases, strict=True)
            )
            samples.extend(
                [
                    (b"probe_http_status_code", float(outcome.status)),
                    (b"probe_http_content_length", float(outcome.content_length)),
                    (b"probe_http_uncompressed_body_length", float(outcome.body_length)),
                    (b"probe_http_redirects", float(outcome.redirects)),
                    (b"probe_http_ssl", 1.0 if outcome.tls else 0.0),
                    (b"probe_http_version", outcome.version),
                    (b"probe_failed_due_to_regex", 1.0 if outcome.regex_failed else 0.0),
                ]
            )
        if outcome.cert_expiry is not None:
            samples.append((b"probe_ssl_earliest_cert_expiry", outcome.cert_expiry))
        samples.append((b"kpimon_probe_success_ratio_30d", ratio))
        samples.append((b"kpimon_probe_attempts_30d", float(attempts)))
        keys = [k for k, _ in samples]
        values = np.array([v for _, v in samples], dtype=np.float64)
        if self._wanted is not None:
            keys, values = only_wanted(keys, values, self._wanted)
        return Batch(
            keys=keys,
            values=values,
            samples_total=len(samples),
            malformed_total=0,
            issues=(),
            body_bytes=outcome.body_length,
        )

    def _log(self, error: str | None) -> None:
        """Log the outcome when it differs from the previous one."""
        if error == self._last_error:
            return
        name, instance = self._config.name, self._config.instance
        if error is None:
            log.info("probe %s (%s) succeeds again", name, instance)
        else:
            log.warning("probe %s (%s) failed: %s", name, instance, error)
        self._last_error = error


def _describe(exc: BaseException) -> str:
    """A one-line reason for a failed connection or request."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"certificate verification failed: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "cannot connect: connection refused"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text
