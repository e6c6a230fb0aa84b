"""The CSV data format of ``kpimon replay``: ``timestamp,series,value`` rows.

- ``timestamp``: Unix seconds (``1700000000``, ``1700000000.25``) or RFC 3339 with ``Z`` or an
  offset (``2023-11-14T22:13:20Z``);
- ``series``: a series in PromQL syntax, ``name{label="value", ...}`` (a metric name is
  required); fields holding commas or quotes are quoted as the :mod:`csv` module does
  (``"up{job=""api"",instance=""a""}"``);
- ``value``: a number (``NaN``, ``+Inf``, ``-Inf`` included), or ``stale`` for a staleness
  marker (the series ended, as when a scraped series disappears).

A header row ``timestamp,series,value`` is optional; blank lines and lines starting with ``#``
are skipped. Errors are :class:`~kpimon.replay.data.DataError` with the line number. Pure apart
from the text handed in: no I/O.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from kpimon.labels import format_key, without_name
from kpimon.replay.data import DataError, Recording, RecordingBuilder, parse_time
from kpimon.ruletest.series import SeriesError, parse_metric
from kpimon.store import STALE_NAN

HEADER = ("timestamp", "series", "value")


def read_csv(text: str, file: str) -> Recording:
    """The samples of CSV data ``text`` (from ``file``, for messages), in reading order.

    Raises:
        DataError: a malformed row (the first one), with its line number.
    """
    fast = _fast(text, file)
    return fast if fast is not None else _by_rows(text, file)


_NUMBER_CHARS = frozenset("0123456789.eE+-")


def _fast(text: str, file: str) -> Recording | None:
    """The samples when every row is plain (one line each, three fields, numbers and series
    that parse); None to read row by row, which says exactly what is wrong where.

    The text is read in chunks of whole lines (a list of rows per chunk, not per file: a day
    of a thousand series would be gigabytes of lists), and each chunk's columns are converted
    whole: each distinct timestamp and series is parsed once (a recording repeats them
    thousands of times), values with one C-level ``map(float)``.
    """
    state = _Columns(RecordingBuilder(file), file)
    pos, line = 0, 1
    while pos < len(text):
        end = text.find("\n", min(pos + CHUNK_CHARS, len(text)) - 1)
        end = len(text) if end < 0 else end + 1
        chunk = text[pos:end]
        if not state.read(chunk, line):
            return None
        line += chunk.count("\n")
        pos = end
    return state.out.raw()


CHUNK_CHARS = 4 << 20


class _Columns:
    """The column-wise reading of one CSV text (mutable)."""

    def __init__(self, out: RecordingBuilder, file: str) -> None:
        self.out = out
        self.file = file
        self.times: dict[str, int] = {}  # timestamp as written -> Unix ms
        self.ids: dict[str, int] = {}  # series as written -> series id
        self.header_checked = False

    def read(self, chunk: str, first_line: int) -> bool:
        """Read a chunk of whole lines; False (nothing kept from it) when it is not plain."""
        try:
            rows = list(csv.reader(io.StringIO(chunk, newline=""), strict=True))
        except csv.Error:
            return False
        if len(rows) != chunk.count("\n") + (0 if chunk.endswith("\n") else 1):
            return False  # a field spans lines: row numbers are not line numbers
        numbers = list(range(first_line, first_line + len(rows)))
        if (
            chunk.startswith(("#", "\n", "\r"))
            or "\n#" in chunk
            or "\n\n" in chunk
            or "\n\r" in chunk
        ):
            kept = [(n, r) for n, r in zip(numbers, rows, strict=True) if r and r[0][:1] != "#"]
            numbers = [n for n, _ in kept]
            rows = [r for _, r in kept]
        if rows and not self.header_checked:
            self.header_checked = True
            if tuple(c.strip().lower() for c in rows[0]) == HEADER:
                numbers, rows = numbers[1:], rows[1:]
        if not rows:
            return True
        if set(map(len, rows)) != {3}:
            return False
        stamps, series, values = zip(*rows, strict=True)
        file, times, ids = self.file, self.times, self.ids
        try:
            new_times = {t: _time_ms(t, file, 0) for t in dict.fromkeys(stamps) if t not in times}
            new_keys = {k: _key(k, file, 0) for k in dict.fromkeys(series) if k not in ids}
            if _NUMBER_CHARS.issuperset("".join(values)):
                floats = np.fromiter(map(float, values), np.float64, len(values))
                if not np.isfinite(floats).all():
                    return False  # an overflowing literal
            else:
                floats = np.fromiter((_value(v, file, 0) for v in values), np.float64, len(values))
        except (DataError, ValueError):
            return False
        times.update(new_times)
        out = self.out
        for k, key in new_keys.items():
            ids[k] = out.series_id(key)
        n = len(rows)
        out.series.frombytes(np.fromiter(map(ids.__getitem__, series), np.int32, n).tobytes())
        out.times_ms.frombytes(np.fromiter(map(times.__getitem__, stamps), np.int64, n).tobytes())
        out.values.frombytes(floats.tobytes())
        out.lines.frombytes(np.array(numbers, dtype=np.int32).tobytes())
        return True


def _by_rows(text: str, file: str) -> Recording:
    out = RecordingBuilder(file)
    keys: dict[str, int] = {}  # series as written -> series id
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    first = True
    number = 0
    try:
        for row in reader:
            number = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()) or row[0].startswith("#"):
                continue
            if first:
                first = False
                if tuple(c.strip().lower() for c in row) == HEADER:
                    continue
            if len(row) != 3:
                hint = (
                    ' (quote a series with commas: "up{a=""1"",b=""2""}")' if len(row) > 3 else ""
                )
                raise DataError(
                    file,
                    number,
                    f"expected 3 fields (timestamp,series,value), got {len(row)}{hint}",
                )
            stamp, series, value = row
            sid = keys.get(series)
            if sid is None:
                sid = keys[series] = out.series_id(_key(series, file, number))
            out.add(sid, _time_ms(stamp, file, number), _value(value, file, number), number)
    except csv.Error as exc:
        raise DataError(file, reader.line_num, f"malformed CSV: {exc}") from None
    return out.raw()


def _key(series: str, file: str, line: int) -> bytes:
    try:
        labels = parse_metric(series)
    except SeriesError as exc:
        raise DataError(file, line, f"invalid series {series.strip()!r}: {exc.message}") from None
    name = dict(labels).get("__name__", "")
    if not name:
        raise DataError(file, line, f"invalid series {series.strip()!r}: no metric name")
    return format_key(name, without_name(labels))


def _time_ms(text: str, file: str, line: int) -> int:
    try:
        seconds = parse_time(text)
    except ValueError as exc:
        raise DataError(file, line, str(exc).replace("time", "timestamp", 1)) from None
    return round(seconds * 1000)


_SPECIAL = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}


def _value(text: str, file: str, line: int) -> float:
    token = text.strip()
    lower = token.lower()
    if lower == "stale":
        return STALE_NAN
    special = _SPECIAL.get(lower)
    if special is not None:
        return special
    try:
        if "_" in token or not token or token[-1].isalpha():
            raise ValueError
        value = float(token)
    except ValueError:
        raise DataError(file, line, f"invalid value {token!r}") from None
    if math.isinf(value):
        raise DataError(file, line, f"value out of range {token!r}")
    return value
