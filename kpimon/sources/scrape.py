"""Collecting samples once: the HTTP scrape of an exposition endpoint, and this host.

Owns the wire side of a scrape (PROTOCOLS.md §1.4): the request headers Prometheus sends
(``Accept``, ``Accept-Encoding: gzip``, ``User-Agent``, ``X-Prometheus-Scrape-Timeout-Seconds``),
one ``asyncio.timeout`` around connect and body, a body read in chunks and decompressed here with
a bound (so neither a large body nor a gzip bomb can exceed ``body_size_limit`` in memory), the
Content-Type choosing OpenMetrics or text parsing, and ``sample_limit``. It also runs the blocking
host collector off the event loop under a timeout.

Each ``collect()`` is one attempt: it returns a :class:`Batch` or raises
:class:`~kpimon.errors.ScrapeError` naming the target URL. Malformed lines do not fail a scrape;
they are counted and reported in ``Batch.issues``. Scheduling, staleness, the store and logging of
up/down transitions belong to :mod:`kpimon.scheduler`; parsing is the pure
:func:`kpimon.sources.exposition.parse`. Nothing here keeps state between collections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from numpy.typing import NDArray

from kpimon import __version__
from kpimon.errors import ScrapeError
from kpimon.labels import EMPTY, Labels, decode_key, make
from kpimon.sources.exposition import (
    ACCEPT_HEADER,
    Exposition,
    ParseIssue,
    content_is_openmetrics,
    parse,
)
from kpimon.sources.host import HostCollector, HostSamples

__all__ = [
    "PARSE_INLINE_MAX_BYTES",
    "USER_AGENT",
    "Batch",
    "HostSource",
    "HttpSource",
    "HttpTarget",
]

USER_AGENT: Final = f"kpimon/{__version__}"
"""The ``User-Agent`` kpimon scrapes with (Prometheus sends ``Prometheus/<version>``)."""

PARSE_INLINE_MAX_BYTES: Final = 256 << 10
"""Bodies up to this size are parsed on the event loop; larger ones in a worker thread.

Measured on a 2-core box: parsing costs ≈ 45 ms per MiB (whole) or ≈ 8 ms per MiB (selective),
a thread hop ≈ 0.15 ms. A typical node_exporter body (≈ 60 KiB) stays inline; past 256 KiB
(≈ 13 ms whole) the parse moves to a thread, where the GIL's switch interval lets the loop run
every few milliseconds instead of stalling for the whole parse.
"""

VALIDATE_EVERY: Final = 10
"""Every this many scrapes of a target (and its first) the whole payload is parsed and checked."""

_READ_CHUNK = 1 << 16
_INFLATE_STEP = 1 << 20  # decompress at most this much per zlib call, limit or no limit


@dataclass(frozen=True, slots=True)
class Batch:
    """What one collection yields: series keys and values, index-aligned, plus accounting.

    Attributes:
        keys: series keys (exposition syntax, e.g. ``b'up{job="x"}'``) of the samples kept
            (those whose metric name is wanted); read-only by convention.
        values: their values, ``values[i]`` belonging to ``keys[i]``.
        samples_total: samples in the payload before filtering by wanted names.
        malformed_total: malformed lines (or, for the host, failed readings) that were skipped.
        issues: the first few of those, with 1-based line numbers (0 when there is no line).
        body_bytes: size of the payload after decompression (0 for the host).
    """

    keys: list[bytes]
    values: NDArray[np.float64]
    samples_total: int
    malformed_total: int
    issues: tuple[ParseIssue, ...]
    body_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpTarget:
    """The definition of one HTTP scrape target; two equal targets scrape identically.

    ``sample_limit`` and ``body_size_limit`` of 0 mean no limit (as in Prometheus). ``wanted``
    is the set of metric names to keep (``None`` keeps all).
    """

    job: str
    url: str
    labels: Labels = EMPTY
    interval_s: float
    timeout_s: float
    sample_limit: int = 0
    body_size_limit: int = 0
    wanted: frozenset[bytes] | None = None
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"scrape URL must be http(s)://host[:port]/path, got {self.url!r}")
        if not self.interval_s > 0 or not self.timeout_s > 0:
            raise ValueError(
                f"{self.url}: interval and timeout must be > 0 "
                f"(got {self.interval_s!r}, {self.timeout_s!r})"
            )
        if self.sample_limit < 0 or self.body_size_limit < 0:
            raise ValueError(f"{self.url}: sample_limit and body_size_limit must be >= 0")


def _instance_of(url: str) -> str:
    """``host:port`` of a URL, as Prometheus' ``instance`` label (user info dropped)."""
    netloc = urlsplit(url).netloc
    return netloc.rpartition("@")[2]


def _format_seconds(seconds: float) -> str:
    """``10`` for 10.0, ``0.25`` for 0.25: Go's ``FormatFloat(s, 'f', -1, 64)`` style."""
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return text or "0"


class HttpSource:
    """One HTTP scrape target (a :class:`kpimon.sources.registry.Source`).

    Args:
        job: the job name; the target id is ``f"{job}/{url}"``.
        url: the full scrape URL (scheme, address, metrics path and params).
        labels: static target labels; ``job`` and ``instance`` (``host:port`` of the URL) are
            added unless given.
        interval_s: scrape interval.
        timeout_s: bound on the whole scrape, connect and body.
        sample_limit: more samples than this fails the scrape (0: no limit).
        body_size_limit: a body larger than this after decompression fails the scrape
            (0: no limit).
        session: the application's shared client session.
        wanted: metric names to keep (``None``: all).
        user_agent: the ``User-Agent`` header.

    Two sources are equal when their :class:`HttpTarget` definitions are; the session is not
    part of the definition.
    """

    __slots__ = ("_labels", "_last_full_malformed", "_previous", "_scrapes", "_session", "_target")

    def __init__(
        self,
        *,
        job: str,
        url: str,
        labels: Labels,
        interval_s: float,
        timeout_s: float,
        sample_limit: int,
        body_size_limit: int,
        session: aiohttp.ClientSession,
        wanted: frozenset[bytes] | None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._target = HttpTarget(
            job=job,
            url=url,
            labels=labels,
            interval_s=interval_s,
            timeout_s=timeout_s,
            sample_limit=sample_limit,
            body_size_limit=body_size_limit,
            wanted=wanted,
            user_agent=user_agent,
        )
        self._session = session
        self._labels = make({"job": job, "instance": _instance_of(url), **dict(labels)})
        self._scrapes = 0
        self._last_full_malformed = 0
        # The last parse per mode (selective or whole): its keys are known valid, which makes
        # the next parse of an unchanged series set a byte split instead of a regex match.
        self._previous: dict[bool, Exposition] = {}

    @property
    def target(self) -> HttpTarget:
        return self._target

    @property
    def id(self) -> str:
        return f"{self._target.job}/{self._target.url}"

    @property
    def url(self) -> str:
        return self._target.url

    @property
    def labels(self) -> Labels:
        return self._labels

    @property
    def interval_s(self) -> float:
        return self._target.interval_s

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HttpSource):
            return NotImplemented
        return self._target == other._target

    def __hash__(self) -> int:
        return hash(self._target)

    def __repr__(self) -> str:
        return f"HttpSource({self.id!r})"

    async def collect(self) -> Batch:
        """Scrape once.

        Raises:
            ScrapeError: connection failure, timeout, non-2xx status, body over the size limit,
                undecodable body, or more samples than ``sample_limit``; the message names the URL.
        """
        target = self._target
        url = target.url
        try:
            async with asyncio.timeout(target.timeout_s):
                content_type, body = await self._fetch()
        except TimeoutError:
            raise ScrapeError(
                url, f"scrape timed out after {_format_seconds(target.timeout_s)}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ScrapeError(url, f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise ScrapeError(url, f"{type(exc).__name__}: {exc}") from exc

        openmetrics = content_is_openmetrics(content_type)
        # Selective parsing checks only the lines of wanted metrics; the first scrape and every
        # VALIDATE_EVERY-th one parse the whole payload, so malformed lines of any metric are
        # found and reported too.
        validate = target.wanted is not None and self._scrapes % VALIDATE_EVERY == 0
        self._scrapes += 1
        wanted = None if validate else target.wanted
        previous = self._previous.get(wanted is None)
        if len(body) > PARSE_INLINE_MAX_BYTES:
            exposition = await asyncio.to_thread(
                parse, body, wanted, openmetrics=openmetrics, previous=previous
            )
        else:
            exposition = parse(body, wanted, openmetrics=openmetrics, previous=previous)
        self._previous[wanted is None] = exposition
        if target.sample_limit and exposition.samples_total > target.sample_limit:
            raise ScrapeError(
                url,
                f"sample limit exceeded: {exposition.samples_total} samples, "
                f"limit {target.sample_limit}",
            )
        keys, values = exposition.keys, exposition.values
        malformed, issues = exposition.malformed_total, exposition.issues
        if validate:
            assert target.wanted is not None
            keys, values = only_wanted(keys, values, target.wanted)
            self._last_full_malformed = malformed
        elif malformed < self._last_full_malformed:
            malformed = self._last_full_malformed  # as found by the last full validation
        return Batch(
            keys=keys,
            values=values,
            samples_total=exposition.samples_total,
            malformed_total=malformed,
            issues=issues,
            body_bytes=len(body),
        )

    async def _fetch(self) -> tuple[str | None, bytes]:
        target = self._target
        headers = {
            "Accept": ACCEPT_HEADER,
            "Accept-Encoding": "gzip",
            "User-Agent": target.user_agent,
            "X-Prometheus-Scrape-Timeout-Seconds": _format_seconds(target.timeout_s),
        }
        async with self._session.get(
            target.url,
            headers=headers,
            # Decompressed here, with a bound; aiohttp would inflate whole network chunks.
            auto_decompress=False,
            # The session's own timeout must not cut a scrape short, nor let it run longer.
            timeout=aiohttp.ClientTimeout(total=target.timeout_s),
        ) as resp:
            if not 200 <= resp.status < 300:
                reason = f" {resp.reason}" if resp.reason else ""
                raise ScrapeError(target.url, f"server returned HTTP status {resp.status}{reason}")
            body = await _read_body(resp, target.url, target.body_size_limit)
            return resp.headers.get(aiohttp.hdrs.CONTENT_TYPE), body


def _size_error(url: str, limit: int) -> ScrapeError:
    return ScrapeError(url, f"body size limit exceeded (limit {limit} bytes)")


async def _read_body(resp: aiohttp.ClientResponse, url: str, limit: int) -> bytes:
    """Read the body in chunks, decompressing gzip/deflate, never holding more than ``limit``.

    ``limit`` 0 means no limit.
    """
    encoding = resp.headers.get(aiohttp.hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if encoding in ("", "identity"):
        if limit and resp.content_length is not None and resp.content_length > limit:
            raise _size_error(url, limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if limit and size > limit:
                raise _size_error(url, limit)
            chunks.append(chunk)
        return b"".join(chunks)
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise ScrapeError(url, f"unsupported Content-Encoding {encoding!r} (asked for gzip)")
    inflater = _Inflater(url, wbits, limit)
    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
        inflater.feed(chunk)
    return inflater.finish()


class _Inflater:
    """Incremental gzip/deflate decoder with an output bound (multi-member gzip included)."""

    __slots__ = ("_chunks", "_d", "_fed", "_limit", "_size", "_url", "_wbits")

    def __init__(self, url: str, wbits: int, limit: int) -> None:
        self._url = url
        self._wbits = wbits
        self._limit = limit
        self._d = zlib.decompressobj(wbits)
        self._chunks: list[bytes] = []
        self._size = 0
        self._fed = False

    def feed(self, data: bytes) -> None:
        """Decompress ``data``; raise ScrapeError past the limit or on a corrupt stream."""
        self._fed = self._fed or bool(data)
        try:
            while True:
                if self._d.eof:  # a gzip member ended: another may follow
                    data = self._d.unused_data + data
                    if not data:
                        return
                    self._d = zlib.decompressobj(self._wbits)
                step = _INFLATE_STEP
                if self._limit:
                    step = min(step, self._limit - self._size + 1)
                out = self._d.decompress(data, step)
                self._size += len(out)
                if self._limit and self._size > self._limit:
                    raise _size_error(self._url, self._limit)
                self._chunks.append(out)
                data = self._d.unconsumed_tail
                # A full step may leave output pending inside zlib: go round again to drain it.
                if not data and len(out) < step and not self._d.eof:
                    return
        except zlib.error as exc:
            raise ScrapeError(self._url, f"invalid compressed body: {exc}") from None

    def finish(self) -> bytes:
        """The whole decompressed body; raise ScrapeError when the stream was cut short."""
        if self._fed and not self._d.eof:
            raise ScrapeError(self._url, "compressed body ends before its end marker")
        return b"".join(self._chunks)


# --- the host ------------------------------------------------------------------------------------


class _HostCollector(Protocol):
    def collect(self) -> HostSamples: ...


_T = TypeVar("_T")


def _metric_name(key: bytes) -> bytes:
    name = key.partition(b"{")[0].strip()
    if name or not key.startswith(b"{"):
        return name
    try:  # the quoted-name form {"my.metric", a="b"}
        return decode_key(key)[0].encode()
    except ValueError:
        return b""


def only_wanted(
    keys: list[bytes], values: NDArray[np.float64], wanted: frozenset[bytes]
) -> tuple[list[bytes], NDArray[np.float64]]:
    """The samples of ``keys``/``values`` whose metric name is wanted."""
    keep = [i for i, k in enumerate(keys) if _metric_name(k) in wanted]
    if len(keep) == len(keys):
        return keys, values
    return [keys[i] for i in keep], values[np.asarray(keep, dtype=np.intp)]


class HostSource:
    """This machine as a source (job ``host``, instance = hostname), id ``"host"``.

    The collector blocks (``statvfs`` can hang on a dead network mount), so each collection runs
    in its own daemon thread under ``asyncio.timeout(timeout_s)``. Not ``asyncio.to_thread``: a
    thread stuck in the kernel would hold a worker of the shared default executor for good and,
    at exit, ``asyncio.run`` would wait for it forever. An abandoned collection keeps running
    (the collector skips mounts still pending); past ``max_stuck`` abandoned collections,
    collections fail instead of starting yet another thread.

    Failed readings (``HostSamples.errors``) do not fail the collection: they are reported as
    issues (line 0) and counted in ``malformed_total``.
    """

    __slots__ = ("_collector", "_definition", "_labels", "_max_stuck", "_stuck")

    def __init__(
        self,
        *,
        interval_s: float,
        timeout_s: float,
        collector: _HostCollector | None = None,
        instance: str | None = None,
        labels: Labels = EMPTY,
        wanted: frozenset[bytes] | None = None,
        max_stuck: int = 4,
    ) -> None:
        if not interval_s > 0 or not timeout_s > 0:
            raise ValueError(f"host: interval and timeout must be > 0 ({interval_s}, {timeout_s})")
        self._collector: _HostCollector = HostCollector() if collector is None else collector
        instance = instance or socket.gethostname()
        self._labels = make({"job": "host", "instance": instance, **dict(labels)})
        self._definition = (interval_s, timeout_s, self._labels, wanted)
        self._max_stuck = max_stuck
        self._stuck = 0  # collections abandoned after a timeout that have not returned yet

    @property
    def id(self) -> str:
        return "host"

    @property
    def labels(self) -> Labels:
        return self._labels

    @property
    def interval_s(self) -> float:
        return self._definition[0]

    @property
    def timeout_s(self) -> float:
        return self._definition[1]

    @property
    def stuck(self) -> int:
        """Collections that timed out and whose thread has not returned yet."""
        return self._stuck

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HostSource):
            return NotImplemented
        return self._definition == other._definition

    def __hash__(self) -> int:
        return hash(self._definition)

    def __repr__(self) -> str:
        return f"HostSource(instance={dict(self._labels)['instance']!r})"

    async def collect(self) -> Batch:
        """Collect once.

        Raises:
            ScrapeError: the collection timed out, too many earlier ones are stuck, or the
                collector raised an OS error.
        """
        if self._stuck >= self._max_stuck:
            raise ScrapeError(
                "host", f"{self._stuck} earlier collections are still stuck; not starting another"
            )
        fut = _in_daemon_thread(self._collector.collect)
        fut.add_done_callback(_retrieve)  # an abandoned collection's error is not worth a warning
        try:
            async with asyncio.timeout(self.timeout_s):
                samples = await asyncio.shield(fut)
        except TimeoutError:
            self._stuck += 1
            fut.add_done_callback(self._unstick)
            raise ScrapeError(
                "host", f"collection timed out after {_format_seconds(self.timeout_s)}s"
            ) from None
        except OSError as exc:
            raise ScrapeError("host", f"{type(exc).__name__}: {exc}") from exc
        keys = samples.keys
        values = samples.values
        total = len(keys)
        wanted = self._definition[3]
        if wanted is not None:
            keys, values = only_wanted(keys, values, wanted)
        return Batch(
            keys=keys,
            values=values,
            samples_total=total,
            malformed_total=len(samples.errors),
            issues=tuple(ParseIssue(line=0, message=e) for e in samples.errors),
            body_bytes=0,
        )

    def _unstick(self, fut: asyncio.Future[HostSamples]) -> None:
        self._stuck -= 1


def _retrieve(fut: asyncio.Future[_T]) -> None:
    if not fut.cancelled():
        fut.exception()


def _in_daemon_thread(fn: Callable[[], _T]) -> asyncio.Future[_T]:
    """Run ``fn`` in a new daemon thread; the future completes on the running loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[_T] = loop.create_future()

    def set_result(result: _T) -> None:
        if not fut.done():
            fut.set_result(result)

    def set_exception(exc: BaseException) -> None:
        if not fut.done():
            fut.set_exception(exc)

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed over to the loop and raised there
            with contextlib.suppress(RuntimeError):  # the loop closed while this thread was stuck
                loop.call_soon_threadsafe(set_exception, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(set_result, result)

    threading.Thread(target=run, name="kpimon-host-collect", daemon=True).start()
    return fut
