"""The OpenMetrics data format of ``kpimon replay``: the text exposition format with a timestamp
on every sample, as ``promtool tsdb create-blocks-from openmetrics`` reads it.

One file holds many samples of each series, at different times; ``# HELP``, ``# TYPE`` and
``# UNIT`` lines are allowed (and ignored), any other ``#`` line is an error, and the file must end
with ``# EOF`` (a file without it may be truncated). Timestamps are Unix seconds, as OpenMetrics
writes them (``1700000000`` or ``1700000000.250``); a sample without one is an error, and so is
a timestamp that looks like milliseconds. Blank lines and CRLF line ends are tolerated.

How it reads, fast: the text before ``# EOF`` is cut into chunks of whole lines. In a chunk
whose sample lines all have the canonical layout (``key value timestamp``, single spaces), one
regex pass at C speed splits every line, ``float`` converts values and timestamps in C-level
``map`` calls, and a dict maps keys to series. A key seen for the first time is checked by
kpimon's exposition parser (:func:`kpimon.sources.exposition.parse`). Any chunk with anything
else (exemplars, odd spacing, CRLF, a new key the parser rejects, a bad number) is read line by
line, each line not in the canonical layout going through the exposition parser, which says
exactly what is wrong where. Errors are :class:`~kpimon.replay.data.DataError` with the line
number. Pure: works on the bytes handed in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from kpimon.labels import decode_key, format_key
from kpimon.replay.data import MAX_UNIX_SECONDS, DataError, Recording, RecordingBuilder
from kpimon.sources.exposition import parse

CHUNK_BYTES = 4 << 20
# Up to the line's last "}" followed by value and timestamp; a key seen for the first time is
# checked by the exposition parser, so a greedy label set is as good as an exact one, and faster.
_KEY = rb"[a-zA-Z_:][a-zA-Z0-9_:]*+(?:\{[^\n]*\})?"

_VALUE = rb"[-+.0-9eEinfatyINFATY]+"
_STAMP = rb"[-+.0-9eE]+"
_SAMPLE = re.compile(rb"(" + _KEY + rb") (" + _VALUE + rb") (" + _STAMP + rb")\r?\n?")
_SAMPLES = re.compile(rb"^(" + _KEY + rb") (" + _VALUE + rb") (" + _STAMP + rb")$", re.M)
_META = (b"# HELP ", b"# TYPE ", b"# UNIT ")
_VALUE_BYTES = b"-+.0123456789eEinfatyINFATY"
_STAMP_BYTES = b"-+.0123456789eE"
_SPECIAL = re.compile(rb"[-+]?(?:inf|infinity|nan)", re.I)


def read_openmetrics(data: bytes, file: str) -> Recording:
    """The samples of OpenMetrics data (from ``file``, for messages), in reading order.

    Raises:
        DataError: the first malformed line, with its number.
    """
    eof_start, eof_end = _find_eof(data)
    limit = len(data) if eof_start < 0 else eof_start  # the body: samples (no copy of it)
    reader = _Reader(file)
    pos, line = 0, 1
    while pos < limit:
        end = data.find(b"\n", min(pos + CHUNK_BYTES, limit) - 1, limit)
        end = limit if end < 0 else end + 1
        chunk = data[pos:end]
        if not reader.fast(chunk, line):
            reader.slow(chunk, line)
        line += chunk.count(b"\n")
        pos = end
    if eof_start < 0:
        last = line - 1 if not limit or data[limit - 1 : limit] == b"\n" else line
        raise DataError(file, last + 1, 'missing "# EOF" at the end (the file may be truncated)')
    for offset, rest in enumerate(data[eof_end:].split(b"\n")):
        if rest.strip():
            raise DataError(file, line + offset, f'content after "# EOF" (line {line})')
    return reader.out.raw()


def _find_eof(data: bytes) -> tuple[int, int]:
    """Start and end (before its newline) of the first ``# EOF`` line; (-1, -1) if none."""
    at = data.find(b"# EOF")
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        end = len(data) if end < 0 else end
        if not data[start:at].strip(b" \t") and not data[at + 5 : end].strip(b" \t\r"):
            return start, end
        at = data.find(b"# EOF", at + 5)
    return -1, -1


_Triples = tuple[Sequence[bytes], Sequence[bytes], Sequence[bytes]]


def _split(chunk: bytes, lines: int) -> _Triples | None:
    """Keys, values and timestamps of a chunk whose every line is ``key value timestamp`` with
    single spaces and no space in the key; None when it is not so.

    Splitting the whole chunk at blanks costs a tenth of a regex pass. The separators prove
    that the tokens line up: when they run space, space, newline, line after line, each line
    holds exactly three tokens.
    """
    if not chunk.endswith(b"\n"):
        return None
    array = np.frombuffer(chunk, np.uint8)
    kinds = array[(array == 32) | (array == 10)]
    if len(kinds) != 3 * lines or not (
        np.all(kinds[0::3] == 32) and np.all(kinds[1::3] == 32) and np.all(kinds[2::3] == 10)
    ):
        return None
    tokens = chunk.replace(b"\n", b" ").split(b" ")
    return tokens[0:-1:3], tokens[1::3], tokens[2::3]


class _Reader:
    """The state of one file's reading (mutable)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.out = RecordingBuilder(file)
        self.ids: dict[bytes, int] = {}  # key as written -> series id

    def fast(self, chunk: bytes, first_line: int) -> bool:
        """Read a chunk of canonical lines at C speed; False (nothing read) when it is not one."""
        if b"\r" in chunk:
            return False
        numbers: npt.NDArray[np.int32] | None = None
        lines = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") else 1)
        if chunk.startswith((b"#", b"\n")) or b"\n#" in chunk or b"\n\n" in chunk:
            # Comments or empty lines in between (a line of blanks fails the count below).
            texts = chunk.split(b"\n")[:lines]
            if any(t.startswith(b"#") and not t.startswith(_META) for t in texts):
                return False
            numbers = np.array(
                [i for i, t in enumerate(texts) if t.strip(b" \t") and t[:1] != b"#"], np.int32
            )
            lines = len(numbers)
        triples: _Triples | None = _split(chunk, lines) if numbers is None else None
        if triples is None:
            matches = _SAMPLES.findall(chunk)
            if len(matches) != lines:
                return False
            if not matches:
                return True
            found_keys, found_values, found_stamps = zip(*matches, strict=True)
            triples = (found_keys, found_values, found_stamps)
        keys, value_tokens, stamp_tokens = triples
        if value_tokens and (
            b"".join(value_tokens).translate(None, _VALUE_BYTES)
            or b"".join(stamp_tokens).translate(None, _STAMP_BYTES)
        ):
            return False
        try:
            values = np.fromiter(map(float, value_tokens), np.float64, len(value_tokens))
            seconds = np.fromiter(map(float, stamp_tokens), np.float64, len(stamp_tokens))
        except ValueError:
            return False
        if not np.isfinite(seconds).all() or (np.abs(seconds) >= MAX_UNIX_SECONDS).any():
            return False
        inf = np.flatnonzero(np.isinf(values))
        if any(_SPECIAL.fullmatch(value_tokens[i]) is None for i in inf.tolist()):
            return False  # an overflowing literal: the exact pass says so
        ids = self.ids
        new = [k for k in dict.fromkeys(keys) if k not in ids]
        if new:
            checked = {k: _checked(k) for k in new}
            if any(v is None for v in checked.values()):
                return False
            for k, canonical in checked.items():
                assert canonical is not None
                ids[k] = self.out.series_id(canonical)
        series = np.fromiter(map(ids.__getitem__, keys), np.int32, len(keys))
        base = np.arange(len(keys), dtype=np.int32) if numbers is None else numbers
        out = self.out
        out.series.frombytes(series.tobytes())
        out.times_ms.frombytes(np.round(seconds * 1000).astype(np.int64).tobytes())
        out.values.frombytes(values.tobytes())
        out.lines.frombytes((base + np.int32(first_line)).tobytes())
        return True

    def slow(self, chunk: bytes, first_line: int) -> None:
        """Read a chunk line by line, saying exactly what is wrong with the first bad line."""
        file, ids, add, match = self.file, self.ids, self.out.add, _SAMPLE.fullmatch
        for number, line in enumerate(chunk.split(b"\n"), first_line):
            m = match(line)
            if m is not None:
                key, value_token, stamp_token = m.groups()
                sid = ids.get(key)
                try:
                    value = float(value_token)
                    seconds = float(stamp_token)
                except ValueError:
                    sid = None  # let the parser say what is wrong
                # Non-finite values go the exact way too: it tells "+Inf" from an overflow.
                if (
                    sid is not None
                    and math.isfinite(value)
                    and math.isfinite(seconds)
                    and abs(seconds) < MAX_UNIX_SECONDS
                ):
                    add(sid, round(seconds * 1000), value, number)
                    continue
            stripped = line.strip(b" \t\r")
            if not stripped:
                continue
            if stripped.startswith(b"#"):
                if not stripped.startswith(_META):
                    raise DataError(
                        file,
                        number,
                        "invalid comment line (OpenMetrics allows only # HELP, # TYPE, # UNIT "
                        "and # EOF)",
                    )
                continue
            key, value, seconds = _exact(stripped, file, number)
            sid = ids.get(key)
            if sid is None:
                sid = ids[key] = self.out.series_id(_canonical(key, file, number))
            add(sid, round(seconds * 1000), value, number)


def _checked(key: bytes) -> bytes | None:
    """The canonical key of a key never seen before, or None when the parser rejects it."""
    result = parse(key + b" 0 0\n# EOF\n", openmetrics=True)
    if result.issues:
        return None
    try:
        name, labels = decode_key(key)
    except ValueError:
        return None
    return format_key(name, labels)


def _exact(line: bytes, file: str, number: int) -> tuple[bytes, float, float]:
    """Key, value and timestamp of a sample line, by kpimon's exposition parser."""
    result = parse(line + b"\n# EOF\n", openmetrics=True)
    if result.issues:
        raise DataError(file, number, result.issues[0].message)
    if result.timestamps is None or math.isnan(result.timestamps[0]):
        raise DataError(
            file, number, "sample has no timestamp (replay data needs one on every sample)"
        )
    seconds = float(result.timestamps[0])
    if abs(seconds) >= MAX_UNIX_SECONDS:
        raise DataError(
            file,
            number,
            f"timestamp {seconds:.0f} is out of range: OpenMetrics timestamps are in seconds, "
            "not milliseconds",
        )
    return result.keys[0], float(result.values[0]), seconds


def _canonical(key: bytes, file: str, number: int) -> bytes:
    """The canonical key of ``key`` (labels sorted), so two spellings are one series."""
    try:
        name, labels = decode_key(key)
    except ValueError as exc:
        raise DataError(file, number, str(exc)) from None
    return format_key(name, labels)
