"""Properties of the exposition parser on generated payloads.

The generator knows the samples it writes (ground truth); prometheus_client's parsers are the
oracle. Also: selective parsing agrees with whole parsing, injected malformed lines are reported
on exactly their lines, and the fast path returns exactly what the exact line-by-line pass does.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpimon.labels import decode_key
from kpimon.sources import exposition
from kpimon.sources.exposition import MAX_ISSUES, Exposition, parse
from tests.helpers.exposition import (
    MALFORMED,
    Line,
    decoded,
    identical,
    om_payload,
    oracle,
    payloads,
    render,
    truth,
)

# 100 examples each: payload generation dominates (~10 ms an example on a shared 2-core box).
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def in_order(exp: Exposition) -> list[tuple[object, ...]]:
    """The kept samples in payload order, keys decoded, NaN comparable."""
    out = []
    for i, key in enumerate(exp.keys):
        name, labels = decode_key(key)
        value = float(exp.values[i])
        ts = None if exp.timestamps is None else float(exp.timestamps[i])
        out.append(
            (
                name,
                labels,
                "NaN" if math.isnan(value) else value,
                None if ts is None or math.isnan(ts) else round(ts, 6),
            )
        )
    return out


def expected_in_order(lines: list[Line]) -> list[tuple[object, ...]]:
    return [line.sample for line in lines if line.sample is not None]


@SETTINGS
@given(lines=payloads(), crlf=st.booleans(), final_newline=st.booleans())
def test_text_payloads_match_truth_and_oracle(
    lines: list[Line], crlf: bool, final_newline: bool
) -> None:
    data = render(lines, crlf=crlf, final_newline=final_newline)
    exp = parse(data)
    assert exp.malformed_total == 0, exp.issues
    assert exp.samples_total == len(exp.keys) == sum(line.sample is not None for line in lines)
    assert in_order(exp) == expected_in_order(lines)
    assert decoded(exp) == truth(lines) == oracle(data.decode())
    assert all(k == k.strip(b" \t") for k in exp.keys)
    if exp.timestamps is None:
        assert all(line.sample is None or line.sample[3] is None for line in lines)


@SETTINGS
@given(lines=payloads(openmetrics=True))
def test_openmetrics_payloads_match_truth_and_oracle(lines: list[Line]) -> None:
    data = om_payload(lines)
    exp = parse(data, openmetrics=True)
    assert exp.malformed_total == 0, exp.issues
    assert in_order(exp) == expected_in_order(lines)
    assert decoded(exp) == truth(lines) == oracle(data.decode(), openmetrics=True)


@SETTINGS
@given(
    lines=payloads(max_families=8),
    data=st.data(),
    openmetrics=st.booleans(),
)
def test_selective_agrees_with_whole(
    lines: list[Line], data: st.DataObject, openmetrics: bool
) -> None:
    names = sorted({line.name for line in lines if line.name is not None})
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True))
    absent = data.draw(st.lists(st.sampled_from([b"absent", b"x.y", b'q"', b""]), unique=True))
    wanted = frozenset([n.encode() for n in chosen] + absent)
    payload = om_payload(lines) if openmetrics else render(lines)
    whole = parse(payload, openmetrics=openmetrics)
    sel = parse(payload, wanted, openmetrics=openmetrics)
    keep = [i for i, k in enumerate(whole.keys) if decode_key(k)[0].encode() in wanted]
    assert sel.keys == [whole.keys[i] for i in keep]
    assert np.array_equal(sel.values, whole.values[keep], equal_nan=True)
    if sel.timestamps is not None:
        assert whole.timestamps is not None
        assert np.array_equal(sel.timestamps, whole.timestamps[keep], equal_nan=True)
    else:
        assert whole.timestamps is None or np.isnan(whole.timestamps[keep]).all()
    assert sel.samples_total == whole.samples_total
    assert sel.malformed_total == 0


@st.composite
def with_injected_errors(draw: st.DrawFn) -> tuple[list[Line], list[int], list[str]]:
    """A valid text payload with malformed lines (and exact duplicates) injected at random
    places: (lines, 1-based numbers of the bad lines, words their messages contain)."""
    lines = list(draw(payloads()))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(lines)))
        samples = [line for line in lines if line.sample is not None]
        if samples and draw(st.integers(0, 4)) == 0:
            copy = draw(st.sampled_from(samples))
            lines.insert(position, Line(copy.text, None, "duplicate"))
        else:
            text, word = draw(st.sampled_from(MALFORMED))
            lines.insert(position, Line(text, None, word))
    # Which copy of a duplicated line comes first depends on where it landed: that one holds the
    # sample, the others are duplicates.
    originals = {line.text: line for line in lines if line.sample is not None}
    first: dict[bytes, int] = {}
    bad_lines, words = [], []
    fixed: list[Line] = []
    for number, line in enumerate(lines, 1):
        if line.text in originals and (line.sample is not None or line.name == "duplicate"):
            if line.text in first:
                bad_lines.append(number)
                words.append(f"duplicate sample (first on line {first[line.text]})")
                fixed.append(Line(line.text, None, "duplicate"))
            else:
                first[line.text] = number
                fixed.append(originals[line.text])
        elif line.sample is None and line.name is not None:  # an injected malformed line
            bad_lines.append(number)
            words.append(line.name)
            fixed.append(line)
        else:
            fixed.append(line)
    return fixed, bad_lines, words


@SETTINGS
@given(case=with_injected_errors(), crlf=st.booleans())
def test_malformed_lines_are_reported_on_their_lines(
    case: tuple[list[Line], list[int], list[str]], crlf: bool
) -> None:
    lines, bad_lines, words = case
    data = render(lines, crlf=crlf)
    exp = parse(data)
    assert exp.malformed_total == len(bad_lines)
    assert [i.line for i in exp.issues] == bad_lines[:MAX_ISSUES]
    for issue, word in zip(exp.issues, words, strict=False):
        assert word in issue.message, (issue, word)
    assert in_order(exp) == expected_in_order(lines)
    assert exp.samples_total == sum(
        1
        for line in lines
        if line.text.strip(b" \t\r") and not line.text.lstrip(b" \t").startswith(b"#")
    )
    for key in exp.keys:
        decode_key(key)


@SETTINGS
@given(case=with_injected_errors(), data=st.data(), openmetrics=st.booleans())
def test_fast_path_equals_exact_pass(
    case: tuple[list[Line], list[int], list[str]], data: st.DataObject, openmetrics: bool
) -> None:
    lines, _, _ = case
    clean = [line for line in lines if line.sample is not None or line.text.startswith(b"#")]
    for payload_lines in (lines, clean):
        payload = render(payload_lines) + (b"# EOF\n" if openmetrics else b"")
        names = sorted({line.name or "" for line in payload_lines})
        wanted_names = data.draw(st.none() | st.lists(st.sampled_from(names), unique=True))
        wanted = None
        if wanted_names is not None:
            wanted = frozenset(n.encode() for n in wanted_names) | {b"bad_a", b"bad_f"}
        fast = parse(payload, wanted, openmetrics=openmetrics)
        exact = exposition._exact(payload, wanted, openmetrics)
        assert identical(fast, exact), (fast, exact)
        # A later scrape of the same target: the previous result only speeds the parse up.
        for earlier in (clean, lines):
            earlier_payload = render(earlier) + (b"# EOF\n" if openmetrics else b"")
            previous = parse(earlier_payload, wanted, openmetrics=openmetrics)
            again = parse(payload, wanted, openmetrics=openmetrics, previous=previous)
            assert identical(again, exact), (again, exact)
            # ...and from the third scrape on, with a previous result that had one itself.
            steady = parse(earlier_payload, wanted, openmetrics=openmetrics, previous=previous)
            again = parse(payload, wanted, openmetrics=openmetrics, previous=steady)
            assert identical(again, exact), (again, exact)


def go_accepts(token: str) -> bool:
    """Go's strconv.ParseFloat syntax, less hex floats and '_' (as Prometheus' parseFloat),
    written independently of the parser's regex."""
    body = token[1:] if token[:1] in "+-" else token
    lowered = body.lower()
    if lowered in ("inf", "infinity"):
        return True
    if lowered == "nan":
        return body == token  # no sign on NaN
    i, digits = 0, 0
    while i < len(body) and body[i] in "0123456789":
        i, digits = i + 1, digits + 1
    if i < len(body) and body[i] == ".":
        i += 1
        while i < len(body) and body[i] in "0123456789":
            i, digits = i + 1, digits + 1
    if digits == 0:
        return False
    if i < len(body) and body[i] in "eE":
        i += 1
        if i < len(body) and body[i] in "+-":
            i += 1
        start = i
        while i < len(body) and body[i] in "0123456789":
            i += 1
        if i == start:
            return False
    return i == len(body)


@settings(max_examples=300, deadline=None)
@given(
    token=st.text(
        alphabet=st.sampled_from(list("0123456789.eE+-_xXpPnNaAiIfFtTyY")), min_size=1, max_size=8
    )
    | st.sampled_from(["1e400", "-1e309", "1e308", "+nan", "NaN", "-Inf", "0x1p3", "1_0"]),
    openmetrics=st.booleans(),
)
def test_value_tokens_follow_go(token: str, openmetrics: bool) -> None:
    data = b"m " + token.encode() + b"\n" + (b"# EOF\n" if openmetrics else b"")
    previous = parse(b"m 1\n" + (b"# EOF\n" if openmetrics else b""), openmetrics=openmetrics)
    exp = parse(data, openmetrics=openmetrics)
    assert identical(exp, parse(data, openmetrics=openmetrics, previous=previous))
    overflow = go_accepts(token) and math.isinf(float(token)) and "n" not in token.lower()
    if go_accepts(token) and not overflow:
        assert exp.malformed_total == 0, exp.issues
        assert np.array_equal(exp.values, [float(token)], equal_nan=True)
    else:
        assert exp.keys == []
        assert exp.malformed_total == 1
        assert ("out of range" if overflow else "invalid value") in exp.issues[0].message
