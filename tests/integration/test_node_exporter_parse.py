"""kpimon's exposition parser on a live payload of a real node_exporter (Debian package), whole
and selective, against prometheus_client's parser as the oracle."""

from __future__ import annotations

from collections import Counter

import pytest

from kpimon.config.loader import default_config
from kpimon.labels import decode_key
from kpimon.sources.exposition import ACCEPT_HEADER, content_is_openmetrics, parse
from tests.helpers.debian import node_exporter
from tests.helpers.exposition import decoded, fetch_with_accept, oracle_samples

pytestmark = pytest.mark.debian

# The node_exporter names the packaged host rules read, as the daemon derives them.
HOST_RULE_NAMES = frozenset(n.encode() for n in default_config().wanted_metric_names() or ())


@pytest.fixture(scope="module")
def scraped() -> tuple[str | None, bytes]:
    """(Content-Type, body) of one scrape, negotiated with kpimon's Accept header."""
    with node_exporter() as base:
        return fetch_with_accept(f"{base}/metrics", ACCEPT_HEADER)


def test_whole_payload_agrees_with_prometheus_client(scraped: tuple[str | None, bytes]) -> None:
    content_type, body = scraped
    openmetrics = content_is_openmetrics(content_type)
    exp = parse(body, openmetrics=openmetrics)
    expected = oracle_samples(body.decode(), openmetrics=openmetrics)
    assert len(expected) > 200, "node_exporter answered suspiciously little"
    assert (exp.malformed_total, exp.issues) == (0, ())
    assert exp.samples_total == len(exp.keys) == len(expected)
    assert decoded(exp) == Counter(expected)
    # Same order too: the parser keeps payload order.
    assert [decode_key(k)[0] for k in exp.keys] == [s[0] for s in expected]


def test_selective_host_rule_names(scraped: tuple[str | None, bytes]) -> None:
    content_type, body = scraped
    openmetrics = content_is_openmetrics(content_type)
    exp = parse(body, HOST_RULE_NAMES, openmetrics=openmetrics)
    expected = [
        s
        for s in oracle_samples(body.decode(), openmetrics=openmetrics)
        if s[0].encode() in HOST_RULE_NAMES
    ]
    # Every host-rule name this node_exporter exposes (filesystems may be absent in a sandbox).
    exposed = {s[0] for s in expected}
    assert {"node_cpu_seconds_total", "node_load5", "node_memory_MemTotal_bytes"} <= exposed
    assert decoded(exp) == Counter(expected)
    assert exp.samples_total == parse(body, openmetrics=openmetrics).samples_total
    assert exp.malformed_total == 0


def test_selective_names_that_prefix_each_other(scraped: tuple[str | None, bytes]) -> None:
    content_type, body = scraped
    openmetrics = content_is_openmetrics(content_type)
    wanted = frozenset({b"node_load1", b"node_load15", b"node_load5"})
    exp = parse(body, wanted, openmetrics=openmetrics)
    expected = [
        s for s in oracle_samples(body.decode(), openmetrics=openmetrics) if s[0].encode() in wanted
    ]
    assert {s[0] for s in expected} == {"node_load1", "node_load15", "node_load5"}
    assert decoded(exp) == Counter(expected)
    # With one line broken, exactly that line is reported, in both modes.
    lines = body.split(b"\n")
    target = next(i for i, line in enumerate(lines) if line.startswith(b"node_load1 "))
    lines[target] = b"node_load1 not-a-number"
    broken = b"\n".join(lines)
    for wanted in (None, HOST_RULE_NAMES | {b"node_load1"}):
        bad = parse(broken, wanted, openmetrics=openmetrics)
        assert [(i.line, i.message) for i in bad.issues] == [
            (target + 1, 'invalid value "not-a-number"')
        ]
        assert bad.malformed_total == 1
        assert b"node_load1" not in bad.keys
