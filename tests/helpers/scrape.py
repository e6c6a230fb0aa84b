"""Test helpers for the scrape client and the scheduler.

- :class:`ExpositionServer`: a real aiohttp server on 127.0.0.1:0 serving whatever the test sets
  (body, Content-Type, status, gzip), recording request headers, and able to stall before the
  headers or in the middle of the body until the test ends.
- :class:`RecordingStore`: a plain recorder of the store interface the scheduler feeds
  (``ingest``/``mark_stale``/``drop_target``).
- :class:`ScriptedSource`: a source whose outcome the test sets between ticks, timed with the
  test's clock.
- :func:`refused_url`: a loopback URL nothing listens on (the port stays reserved).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from kpimon.clock import Clock
from kpimon.labels import Labels, make
from kpimon.sources.exposition import ParseIssue
from kpimon.sources.scrape import Batch

TEXT_CT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CT = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class ExpositionServer:
    """An exposition endpoint on 127.0.0.1 that the test reprograms between scrapes.

    Use as ``async with ExpositionServer() as server:``; ``server.url`` is the scrape URL.
    """

    def __init__(self) -> None:
        self.payload = b""
        self.status = 200
        self.headers: dict[str, str] = {"Content-Type": TEXT_CT}
        self.stall: Literal["headers", "body"] | None = None
        self.chunked = False  # no Content-Length: the body is sent with chunked encoding
        self.requests: list[CIMultiDict[str]] = []
        self._release = asyncio.Event()
        self._server: TestServer | None = None
        self.port = 0

    def respond(
        self,
        body: bytes,
        *,
        content_type: str | None = TEXT_CT,
        status: int = 200,
        encoding: Literal["gzip"] | None = None,
    ) -> None:
        """Serve ``body`` from now on (gzip-compressed on the wire if asked)."""
        self.status = status
        self.headers = {}
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        if encoding == "gzip":
            self.headers["Content-Encoding"] = "gzip"
            body = gzip.compress(body, compresslevel=6)
        self.payload = body

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(CIMultiDict(request.headers))
        if self.stall == "headers":
            await self._release.wait()
            return web.Response(status=503)
        resp = web.StreamResponse(status=self.status, headers=self.headers)
        if not self.chunked:
            resp.content_length = len(self.payload)
        await resp.prepare(request)
        if self.stall == "body":
            await resp.write(self.payload[: len(self.payload) // 2])
            await self._release.wait()
            return resp
        await resp.write(self.payload)
        await resp.write_eof()
        return resp

    async def __aenter__(self) -> ExpositionServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1", access_log=None)
        await self._server.start_server()
        assert self._server.port is not None
        self.port = self._server.port
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._release.set()
        if self._server is not None:
            await self._server.close()


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/metrics"


@dataclass(frozen=True, slots=True)
class StoreCall:
    method: str
    target: str
    t: float
    labels: Labels | None = None
    keys: tuple[bytes, ...] = ()
    values: tuple[float, ...] = ()


class RecordingStore:
    """Records what the scheduler does to the store; ``wait_for`` waits for a number of calls."""

    def __init__(self) -> None:
        self.calls: list[StoreCall] = []
        self._changed = asyncio.Event()

    def _record(self, call: StoreCall) -> None:
        self.calls.append(call)
        self._changed.set()

    def ingest(
        self, target: str, target_labels: Labels, keys: list[bytes], values: Any, t: float
    ) -> None:
        self._record(
            StoreCall("ingest", target, t, target_labels, tuple(keys), tuple(values.tolist()))
        )

    def mark_stale(self, target: str, t: float) -> None:
        self._record(StoreCall("mark_stale", target, t))

    def drop_target(self, target: str, t: float) -> None:
        self._record(StoreCall("drop_target", target, t))

    def of(self, method: str, target: str | None = None) -> list[StoreCall]:
        return [c for c in self.calls if c.method == method and target in (None, c.target)]

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait (real time, bounded) until at least ``count`` calls were recorded."""
        async with asyncio.timeout(timeout_s):
            while len(self.calls) < count:
                self._changed.clear()
                await self._changed.wait()


def batch(
    samples: dict[bytes, float] | None = None,
    *,
    malformed: tuple[ParseIssue, ...] = (),
    samples_total: int | None = None,
) -> Batch:
    """A Batch of ``samples`` (key -> value) with the given malformed-line issues."""
    samples = {b"up": 1.0} if samples is None else samples
    return Batch(
        keys=list(samples),
        values=np.array(list(samples.values()), dtype=np.float64),
        samples_total=len(samples) if samples_total is None else samples_total,
        malformed_total=len(malformed),
        issues=malformed,
        body_bytes=0,
    )


class ScriptedSource:
    """A source whose next outcome the test sets: ``outcome`` is a Batch or an exception.

    ``duration_s`` of the test clock passes inside every collection. ``starts`` records the
    monotonic time each collection started. Equal when id, interval, labels and ``version`` are.
    """

    def __init__(
        self,
        source_id: str,
        clock: Clock,
        *,
        interval_s: float = 15.0,
        labels: Labels | None = None,
        duration_s: float = 0.0,
        version: int = 0,
    ) -> None:
        self._id = source_id
        self._clock = clock
        self._interval_s = interval_s
        self._labels = make({"job": "test", "instance": source_id}) if labels is None else labels
        self.duration_s = duration_s
        self.version = version
        self.outcome: Batch | BaseException = batch()
        self.starts: list[float] = []
        self.walls: list[float] = []

    @property
    def id(self) -> str:
        return self._id

    @property
    def labels(self) -> Labels:
        return self._labels

    @property
    def interval_s(self) -> float:
        return self._interval_s

    def _definition(self) -> tuple[object, ...]:
        return (self._id, self._interval_s, self._labels, self.version)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScriptedSource):
            return NotImplemented
        return self._definition() == other._definition()

    def __hash__(self) -> int:
        return hash(self._definition())

    async def collect(self) -> Batch:
        self.starts.append(self._clock.monotonic())
        self.walls.append(self._clock.wall())
        if self.duration_s:
            await self._clock.sleep(self.duration_s)
        if isinstance(self.outcome, BaseException):
            raise self.outcome.with_traceback(None)  # a fresh traceback each time
        return self.outcome
