"""HTTP(S) probes against real loopback servers: status, body, redirects, timeouts, TLS."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from kpimon.config.probes import HttpProbe, ProbeConfig, TlsConfig
from kpimon.errors import Position
from kpimon.labels import decode_key
from kpimon.sources.probe import PHASES, ProbeSource
from kpimon.sources.scrape import Batch
from tests.helpers.scrape import refused_url
from tests.integration.test_probe_certs import DAY, NOW, Pki, probe_server, server_context

POS = Position("kpimon.yml", 1, 1)


def http(url: str, *, timeout_s: float = 5.0, name: str = "web", **options: object) -> ProbeSource:
    config = ProbeConfig(
        name=name,
        http=HttpProbe(url=url, **options),  # type: ignore[arg-type]
        interval_s=30.0,
        timeout_s=timeout_s,
        position=POS,
    )
    return ProbeSource(config)


def samples(batch: Batch) -> dict[str, float]:
    """``{'probe_success': 1.0, 'probe_http_duration_seconds{phase="tls"}': 0.001, ...}``."""
    out: dict[str, float] = {}
    for key, value in zip(batch.keys, batch.values.tolist(), strict=True):
        name, labels = decode_key(key)
        shown = ",".join(f'{k}="{v}"' for k, v in labels)
        out[f"{name}{{{shown}}}" if labels else name] = value
    return out


async def probe(source: ProbeSource) -> dict[str, float]:
    return samples(await source.collect())


async def test_a_healthy_endpoint_succeeds_with_blackbox_series() -> None:
    async with probe_server() as server:
        source = http(server.base + "/ok")
        got = await probe(source)
    assert got["probe_success"] == 1
    assert got["probe_http_status_code"] == 200
    assert got["probe_http_redirects"] == 0
    assert got["probe_http_ssl"] == 0
    assert got["probe_http_version"] == 1.1
    assert got["probe_failed_due_to_regex"] == 0
    assert got["probe_http_content_length"] == len("status: healthy\n")
    assert got["probe_http_uncompressed_body_length"] == len("status: healthy\n")
    assert "probe_ssl_earliest_cert_expiry" not in got  # no TLS, no certificate
    phases = {p: got[f'probe_http_duration_seconds{{phase="{p}"}}'] for p in PHASES}
    assert phases["resolve"] == 0  # an IP address is not looked up
    assert phases["tls"] == 0
    assert phases["connect"] > 0
    assert phases["processing"] > 0
    assert all(v >= 0 for v in phases.values())
    assert got["probe_duration_seconds"] >= sum(phases.values())
    assert got["kpimon_probe_success_ratio_30d"] == 1
    assert got["kpimon_probe_attempts_30d"] == 1
    assert source.labels == (
        ("instance", server.base + "/ok"),
        ("job", "probe"),
        ("probe", "web"),
    )
    assert source.id == "probe/web"
    assert source.last_error is None


async def test_a_hanging_server_fails_the_probe_at_its_timeout() -> None:
    async with probe_server() as server:
        source = http(server.base + "/hang", timeout_s=0.2)
        started = time.monotonic()
        got = await probe(source)
        elapsed = time.monotonic() - started
    assert got["probe_success"] == 0
    assert got["probe_http_status_code"] == 0  # no answer
    assert got["probe_duration_seconds"] >= 0.2
    assert elapsed < 10  # bounded: the timeout cut it short, the server would never answer
    assert source.last_error == "timed out after 0.2s"


async def test_a_flapping_endpoint_alternates_and_logs_each_change_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kpimon.probe")
    async with probe_server() as server:
        source = http(server.base + "/flap")
        got = [await probe(source) for _ in range(5)]
        down = http(server.base + "/status/500", name="down")
        for _ in range(3):
            await down.collect()
    assert [g["probe_success"] for g in got] == [1, 0, 1, 0, 1]
    assert [g["probe_http_status_code"] for g in got] == [200, 500, 200, 500, 200]
    assert got[-1]["kpimon_probe_success_ratio_30d"] == 3 / 5
    url = server.base + "/flap"
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:4] == [
        f"probe web ({url}) failed: status code 500 is not 2xx",
        f"probe web ({url}) succeeds again",
        f"probe web ({url}) failed: status code 500 is not 2xx",
        f"probe web ({url}) succeeds again",
    ]
    # a probe that keeps failing the same way is logged once, not every interval
    assert messages[4:] == [
        f"probe down ({server.base}/status/500) failed: status code 500 is not 2xx"
    ]


async def test_status_codes_default_to_2xx_or_follow_valid_status_codes() -> None:
    async with probe_server() as server:
        assert (await probe(http(server.base + "/status/503")))["probe_success"] == 0
        assert (await probe(http(server.base + "/status/204")))["probe_success"] == 1
        only_200 = http(server.base + "/status/204", valid_status_codes=(200,))
        assert (await probe(only_200))["probe_success"] == 0
        assert only_200.last_error == "status code 204 not in valid_status_codes (200)"
        got = await probe(http(server.base + "/status/503", valid_status_codes=(503,)))
    assert got["probe_success"] == 1
    assert got["probe_http_status_code"] == 503


async def test_body_regular_expressions_in_both_directions() -> None:
    async with probe_server() as server:
        url = server.base + "/ok"  # "status: healthy"
        must_ok = await probe(http(url, fail_if_body_not_matches_regexp=("healthy$",)))
        must_fail_src = http(url, fail_if_body_not_matches_regexp=("ready",))
        must_fail = await probe(must_fail_src)
        must_not_ok = await probe(http(url, fail_if_body_matches_regexp=("broken",)))
        must_not_fail_src = http(url, fail_if_body_matches_regexp=("health[a-z]",))
        must_not_fail = await probe(must_not_fail_src)
    assert (must_ok["probe_success"], must_ok["probe_failed_due_to_regex"]) == (1, 0)
    assert (must_fail["probe_success"], must_fail["probe_failed_due_to_regex"]) == (0, 1)
    assert must_fail["probe_http_status_code"] == 200
    assert must_fail_src.last_error == (
        "body did not match fail_if_body_not_matches_regexp 'ready'"
    )
    assert (must_not_ok["probe_success"], must_not_ok["probe_failed_due_to_regex"]) == (1, 0)
    assert (must_not_fail["probe_success"], must_not_fail["probe_failed_due_to_regex"]) == (0, 1)
    assert must_not_fail_src.last_error == (
        "body matched fail_if_body_matches_regexp 'health[a-z]'"
    )


async def test_redirects_are_followed_by_default_and_counted() -> None:
    async with probe_server() as server:
        followed = await probe(http(server.base + "/redirect"))
        kept = await probe(http(server.base + "/redirect", follow_redirects=False))
        kept_ok = await probe(
            http(server.base + "/redirect", follow_redirects=False, valid_status_codes=(302,))
        )
        looping = http(server.base + "/loop")
        loop_got = await probe(looping)
    assert (followed["probe_success"], followed["probe_http_status_code"]) == (1, 200)
    assert followed["probe_http_redirects"] == 1
    assert (kept["probe_success"], kept["probe_http_status_code"]) == (0, 302)
    assert kept["probe_http_redirects"] == 0
    assert (kept_ok["probe_success"], kept_ok["probe_http_status_code"]) == (1, 302)
    assert loop_got["probe_success"] == 0
    assert looping.last_error == "more than 10 redirects"


async def test_method_headers_and_body_are_sent() -> None:
    async with probe_server() as server:
        source = http(
            server.base + "/echo",
            method="POST",
            headers=(("X-Probe", "yes"),),
            body="ping",
            fail_if_body_not_matches_regexp=(r"^POST x-probe=yes ua=kpimon/\S+ body=ping$",),
        )
        got = await probe(source)
    assert got["probe_success"] == 1, source.last_error


async def test_a_body_over_the_limit_fails_and_refused_connections_fail() -> None:
    async with probe_server() as server:
        big = http(server.base + "/big", body_size_limit=1000)
        got = await probe(big)
    assert got["probe_success"] == 0
    assert big.last_error == "body larger than body_size_limit (1000 bytes)"
    with refused_url() as url:
        refused = http(url)
        got = await probe(refused)
    assert (got["probe_success"], got["probe_http_status_code"]) == (0, 0)
    assert refused.last_error is not None
    assert refused.last_error.startswith("cannot connect")


# --- TLS -----------------------------------------------------------------------------------------


async def test_an_untrusted_certificate_fails_unless_trusted_or_skipped(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    cert = pki.issue("server")
    async with probe_server(server_context(cert)) as server:
        url = server.base + "/ok"
        default = http(url)
        untrusted = await probe(default)
        trusted = await probe(http(url, tls_config=TlsConfig(ca_file=str(pki.ca.cert_file))))
        skipped = await probe(http(url, tls_config=TlsConfig(insecure_skip_verify=True)))
        plain_only = http(url, tls_config=TlsConfig(insecure_skip_verify=True), fail_if_ssl=True)
        assert (await probe(plain_only))["probe_success"] == 0
        assert plain_only.last_error == "answered over TLS (fail_if_ssl)"
    assert untrusted["probe_success"] == 0
    assert default.last_error is not None
    assert default.last_error.startswith("certificate verification failed")
    assert "probe_ssl_earliest_cert_expiry" not in untrusted
    assert (trusted["probe_success"], trusted["probe_http_ssl"]) == (1, 1)
    assert trusted["probe_ssl_earliest_cert_expiry"] == cert.not_after
    assert trusted['probe_http_duration_seconds{phase="tls"}'] > 0
    assert trusted['probe_http_duration_seconds{phase="connect"}'] > 0
    assert skipped["probe_success"] == 1
    assert skipped["probe_ssl_earliest_cert_expiry"] == cert.not_after


async def test_an_expired_certificate_fails_and_shows_its_past_expiry(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    expired = pki.issue("expired", not_before=NOW - 60 * DAY, not_after=NOW - 2 * DAY)
    async with probe_server(server_context(expired)) as server:
        url = server.base + "/ok"
        verified = http(url, tls_config=TlsConfig(ca_file=str(pki.ca.cert_file)))
        failed = await probe(verified)
        insecure = await probe(http(url, tls_config=TlsConfig(insecure_skip_verify=True)))
    assert failed["probe_success"] == 0
    assert verified.last_error is not None
    assert "expired" in verified.last_error
    assert insecure["probe_success"] == 1
    assert insecure["probe_ssl_earliest_cert_expiry"] == expired.not_after
    assert insecure["probe_ssl_earliest_cert_expiry"] < time.time() - DAY.total_seconds()


async def test_server_name_sets_the_name_checked_against_the_certificate(
    tmp_path: Path,
) -> None:
    pki = Pki(tmp_path)
    other = pki.issue("other", hosts=("service.internal",))
    ca = str(pki.ca.cert_file)
    async with probe_server(server_context(other)) as server:
        url = server.base + "/ok"
        wrong = http(url, tls_config=TlsConfig(ca_file=ca))
        assert (await probe(wrong))["probe_success"] == 0
        right = http(url, tls_config=TlsConfig(ca_file=ca, server_name="service.internal"))
        assert (await probe(right))["probe_success"] == 1, right.last_error
    assert wrong.last_error is not None
    assert "certificate verification failed" in wrong.last_error


async def test_a_client_certificate_is_presented_when_configured(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    clients = Pki(tmp_path / "clients") if (tmp_path / "clients").mkdir() is None else None
    assert clients is not None
    server_cert = pki.issue("server")
    client_cert = clients.issue("prober", client=True, hosts=())
    context = server_context(server_cert, client_ca=clients.ca.cert_file)
    async with probe_server(context) as server:
        url = server.base + "/ok"
        ca = str(pki.ca.cert_file)
        without = http(url, tls_config=TlsConfig(ca_file=ca))
        assert (await probe(without))["probe_success"] == 0
        with_cert = http(
            url,
            tls_config=TlsConfig(
                ca_file=ca,
                cert_file=str(client_cert.cert_file),
                key_file=str(client_cert.key_file),
            ),
        )
        got = await probe(with_cert)
    assert got["probe_success"] == 1, with_cert.last_error
    assert without.last_error is not None


async def test_fail_if_not_ssl_fails_plain_http() -> None:
    async with probe_server() as server:
        source = http(server.base + "/ok", fail_if_not_ssl=True)
        assert (await probe(source))["probe_success"] == 0
    assert source.last_error == "answered without TLS (fail_if_not_ssl)"


# --- bounds --------------------------------------------------------------------------------------


async def test_concurrency_is_bounded_by_the_limit() -> None:
    limit = asyncio.Semaphore(2)
    async with probe_server() as server:
        sources = [
            ProbeSource(
                ProbeConfig(
                    name=f"p{i}",
                    http=HttpProbe(url=server.base + "/hang"),
                    interval_s=30.0,
                    timeout_s=0.3,
                    position=POS,
                ),
                limit=limit,
            )
            for i in range(5)
        ]
        results = await asyncio.gather(*(probe(s) for s in sources))
    assert server.max_hanging == 2
    assert [r["probe_success"] for r in results] == [0] * 5
    assert all(s.last_error == "timed out after 0.3s" for s in sources)


async def test_a_bug_while_probing_fails_the_probe_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A header the config parser refuses (two lines) makes aiohttp raise ValueError: an error
    # no probe expects, standing in for a bug.
    async with probe_server() as server:
        source = http(server.base + "/ok", headers=(("X-A", "1\r\nX-B: 2"),))
        got = [await probe(source) for _ in range(3)]
    assert [g["probe_success"] for g in got] == [0, 0, 0]
    assert source.last_error is not None
    assert source.last_error.startswith("unexpected ValueError")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # with its traceback, once
    assert errors[0].exc_info is not None
