"""Helpers for testing the exposition parser: the prometheus_client oracle, hypothesis strategies
that build payloads together with the samples they hold, and malformed lines to inject.

A generated payload is a list of :class:`Line` (text + the sample it holds, if any), so tests know
the truth independently of any parser; ``render`` joins lines with LF or CRLF, with or without a
final newline.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as om_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

from kpimon.labels import decode_key
from kpimon.sources.exposition import Exposition

SampleTuple = tuple[str, tuple[tuple[str, str], ...], object, object]
"""(name, sorted labels without empty values, value (NaN as "NaN"), timestamp s rounded or None)."""


def norm(
    name: str, labels: dict[str, str] | Iterable[tuple[str, str]], value: float, ts: float | None
) -> SampleTuple:
    """A comparable sample: empty label values dropped (absent, as Prometheus treats them), NaN
    made equal to itself, timestamps rounded to the microsecond (prometheus_client adds OpenMetrics
    seconds and nanoseconds, which can differ from ``float(token)`` in the last bit)."""
    items = labels.items() if isinstance(labels, dict) else labels
    pairs = tuple(sorted((k, v) for k, v in items if v != ""))
    v: object = "NaN" if math.isnan(value) else float(value)
    t: object = None if ts is None or math.isnan(ts) else round(float(ts), 6)
    return name, pairs, v, t


def oracle_samples(text: str, *, openmetrics: bool = False) -> list[SampleTuple]:
    """The samples prometheus_client's parser reads from ``text``, in order.

    Undoes its text-format quirk (PROTOCOLS.md 1.5): a counter whose TYPE line names it without
    ``_total`` gets ``_total`` appended to its sample names.
    """
    families = om_families(text) if openmetrics else text_families(text)
    bare_counters = set() if openmetrics else set(_BARE_COUNTER.findall(text)) - {""}
    out = []
    for family in families:
        for s in family.samples:
            name = s.name
            if family.type == "counter" and family.name in bare_counters:
                name = name.removesuffix("_total")
            ts = None if s.timestamp is None else float(s.timestamp)
            out.append(norm(name, s.labels, s.value, ts))
    return out


_BARE_COUNTER = re.compile(r"^[ \t]*#[ \t]+TYPE[ \t]+(\S*?)(?<!_total)[ \t]+counter[ \t]*$", re.M)


def oracle(text: str, *, openmetrics: bool = False) -> Counter[SampleTuple]:
    """The multiset of samples prometheus_client's parser reads from ``text``."""
    return Counter(oracle_samples(text, openmetrics=openmetrics))


def decoded(exp: Exposition) -> Counter[SampleTuple]:
    """The multiset of samples in an :class:`Exposition`, keys decoded with ``decode_key``."""
    out: Counter[SampleTuple] = Counter()
    for i, key in enumerate(exp.keys):
        name, labels = decode_key(key)
        ts = None if exp.timestamps is None else float(exp.timestamps[i])
        out[norm(name, labels, float(exp.values[i]), ts)] += 1
    return out


def fetch_with_accept(url: str, accept: str, timeout_s: float = 10.0) -> tuple[str | None, bytes]:
    """GET ``url`` (loopback only) with an Accept header: (Content-Type, body)."""
    assert url.startswith(("http://127.0.0.1", "http://[::1]")), url
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=timeout_s) as resp:
        body: bytes = resp.read()
        return resp.headers.get("Content-Type"), body


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Fail (TimeoutError) if the block runs longer than ``seconds``: turns a hang into a failure.

    Not a speed assertion: give it a margin of orders of magnitude over the expected time.
    """

    def fire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds}s (super-linear time?)")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- Generated payloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One payload line, and the sample it holds (None for comments and blank lines)."""

    text: bytes
    sample: SampleTuple | None = None
    name: str | None = None


def render(lines: Sequence[Line], *, crlf: bool = False, final_newline: bool = True) -> bytes:
    """The payload bytes of ``lines``."""
    eol = b"\r\n" if crlf else b"\n"
    body = eol.join(line.text for line in lines)
    return body + eol if final_newline and lines else body


def truth(lines: Sequence[Line]) -> Counter[SampleTuple]:
    """The multiset of samples the lines hold."""
    return Counter(line.sample for line in lines if line.sample is not None)


_FIRST = "abcxyzABZ_:"
_REST = "abcxyzABZ_:019"
METRIC_NAMES = st.tuples(
    st.sampled_from(_FIRST), st.text(alphabet=st.sampled_from(_REST), max_size=10)
).map("".join)
LABEL_NAMES = st.tuples(
    st.sampled_from("abcxyzABZ"), st.text(alphabet=st.sampled_from("abz_09"), max_size=6)
).map("".join)
# Label values: the characters that break naive parsers, plus some unicode.
LABEL_VALUES = st.text(
    alphabet=st.sampled_from([*'ab z"\\\n}{,=#\t.', "é", "€", "😀", "\x7f"]), max_size=8
)
SPECIAL_VALUES = [
    "NaN",
    "nan",
    "+Inf",
    "-Inf",
    "Inf",
    "inf",
    "+inf",
    "-inf",
    "Infinity",
    "-infinity",
    "INF",
]

_LABEL_NAME_LISTS = st.lists(LABEL_NAMES, max_size=3, unique=True)
_OM_SECONDS = st.integers(0, 2**40)
_MILLISECONDS = st.integers(-(2**62), 2**62)
_SEEDS = st.integers(0, 2**32 - 1)
_VALUE_KINDS = st.sampled_from(["int", "float", "exp", "special", "dot"])
_INTS = st.integers(-(2**53), 2**53)
_SPECIALS = st.sampled_from(SPECIAL_VALUES)
_FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _finite_or_special(token: str) -> bool:
    return math.isfinite(float(token)) or token in SPECIAL_VALUES


@st.composite
def value_tokens(draw: st.DrawFn) -> str:
    """A value token in Go ParseFloat syntax (what Prometheus accepts), in varied spellings."""
    kind = draw(_VALUE_KINDS)
    if kind == "int":
        n = draw(_INTS)
        return ("+" if n >= 0 and draw(st.booleans()) else "") + str(n)
    if kind == "special":
        return draw(_SPECIALS)
    x = draw(_FLOATS)
    if kind == "exp":
        # Rounding to fewer digits can overflow (1.797e308 -> "1.8e+308", out of range in Go).
        token = draw(st.sampled_from([f"{x:.6e}", f"{x:E}", f"{x:.3g}"]))
        return token if _finite_or_special(token) else repr(x)
    if kind == "dot" and abs(x) < 1:
        text = f"{abs(x):.5f}"[1:]  # ".12345"
        return ("-" if x < 0 else "") + text
    return repr(x)


def escape(value: str, *, sloppy: bool) -> str:
    """``value`` escaped for a label value; ``sloppy`` leaves backslashes that do not start one
    of the three escapes unescaped, as many hand-written exporters do (``\\q`` means ``\\q``)."""
    out = []
    for i, c in enumerate(value):
        nxt = value[i + 1] if i + 1 < len(value) else ""
        if c == "\\":
            # A lone backslash is only safe before a character whose escaped form does not start
            # with one of the three escapes.
            lone = sloppy and nxt and nxt not in '\\"n\n'
            out.append("\\" if lone else "\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        else:
            out.append(c)
    return "".join(out)


def sample_line(
    draw: st.DrawFn, rnd: random.Random, name: str, *, openmetrics: bool, counter: bool = False
) -> Line:
    """One valid sample line of metric ``name``: content drawn by hypothesis, layout by ``rnd``
    (varied in the text format, canonical in OpenMetrics)."""
    label_names = draw(_LABEL_NAME_LISTS)
    labels = {k: draw(LABEL_VALUES) for k in label_names}
    sloppy = not openmetrics and rnd.random() < 0.5
    pairs = [(k, escape(v, sloppy=sloppy)) for k, v in labels.items()]
    value = draw(value_tokens())
    if counter and (value.lower().lstrip("+-").startswith("n") or float(value) < 0):
        value = "1"  # counters cannot be NaN or negative in OpenMetrics
    if openmetrics:
        key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else "")
        ts_text = None
        if rnd.random() < 0.3:
            ts_text = str(draw(_OM_SECONDS))
            if rnd.random() < 0.5:
                ts_text += "." + str(rnd.randrange(1000)).zfill(3)
        text = f"{key} {value}" + (f" {ts_text}" if ts_text is not None else "")
        if counter and rnd.random() < 0.5:
            text += ' # {trace_id="abc"} 0.5' + (" 12.5" if rnd.random() < 0.5 else "")
        ts = None if ts_text is None else float(ts_text)
        return Line(text.encode(), norm(name, labels, float(value), ts), name)

    def blank() -> str:
        return rnd.choice([" ", " ", "\t", "  ", " \t "])

    def inner() -> str:
        return rnd.choice(["", "", "", "", " ", "\t"])

    if pairs:
        sep = inner()
        body = ("," + sep).join(f'{k}{inner()}={inner()}"{v}"' for k, v in pairs)
        trailing = "," if rnd.random() < 0.3 else ""
        key = f"{name}{inner()}{{{sep}{body}{trailing}{inner()}}}"
        after_key = rnd.choice([" ", " ", " ", "\t", "  ", ""])  # "}" may touch the value
    else:
        key = name
        after_key = blank()
    ts_ms = draw(_MILLISECONDS) if rnd.random() < 0.3 else None
    text = rnd.choice(["", "", "", " ", "\t"]) + key + after_key + value
    if ts_ms is not None:
        text += blank() + str(ts_ms)
    text += rnd.choice(["", "", "", " ", "\t "])
    ts = None if ts_ms is None else ts_ms / 1000
    return Line(text.encode(), norm(name, labels, float(value), ts), name)


_HELP_WORDS = ["a", "b c", "\\\\", "\\n", '"', "{}", "#", "é"]


@st.composite
def payloads(draw: st.DrawFn, *, openmetrics: bool = False, max_families: int = 4) -> list[Line]:
    """A valid payload as lines (no # EOF: see :func:`om_payload`), unique series."""
    rnd = random.Random(draw(_SEEDS))
    names = draw(st.lists(METRIC_NAMES, min_size=1, max_size=max_families, unique=True))
    lines: list[Line] = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for name in names:
        counter = openmetrics and rnd.random() < 0.5
        sample_name = name + "_total" if counter else name
        help_text = " ".join(rnd.sample(_HELP_WORDS, rnd.randrange(4)))
        if openmetrics:
            typ = "counter" if counter else rnd.choice(["gauge", "unknown"])
            lines.append(Line(f"# TYPE {name} {typ}".encode()))
            if rnd.random() < 0.5:
                lines.append(Line(f"# HELP {name} {help_text}".encode()))
        else:
            if rnd.random() < 0.5:
                lines.append(Line(f"# HELP {name} {help_text.replace(chr(34), '')}".encode()))
            if rnd.random() < 0.5:
                lines.append(Line(f"# TYPE {name} {rnd.choice(['gauge', 'untyped'])}".encode()))
            if rnd.random() < 0.3:
                lines.append(Line(b"# " + help_text.encode()))
            if rnd.random() < 0.3:
                lines.append(Line(rnd.choice([b"", b"  ", b"\t"])))
        for _ in range(rnd.randrange(1, 4)):
            line = sample_line(draw, rnd, sample_name, openmetrics=openmetrics, counter=counter)
            assert line.sample is not None
            series = (line.sample[0], line.sample[1])
            if series in seen:
                continue
            seen.add(series)
            lines.append(line)
    return lines


def om_payload(lines: Sequence[Line]) -> bytes:
    """An OpenMetrics payload: the lines and ``# EOF``."""
    return render([*lines, Line(b"# EOF")])


# Malformed sample lines (text format), each with a word its issue message must contain.
MALFORMED: list[tuple[bytes, str]] = [
    (b"bad_a", "expected a value"),
    (b"bad_b 1.2.3", "invalid value"),
    (b"bad_c 1_000", "invalid value"),
    (b"bad_d 0x1p3", "invalid value"),
    (b"bad_e +nan", "invalid value"),
    (b"bad_f 1e400", "out of range"),
    (b"bad_g 5 abc", "invalid timestamp"),
    (b"bad_h 5 99999999999999999999", "timestamp out of range"),
    (b"bad_i 5 6 7", "unexpected text"),
    (b"1bad 5", "invalid metric name"),
    (b"bad.j 5", "invalid metric name"),
    (b'bad_k{a="1" 5', 'expected "," or "}"'),
    (b"bad_l{a=1} 5", "expected a quoted value"),
    (b'bad_m{1a="x"} 5', "invalid label name"),
    (b'bad_n{a="x} 5', "unterminated value"),
    (b'bad_o{a "x"} 5', 'expected "="'),
    (b"bad_p{,} 5", "invalid label name"),
    (b'{a="b"} 5', "missing metric name"),
    (b'bad_q{a="1"}{b="2"} 5', "invalid value"),
    (b'bad_r{a="\xff"} 1', "invalid UTF-8"),
    (b'bad_s{a="1"} 5 # {t="1"} 1', "unexpected text"),
    (b"bad_t\x0c 5", "invalid metric name"),
    (b'{"bad.u" 5', "after the quoted metric name"),
    (b'bad_v{a="1",b="2" 5', 'expected "," or "}"'),
    (b'bad_w{a="1",', "unterminated label set"),
]


def identical(a: Exposition, b: Exposition) -> bool:
    """Same result, field by field (NaN equal to NaN)."""
    if a.timestamps is None or b.timestamps is None:
        same_ts = a.timestamps is None and b.timestamps is None
    else:
        same_ts = np.array_equal(a.timestamps, b.timestamps, equal_nan=True)
    return (
        a.keys == b.keys
        and np.array_equal(a.values, b.values, equal_nan=True)
        and same_ts
        and (a.samples_total, a.malformed_total, a.issues)
        == (b.samples_total, b.malformed_total, b.issues)
    )
