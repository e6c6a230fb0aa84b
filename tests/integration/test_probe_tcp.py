"""TCP probes against real loopback servers: connect, refused, TLS, a server that never talks."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from kpimon.config.probes import ProbeConfig, TcpProbe, TlsConfig
from kpimon.errors import Position
from kpimon.sources.probe import ProbeSource
from tests.integration.test_probe_certs import DAY, NOW, Pki, server_context
from tests.integration.test_probe_http import probe

POS = Position("kpimon.yml", 1, 1)


def tcp(address: str, *, timeout_s: float = 5.0, **options: object) -> ProbeSource:
    return ProbeSource(
        ProbeConfig(
            name="tcp",
            tcp=TcpProbe(address=address, **options),  # type: ignore[arg-type]
            interval_s=30.0,
            timeout_s=timeout_s,
            position=POS,
        )
    )


@asynccontextmanager
async def tcp_server(context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A server on 127.0.0.1 that accepts (and with ``context`` handshakes), then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_listening_port_succeeds_and_a_closed_one_fails() -> None:
    async with tcp_server() as port:
        source = tcp(f"127.0.0.1:{port}")
        got = await probe(source)
    assert got["probe_success"] == 1, source.last_error
    assert got["probe_duration_seconds"] > 0
    assert "probe_ssl_earliest_cert_expiry" not in got
    assert "probe_http_status_code" not in got  # HTTP series belong to HTTP probes
    assert source.labels == (("instance", f"127.0.0.1:{port}"), ("job", "probe"), ("probe", "tcp"))
    with socket.socket() as bound:  # bound, not listening: connecting is refused
        bound.bind(("127.0.0.1", 0))
        refused = tcp(f"127.0.0.1:{bound.getsockname()[1]}")
        got = await probe(refused)
    assert got["probe_success"] == 0
    assert refused.last_error == "cannot connect: connection refused"


async def test_a_host_name_is_looked_up() -> None:
    async with tcp_server() as port:
        source = tcp(f"localhost:{port}")
        got = await probe(source)
    # localhost may resolve to ::1 first, where nothing listens: the next address is tried
    assert got["probe_success"] == 1, source.last_error
    assert got["probe_dns_lookup_time_seconds"] > 0


async def test_tls_is_verified_by_default_and_reports_the_expiry(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    cert = pki.issue("server")
    async with tcp_server(server_context(cert)) as port:
        address = f"127.0.0.1:{port}"
        untrusted = tcp(address, tls=True)
        assert (await probe(untrusted))["probe_success"] == 0
        trusted = await probe(
            tcp(address, tls=True, tls_config=TlsConfig(ca_file=str(pki.ca.cert_file)))
        )
        plain = await probe(tcp(address))  # no TLS asked: a TCP connect is enough
    assert untrusted.last_error is not None
    assert untrusted.last_error.startswith("certificate verification failed")
    assert trusted["probe_success"] == 1
    assert trusted["probe_ssl_earliest_cert_expiry"] == cert.not_after
    assert plain["probe_success"] == 1
    assert "probe_ssl_earliest_cert_expiry" not in plain


async def test_tls_with_an_expired_certificate(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    expired = pki.issue("old", not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    async with tcp_server(server_context(expired)) as port:
        address = f"127.0.0.1:{port}"
        verified = tcp(address, tls=True, tls_config=TlsConfig(ca_file=str(pki.ca.cert_file)))
        assert (await probe(verified))["probe_success"] == 0
        insecure = await probe(
            tcp(address, tls=True, tls_config=TlsConfig(insecure_skip_verify=True))
        )
    assert verified.last_error is not None
    assert "expired" in verified.last_error
    assert insecure["probe_success"] == 1
    assert insecure["probe_ssl_earliest_cert_expiry"] == expired.not_after


async def test_a_server_that_never_handshakes_times_out() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accepts, then never says a word

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        source = tcp(
            f"127.0.0.1:{port}",
            timeout_s=0.2,
            tls=True,
            tls_config=TlsConfig(insecure_skip_verify=True),
        )
        got = await probe(source)
    finally:
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()
    assert len(accepted) == 1
    assert got["probe_success"] == 0
    assert got["probe_duration_seconds"] >= 0.2
    assert source.last_error == "timed out after 0.2s"
