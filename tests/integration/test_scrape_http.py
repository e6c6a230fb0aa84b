"""HttpSource against real aiohttp servers on 127.0.0.1: formats, compression, failures, limits.

Only the two timeout tests wait on real time (0.2 s each): a scrape timeout is a socket timeout.
"""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from kpimon import __version__
from kpimon.errors import ScrapeError
from kpimon.labels import make
from kpimon.scheduler import ScrapeManager
from kpimon.sources.exposition import ACCEPT_HEADER
from kpimon.sources.scrape import (
    PARSE_INLINE_MAX_BYTES,
    VALIDATE_EVERY,
    HttpSource,
    HttpTarget,
)
from kpimon.testing import FakeClock
from tests.helpers.scrape import (
    OPENMETRICS_CT,
    TEXT_CT,
    ExpositionServer,
    RecordingStore,
    refused_url,
)

TEXT = b"""\
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.25
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5
node_cpu_seconds_total{cpu="0",mode="user"} 56.75
"""
TEXT_KEYS = [
    b"node_load1",
    b'node_cpu_seconds_total{cpu="0",mode="idle"}',
    b'node_cpu_seconds_total{cpu="0",mode="user"}',
]
OPENMETRICS = b"""\
# TYPE node_load1 gauge
node_load1 0.25
# TYPE node_cpu_seconds counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5
node_cpu_seconds_total{cpu="0",mode="user"} 56.75
# EOF
"""


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(name="server")
async def _server() -> AsyncIterator[ExpositionServer]:
    async with ExpositionServer() as server:
        yield server


def source_for(
    url: str,
    session: aiohttp.ClientSession,
    *,
    timeout_s: float = 5.0,
    sample_limit: int = 0,
    body_size_limit: int = 0,
    wanted: frozenset[bytes] | None = None,
) -> HttpSource:
    return HttpSource(
        job="node",
        url=url,
        labels=make({"env": "test"}),
        interval_s=15.0,
        timeout_s=timeout_s,
        sample_limit=sample_limit,
        body_size_limit=body_size_limit,
        session=session,
        wanted=wanted,
    )


# --- what a target serves ------------------------------------------------------------------------


async def test_text_format(server: ExpositionServer, session: aiohttp.ClientSession) -> None:
    server.respond(TEXT, content_type=TEXT_CT)
    batch = await source_for(server.url(), session).collect()
    assert batch.keys == TEXT_KEYS
    assert batch.values.tolist() == [0.25, 1234.5, 56.75]
    assert (batch.samples_total, batch.malformed_total, batch.issues) == (3, 0, ())
    assert batch.body_bytes == len(TEXT)


async def test_wanted_names_only_are_kept(
    server: ExpositionServer, session: aiohttp.ClientSession
) -> None:
    server.respond(TEXT)
    batch = await source_for(server.url(), session, wanted=frozenset({b"node_load1"})).collect()
    assert batch.keys == [b"node_load1"]
    assert batch.samples_total == 3


async def test_content_type_chooses_openmetrics(
    server: ExpositionServer, session: aiohttp.ClientSession
) -> None:
    source = source_for(server.url(), session)
    server.respond(OPENMETRICS, content_type=OPENMETRICS_CT)
    batch = await source.collect()
    assert batch.keys == TEXT_KEYS
    assert batch.malformed_total == 0

    # Without "# EOF", OpenMetrics reports a possibly truncated payload; the text format does not.
    cut = OPENMETRICS.replace(b"# EOF\n", b"")
    server.respond(cut, content_type=OPENMETRICS_CT)
    batch = await source.collect()
    assert batch.keys == TEXT_KEYS
    assert batch.malformed_total == 1
    server.respond(cut, content_type=TEXT_CT)
    assert (await source.collect()).malformed_total == 0
    server.respond(cut, content_type=None)  # no Content-Type: the text format
    assert (await source.collect()).malformed_total == 0


@pytest.mark.parametrize("members", [1, 2])
async def test_gzip(server: ExpositionServer, session: aiohttp.ClientSession, members: int) -> None:
    if members == 1:
        server.respond(TEXT, encoding="gzip")
    else:  # a gzip stream of two members is one body
        server.respond(b"")
        server.headers["Content-Encoding"] = "gzip"
        server.payload = gzip.compress(TEXT[:100]) + gzip.compress(TEXT[100:])
    batch = await source_for(server.url(), session).collect()
    assert batch.keys == TEXT_KEYS
    assert batch.body_bytes == len(TEXT)


async def test_deflate(server: ExpositionServer, session: aiohttp.ClientSession) -> None:
    server.respond(b"")
    server.headers["Content-Encoding"] = "deflate"
    server.payload = zlib.compress(TEXT)
    assert (await source_for(server.url(), session).collect()).keys == TEXT_KEYS


@pytest.mark.parametrize(
    ("payload", "encoding", "message"),
    [
        (b"not gzip at all", "gzip", "invalid compressed body"),
        (gzip.compress(TEXT)[:-12], "gzip", "ends before its end marker"),
        (TEXT, "br", "unsupported Content-Encoding 'br'"),
    ],
)
async def test_undecodable_bodies_fail(
    server: ExpositionServer,
    session: aiohttp.ClientSession,
    payload: bytes,
    encoding: str,
    message: str,
) -> None:
    server.respond(b"")
    server.headers["Content-Encoding"] = encoding
    server.payload = payload
    with pytest.raises(ScrapeError, match=message) as info:
        await source_for(server.url(), session).collect()
    assert info.value.url == server.url()


async def test_malformed_lines_are_reported_not_fatal(
    server: ExpositionServer, session: aiohttp.ClientSession
) -> None:
    body = b'a 1\nb 2\nthis is not a sample\nc 3\nd{x="1" 4\ne 5\n'
    server.respond(body)
    batch = await source_for(server.url(), session).collect()
    assert batch.keys == [b"a", b"b", b"c", b"e"]
    assert batch.malformed_total == 2
    assert [issue.line for issue in batch.issues] == [3, 5]
    assert all(issue.message for issue in batch.issues)


async def test_malformed_lines_of_unread_metrics_are_found_by_periodic_validation(
    server: ExpositionServer, session: aiohttp.ClientSession
) -> None:
    body = b"a 1\nthis is not a sample\nb 2\n"
    server.respond(body)
    source = source_for(server.url(), session, wanted=frozenset({b"b"}))
    seen = []
    for _ in range(VALIDATE_EVERY + 1):
        batch = await source.collect()
        assert batch.keys == [b"b"]  # validation scrapes keep only wanted names too
        seen.append((batch.malformed_total, [i.line for i in batch.issues]))
    # The first and the (VALIDATE_EVERY+1)-th scrape parse everything and report line 2; in
    # between, the count found by the last validation is carried, without line details.
    assert seen[0] == (1, [2])
    assert seen[1:VALIDATE_EVERY] == [(1, [])] * (VALIDATE_EVERY - 1)
    assert seen[VALIDATE_EVERY] == (1, [2])
    server.respond(b"a 1\nb 2\n")
    for _ in range(VALIDATE_EVERY - 1):
        await source.collect()
    assert (await source.collect()).malformed_total == 0  # fixed payload: cleared at validation


async def test_a_large_body_is_parsed_off_the_loop_all_the_same(
    server: ExpositionServer, session: aiohttp.ClientSession
) -> None:
    line = b'http_requests_total{code="200",handler="/api/v1/query",instance="i-%07d"} %d\n'
    n = PARSE_INLINE_MAX_BYTES // 60
    body = b"".join(line % (i, i) for i in range(n))
    assert len(body) > PARSE_INLINE_MAX_BYTES
    server.respond(body, encoding="gzip")
    batch = await source_for(server.url(), session).collect()
    assert batch.samples_total == len(batch.keys) == n
    assert batch.values[-1] == n - 1


# --- the request kpimon sends --------------------------------------------------------------------


async def test_request_headers(server: ExpositionServer, session: aiohttp.ClientSession) -> None:
    server.respond(TEXT)
    await source_for(server.url("/metrics?module=x"), session, timeout_s=2.5).collect()
    (headers,) = server.requests
    assert headers["Accept"] == ACCEPT_HEADER
    assert headers["Accept-Encoding"] == "gzip"
    assert headers["User-Agent"] == f"kpimon/{__version__}"
    assert headers["X-Prometheus-Scrape-Timeout-Seconds"] == "2.5"
    await source_for(server.url(), session, timeout_s=10).collect()
    assert server.requests[1]["X-Prometheus-Scrape-Timeout-Seconds"] == "10"


def test_identity_labels_and_equality(session: aiohttp.ClientSession) -> None:
    url = "http://127.0.0.1:9100/metrics"
    source = source_for(url, session)
    assert source.id == f"node/{url}"
    assert source.labels == make({"env": "test", "instance": "127.0.0.1:9100", "job": "node"})
    assert source == source_for(url, session)
    assert hash(source) == hash(source_for(url, session))
    assert source != source_for(url, session, sample_limit=10)
    assert source != source_for(url, session, wanted=frozenset({b"up"}))
    assert source.target == HttpTarget(
        job="node",
        url=url,
        labels=make({"env": "test"}),
        interval_s=15.0,
        timeout_s=5.0,
        user_agent=f"kpimon/{__version__}",
    )
    with pytest.raises(ValueError, match="http"):
        HttpTarget(job="x", url="ftp://h/metrics", interval_s=1, timeout_s=1)
    with pytest.raises(ValueError, match="> 0"):
        HttpTarget(job="x", url=url, interval_s=15, timeout_s=0)


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason"), [(500, "Internal Server Error"), (404, "Not Found")])
async def test_http_error_status_fails(
    server: ExpositionServer, session: aiohttp.ClientSession, status: int, reason: str
) -> None:
    server.respond(b"oops\n", status=status)
    with pytest.raises(ScrapeError) as info:
        await source_for(server.url(), session).collect()
    assert str(info.value) == f"{server.url()}: server returned HTTP status {status} {reason}"


async def test_connection_refused_fails(session: aiohttp.ClientSession) -> None:
    with refused_url() as url, pytest.raises(ScrapeError) as info:
        await source_for(url, session).collect()
    assert info.value.url == url
    assert url in str(info.value)
    assert "ClientConnectorError" in str(info.value)


@pytest.mark.parametrize("stall", ["headers", "body"])
async def test_a_slow_server_times_out(
    server: ExpositionServer, session: aiohttp.ClientSession, stall: str
) -> None:
    server.respond(TEXT * 100)
    server.stall = stall  # type: ignore[assignment]
    with pytest.raises(ScrapeError, match=r"scrape timed out after 0\.2s") as info:
        await source_for(server.url(), session, timeout_s=0.2).collect()
    assert info.value.url == server.url()


async def test_sample_limit(server: ExpositionServer, session: aiohttp.ClientSession) -> None:
    server.respond(TEXT)
    assert len((await source_for(server.url(), session, sample_limit=3).collect()).keys) == 3
    with pytest.raises(ScrapeError, match="sample limit exceeded: 3 samples, limit 2"):
        await source_for(server.url(), session, sample_limit=2).collect()
    # The limit counts every sample in the payload, kept or not (as Prometheus does).
    with pytest.raises(ScrapeError, match="sample limit exceeded"):
        await source_for(
            server.url(), session, sample_limit=2, wanted=frozenset({b"node_load1"})
        ).collect()


@pytest.mark.parametrize("transfer", ["content-length", "chunked", "gzip"])
async def test_body_size_limit(
    server: ExpositionServer, session: aiohttp.ClientSession, transfer: str
) -> None:
    server.respond(TEXT, encoding="gzip" if transfer == "gzip" else None)
    server.chunked = transfer == "chunked"
    limit = len(TEXT)  # counted after decompression
    batch = await source_for(server.url(), session, body_size_limit=limit).collect()
    assert batch.body_bytes == limit
    with pytest.raises(ScrapeError, match=f"body size limit exceeded \\(limit {limit - 1} bytes"):
        await source_for(server.url(), session, body_size_limit=limit - 1).collect()


async def test_a_gzip_bomb_is_cut_off_without_inflating_it(
    server: ExpositionServer, session: aiohttp.ClientSession
) -> None:
    inflated = 64 << 20  # 64 MiB of "#", 286 KiB on the wire
    server.respond(b"")
    server.headers["Content-Encoding"] = "gzip"
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"#" * (1 << 20)
    server.payload = b"".join(compressor.compress(block) for _ in range(inflated >> 20))
    server.payload += compressor.flush()
    limit = 1 << 20
    source = source_for(server.url(), session, body_size_limit=limit)
    tracemalloc.start()
    try:
        with pytest.raises(ScrapeError, match="body size limit exceeded"):
            await source.collect()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * limit, f"peak {peak} bytes while reading a bomb with a {limit} limit"


# --- through the scheduler -----------------------------------------------------------------------


async def test_scheduler_over_http_ingests_then_marks_stale(
    server: ExpositionServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    store = RecordingStore()
    source = source_for(server.url(), session)
    server.respond(TEXT)
    async with ScrapeManager(store, clock) as manager:
        await manager.update([source])
        await clock.advance(15.0)  # the first tick falls somewhere in the first interval
        await store.wait_for(1)
        (ingest,) = store.calls
        assert (ingest.method, ingest.target, ingest.keys) == (
            "ingest",
            source.id,
            tuple(TEXT_KEYS),
        )
        assert ingest.labels == source.labels
        assert manager.health()[source.id].up

        server.respond(b"down\n", status=503)
        await clock.advance(15.0)
        await store.wait_for(2)
        assert store.calls[1].method == "mark_stale"
        health = manager.health()[source.id]
        assert not health.up
        assert (
            health.last_error
            == f"{server.url()}: server returned HTTP status 503 Service Unavailable"
        )


async def test_validation_scrapes_keep_quoted_name_series(
    server: ExpositionServer, session: aiohttp.ClientSession
) -> None:
    server.respond(b'{"my.metric", a="1"} 1\nother 2\n')
    source = source_for(server.url(), session, wanted=frozenset({b"my.metric"}))
    first = await source.collect()  # a validation scrape
    second = await source.collect()  # a selective one
    assert first.keys == second.keys == [b'{"my.metric", a="1"}']
