"""Durations and byte sizes as written in config files.

Durations follow Prometheus' ``model.ParseDuration`` exactly: one or more ``<integer><unit>``
terms with units ``y`` (365 d), ``w``, ``d``, ``h``, ``m``, ``s``, ``ms``, each unit at most once
and from the largest to the smallest (``1h30m``, never ``30m1h`` or ``1.5h``); ``0`` alone is
allowed. :func:`format_duration` mirrors ``model.Duration.String``, so
``parse_duration(format_duration(s)) == s`` for any whole number of milliseconds.

Byte sizes follow Prometheus' ``body_size_limit`` (``units.Base2Bytes``): an integer number of
bytes, or an integer with a unit where ``KB``/``KiB`` both mean 1024 bytes, ``MB``/``MiB``
1024², and so on.

Pure functions; no I/O.
"""

from __future__ import annotations

import re
from typing import Final

_MS_PER: Final[dict[str, int]] = {
    "y": 365 * 24 * 3600 * 1000,
    "w": 7 * 24 * 3600 * 1000,
    "d": 24 * 3600 * 1000,
    "h": 3600 * 1000,
    "m": 60 * 1000,
    "s": 1000,
    "ms": 1,
}
_ORDER: Final[tuple[str, ...]] = tuple(_MS_PER)
_UNITS_TEXT: Final = "y, w, d, h, m, s, ms"
_MAX_MS: Final = (1 << 63) // 1_000_000  # Go's time.Duration limit (about 292 years)

_TERM = re.compile(r"([0-9]+)([^0-9]+)")
_FRACTION = re.compile(r"([0-9]*\.[0-9]+|[0-9]+\.[0-9]*)(y|w|d|h|m|s|ms)")


def parse_duration(text: str) -> float:
    """Parse a Prometheus duration (``"1h30m"``, ``"5m"``, ``"0"``) into seconds.

    Raises:
        ValueError: ``text`` is not a valid duration; the message says why, and how to write it
            when that can be guessed (``"5 min"`` → ``write 5m``).
    """
    try:
        return _parse(text)
    except ValueError as exc:
        guess = _guess(text)
        if guess is None:
            raise
        if any(c.isspace() for c in text):
            raise ValueError(
                f"invalid duration {_quote(text)}: no spaces allowed; write {guess}"
            ) from None
        raise ValueError(f"{exc}; write {guess}") from None


_UNIT_WORDS: Final[dict[str, str]] = {
    **dict.fromkeys(("year", "years", "yr", "yrs"), "y"),
    **dict.fromkeys(("week", "weeks", "wk", "wks"), "w"),
    **dict.fromkeys(("day", "days"), "d"),
    **dict.fromkeys(("hour", "hours", "hr", "hrs"), "h"),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), "m"),
    **dict.fromkeys(("sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("msec", "msecs", "millisecond", "milliseconds"), "ms"),
}


def _guess(text: str) -> str | None:
    """A valid spelling of a duration written with spaces or unit words, if there is one."""
    compact = "".join(text.split())
    terms = re.findall(r"([0-9]+)([A-Za-z]+)", compact)
    if not terms or "".join(n + u for n, u in terms) != compact:
        return None
    candidate = "".join(n + _UNIT_WORDS.get(u.lower(), u) for n, u in terms)
    if candidate == text:
        return None
    try:
        _parse(candidate)
    except ValueError:
        return None
    return candidate


def _parse(text: str) -> float:
    if text == "0":
        return 0.0
    if text == "":
        raise ValueError("empty duration (write e.g. 30s, 5m or 1h30m)")
    shown = _quote(text)
    if text.startswith("-"):
        raise ValueError(f"invalid duration {shown}: durations cannot be negative")
    fraction = _FRACTION.fullmatch(text)
    if fraction:
        raise ValueError(f"invalid duration {shown}: {_fraction_hint(fraction)}")
    total_ms = 0
    last = -1
    pos = 0
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None:
            raise ValueError(
                f"invalid duration {shown}: expected whole numbers each followed by a unit "
                f"({_UNITS_TEXT}), e.g. 30s, 5m or 1h30m"
            )
        number, unit = m.groups()
        if unit not in _MS_PER:
            raise ValueError(
                f"invalid duration {shown}: unknown unit {_quote(unit)} ({_UNITS_TEXT})"
            )
        index = _ORDER.index(unit)
        if index <= last:
            raise ValueError(
                f"invalid duration {shown}: units must go from the largest to the smallest, "
                "each at most once (e.g. 1h30m)"
            )
        last = index
        total_ms += int(number) * _MS_PER[unit]
        if total_ms > _MAX_MS:
            raise ValueError(f"invalid duration {shown}: out of range (at most about 292y)")
        pos = m.end()
    return total_ms / 1000.0


def _fraction_hint(m: re.Match[str]) -> str:
    number, unit = m.groups()
    ms = float(number) * _MS_PER[unit]
    base = "durations use whole numbers"
    if ms == int(ms) and 0 < ms <= _MAX_MS:
        return f"{base}; write {format_duration(ms / 1000.0)} instead"
    return base


def format_duration(seconds: float) -> str:
    """Format ``seconds`` as Prometheus does (``2820`` → ``"47m"``, ``5400`` → ``"1h30m"``).

    Sub-millisecond parts are dropped; years and weeks are used only when they divide the whole
    duration (``90d`` rather than ``12w6d``), as in Prometheus. Zero is ``"0s"``.

    Raises:
        ValueError: ``seconds`` is negative or not finite.
    """
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"cannot format {seconds!r} as a duration")
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit in _ORDER:
        mult = _MS_PER[unit]
        if unit in ("y", "w") and ms % mult != 0:
            continue
        value, ms = divmod(ms, mult)
        if value:
            out.append(f"{value}{unit}")
    return "".join(out)


_SIZE = re.compile(r"([0-9]+)\s*([KMGTPE]i?B|B)?")
_SIZE_MULT: Final[dict[str, int]] = {
    "B": 1,
    **{f"{p}B": 1024 ** (i + 1) for i, p in enumerate("KMGTPE")},
    **{f"{p}iB": 1024 ** (i + 1) for i, p in enumerate("KMGTPE")},
}


def parse_size(text: str) -> int:
    """Parse a byte size (``"10MB"``, ``"512KiB"``, ``"1024"``) into bytes; units are base 2.

    Raises:
        ValueError: ``text`` is not a valid size.
    """
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            f"invalid size {_quote(text)}: expected a whole number of bytes, optionally with a "
            "unit B, KB, MB, GB, TB (or KiB, MiB, ...; all base 2), e.g. 10MB"
        )
    number, unit = m.groups()
    return int(number) * _SIZE_MULT[unit or "B"]


def format_size(n: int) -> str:
    """Format a byte count with the largest base-2 unit dividing it (``10485760`` → ``10MiB``)."""
    for prefix in "EPTGMK":
        mult = _SIZE_MULT[f"{prefix}iB"]
        if n and n % mult == 0:
            return f"{n // mult}{prefix}iB"
    return f"{n}B"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
