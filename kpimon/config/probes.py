"""``probes:`` in ``kpimon.yml``: blackbox_exporter-style HTTP(S) and TCP probes, parsed.

Each entry names one probe and exactly one kind, ``http`` or ``tcp``, with blackbox_exporter's
option names where the concept exists (``valid_status_codes``, ``fail_if_body_matches_regexp``,
``follow_redirects``, ``tls_config`` with ``insecure_skip_verify``/``ca_file``/``cert_file``/
``key_file``/``server_name``...)::

    probes:
      - name: website
        interval: 30s
        http: {url: "https://example.org/health", valid_status_codes: [200]}
      - name: db
        tcp: {address: "db.internal:5432"}

:func:`parse_probes` returns frozen :class:`ProbeConfig` objects and records every problem with
its position (unknown keys with a "did you mean" hint, duplicate names with both positions, bad
URLs, regular expressions and status codes). It is pure but for one thing: a ``tls_config`` that
names files is loaded once with :func:`ssl_context` (files relative to the config file's
directory, as Prometheus resolves them), so that a missing or unreadable certificate, or a key
that does not match it, is reported by ``kpimon check`` at the key that names it rather than at
the first probe. :func:`ssl_context` is also what the probes themselves use.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from kpimon import labels as labelset
from kpimon.config.fields import (
    Problems,
    as_bool,
    as_checked_strs,
    as_int,
    as_labels,
    as_map,
    as_size,
    as_str,
    as_str_map,
    check_keys,
    check_target,
    duration_or,
    list_items,
    required_str,
    timeout_within,
    unique_name,
)
from kpimon.config.yamlload import Map, Node, Scalar, join_index, join_key
from kpimon.errors import Position

__all__ = [
    "DEFAULT_PROBE_BODY_SIZE_LIMIT",
    "MAX_REDIRECTS",
    "HttpProbe",
    "ProbeConfig",
    "TcpProbe",
    "TlsConfig",
    "parse_probes",
    "ssl_context",
]

DEFAULT_PROBE_BODY_SIZE_LIMIT: Final = 10 * 1024 * 1024
"""A probed body larger than this fails the probe (blackbox_exporter's default is no limit)."""

MAX_REDIRECTS: Final = 10
"""Redirects followed before the probe fails, as blackbox_exporter (Go's http.Client)."""

_PROBE_KEYS: Final = ("name", "interval", "timeout", "labels", "http", "tcp")
_PROBE_NOT_YET: Final = ("dns", "icmp", "grpc", "module", "prober")
_HTTP_KEYS: Final = (
    "url",
    "method",
    "headers",
    "body",
    "valid_status_codes",
    "fail_if_body_matches_regexp",
    "fail_if_body_not_matches_regexp",
    "follow_redirects",
    "no_follow_redirects",
    "fail_if_ssl",
    "fail_if_not_ssl",
    "body_size_limit",
    "tls_config",
)
_HTTP_NOT_YET: Final = (
    "valid_http_versions",
    "fail_if_header_matches",
    "fail_if_header_not_matches",
    "basic_auth",
    "bearer_token",
    "bearer_token_file",
    "authorization",
    "oauth2",
    "proxy_url",
    "compression",
    "body_file",
    "preferred_ip_protocol",
    "ip_protocol_fallback",
    "enable_http2",
)
_TCP_KEYS: Final = ("address", "tls", "tls_config")
_TCP_NOT_YET: Final = ("query_response", "preferred_ip_protocol", "ip_protocol_fallback")
_TLS_KEYS: Final = ("insecure_skip_verify", "ca_file", "cert_file", "key_file", "server_name")
_TLS_NOT_YET: Final = ("min_version", "max_version", "ca", "cert", "key")
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
_RESERVED_LABELS: Final = frozenset({"job", "instance", "probe"})

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """``tls_config``: certificate checks are on unless ``insecure_skip_verify``.

    Attributes:
        insecure_skip_verify: accept any certificate (no chain or host name check).
        ca_file: trust only the CAs in this PEM file instead of the system's.
        cert_file: client certificate (PEM) presented to servers that ask for one.
        key_file: its private key (PEM).
        server_name: the name sent in SNI and checked against the certificate (default: the
            URL's or address's host).

    File names are absolute (resolved against the config file's directory when parsed).
    """

    insecure_skip_verify: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpProbe:
    """``http:``: one request (redirects followed by default) and checks on its answer.

    ``valid_status_codes`` empty means any 2xx; regular expressions are Python ``re`` syntax,
    searched anywhere in the body decoded as UTF-8 (invalid bytes replaced).
    """

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    valid_status_codes: tuple[int, ...] = ()
    fail_if_body_matches_regexp: tuple[str, ...] = ()
    fail_if_body_not_matches_regexp: tuple[str, ...] = ()
    follow_redirects: bool = True
    fail_if_ssl: bool = False
    fail_if_not_ssl: bool = False
    body_size_limit: int = DEFAULT_PROBE_BODY_SIZE_LIMIT
    """Bytes; 0: no limit."""
    tls_config: TlsConfig = TlsConfig()

    @property
    def instance(self) -> str:
        """The URL without user info: the probe's ``instance`` label."""
        parts = urlsplit(self.url)
        netloc = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=netloc).geturl()


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpProbe:
    """``tcp:``: connect to ``address`` (``host:port``), with a TLS handshake when ``tls``."""

    address: str
    tls: bool = False
    tls_config: TlsConfig = TlsConfig()

    @property
    def instance(self) -> str:
        return self.address


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeConfig:
    """One ``probes`` entry, interval and timeout resolved.

    Two configs that differ only in where they are written compare equal (a reload that moves
    a probe in the file does not restart it).
    """

    name: str
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    interval_s: float
    timeout_s: float
    labels: labelset.Labels = labelset.EMPTY
    position: Position = field(compare=False)

    @property
    def kind(self) -> Literal["http", "tcp"]:
        """``http`` or ``tcp``: which of the two probes is set."""
        return "http" if self.http is not None else "tcp"

    @property
    def instance(self) -> str:
        """The ``instance`` label: the URL (user info dropped) or the TCP address."""
        if self.http is not None:
            return self.http.instance
        assert self.tcp is not None
        return self.tcp.instance


def ssl_context(
    tls: TlsConfig, context_class: type[ssl.SSLContext] = ssl.SSLContext
) -> ssl.SSLContext:
    """A client context for ``tls``: verification on (system CAs, or ``ca_file`` only), a
    client certificate when configured, checks off with ``insecure_skip_verify``.

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: a file is not valid PEM, or the key does not match the certificate.
    """
    ctx = context_class(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif tls.ca_file is not None:
        ctx.load_verify_locations(cafile=tls.ca_file)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.cert_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx


def parse_probes(
    node: Node | None,
    file: str,
    problems: Problems,
    *,
    default_interval_s: float,
    default_timeout_s: float,
    min_interval_s: float,
) -> tuple[ProbeConfig, ...]:
    """The ``probes`` list of the config ``file``; problems are recorded, bad entries dropped.

    Args:
        default_interval_s: ``interval`` when unset (``global.scrape_interval``).
        default_timeout_s: ``timeout`` when unset is this or the interval, whichever is
            shorter (``global.scrape_timeout``).
        min_interval_s: the shortest interval allowed.
    """
    base = os.path.dirname(file)
    names: dict[str, Position] = {}
    out: list[ProbeConfig] = []
    for i, item in enumerate(list_items(node, "probes", problems)):
        path = join_index("probes", i)
        probe = _probe(
            item,
            path,
            base,
            names,
            problems,
            default_interval_s=default_interval_s,
            default_timeout_s=default_timeout_s,
            min_interval_s=min_interval_s,
        )
        if probe is not None:
            out.append(probe)
    return tuple(out)


def _probe(
    node: Node,
    path: str,
    base: str,
    names: dict[str, Position],
    problems: Problems,
    *,
    default_interval_s: float,
    default_timeout_s: float,
    min_interval_s: float,
) -> ProbeConfig | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _PROBE_KEYS, problems, not_yet=_PROBE_NOT_YET)
    name = unique_name(m, "name", path, "probe", names, problems, nonempty=True)
    interval = duration_or(
        m, "interval", path, problems, default_interval_s, minimum=min_interval_s
    )
    timeout = timeout_within(
        m,
        "timeout",
        path,
        problems,
        default=default_timeout_s,
        interval=interval,
        interval_name="the interval",
    )
    labels = as_labels(
        m.get("labels"),
        join_key(path, "labels"),
        problems,
        reserved=_RESERVED_LABELS,
        reserved_why="is set by kpimon for every probe",
    )

    http_node, tcp_node = m.get("http"), m.get("tcp")
    http = tcp = None
    if http_node is not None and tcp_node is not None:
        key = m.key("tcp")
        assert key is not None
        problems.add(key.pos, path, 'a probe has one kind: "http" or "tcp", not both')
    elif http_node is None and tcp_node is None:
        problems.add(m.pos, path, 'missing the probe\'s kind: an "http" or a "tcp" mapping')
    elif http_node is not None:
        http = _http(http_node, join_key(path, "http"), base, problems)
    elif tcp_node is not None:
        tcp = _tcp(tcp_node, join_key(path, "tcp"), base, problems)
    if len(problems) > before or name is None or labels is None or (http is None and tcp is None):
        return None
    return ProbeConfig(
        name=name,
        http=http,
        tcp=tcp,
        interval_s=interval,
        timeout_s=timeout,
        labels=labels,
        position=m.pos,
    )


def _opt(m: Map, key: str, path: str, problems: Problems, read: _Reader[_T]) -> _T | None:
    node = m.get(key)
    return None if node is None else read(node, join_key(path, key), problems)


class _Reader(Protocol[_T_co]):
    def __call__(self, node: Node, path: str, problems: Problems, /) -> _T_co | None: ...


def _http(node: Node, path: str, base: str, problems: Problems) -> HttpProbe | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    check_keys(m, path, _HTTP_KEYS, problems, not_yet=_HTTP_NOT_YET)
    url = required_str(m, "url", path, problems, nonempty=True, check=_check_url)
    method = _opt(m, "method", path, problems, as_str) or "GET"
    method_node = m.get("method")
    if method_node is not None and not _METHOD.fullmatch(method):
        problems.add(method_node.pos, join_key(path, "method"), f'invalid HTTP method "{method}"')
    headers = _opt(m, "headers", path, problems, _header_map) or ()
    body = _opt(m, "body", path, problems, as_str)
    codes = _status_codes(
        m.get("valid_status_codes"), join_key(path, "valid_status_codes"), problems
    )
    must_not = _regexps(m, "fail_if_body_matches_regexp", path, problems)
    must = _regexps(m, "fail_if_body_not_matches_regexp", path, problems)
    follow = _opt(m, "follow_redirects", path, problems, as_bool)
    no_follow = _opt(m, "no_follow_redirects", path, problems, as_bool)
    if follow is not None and no_follow is not None and follow == no_follow:
        key = m.key("no_follow_redirects")
        assert key is not None
        problems.add(
            key.pos,
            join_key(path, "no_follow_redirects"),
            "contradicts follow_redirects (no_follow_redirects is the old name of its opposite)",
        )
    follow_redirects = follow if follow is not None else not no_follow
    fail_if_ssl = bool(_opt(m, "fail_if_ssl", path, problems, as_bool))
    fail_if_not_ssl = bool(_opt(m, "fail_if_not_ssl", path, problems, as_bool))
    if fail_if_ssl and fail_if_not_ssl:
        problems.add(m.pos, path, "fail_if_ssl and fail_if_not_ssl together fail every probe")
    size = _opt(m, "body_size_limit", path, problems, as_size)
    tls = _tls(m.get("tls_config"), join_key(path, "tls_config"), base, problems)
    if url is None:
        return None
    return HttpProbe(
        url=url,
        method=method.upper(),
        headers=headers,
        body=body,
        valid_status_codes=codes,
        fail_if_body_matches_regexp=must_not,
        fail_if_body_not_matches_regexp=must,
        follow_redirects=follow_redirects,
        fail_if_ssl=fail_if_ssl,
        fail_if_not_ssl=fail_if_not_ssl,
        body_size_limit=DEFAULT_PROBE_BODY_SIZE_LIMIT if size is None else size,
        tls_config=tls,
    )


def _check_url(url: str) -> str | None:
    """Why ``url`` cannot be probed, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f'invalid URL "{url}": {exc}'
    if parts.scheme not in ("http", "https"):
        return f'invalid URL "{url}": the scheme must be http or https'
    if not parts.hostname:
        return f'invalid URL "{url}": no host'
    if port == 0:
        return f'invalid URL "{url}": port must be a number from 1 to 65535'
    if any(c.isspace() for c in url):
        return f'invalid URL "{url}": contains white space (percent-encode it)'
    return None


def _header_map(node: Node, path: str, problems: Problems) -> tuple[tuple[str, str], ...] | None:
    def check(name: str) -> str | None:
        return None if _METHOD.fullmatch(name) else f'invalid HTTP header name "{name}"'

    headers = as_str_map(node, path, problems, check_key=check)
    m = as_map(node, path, problems) if headers else None
    for key, value in m.entries if m is not None else ():
        if isinstance(value, Scalar) and any(c in value.text for c in "\r\n\0"):
            problems.add(value.pos, join_key(path, key.text), "a header value must be one line")
            return None
    return headers


def _status_codes(node: Node | None, path: str, problems: Problems) -> tuple[int, ...]:
    codes: list[int] = []
    for j, item in enumerate(list_items(node, path, problems)):
        sub = join_index(path, j)
        code = as_int(item, sub, problems, minimum=100)
        if code is None:
            continue
        if code > 599:
            problems.add(item.pos, sub, f"not an HTTP status code (100-599): {code}")
            continue
        codes.append(code)
    return tuple(codes)


def _regexps(m: Map, key: str, path: str, problems: Problems) -> tuple[str, ...]:
    return tuple(as_checked_strs(m.get(key), join_key(path, key), problems, _check_regexp))


def _check_regexp(text: str) -> str | None:
    """Why ``text`` is not a valid (Python) regular expression, or None."""
    try:
        re.compile(text)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    return None


def _tcp(node: Node, path: str, base: str, problems: Problems) -> TcpProbe | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    check_keys(m, path, _TCP_KEYS, problems, not_yet=_TCP_NOT_YET)
    address = required_str(m, "address", path, problems, nonempty=True, check=_check_address)
    use_tls = bool(_opt(m, "tls", path, problems, as_bool))
    tls_node = m.get("tls_config")
    tls = _tls(tls_node, join_key(path, "tls_config"), base, problems)
    if tls_node is not None and not use_tls:
        key = m.key("tls_config")
        assert key is not None
        problems.add(key.pos, join_key(path, "tls_config"), "has no effect without tls: true")
    if address is None:
        return None
    return TcpProbe(address=address, tls=use_tls, tls_config=tls)


def _check_address(address: str) -> str | None:
    """Why ``address`` is not ``host:port``, or None."""
    if "://" in address:
        return f'invalid address "{address}": write host:port, without a scheme'
    why = check_target(address)
    if why is None:
        return None
    why = why.replace("invalid target", "invalid address", 1)
    return why.replace('; the path goes in "metrics_path"', "")


def _tls(node: Node | None, path: str, base: str, problems: Problems) -> TlsConfig:
    if node is None:
        return TlsConfig()
    m = as_map(node, path, problems)
    if m is None:
        return TlsConfig()
    before = len(problems)
    check_keys(m, path, _TLS_KEYS, problems, not_yet=_TLS_NOT_YET)
    insecure = bool(_opt(m, "insecure_skip_verify", path, problems, as_bool))
    server_name = _opt(m, "server_name", path, problems, as_str)
    files: dict[str, str | None] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        value = _opt(m, key, path, problems, as_str)
        file_node = m.get(key)
        if value is not None and file_node is not None:
            full = os.path.join(base, value)
            if not os.path.isfile(full):
                problems.add(file_node.pos, join_key(path, key), f'file "{full}" does not exist')
                value = None
            else:
                value = full
        files[key] = value
    for have, need in (("cert_file", "key_file"), ("key_file", "cert_file")):
        node_have = m.get(have)
        if node_have is not None and m.get(need) is None:
            problems.add(node_have.pos, join_key(path, have), f"{have} needs {need} as well")
    tls = TlsConfig(
        insecure_skip_verify=insecure,
        ca_file=files["ca_file"],
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        server_name=server_name or None,
    )
    if len(problems) == before and (tls.ca_file or tls.cert_file):
        try:
            ssl_context(tls)
        except (OSError, ssl.SSLError) as exc:
            problems.add(m.pos, path, f"cannot load the TLS files: {_ssl_reason(exc)}")
    return tls


def _ssl_reason(exc: OSError) -> str:
    """A short reason from an SSL or OS error (``[X509: KEY_VALUES_MISMATCH] ...``)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason.lower().replace('_', ' ')} ({exc.library or 'ssl'})"
    return exc.strerror or str(exc)
