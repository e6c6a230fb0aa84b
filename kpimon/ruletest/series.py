"""promtool's series notation: series selectors (``up{job="a"}``) and expanding values.

:func:`parse_metric` reads a series the way Prometheus' ``parser.ParseMetric`` does: an optional
metric name and an optional brace-enclosed list of ``name="value"`` pairs (only ``=``; values are
PromQL strings in double, single or back quotes with Go escapes). :func:`expand_values` expands a
``values`` string exactly as Prometheus 2.42's series-description grammar does:

- ``a``: one sample; ``axN``: N+1 samples of ``a``;
- ``a+bxN`` / ``a-bxN``: N+1 samples starting at ``a``, adding ``b`` cumulatively (so the float
  rounding is Prometheus' own);
- ``_``: no sample at that step; ``_xN``: N steps without a sample (not N+1);
- ``stale``: a staleness marker; numbers may be ``Inf``/``NaN`` (any case), decimals, exponents,
  and a leading ``0`` means octal (``010`` is 8), as Go's ``strconv.ParseInt(s, 0, 64)`` reads it.

Pure functions; errors are :class:`SeriesError` with the character offset of the problem.
"""

from __future__ import annotations

import re
from typing import Final

import numpy as np

from kpimon import labels as labelset
from kpimon.store import STALE_NAN

Values = tuple[float | None, ...]
"""One entry per step: a value (possibly the staleness marker) or None for no sample."""

MAX_STEPS: Final = 10_000_000
"""The most repetitions one item may ask for (``1x10000000``); more is surely a typo."""
_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SPACE: Final = " \t\n\r"
_WORD: Final = re.compile(r"[a-zA-Z0-9_:]*")
_NUMBER: Final = re.compile(r"[0-9]*(?:\.[0-9]*)?(?:[eE][-+]?[0-9]*)?")
_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}
_KEYWORDS: Final = frozenset(
    {
        "and", "or", "unless", "atan2", "sum", "avg", "count", "min", "max", "group", "stddev",
        "stdvar", "topk", "bottomk", "count_values", "quantile", "offset", "by", "without", "on",
        "ignoring", "group_left", "group_right", "bool", "start", "end",
    }
)  # fmt: skip


class SeriesError(ValueError):
    """A series or values string that Prometheus would reject; ``offset`` is where (0-based)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# -- series selectors --------------------------------------------------------------------------


def parse_metric(text: str, *, input_series: bool = False) -> labelset.Labels:
    """The label set (with ``__name__`` when named) of a series like ``up{job="a"}`` or ``{}``.

    With ``input_series``, no blank may separate the metric name from ``{``: Prometheus reads
    an input series as the start of a series description, where a blank after the name ends it.

    Raises:
        SeriesError: ``text`` is not a series in PromQL metric syntax.
    """
    pos = _skip(text, 0)
    name = ""
    m = _METRIC_NAME.match(text, pos)
    if m:
        name = m.group()
        pos = m.end() if input_series else _skip(text, m.end())
    pairs: list[tuple[str, str]] = []
    if pos < len(text) and text[pos] == "{":
        pos = _label_set(text, pos + 1, pairs)
    elif not name:
        raise SeriesError(_unexpected(text, pos, "a metric name or '{'"), pos)
    pos = _skip(text, pos)
    if pos != len(text):
        raise SeriesError(_unexpected(text, pos, "the end of the series"), pos)
    seen: set[str] = set()
    for label, _ in pairs:
        if label in seen:
            raise SeriesError(f'label "{label}" is given twice', 0)
        seen.add(label)
    if name:
        pairs = [p for p in pairs if p[0] != "__name__"] + [("__name__", name)]
    return labelset.make(pairs)


def _label_set(text: str, pos: int, pairs: list[tuple[str, str]]) -> int:
    """Read ``name="value", ...}`` from ``pos`` (just past ``{``); returns the end position."""
    while True:
        pos = _skip(text, pos)
        if pos < len(text) and text[pos] == "}":
            return pos + 1
        m = _LABEL_NAME.match(text, pos)
        if not m:
            raise SeriesError(_unexpected(text, pos, "a label name or '}'"), pos)
        label = m.group()
        pos = _skip(text, m.end())
        if text.startswith(("=~", "!=", "!~"), pos):
            raise SeriesError(
                f'a series gives label values with "=", not "{text[pos : pos + 2]}"', pos
            )
        if pos >= len(text) or text[pos] != "=":
            raise SeriesError(_unexpected(text, pos, "'='"), pos)
        pos = _skip(text, pos + 1)
        value, pos = _string(text, pos)
        pairs.append((label, value))
        pos = _skip(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "}":
            raise SeriesError(_unexpected(text, pos, "',' or '}'"), pos)


def _string(text: str, pos: int) -> tuple[str, int]:
    """A quoted PromQL string at ``pos``; returns its value and the position after it."""
    if pos >= len(text) or text[pos] not in "\"'`":
        raise SeriesError(_unexpected(text, pos, "a quoted label value"), pos)
    quote = text[pos]
    i = pos + 1
    out: list[str] = []
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\" and quote != "`":
            decoded, i = _escape(text, i, quote)
            out.append(decoded)
            continue
        if c == "\n" and quote != "`":
            break
        out.append(c)
        i += 1
    raise SeriesError("unterminated quoted string", pos)


def _escape(text: str, i: int, quote: str) -> tuple[str, int]:
    """The character of the escape sequence at ``text[i]`` (a backslash) and the next index."""
    if i + 1 >= len(text):
        raise SeriesError("unterminated quoted string", i)
    c = text[i + 1]
    if c in _ESCAPES:
        return _ESCAPES[c], i + 2
    if c == quote:
        return c, i + 2
    widths = {"x": 2, "u": 4, "U": 8}
    if c in widths:
        digits = text[i + 2 : i + 2 + widths[c]]
        if len(digits) == widths[c] and all(d in "0123456789abcdefABCDEF" for d in digits):
            code = int(digits, 16)
            if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return chr(code), i + 2 + widths[c]
    elif c in "01234567":
        digits = text[i + 1 : i + 4]
        if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) < 256:
            return chr(int(digits, 8)), i + 4
    raise SeriesError(f"invalid escape sequence \\{c}", i)


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    return pos


def _unexpected(text: str, pos: int, expected: str) -> str:
    if pos >= len(text):
        return f"unexpected end of series, expected {expected}"
    return f'unexpected "{text[pos]}" at character {pos + 1}, expected {expected}'


# -- values ------------------------------------------------------------------------------------

# Tokens of the value sequence, as Prometheus' lexer emits them in series-description mode.
_SP, _ADD, _SUB, _TIMES, _BLANK, _NUM, _STALE = range(7)
_Token = tuple[int, str, int]  # kind, text, offset


def expand_values(text: str) -> Values:
    """Expand a ``values`` string into one entry per step.

    Raises:
        SeriesError: the string is not valid promtool series notation.
    """
    tokens = _tokens(text)
    out: list[float | None] = []
    item: list[_Token] = []
    for tok in [*tokens, (_SP, "", len(text))]:
        if tok[0] == _SP:
            if item:
                out.extend(_item(item))
                item = []
        else:
            item.append(tok)
    return tuple(out)


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in _SPACE:
            j = _skip(text, i)
            out.append((_SP, text[i:j], i))
            i = j
        elif c in "+-x_":
            out.append(({"+": _ADD, "-": _SUB, "x": _TIMES, "_": _BLANK}[c], c, i))
            i += 1
        elif c.isascii() and (c.isdigit() or (c == "." and text[i + 1 : i + 2].isdigit())):
            m = _NUMBER.match(text, i)
            assert m is not None
            end = m.end()
            nxt = text[end : end + 1]
            if nxt and nxt != "x" and (nxt.isascii() and (nxt.isalnum() or nxt == "_")):
                raise SeriesError(f'bad number syntax "{text[i : end + 1]}"', i)
            out.append((_NUM, m.group(), i))
            i = end
        elif c.isascii() and (c.isalpha() or c == "_"):
            m = _WORD.match(text, i)
            assert m is not None
            word = m.group()
            if word.lower() in ("inf", "nan"):
                out.append((_NUM, word, i))
            elif word == "stale":
                out.append((_STALE, word, i))
            else:
                what = "keyword" if word.lower() in _KEYWORDS else "identifier"
                raise SeriesError(
                    f'unexpected {what} "{word}" in series values, expected a number or "stale"',
                    i,
                )
            i = m.end()
        else:
            raise SeriesError(f"unexpected character in series values: {c!r}", i)
    return out


def _item(toks: list[_Token]) -> list[float | None]:
    """The samples of one space-separated item (a list of tokens without spaces)."""
    kinds = [k for k, _, _ in toks]
    if kinds[0] == _BLANK:
        if len(toks) == 1:
            return [None]
        if kinds[1:] == [_TIMES, _NUM]:
            return [None] * _uint(toks[2])
        raise _bad(toks)
    value, rest = _value(toks)
    if not rest:
        return [value]
    step: float | None = None
    if rest[0][0] in (_ADD, _SUB):
        step, rest = _signed(rest)
    if len(rest) != 2 or rest[0][0] != _TIMES or rest[1][0] != _NUM:
        raise _bad(toks)
    n = _uint(rest[1])
    if step is None:
        return [value] * (n + 1)  # the same bits each time (a repeated staleness marker too)
    out: list[float | None] = [value]
    v = np.float64(value)
    inc = np.float64(step)
    with np.errstate(all="ignore"):
        for _ in range(n):
            v = v + inc  # cumulative, so the float rounding is that of Prometheus' parser
            out.append(float(v))
    return out


def _value(toks: list[_Token]) -> tuple[float, list[_Token]]:
    kind = toks[0][0]
    if kind == _STALE:
        return STALE_NAN, toks[1:]
    if kind == _NUM:
        return _number(toks[0]), toks[1:]
    if kind in (_ADD, _SUB):
        return _signed(toks)
    raise _bad(toks)


def _signed(toks: list[_Token]) -> tuple[float, list[_Token]]:
    if len(toks) < 2 or toks[1][0] != _NUM:
        raise _bad(toks)
    value = _number(toks[1])
    return (value if toks[0][0] == _ADD else -value), toks[2:]


def _number(tok: _Token) -> float:
    """A number as Prometheus reads it: strconv.ParseInt(s, 0, 64), else ParseFloat."""
    text = tok[1]
    if re.fullmatch(r"0[0-7]+", text):
        n = int(text, 8)
        if n < 2**63:
            return float(n)
    elif re.fullmatch(r"[0-9]+", text) and int(text) < 2**63:
        return float(int(text))
    try:
        return float(text)
    except ValueError:
        raise SeriesError(f'error parsing number "{text}"', tok[2]) from None


def _uint(tok: _Token) -> int:
    if not re.fullmatch(r"[0-9]+", tok[1]) or int(tok[1]) >= 2**64:
        raise SeriesError(f'invalid repetition in series values: "{tok[1]}"', tok[2])
    n = int(tok[1])
    if n > MAX_STEPS:
        raise SeriesError(f"too many samples: {n} repetitions (at most {MAX_STEPS})", tok[2])
    return n


def _bad(toks: list[_Token]) -> SeriesError:
    start = toks[0][2]
    end = toks[-1][2] + len(toks[-1][1])
    return SeriesError(
        f'unexpected series item; expected a number, "stale", "_", "a+bxN", "a-bxN", "axN" or '
        f'"_xN" (got "{"".join(t for _, t, _ in toks)}" at character {start + 1}-{end})',
        start,
    )
