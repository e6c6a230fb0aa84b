"""Durations (Prometheus' model.ParseDuration / Duration.String) and byte sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpimon.config.durations import format_duration, format_size, parse_duration, parse_size

MS_PER = {"y": 31_536_000_000, "w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000}
MS_PER |= {"s": 1000, "ms": 1}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("00s", 0.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h0m", 3600.0),
        ("47m", 2820.0),
        ("500ms", 0.5),
        ("1s500ms", 1.5),
        ("2d", 172_800.0),
        ("1w", 604_800.0),
        ("1y", 31_536_000.0),
        ("1y2w3d4h5m6s7ms", 31_536_000 + 2 * 604_800 + 3 * 86_400 + 4 * 3600 + 306.007),
    ],
)
def test_parse_valid(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("5", '"5": expected whole numbers each followed by a unit'),
        ("five minutes", "expected whole numbers each followed by a unit (y, w, d, h, m, s, ms)"),
        ("1.5h", '"1.5h": durations use whole numbers; write 1h30m instead'),
        ("0.5s", "write 500ms instead"),
        ("5min", 'unknown unit "min" (y, w, d, h, m, s, ms); write 5m'),
        ("5M", 'unknown unit "M"'),
        ("45 minutes", '"45 minutes": no spaces allowed; write 45m'),
        (" 5m", "no spaces allowed; write 5m"),
        ("5m1h", "units must go from the largest to the smallest, each at most once"),
        ("5m5m", "units must go from the largest to the smallest"),
        ("-5m", "durations cannot be negative"),
        ("1h30", "expected whole numbers each followed by a unit"),
        ("300y", "out of range"),
    ],
)
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="duration") as info:
        parse_duration(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (2820, "47m"),
        (5400, "1h30m"),
        (0.5, "500ms"),
        (90 * 86_400, "90d"),  # weeks only when they divide: 90d, not 12w6d
        (14 * 86_400, "2w"),
        (365 * 86_400, "1y"),
        (366 * 86_400, "366d"),
        (3661.001, "1h1m1s1ms"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError, match="cannot format"):
        format_duration(-1)


@given(st.integers(min_value=0, max_value=200 * MS_PER["y"]))
def test_round_trip_from_milliseconds(ms: int) -> None:
    assert parse_duration(format_duration(ms / 1000)) * 1000 == pytest.approx(ms, abs=1e-3)


@given(
    st.lists(st.sampled_from(list(MS_PER)), unique=True, min_size=1).flatmap(
        lambda units: st.tuples(
            st.just(sorted(units, key=list(MS_PER).index)),
            st.lists(
                st.integers(min_value=0, max_value=99), min_size=len(units), max_size=len(units)
            ),
        )
    )
)
def test_any_descending_terms_parse(terms: tuple[list[str], list[int]]) -> None:
    units, numbers = terms
    text = "".join(f"{n}{u}" for u, n in zip(units, numbers, strict=True))
    expected_ms = sum(n * MS_PER[u] for u, n in zip(units, numbers, strict=True))
    assert parse_duration(text) * 1000 == pytest.approx(expected_ms, abs=1e-3)
    # Formatting is canonical: it parses back to the same duration.
    assert parse_duration(format_duration(expected_ms / 1000)) * 1000 == pytest.approx(
        expected_ms, abs=1e-3
    )


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1024", 1024),
        ("512B", 512),
        ("1KB", 1024),
        ("1KiB", 1024),
        ("10MB", 10 * 1024**2),
        ("10MiB", 10 * 1024**2),
        ("2GB", 2 * 1024**3),
        ("1TiB", 1024**4),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "10 megabytes", "1.5MB", "-1", "10mb", "MB"])
def test_parse_size_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(10 * 1024**2) == "10MiB"
    assert format_size(1536) == "1536B"
    assert format_size(1000) == "1000B"
    assert format_size(0) == "0B"
