"""``probes:`` in kpimon.yml: defaults, every option, and every error with its position."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from kpimon.check import run_check
from kpimon.config.daemon import parse_config
from kpimon.config.models import DaemonConfig
from kpimon.config.probes import (
    DEFAULT_PROBE_BODY_SIZE_LIMIT,
    HttpProbe,
    ProbeConfig,
    TcpProbe,
    TlsConfig,
)
from kpimon.errors import Position


def parse(text: str, file: str = "kpimon.yml") -> tuple[DaemonConfig, list[str]]:
    config, _, problems = parse_config(textwrap.dedent(text), file)
    return config, [str(p) for p in problems]


def test_defaults_come_from_global_and_blackbox() -> None:
    config, problems = parse(
        """
        global: {scrape_interval: 30s, scrape_timeout: 20s}
        probes:
          - name: website
            http: {url: "https://user:pw@example.org/health"}
          - name: fast
            interval: 5s
            tcp: {address: "db.internal:5432"}
        """
    )
    assert problems == []
    website, fast = config.probes
    assert website == ProbeConfig(
        name="website",
        http=HttpProbe(url="https://user:pw@example.org/health"),
        interval_s=30.0,
        timeout_s=20.0,
        position=Position("kpimon.yml", 4, 5),
    )
    assert website.instance == "https://example.org/health"  # no credentials in labels
    h = website.http
    assert h is not None
    assert (h.method, h.valid_status_codes, h.follow_redirects) == ("GET", (), True)
    assert h.body_size_limit == DEFAULT_PROBE_BODY_SIZE_LIMIT
    assert h.tls_config == TlsConfig()  # verification on
    assert fast.tcp == TcpProbe(address="db.internal:5432")
    assert (fast.interval_s, fast.timeout_s) == (5.0, 5.0)  # timeout no longer than interval
    assert fast.instance == "db.internal:5432"
    # probes count for the store's sizing like scrape jobs do
    assert config.scrape_intervals() == [30.0, 5.0]


def test_every_http_option(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("not checked unless loaded\n")
    config, problems = parse(
        """
        probes:
          - name: api
            interval: 1m
            timeout: 15s
            labels: {team: web}
            http:
              url: "http://127.0.0.1:8080/api"
              method: post
              headers: {X-Token: abc, Accept: application/json}
              body: '{"ping": 1}'
              valid_status_codes: [200, 204]
              fail_if_body_matches_regexp: ["error", "down"]
              fail_if_body_not_matches_regexp: ['"ok":\\s*true']
              no_follow_redirects: true
              fail_if_not_ssl: false
              body_size_limit: 1KB
              tls_config: {insecure_skip_verify: true, server_name: api.internal}
        """,
        str(tmp_path / "kpimon.yml"),
    )
    assert problems == []
    (api,) = config.probes
    assert api.labels == (("team", "web"),)
    assert (api.interval_s, api.timeout_s) == (60.0, 15.0)
    assert api.http == HttpProbe(
        url="http://127.0.0.1:8080/api",
        method="POST",
        headers=(("X-Token", "abc"), ("Accept", "application/json")),
        body='{"ping": 1}',
        valid_status_codes=(200, 204),
        fail_if_body_matches_regexp=("error", "down"),
        fail_if_body_not_matches_regexp=('"ok":\\s*true',),
        follow_redirects=False,
        body_size_limit=1024,
        tls_config=TlsConfig(insecure_skip_verify=True, server_name="api.internal"),
    )


def test_a_moved_probe_is_equal_to_the_one_before() -> None:
    one, _ = parse("probes: [{name: a, tcp: {address: 'h:1'}}]\n")
    two, _ = parse("\n\nprobes:\n  - {name: a, tcp: {address: 'h:1'}}\n")
    assert one.probes[0].position != two.probes[0].position
    assert one.probes == two.probes


@pytest.mark.parametrize(
    ("probe", "at", "message"),
    [
        (
            "{name: a, http: {url: 'ftp://x/'}}",
            "'ftp",
            'probes[0].http.url: invalid URL "ftp://x/": the scheme must be http or https',
        ),
        (
            "{name: a, http: {url: 'http:///x'}}",
            "'http",
            'probes[0].http.url: invalid URL "http:///x": no host',
        ),
        (
            "{name: a, http: {url: 'http://h:99999/'}}",
            "'http",
            'probes[0].http.url: invalid URL "http://h:99999/": Port out of range 0-65535',
        ),
        (
            "{name: a, http: {}}",
            "{}",
            'probes[0].http: missing required key "url"',
        ),
        (
            "{name: a, http: {url: 'http://h/', valid_status_codes: [200, 700]}}",
            "700",
            "probes[0].http.valid_status_codes[1]: not an HTTP status code (100-599): 700",
        ),
        (
            "{name: a, http: {url: 'http://h/', valid_status_codes: ['2xx']}}",
            "'2xx'",
            'probes[0].http.valid_status_codes[0]: expected a whole number, got "2xx"',
        ),
        (
            "{name: a, http: {url: 'http://h/', fail_if_body_matches_regexp: ['(']}}",
            "'('",
            "probes[0].http.fail_if_body_matches_regexp[0]: invalid regular expression: "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            "{name: a, http: {url: 'http://h/', method: 'GE T'}}",
            "'GE T'",
            'probes[0].http.method: invalid HTTP method "GE T"',
        ),
        (
            "{name: a, http: {url: 'http://h/', valid_status_code: [200]}}",
            "valid_status_code",
            'probes[0].http: unknown key "valid_status_code" (did you mean "valid_status_codes"?)',
        ),
        (
            "{name: a, http: {url: 'http://h/', follow_redirects: true, "
            "no_follow_redirects: true}}",
            "no_follow",
            "probes[0].http.no_follow_redirects: contradicts follow_redirects "
            "(no_follow_redirects is the old name of its opposite)",
        ),
        (
            "{name: a, http: {url: 'http://h/', basic_auth: {username: u}}}",
            "basic_auth",
            'probes[0].http.basic_auth: "basic_auth" is not supported by this version '
            "of kpimon yet",
        ),
        (
            "{name: a, http: {url: 'http://h/'}, tcp: {address: 'h:1'}}",
            "tcp",
            'probes[0]: a probe has one kind: "http" or "tcp", not both',
        ),
        (
            "{name: a}",
            "{",
            'probes[0]: missing the probe\'s kind: an "http" or a "tcp" mapping',
        ),
        (
            "{http: {url: 'http://h/'}}",
            "{",
            'probes[0]: missing required key "name"',
        ),
        (
            "{name: a, interval: 10s, timeout: 30s, tcp: {address: 'h:1'}}",
            "30s",
            "probes[0].timeout: timeout (30s) must not be greater than the interval (10s)",
        ),
        (
            "{name: a, interval: 100ms, tcp: {address: 'h:1'}}",
            "100ms",
            "probes[0].interval: must be at least 1s, got 100ms",
        ),
        (
            "{name: a, tcp: {address: 'db.internal'}}",
            "'db",
            'probes[0].tcp.address: invalid address "db.internal": missing port '
            "(write host:port, e.g. db.internal:9100)",
        ),
        (
            "{name: a, tcp: {address: 'tcp://h:1'}}",
            "'tcp",
            'probes[0].tcp.address: invalid address "tcp://h:1": write host:port, without a scheme',
        ),
        (
            "{name: a, tcp: {address: 'h:1', tls_config: {insecure_skip_verify: true}}}",
            "tls_config",
            "probes[0].tcp.tls_config: has no effect without tls: true",
        ),
        (
            "{name: a, labels: {instance: x}, tcp: {address: 'h:1'}}",
            "instance",
            'probes[0].labels.instance: label "instance" is set by kpimon for every probe',
        ),
        (
            "{name: a, http: {url: 'http://h/', tls_config: {ca_file: nope.pem}}}",
            "nope",
            'probes[0].http.tls_config.ca_file: file "nope.pem" does not exist',
        ),
        (
            "{name: a, http: {url: 'http://h/', tls_config: {insecure: true}}}",
            "insecure",
            'probes[0].http.tls_config: unknown key "insecure"',
        ),
        (
            "{name: a, http: {url: 'http://h/', headers: {X-A: \"1\\r\\nX-B: 2\"}}}",
            '"1',
            'probes[0].http.headers["X-A"]: a header value must be one line',
        ),
        (
            "{name: a, htp: {url: 'http://h/'}}",
            "htp",
            'probes[0]: unknown key "htp" (did you mean "http"?)',
        ),
    ],
)
def test_problems_say_where(probe: str, at: str, message: str) -> None:
    """Each problem is reported once, at the line and column of the text ``at``."""
    _, problems = parse(f"\nprobes:\n  - {probe}\n")
    column = len("  - ") + probe.index(at) + 1
    assert f"kpimon.yml:3:{column}: {message}" in problems
    # "htp" is also a probe without a kind: a second problem, at the probe
    assert len(problems) == (2 if at == "htp" else 1), problems


def test_duplicate_names_name_both_positions() -> None:
    _, problems = parse(
        """
        probes:
          - {name: web, tcp: {address: "h:1"}}
          - {name: api, tcp: {address: "h:2"}}
          - {name: web, tcp: {address: "h:3"}}
        """
    )
    assert problems == [
        'kpimon.yml:5:12: probes[2].name: duplicate probe "web" (first defined at line 3, '
        "column 12)"
    ]


def test_tls_files_are_checked_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    _, problems = parse(
        """
        probes:
          - name: a
            http:
              url: "https://h/"
              tls_config: {cert_file: cert.pem, key_file: key.pem}
          - name: b
            http:
              url: "https://h/"
              tls_config: {cert_file: cert.pem}
        """,
        str(tmp_path / "kpimon.yml"),
    )
    assert len(problems) == 2
    assert problems[0].startswith(
        f"{tmp_path}/kpimon.yml:6:19: probes[0].http.tls_config: cannot load the TLS files: "
    )
    assert problems[1] == (
        f"{tmp_path}/kpimon.yml:10:31: probes[1].http.tls_config.cert_file: "
        "cert_file needs key_file as well"
    )


def test_kpimon_check_reports_probe_problems(tmp_path: Path) -> None:
    config = tmp_path / "kpimon.yml"
    config.write_text(
        "probes:\n"
        "  - {name: web, http: {url: 'https://example.org/', tls_config: {ca_file: ca.pem}}}\n"
        "  - {name: web, tcp: {address: 'example.org:443', tls: true}}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    assert run_check([str(config)], out, err) == 1
    assert err.getvalue().splitlines() == [
        f'{config}:2:75: probes[0].http.tls_config.ca_file: file "{tmp_path}/ca.pem" does not '
        "exist",
        f'{config}:3:12: probes[1].name: duplicate probe "web" (first defined at line 2, '
        "column 12)",
    ]
    (tmp_path / "ca.pem").write_text("")
    config.write_text("probes:\n  - {name: web, tcp: {address: 'example.org:443', tls: true}}\n")
    out, err = io.StringIO(), io.StringIO()
    assert run_check([str(config)], out, err) == 0, err.getvalue()
