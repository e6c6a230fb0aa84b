"""The exposition parser on hand-written payloads with hand-written expected results."""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_om

from kpimon.labels import decode_key
from kpimon.sources.exposition import (
    ACCEPT_HEADER,
    MAX_ISSUES,
    Exposition,
    ParseIssue,
    content_is_openmetrics,
    parse,
)
from tests.helpers.exposition import MALFORMED, decoded, identical, oracle, watchdog


def pairs(exp: Exposition) -> list[tuple[bytes, float]]:
    return [(k, float(v)) for k, v in zip(exp.keys, exp.values, strict=True)]


def same_floats(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> bool:
    return np.array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64), equal_nan=True)


def assert_identical(got: Exposition, exact: Exposition) -> None:
    assert identical(got, exact), (got, exact)


SPEC_EXAMPLE = (
    rb"""# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
"""
    rb"""msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT","""
    rb"""error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
"""
)


def test_spec_example() -> None:
    exp = parse(SPEC_EXAMPLE)
    assert exp.keys == [
        b'http_requests_total{method="post",code="200"}',
        b'http_requests_total{method="post",code="400"}',
        b'msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",'
        b'error="Cannot find file:\\n\\"FILE.TXT\\""}',
        b"metric_without_timestamp_and_labels",
        b'something_weird{problem="division by zero"}',
        b'http_request_duration_seconds_bucket{le="0.05"}',
        b'http_request_duration_seconds_bucket{le="+Inf"}',
        b"http_request_duration_seconds_sum",
        b"http_request_duration_seconds_count",
    ]
    assert same_floats(
        exp.values, [1027, 3, 1.458255915e9, 12.47, math.inf, 24054, 144320, 53423, 144320]
    )
    nan = math.nan
    assert exp.timestamps is not None
    assert same_floats(
        exp.timestamps, [1395066363.0, 1395066363.0, nan, nan, -3982.045, nan, nan, nan, nan]
    )
    assert (exp.samples_total, exp.malformed_total, exp.issues) == (9, 0, ())
    assert decode_key(exp.keys[2]) == (
        "msdos_file_access_time_seconds",
        (("error", 'Cannot find file:\n"FILE.TXT"'), ("path", "C:\\DIR\\FILE.TXT")),
    )
    assert decoded(exp) == oracle(SPEC_EXAMPLE.decode())


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (b"NaN", math.nan),
        (b"nan", math.nan),
        (b"NAN", math.nan),
        (b"+Inf", math.inf),
        (b"-Inf", -math.inf),
        (b"Inf", math.inf),
        (b"inf", math.inf),
        (b"+inf", math.inf),
        (b"Infinity", math.inf),
        (b"-infinity", -math.inf),
        (b"1e3", 1000.0),
        (b"1E-3", 0.001),
        (b"+5", 5.0),
        (b"-0", -0.0),
        (b".5", 0.5),
        (b"5.", 5.0),
        (b"0005", 5.0),
        (b"-1.5e+10", -1.5e10),
        (b"1e-400", 0.0),  # underflow is not an error in Go
        (b"%d" % int(sys.float_info.max), sys.float_info.max),  # no exponent
    ],
)
def test_values_in_go_syntax(token: bytes, expected: float) -> None:
    for data in (b"m " + token + b"\n", b'm{a="1"} ' + token + b"\n"):
        for wanted in (None, frozenset({b"m"})):
            exp = parse(data, wanted)
            assert exp.malformed_total == 0, exp.issues
            assert same_floats(exp.values, [expected])
            assert math.copysign(1, exp.values[0]) == math.copysign(1, expected)


@pytest.mark.parametrize(
    "token",
    [
        b"1_000",
        b"0x10",
        b"0x1p-2",
        b"0X1P3",
        b"+nan",
        b"-NaN",
        b"1e400",
        b"-1e400",
        b".",
        b"e5",
        b"1e",
        b"1e+",
        b"inf1",
        b"infinit",
        b"nana",
        b"1,5",
        b"\xd9\xa1",
        b"- 1",
        b"1.2.3",
        b"--1",
        b"+-1",
        b"true",
        b"",
    ],
)
def test_invalid_values(token: bytes) -> None:
    data = b"ok 1\nm " + token + b"\nok2 2\n"
    exp = parse(data)
    assert pairs(exp) == [(b"ok", 1.0), (b"ok2", 2.0)]
    assert exp.malformed_total == 1
    assert exp.samples_total == 3
    (issue,) = exp.issues
    assert issue.line == 2
    assert re.search("invalid value|out of range|expected a value|unexpected text", issue.message)
    selective = parse(data, frozenset({b"m"}))
    assert selective.keys == []
    assert selective.issues == exp.issues


def test_timestamps() -> None:
    exp = parse(b"a 1 1000\nb 2\nc 3 -1500\nd 4 9223372036854775807\n")
    assert exp.timestamps is not None
    assert same_floats(exp.timestamps, [1.0, math.nan, -1.5, 9223372036854775.807])
    assert exp.malformed_total == 0
    assert parse(b"a 1\nb 2\n").timestamps is None
    # Only kept samples count: the one with a timestamp is not wanted.
    assert parse(b"a 1\nb 2 5000\n", frozenset({b"a"})).timestamps is None
    bad = parse(b"a 1 1.5\nb 2 9223372036854775808\nc 3 1e3\nd 4 +-1\n")
    assert [i.line for i in bad.issues] == [1, 2, 3, 4]
    assert [i.message.split(" ", 1)[0] for i in bad.issues] == [
        "invalid",
        "timestamp",
        "invalid",
        "invalid",
    ]
    assert "out of range" in bad.issues[1].message


def test_openmetrics_timestamps_are_seconds() -> None:
    exp = parse(b"a 1 1520879607.789\nb 2 1e3\nc 3\n# EOF\n", openmetrics=True)
    assert exp.timestamps is not None
    assert same_floats(exp.timestamps, [1520879607.789, 1000.0, math.nan])
    bad = parse(b"a 1 NaN\nb 2 +Inf\nc 3 1e999\n# EOF\n", openmetrics=True)
    assert [(i.line, i.message.split(" ")[0]) for i in bad.issues] == [
        (1, "invalid"),
        (2, "invalid"),
        (3, "timestamp"),
    ]


def test_label_values_with_special_characters() -> None:
    data = (
        b'm{a="}",b=",",c="=",d="#",e="a b",f="\\"",g="\\\\",h="\\n",i="\xc3\xa9\xe2\x82\xac",'
        b'j="{x=\\"1\\"} 2",k="\\q"} 7\n'
    )
    exp = parse(data)
    assert exp.keys == [data[: data.rindex(b" ")]]
    assert decode_key(exp.keys[0]) == (
        "m",
        (
            ("a", "}"),
            ("b", ","),
            ("c", "="),
            ("d", "#"),
            ("e", "a b"),
            ("f", '"'),
            ("g", "\\"),
            ("h", "\n"),
            ("i", "é€"),
            ("j", '{x="1"} 2'),
            ("k", "\\q"),
        ),
    )
    assert decoded(exp) == oracle(data.decode())


def test_layout_tolerance() -> None:
    data = (
        b"\n"
        b"  a   1  \n"  # leading, separating and trailing blanks
        b"b\t2\t3000\t\n"  # tabs
        b' c { x = "1" , y="2", } 4\n'  # blanks inside braces, trailing comma
        b'd{x="1"}5\n'  # no blank after "}"
        b"e{} 6\n"  # empty label set
        b"   \t \n"  # blank line
        b'  # an indented comment {"x"} 1\n'
        b"#HELP not really help\n"
        b"f 7"  # no final newline
    )
    expected = [
        (b"a", 1.0),
        (b"b", 2.0),
        (b'c { x = "1" , y="2", }', 4.0),
        (b'd{x="1"}', 5.0),
        (b"e{}", 6.0),
        (b"f", 7.0),
    ]
    for payload in (data, data.replace(b"\n", b"\r\n")):
        exp = parse(payload)
        assert pairs(exp) == expected
        assert (exp.samples_total, exp.malformed_total) == (6, 0)
        assert exp.timestamps is not None
        assert exp.timestamps[1] == 3.0
        assert decode_key(exp.keys[2]) == ("c", (("x", "1"), ("y", "2")))
        assert decoded(exp) == oracle(payload.decode())


def test_quoted_names_of_text_1_0_0() -> None:
    data = (
        b'{"my.metric", "error.message"="Not Found", code="404"} 1\n'
        b'{"my.metric"} 2\n'
        b'{ "other\\"name" , } 3\n'
        b'plain{"label.with.dots"="x"} 4\n'
    )
    exp = parse(data)
    assert [v for _, v in pairs(exp)] == [1.0, 2.0, 3.0, 4.0]
    assert [decode_key(k) for k in exp.keys] == [
        ("my.metric", (("code", "404"), ("error.message", "Not Found"))),
        ("my.metric", ()),
        ('other"name', ()),
        ("plain", (("label.with.dots", "x"),)),
    ]
    assert decoded(exp) == oracle(data.decode())
    selective = parse(data, frozenset({b"my.metric", b'other"name'}))
    assert selective.keys == exp.keys[:3]
    assert selective.samples_total == 4


def test_duplicates_keep_the_first() -> None:
    data = b'a{x="1"} 1\nb 2\na{x="1"} 3\nb 4\na{x="2"} 5\n'
    for wanted in (None, frozenset({b"a", b"b"})):
        exp = parse(data, wanted)
        assert pairs(exp) == [(b'a{x="1"}', 1.0), (b"b", 2.0), (b'a{x="2"}', 5.0)]
        assert exp.issues == (
            ParseIssue(3, "duplicate sample (first on line 1)"),
            ParseIssue(4, "duplicate sample (first on line 2)"),
        )
        assert (exp.samples_total, exp.malformed_total) == (5, 2)


@pytest.mark.parametrize(("line", "word"), MALFORMED)
def test_each_malformed_kind(line: bytes, word: str) -> None:
    data = b"ok 1\n# comment\n" + line + b"\nok2 2\n"
    exp = parse(data)
    assert pairs(exp) == [(b"ok", 1.0), (b"ok2", 2.0)]
    assert (exp.samples_total, exp.malformed_total) == (3, 1)
    (issue,) = exp.issues
    assert issue.line == 3
    assert word in issue.message
    # Selective: reported when the line's leading name is wanted, silent otherwise.
    name = re.match(rb"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
    if name is not None:
        selective = parse(data, frozenset({name.group()}))
        assert (selective.keys, selective.issues) == ([], exp.issues)
    other = parse(data, frozenset({b"ok2"}))
    assert (pairs(other), other.issues, other.samples_total) == ([(b"ok2", 2.0)], (), 3)


def test_issues_are_capped_but_all_counted() -> None:
    data = b"".join(b"bad%d\n" % i if i % 2 else b"ok%d 1\n" % i for i in range(60))
    exp = parse(data)
    assert exp.malformed_total == 30
    assert len(exp.issues) == MAX_ISSUES
    assert [i.line for i in exp.issues] == list(range(2, 2 + 2 * MAX_ISSUES, 2))
    assert len(exp.keys) == 30


def test_text_format_metadata_is_not_validated() -> None:
    data = b"# TYPE a bogus\n# HELP\n# HELP 1bad x\n#\n# EOF\na 1\n"
    exp = parse(data)
    assert (pairs(exp), exp.malformed_total, exp.samples_total) == ([(b"a", 1.0)], 0, 1)


def test_empty_and_comment_only_payloads() -> None:
    for data in (b"", b"\n", b"# only a comment\n", b"\n\n  \n", b"# x"):
        exp = parse(data)
        assert (exp.keys, len(exp.values), exp.timestamps) == ([], 0, None)
        assert (exp.samples_total, exp.malformed_total, exp.issues) == (0, 0, ())
        assert exp.values.dtype == np.float64
    exp = parse(b"# EOF\n", openmetrics=True)
    assert (exp.keys, exp.malformed_total) == ([], 0)


# --- OpenMetrics ----------------------------------------------------------------------------------

OM_PAYLOAD = b"""# TYPE acme_http_router_request_seconds summary
# UNIT acme_http_router_request_seconds seconds
# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.
acme_http_router_request_seconds_sum{path="/api/v1",method="GET"} 9036.32
acme_http_router_request_seconds_count{path="/api/v1",method="GET"} 807283.0
acme_http_router_request_seconds_created{path="/api/v1",method="GET"} 1605281325.0
# TYPE process_cpu_seconds counter
# UNIT process_cpu_seconds seconds
process_cpu_seconds_total 4.20072246e+06 1600000001 # {trace_id="KOO5S4vxi0o"} 0.67 1600000000.5
process_cpu_seconds_created 1.5e9 1600000001
# EOF
"""


def test_openmetrics_payload() -> None:
    exp = parse(OM_PAYLOAD, openmetrics=True)
    assert [k.split(b"{")[0] for k in exp.keys] == [
        b"acme_http_router_request_seconds_sum",
        b"acme_http_router_request_seconds_count",
        b"acme_http_router_request_seconds_created",
        b"process_cpu_seconds_total",
        b"process_cpu_seconds_created",
    ]
    assert same_floats(exp.values, [9036.32, 807283.0, 1605281325.0, 4.20072246e06, 1.5e9])
    assert exp.timestamps is not None
    assert same_floats(exp.timestamps, [math.nan, math.nan, math.nan, 1600000001.0, 1600000001.0])
    assert (exp.samples_total, exp.malformed_total) == (5, 0)
    assert decoded(exp) == oracle(OM_PAYLOAD.decode(), openmetrics=True)
    # Parsed as the text format, the exemplar is not allowed.
    text = parse(OM_PAYLOAD)
    assert [(i.line, i.message.split(":")[0]) for i in text.issues] == [
        (9, "unexpected text after the timestamp")
    ]


def test_openmetrics_missing_eof_keeps_samples() -> None:
    data = OM_PAYLOAD.replace(b"# EOF\n", b"")
    exp = parse(data, openmetrics=True)
    assert len(exp.keys) == 5
    assert exp.issues == (
        ParseIssue(11, 'missing "# EOF" at the end (the payload may be truncated)'),
    )
    assert exp.malformed_total == 1
    # Truncated in the middle of a line.
    cut = parse(b"a 1\nb{x=", openmetrics=True)
    assert pairs(cut) == [(b"a", 1.0)]
    assert [i.line for i in cut.issues] == [2, 3]


def test_openmetrics_content_after_eof() -> None:
    data = b"a 1\n# EOF\nb 2\n\n# c\n"
    exp = parse(data, openmetrics=True)
    assert pairs(exp) == [(b"a", 1.0)]
    assert exp.issues == (
        ParseIssue(3, 'content after "# EOF"'),
        ParseIssue(5, 'content after "# EOF"'),
    )
    assert (exp.samples_total, exp.malformed_total) == (1, 2)
    # A final blank line, or CRLF, after # EOF is fine.
    for ok in (b"a 1\n# EOF\n\n", b"a 1\r\n# EOF\r\n", b"a 1\n# EOF"):
        assert parse(ok, openmetrics=True).malformed_total == 0
    # Selective parsing stops at the first # EOF as well.
    sel = parse(b"a 1\n# EOF\na 2\nb 3\n# EOF\n", frozenset({b"a"}), openmetrics=True)
    assert pairs(sel) == [(b"a", 1.0)]
    assert [i.line for i in sel.issues] == [3, 4, 5]


def test_openmetrics_comments_and_exemplars() -> None:
    data = (
        b"# TYPE a counter\n"
        b"# free comment\n"
        b"a_total 1 # {} 2\n"
        b'a_total{x="1"} 1 # {t="1"}\n'
        b'a_total{x="2"} 1 5 # {t="1"} x\n'
        b'a_total{x="3"} 1 5 # {t="1"} 2 3\n'
        b"#HELP a nope\n"
        b"# EOF\n"
    )
    exp = parse(data, openmetrics=True)
    assert exp.keys == [b"a_total", b'a_total{x="3"}']
    assert [i.line for i in exp.issues] == [2, 4, 5, 7]
    assert "comment" in exp.issues[0].message
    assert "exemplar" in exp.issues[1].message


# --- Selective parsing ----------------------------------------------------------------------------


def test_selective_names_that_prefix_others() -> None:
    data = b'node_load1 1\nnode_load15 2\nnode_load1x 3\nnode_load1{a="b"} 4\nnode_load5 5\n'
    exp = parse(data, frozenset({b"node_load1"}))
    assert pairs(exp) == [(b"node_load1", 1.0), (b'node_load1{a="b"}', 4.0)]
    assert exp.samples_total == 5
    exp = parse(data, frozenset({b"node_load15", b"node_load5", b"absent"}))
    assert pairs(exp) == [(b"node_load15", 2.0), (b"node_load5", 5.0)]
    exp = parse(data, frozenset({b"node_load1", b"node_load15", b"node_load1x"}))
    assert [v for _, v in pairs(exp)] == [1.0, 2.0, 3.0, 4.0]
    assert parse(data, frozenset()).keys == []
    assert parse(data, frozenset()).samples_total == 5


def test_selective_skips_unwanted_lines_without_validating_them() -> None:
    data = b"garbage {{{ 1 2 3\nok 1\n  \t indented 2\r\nok2 3 1000\n# c\n\n"
    exp = parse(data, frozenset({b"ok2"}))
    assert pairs(exp) == [(b"ok2", 3.0)]
    assert exp.timestamps is not None
    assert list(exp.timestamps) == [1.0]
    assert (exp.samples_total, exp.malformed_total) == (4, 0)
    assert parse(data).samples_total == 4


# --- Payloads rendered by prometheus_client (a real exporter library) -----------------------------


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    c = Counter("jobs", "Jobs done.", ["queue"], registry=registry)
    c.labels('a"b\\c\nd').inc(3)
    c.labels("é €").inc(1.5)
    g = Gauge("temperature_celsius", "Temperature.", ["room"], registry=registry)
    g.labels("x}{,=#").set(-2.5)
    g.labels("nan").set(math.nan)
    g.labels("inf").set(math.inf)
    h = Histogram("latency_seconds", "Latency.", registry=registry, buckets=(0.1, 1.0))
    h.observe(0.05)
    h.observe(3, exemplar={"trace_id": "abc"})
    s = Summary("size_bytes", "Size.", registry=registry)
    s.observe(10)
    Info("build", "Build.", registry=registry).info({"version": "1.2.3"})
    Enum("state", "State.", states=["up", "down"], registry=registry).state("down")
    return registry


def test_prometheus_client_text_exposition() -> None:
    data = generate_latest(_registry())
    exp = parse(data)
    assert exp.malformed_total == 0
    assert exp.samples_total == len(exp.keys) > 15
    assert decoded(exp) == oracle(data.decode())


def test_prometheus_client_openmetrics_exposition() -> None:
    data = generate_latest_om(_registry())
    exp = parse(data, openmetrics=True)
    assert exp.malformed_total == 0, exp.issues
    assert decoded(exp) == oracle(data.decode(), openmetrics=True)
    wanted = frozenset({b"latency_seconds_bucket", b"jobs_total"})
    sel = parse(data, wanted, openmetrics=True)
    assert sel.keys == [k for k in exp.keys if decode_key(k)[0].encode() in wanted]
    assert sel.samples_total == exp.samples_total


# --- Huge lines: linear time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "text_bad", "om_bad", "selective_bad"),
    [
        pytest.param(b"a" * 1_000_000, 1, 1, 0, id="name"),
        pytest.param(bytes(range(1, 256)).replace(b"\n", b"") * 4_000, 1, 1, 0, id="garbage"),
        pytest.param(b"a " + b"1" * 200_000 + b"x", 1, 1, 1, id="digits"),
        pytest.param(b"a" * 200_000 + b" 1 x", 1, 1, 0, id="name-then-garbage"),
        pytest.param(b'a{x="' + b"\\\\" * 100_000, 1, 1, 1, id="backslashes"),
        pytest.param(b"{" * 200_000, 1, 1, 0, id="braces"),
        pytest.param(b'"' * 200_000, 1, 1, 0, id="quotes"),
        pytest.param(b"a{" + b'x="1",' * 10_000, 1, 1, 1, id="open-label-set"),
        pytest.param(b"a{" + b'x = "1" , ' * 20_000 + b"} 1 2 3", 1, 1, 1, id="spaced-labels"),
        pytest.param(b"# " + b"HELP " * 40_000, 0, 0, 0, id="comment"),
        pytest.param(b"\t " * 100_000 + b"#", 0, 1, 0, id="blanks-then-hash"),
    ],
)
def test_huge_lines_take_linear_time(
    line: bytes, text_bad: int, om_bad: int, selective_bad: int
) -> None:
    # A backtracking blow-up would take hours on lines this long; linear parsing takes well
    # under a second. The watchdog only turns such a hang into a failure.
    data = b"ok 1\n" + line + b"\nok2 2\n"
    with watchdog(60):
        for om, bad in ((False, text_bad), (True, om_bad)):
            payload = data + (b"# EOF\n" if om else b"")
            exp = parse(payload, openmetrics=om)
            assert pairs(exp) == [(b"ok", 1.0), (b"ok2", 2.0)]
            assert exp.malformed_total == bad
            assert [i.line for i in exp.issues] == [2] * bad
            sel = parse(payload, frozenset({b"a", b"ok2"}), openmetrics=om)
            assert pairs(sel) == [(b"ok2", 2.0)]
            assert sel.malformed_total == selective_bad


def test_ten_thousand_labels() -> None:
    labels = b",".join(b'l%d="v%d"' % (i, i) for i in range(10_000))
    good = b"many{" + labels + b"} 1\n"
    bad = b"many{" + labels + b',oops="x} 1\n'
    with watchdog(60):
        exp = parse(good + bad + b"ok 2\n")
        assert pairs(exp)[0] == (good[:-3], 1.0)
        assert [(i.line, i.message) for i in exp.issues] == [
            (2, "unterminated value of label oops")
        ]
        name, decoded_labels = decode_key(exp.keys[0])
        assert name == "many"
        assert len(decoded_labels) == 10_000
        assert parse(good + bad, frozenset({b"many"})).issues == exp.issues


# --- Arguments, Content-Type, Accept --------------------------------------------------------------


def test_wrong_argument_types_raise() -> None:
    with pytest.raises(TypeError, match="bytes"):
        parse("a 1\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wanted"):
        parse(b"a 1\n", [b"a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wanted"):
        parse(b"a 1\n", frozenset({"a"}))  # type: ignore[arg-type]
    assert parse(b"a 1\n", {b"a"}).keys == [b"a"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", True),
        ("application/openmetrics-text;version=0.0.1", True),
        ("Application/OpenMetrics-Text ; Version=1.0.0", True),
        ("application/openmetrics-text", True),
        ('application/openmetrics-text; escaping="allow-utf-8"', True),
        ("text/plain; version=0.0.4; charset=utf-8", False),
        ("text/plain; version=1.0.0; escaping=underscores", False),
        ('text/plain; note="application/openmetrics-text"', False),
        ("application/openmetrics-textual", False),
        ("application/json", False),
        ("", False),
        ("garbage;;;", False),
        (None, False),
    ],
)
def test_content_is_openmetrics(content_type: str | None, expected: bool) -> None:
    assert content_is_openmetrics(content_type) is expected


def test_accept_header_preference_order() -> None:
    ranked = []
    for part in ACCEPT_HEADER.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        values = dict(p.split("=", 1) for p in params)
        ranked.append((float(values.get("q", "1")), media, values.get("version")))
    ranked.sort(key=lambda r: -r[0])
    assert [(m, v) for _, m, v in ranked] == [
        ("application/openmetrics-text", "1.0.0"),
        ("application/openmetrics-text", "0.0.1"),
        ("text/plain", "0.0.4"),
        ("*/*", None),
    ]
    assert len({q for q, _, _ in ranked}) == 4


# --- A later scrape of the same target (``previous``) ---------------------------------------------

_EARLIER = b'# TYPE a gauge\na{x="1"} 1\na{x="2"} 2\nb 3\n'
LATER_SCRAPES = {
    "unchanged": b'# TYPE a gauge\na{x="1"} 5\na{x="2"} 6\nb 7\n',
    "new series": b'a{x="1"} 5\na{x="3"} 6\nb 7\n',
    "new malformed series": b'a{x="1"} 5\na{x=3} 6\nb 7\n',
    "timestamp": b'a{x="1"} 5 1000\na{x="2"} 6\nb 7\n',
    "timestamp on a bare name": b"b 7 1000\n",
    "two spaces": b'a{x="1"}  5\nb 7\n',
    "tab": b'a{x="1"}\t5\nb 7\n',
    "CRLF": b'a{x="1"} 5\r\nb 7\r\n',
    "leading blank": b'a{x="1"} 5\n b 7\n',
    "blank line": b'a{x="1"} 5\n\nb 7\n',
    "underscore in value": b'a{x="1"} 1_0\nb 7\n',
    "blank value": b'a{x="1"} \nb 7\n',
    "duplicate": b'a{x="1"} 5\na{x="1"} 6\n',
    "overflow": b'a{x="1"} 1e400\nb -Inf\n',
    "+nan": b'a{x="1"} +nan\nb NaN\n',
    "infinity": b'a{x="1"} -infinity\nb +Inf\n',
    "no final newline": b'a{x="1"} 5\nb 7',
    "space in a label value": b'a{x="1 2"} 5\nb 7\n',
    "non-UTF-8 label value": b'a{x="\xff"} 5\nb 7\n',
    "empty": b"",
    "comments only": b"# HELP a x\n",
    "comments between samples": b'a{x="1"} 5\n# HELP b x y\n# TYPE b gauge\nb 7\n# end\n',
    "a line without a space": b'a{x="1"} 5\nb\n',
    "first line without a space": b'b\na{x="1"} 5\n',
    "reordered": b'b 7\na{x="2"} 6\na{x="1"} 5\n',
    "series removed": b'# TYPE a gauge\na{x="1"} 5\nb 7\n',
    "key text of two lines in one": b'# TYPE a gauge\na{x="1"}\na{x="2"} 6\nb 7\n',
}


@pytest.mark.parametrize("later", LATER_SCRAPES.values(), ids=LATER_SCRAPES.keys())
@pytest.mark.parametrize("wanted", [None, frozenset({b"a"})], ids=["whole", "selective"])
def test_previous_result_never_changes_the_result(later: bytes, wanted: frozenset[bytes] | None):
    from kpimon.sources import exposition

    first = parse(_EARLIER, wanted)
    # From the third scrape on, the previous result was itself parsed with a previous one.
    steady = parse(_EARLIER.replace(b"} 1", b"} 4"), wanted, previous=first)
    exact = exposition._exact(later, wanted, False)
    for previous in (first, steady):
        assert_identical(parse(later, wanted, previous=previous), exact)


def test_a_whole_later_parse_keeps_its_layout_for_the_next():
    """The layout is the keys as the next parse compares them and the value tokens as it
    compares them; keys whose bytes only look alike (the same bytes cut into other keys) are
    not taken for the same keys."""
    first = parse(_EARLIER)
    assert first.layout is None
    later = parse(_EARLIER.replace(b"} 1", b"} 4"), previous=first)
    assert later.layout is not None
    assert later.layout.key_text == b"".join(later.keys)
    assert later.layout.key_lengths.tolist() == [len(k) for k in later.keys]
    assert later.keys is first.keys
    changed = parse(LATER_SCRAPES["reordered"], previous=later)
    assert changed.keys == [b"b", b'a{x="2"}', b'a{x="1"}']
    assert changed.layout is not None
    assert changed.layout.key_text == b'ba{x="2"}a{x="1"}'
    assert parse(b"a 1\n", frozenset({b"a"}), previous=later).layout is None
    cut = parse(b"ab 1\nc 2\n", previous=parse(b"ab 1\nc 2\n"))
    recut = parse(b"a 1\nbc 2\n", previous=cut)
    assert recut.keys == [b"a", b"bc"]
    assert same_floats(recut.values, np.array([1.0, 2.0]))


def test_a_steady_whole_parse_converts_only_the_values_that_changed():
    """Rows of value tokens equal to the previous result's keep its values; the others are
    converted, whatever their length (the rows are right-aligned and padded with spaces)."""
    from kpimon.sources import exposition

    body = b"# HELP a x y\n# TYPE a gauge\na 1\nb NaN\nc 12345\nd -Inf\n"
    steady = parse(body, previous=parse(body, previous=parse(body)))
    later = parse(b"# HELP a x y\n# TYPE a gauge\na 1.5e3\nb NaN\nc 7\nd +Inf\n", previous=steady)
    assert later.keys is steady.keys
    assert later.layout is not None  # the vectorised pass read it
    assert same_floats(later.values, np.array([1500.0, math.nan, 7.0, math.inf]))
    assert same_floats(steady.values, np.array([1.0, math.nan, 12345.0, -math.inf]))
    for bad in (b"1 2", b"1_0", b"+nan", b"1e999", b" ", b"\t1"):
        later_body = body.replace(b"c 12345", b"c " + bad)
        assert_identical(
            parse(later_body, previous=steady), exposition._exact(later_body, None, False)
        )


@pytest.mark.parametrize(
    ("body", "later"),
    [
        # A timestamp appears: the row "1 5" (key tail, space, value) is unchanged.
        (b"m1 5\nb 100\n", b"m1 1 5\nb 100\n"),
        # The key's tail is repeated before the value: a longer token holding a space.
        (b"abcd 1\nx 12345\n", b"abcd bcd 1\nx 12345\n"),
    ],
)
def test_a_steady_whole_parse_does_not_take_a_longer_token_for_an_unchanged_row(
    body: bytes, later: bytes
):
    """A row equal to the previous one does not mean the same token when the new token fills
    the row and holds a space where the previous row had the one before its (shorter) token."""
    from kpimon.sources import exposition

    steady = parse(body, previous=parse(body, previous=parse(body)))
    assert_identical(parse(later, previous=steady), exposition._exact(later, None, False))


@pytest.mark.parametrize(
    "later",
    [
        b'a{x="1"} 5\n# EOF\n',
        b'a{x="1"} 5\n# comment\n# EOF\n',
        b'a{x="1"} 5\n# EOF\nb 1\n# EOF\n',
        b'# HELP a x\n# TYPE a gauge\na{x="1"} 5\n# UNIT a seconds\n# EOF\n',
    ],
)
@pytest.mark.parametrize("wanted", [None, frozenset({b"a", b"b"})], ids=["whole", "selective"])
def test_previous_result_openmetrics(later: bytes, wanted: frozenset[bytes] | None):
    from kpimon.sources import exposition

    previous = parse(b'a{x="1"} 1\n# EOF\n', wanted, openmetrics=True)
    got = parse(later, wanted, openmetrics=True, previous=previous)
    assert_identical(got, exposition._exact(later, wanted, True))


def test_previous_result_takes_the_line_split_path():
    from kpimon.sources import exposition

    for wanted in (None, frozenset({b"a"})):
        previous = parse(_EARLIER, wanted)
        for name in ("unchanged", "new series", "no final newline", "infinity"):
            assert exposition._by_lines(LATER_SCRAPES[name], wanted, False, previous), name
        assert exposition._by_lines(LATER_SCRAPES["timestamp"], wanted, False, previous) is None


def test_an_unchanged_series_set_returns_the_previous_key_list():
    """The store recognises an unchanged series set by the identity of the key list."""
    previous = parse(_EARLIER)
    again = parse(_EARLIER.replace(b"} 1", b"} 9"), previous=previous)
    assert again.keys is previous.keys
    assert again.values.tolist() == [9.0, 2.0, 3.0]
    assert parse(LATER_SCRAPES["new series"], previous=previous).keys is not previous.keys


def _lines_of(data: bytes, om: bool) -> tuple[bytes, npt.NDArray[np.intp], npt.NDArray[np.uint8]]:
    """The framed buffer of ``data``, the newline before each of its lines, their first bytes."""
    from kpimon.sources import exposition

    buf = exposition._framed(data, om)
    assert buf is not None
    array = np.frombuffer(buf, np.uint8)
    newlines = np.flatnonzero(array[:-1] == 10)
    return buf, newlines, array[newlines + 1]


def _spy_on_searches(monkeypatch: pytest.MonkeyPatch, wanted: frozenset[bytes], om: bool):
    """Record the bounds of every search of the selective lines' regex (``()``: the whole)."""
    from kpimon.sources import exposition

    pattern = exposition._selected_lines(wanted, om)
    bounds: list[tuple[object, ...]] = []

    class Spy:
        def findall(self, *args: object) -> list[bytes]:
            bounds.append(args[1:])
            return pattern.findall(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(exposition, "_selected_lines", lambda *_: Spy())
    return pattern, bounds


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("om", [False, True], ids=["text", "openmetrics"])
def test_searching_runs_of_lines_finds_what_one_search_finds(
    seed: int, om: bool, monkeypatch: pytest.MonkeyPatch
):
    """A selective parse of a large payload searches only the runs of lines that may start
    with a wanted name: it finds the lines one search over the whole payload finds (names
    sharing a wanted name's prefix, quoted names, a wanted family in several groups, a line
    that is only a name, an early # EOF), and the parse is the exact pass's."""
    import random

    from kpimon.sources import exposition

    rnd = random.Random(seed)
    wanted = frozenset({b"a_total", b"b"})
    blocks = [
        lambda i: b'a_total{x="%d"} %d' % (i, i),
        lambda i: b'a_total_x{x="%d"} 1' % i,
        lambda i: b"b %d" % i if i % 50 else b"b",
        lambda i: b'{"a_total",y="%d"} 2' % i,
        lambda i: b'c{x="%d"} 3' % i,
        lambda i: b"# HELP c the c",
        lambda i: b"# EOF" if om and i % 997 == 0 else b'd{x="%d"} 4' % i,
    ]
    lines: list[bytes] = []
    while len(lines) < 30_000:
        make = rnd.choice(blocks)
        lines += [make(len(lines) + k) for k in range(rnd.choice([1, 3, 200, 2000]))]
    data = b"\n".join(lines) + b"\n" + (b"# EOF\n" if om else b"")
    buf, newlines, firsts = _lines_of(data, om)
    with monkeypatch.context() as m:
        pattern, bounds = _spy_on_searches(m, wanted, om)
        got = exposition._wanted_lines(buf, newlines, firsts, wanted, om)
    assert bounds != [()]  # searched run by run
    assert got == pattern.findall(buf)
    monkeypatch.setattr(exposition, "_RUNS_MIN_BYTES", 0)  # parse() takes that path too
    previous = parse(data, wanted, openmetrics=om)
    later = parse(data, wanted, openmetrics=om, previous=previous)
    assert_identical(later, exposition._exact(data, wanted, om))


def test_searching_runs_of_lines_takes_the_runs_it_should(monkeypatch: pytest.MonkeyPatch):
    """Few long runs are searched run by run, from the newline before a run's first line to
    the one after its last, included; many short runs in one search."""
    from kpimon.sources import exposition

    wanted = frozenset({b"a"})
    pattern, bounds = _spy_on_searches(monkeypatch, wanted, False)
    n = 4 * exposition._LINES_PER_RUN
    grouped = b"zz 1\n" + b"".join(b"a %d\n" % i for i in range(n)) + b"zz 1\n" * n
    scattered = b"".join(b"a %d\nzz 1\n" % i for i in range(n))
    for data, runs in ((grouped, [(5, len(grouped) - n * 5 + 1)]), (scattered, [()])):
        buf, newlines, firsts = _lines_of(data, False)
        bounds.clear()
        assert exposition._wanted_lines(buf, newlines, firsts, wanted, False) == pattern.findall(
            buf
        )
        assert bounds == runs
