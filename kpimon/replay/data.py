"""Recorded samples as the replay reads them, and the errors and times of the command line.

Owns :class:`Recording` (every sample of every series, sorted by series then time, with the
file and line each came from), :class:`DataError` (``FILE:LINE: message``), :func:`merge`
(several data files into one recording) and :func:`parse_time` (``--from``/``--to``/
``--restart-at``: RFC 3339 or Unix seconds). Pure: no I/O.
"""

from __future__ import annotations

import array
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from kpimon.errors import KpimonError

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
_T = TypeVar("_T", bound=np.generic)
_EMPTY_I32: I32 = np.empty(0, np.int32)


class DataError(KpimonError):
    """A data file that cannot be read or is malformed; ``str()`` is ``FILE:LINE: message``.

    ``line`` is 0 when the problem is the file as a whole (it cannot be read); then the text is
    ``FILE: message``.
    """

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


@dataclass(frozen=True, slots=True, eq=False)
class Recording:
    """Every sample of a set of data files.

    ``keys[i]`` is series ``i``'s key in canonical exposition syntax (``name{a="b"}``, labels
    sorted). Sample ``j`` belongs to series ``series[j]``, was taken at ``times_ms[j]`` (Unix
    milliseconds) with value ``values[j]`` (possibly the staleness marker) and was read from
    ``files[file_of[j]]`` line ``lines[j]``. Samples are sorted by series, then time; a series
    has at most one sample per millisecond. (``eq=False``: numpy fields.)
    """

    keys: tuple[bytes, ...]
    series: I32
    times_ms: I64
    values: F64
    files: tuple[str, ...]
    file_of: I32
    lines: I32

    def __len__(self) -> int:
        return len(self.times_ms)

    @property
    def start_ms(self) -> int:
        """The time of the oldest sample (the recording must not be empty)."""
        return int(self.times_ms.min())

    @property
    def end_ms(self) -> int:
        """The time of the newest sample (the recording must not be empty)."""
        return int(self.times_ms.max())

    def where(self, j: int) -> tuple[str, int]:
        """File and line of sample ``j``."""
        return self.files[int(self.file_of[j])], int(self.lines[j])


class RecordingBuilder:
    """Collects the samples of one data file (a reader's scratchpad).

    Samples go into :mod:`array` buffers (8 or 4 bytes each, no Python object per sample), so a
    day of a thousand series costs tens of megabytes, not a gigabyte of lists.
    """

    __slots__ = ("file", "key_ids", "lines", "series", "times_ms", "values")

    def __init__(self, file: str) -> None:
        self.file = file
        self.key_ids: dict[bytes, int] = {}
        self.series = array.array("i")
        self.times_ms = array.array("q")
        self.values = array.array("d")
        self.lines = array.array("i")

    def series_id(self, key: bytes) -> int:
        """The id of the series with canonical key ``key`` (a new one the first time)."""
        sid = self.key_ids.get(key)
        if sid is None:
            sid = self.key_ids[key] = len(self.key_ids)
        return sid

    def add(self, series: int, time_ms: int, value: float, line: int) -> None:
        self.series.append(series)
        self.times_ms.append(time_ms)
        self.values.append(value)
        self.lines.append(line)

    def build(self) -> Recording:
        """The samples collected, sorted.

        Raises:
            DataError: a series has two samples at the same time.
        """
        return merge([self.raw()])

    def raw(self) -> Recording:
        """The samples collected, in reading order (not yet checked for duplicates).

        The arrays share the builder's buffers (no copy): add nothing after this.
        """
        return Recording(
            keys=tuple(self.key_ids),
            series=np.frombuffer(self.series, dtype=np.int32),
            times_ms=np.frombuffer(self.times_ms, dtype=np.int64),
            values=np.frombuffer(self.values, dtype=np.float64),
            files=(self.file,),
            file_of=np.zeros(len(self.series), dtype=np.int32),
            lines=np.frombuffer(self.lines, dtype=np.int32),
        )


def merge(parts: Sequence[Recording]) -> Recording:
    """One recording of several (e.g. one per data file), sorted by series then time.

    Raises:
        DataError: a series has two samples at the same time (at the later of the two lines).
    """
    keys: dict[bytes, int] = {}
    series: list[I32] = []
    files: list[str] = []
    file_of: list[I32] = []
    for part in parts:
        remap = np.array([keys.setdefault(k, len(keys)) for k in part.keys], dtype=np.int32)
        series.append(remap[part.series] if len(part.series) else part.series)
        file_of.append(part.file_of + np.int32(len(files)))
        files.extend(part.files)
    all_series = _cat(series, _EMPTY_I32)
    times = _cat([p.times_ms for p in parts], np.empty(0, np.int64))
    values = _cat([p.values for p in parts], np.empty(0, np.float64))
    all_file_of = _cat(file_of, _EMPTY_I32)
    lines = _cat([p.lines for p in parts], _EMPTY_I32)
    # Stable: of two samples with one series and time, the one read first comes first.
    order = np.lexsort((times, all_series))
    rec = Recording(
        keys=tuple(keys),
        series=_take(all_series, order),
        times_ms=_take(times, order),
        values=_take(values, order),
        files=tuple(files),
        file_of=_take(all_file_of, order),
        lines=_take(lines, order),
    )
    same = np.flatnonzero(
        (rec.series[1:] == rec.series[:-1]) & (rec.times_ms[1:] == rec.times_ms[:-1])
    )
    if len(same):
        first, second = int(same[0]), int(same[0]) + 1
        file, line = rec.where(second)
        file0, line0 = rec.where(first)
        at = f"line {line0}" if file0 == file else f"{file0}:{line0}"
        key = rec.keys[int(rec.series[second])].decode("utf-8", "replace")
        raise DataError(
            file, line, f"duplicate sample of {key} at {rfc3339_ms(int(rec.times_ms[second]))} "
            f"(first on {at})"
        )  # fmt: skip
    return rec


def _take(a: npt.NDArray[_T], order: npt.NDArray[np.intp]) -> npt.NDArray[_T]:
    out: npt.NDArray[_T] = a[order]
    return out


def _cat(arrays: Sequence[npt.NDArray[_T]], empty: npt.NDArray[_T]) -> npt.NDArray[_T]:
    if not arrays:
        return empty
    if len(arrays) == 1:  # one data file: no copy
        return arrays[0]
    out: npt.NDArray[_T] = np.concatenate(arrays).astype(empty.dtype, copy=False)
    return out


def rfc3339_ms(ms: int) -> str:
    """Unix milliseconds as RFC 3339 in UTC (milliseconds shown only when there are some)."""
    when = dt.datetime.fromtimestamp(ms // 1000, tz=dt.UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


MAX_UNIX_SECONDS = 1e11
"""Year 5138: a bigger number of Unix seconds is surely milliseconds (or nanoseconds)."""


def parse_time(text: str) -> float:
    """A point in time as Unix seconds: RFC 3339 (``2024-05-01T12:00:00Z``) or Unix seconds.

    Raises:
        ValueError: neither, or an RFC 3339 time without ``Z`` or an offset.
    """
    stripped = text.strip()
    try:
        seconds = float(stripped)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or "_" in stripped:
            raise ValueError(f"invalid time {text!r}")
        if abs(seconds) >= MAX_UNIX_SECONDS:
            raise ValueError(
                f"invalid time {text!r}: out of range (Unix seconds, not milliseconds)"
            )
        return seconds
    try:
        when = dt.datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: expected RFC 3339 (2024-05-01T12:00:00Z) or Unix seconds"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"invalid time {text!r}: add Z (UTC) or an offset such as +02:00")
    return when.timestamp()
