"""Certificates made by the tests (``cryptography``), loopback TLS servers, and the DER reader.

The helpers here are shared by the probe tests: a private CA, server and client certificates
(valid, expired, for another name), server contexts that do or do not require a client
certificate, and an aiohttp server on 127.0.0.1 with the probe tests' handlers.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kpimon.sources.probe import der_not_after

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, written as PEM files."""

    cert_file: Path
    key_file: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def not_after(self) -> float:
        return float(calendar.timegm(self.cert.not_valid_after_utc.timetuple()))


def _write(
    path: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    cert_file, key_file = path / f"{name}.crt", path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(cert_file, key_file, cert, key)


class Pki:
    """A private CA in ``path`` that issues server and client certificates."""

    def __init__(self, path: Path, name: str = "kpimon test CA") -> None:
        self.path = path
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - 10 * DAY)
            .not_valid_after(NOW + 3650 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.ca = _write(path, name.replace(" ", "_"), cert, key)

    def issue(
        self,
        name: str,
        *,
        not_before: dt.datetime = NOW - DAY,
        not_after: dt.datetime = NOW + 90 * DAY,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
        client: bool = False,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.ca.key, hashes.SHA256())
        return _write(self.path, name, cert, key)


def server_context(issued: Issued, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server context presenting ``issued``; requiring a client certificate from
    ``client_ca`` when given."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(issued.cert_file, issued.key_file)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca)
    return ctx


class ProbeServer:
    """What the probe tests' HTTP(S) server answers, and what it saw.

    ``/ok`` 200 "status: healthy"; ``/status/{code}``; ``/flap`` 200, 500, 200, ...;
    ``/hang`` never answers (until the server stops); ``/redirect`` 302 to ``/ok``;
    ``/loop`` redirects to itself; ``/echo`` answers the method, a header and the body;
    ``/big`` a 64 KiB body.
    """

    def __init__(self) -> None:
        self.flaps = 0
        self.hanging = 0
        self.max_hanging = 0
        self.release = asyncio.Event()
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ok", self._ok)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/flap", self._flap)
        app.router.add_get("/hang", self._hang)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/loop", self._loop)
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_get("/big", self._big)
        return app

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="status: healthy\n")

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status: broken\n")

    async def _flap(self, request: web.Request) -> web.Response:
        self.flaps += 1
        return web.Response(status=200 if self.flaps % 2 else 500, text=f"flap {self.flaps}\n")

    async def _hang(self, request: web.Request) -> web.Response:
        self.hanging += 1
        self.max_hanging = max(self.max_hanging, self.hanging)
        try:
            await self.release.wait()
        finally:
            self.hanging -= 1
        return web.Response(text="too late\n")

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def _loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.text()
        return web.Response(
            text=f"{request.method} x-probe={request.headers.get('X-Probe', '')} "
            f"ua={request.headers.get('User-Agent', '')} body={body}\n"
        )

    async def _big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 65536)


@asynccontextmanager
async def probe_server(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[ProbeServer]:
    """A :class:`ProbeServer` on 127.0.0.1 (a free port), HTTPS with ``ssl_context``."""
    server = ProbeServer()
    # handler_cancellation: a handler stops when its client goes, so `hanging` counts open
    # requests
    runner = web.AppRunner(
        server.app(), access_log=None, shutdown_timeout=0.1, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    server.base = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


# --- the DER reader ------------------------------------------------------------------------------


def test_der_not_after_reads_utc_and_generalized_times(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    for not_after in (
        NOW + 30 * DAY,  # UTCTime
        NOW - 400 * DAY,
        dt.datetime(2051, 6, 1, 12, 30, 15, tzinfo=dt.UTC),  # GeneralizedTime from 2050 on
    ):
        issued = pki.issue("s", not_before=NOW - 800 * DAY, not_after=not_after)
        der = issued.cert.public_bytes(serialization.Encoding.DER)
        assert der_not_after(der) == issued.not_after == calendar.timegm(not_after.timetuple())


def test_der_not_after_refuses_what_is_not_a_certificate() -> None:
    for junk in (b"", b"\x30\x03\x02\x01", b"hello world", b"\x30\x82\xff\xff" + b"\x00" * 8):
        try:
            der_not_after(junk)
        except ValueError:
            continue
        raise AssertionError(f"accepted {junk!r}")
