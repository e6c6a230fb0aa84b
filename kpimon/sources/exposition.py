"""kpimon's own parser of the Prometheus text format (0.0.4, and text 1.0.0's quoted names) and
OpenMetrics 1.0: payload -> series keys, values, timestamps (:func:`parse`), malformed lines counted
and described with 1-based line numbers; the format from a Content-Type
(:func:`content_is_openmetrics`); the Accept header kpimon sends (:data:`ACCEPT_HEADER`). Pure: no
I/O, no asyncio, no clock; its only state is a cache of compiled patterns. Labels are not decoded:
keys stay raw bytes for :func:`kpimon.labels.decode_key`, which the store calls once per new key.

How it is fast. The payload is never split into Python lines. One compiled regex runs over the
whole buffer at C speed (``re.split``: one flat list, not a tuple per line) and yields ``(key,
value, timestamp, bad)`` per line: in whole mode for every line that is not blank or a comment (a
sample line in the canonical layout fills the first three, any other line fills ``bad``); in
selective mode only for lines of wanted names, which enter the regex as a trie behind a lookahead
so that other lines cost a few bytes (numpy counts the sample lines). ``float`` converts all
values in one C-level ``map``. When anything is not plainly right (a ``bad`` line, a duplicate
key, a non-finite or unconvertible value, a timestamp, invalid UTF-8, OpenMetrics framing), the
*exact* pass re-reads the payload line by line with the full grammar and says what is wrong where.
The exact pass defines the result; the fast pass only returns what it would (the tests check it).

A later scrape of the same target is cheaper still (``previous``: the last result for that
target). Its keys were validated once: a key seen in the previous result needs no grammar check,
only new keys are matched against the canonical key grammar, and value tokens are checked for
stray bytes in one ``translate`` over all of them. A whole parse runs no Python code per line:
numpy finds the newlines and checks that each line's key ends where it did in the previous
result (else it finds each line's last space); the keys, gathered into one buffer, are compared
with the previous result's in one ``memcmp``, so an unchanged series set costs no key objects
at all; the value tokens are gathered into rows of equal width, and only those that differ from
the previous result's are converted (a node_exporter scrape changes a fifth to a third). A
selective parse splits the wanted lines at their last space; in a large payload it searches for
them only in the runs of lines whose first byte may start a wanted name. Anything unusual (a
timestamp, a blank line, CRLF, a malformed line) defers to the regex pass, so the result never
depends on ``previous``.

What is checked, and what is not:

* Sample lines, in whole mode all of them: metric and label names, label sets (escapes, blanks,
  trailing comma, text 1.0.0's quoted metric and label names), values in Go ``ParseFloat`` syntax
  less ``p``/``P``/``_`` as in Prometheus' parsers (no hex floats; ``NaN``, ``[+-]Inf``,
  ``infinity`` in any case; a finite literal that overflows is an error), 0.0.4 timestamps (int64
  ms, returned in seconds), OpenMetrics timestamps (float seconds), OpenMetrics exemplars (then
  ignored), UTF-8, duplicate series (same key bytes: the first is kept, repeats are issues).
* Not checked: text-format comments and HELP/TYPE lines (kpimon uses no metadata), metadata order,
  histogram/summary structure, a label name repeated in one label set, and two spellings of one
  label set (``a{x="1",y="2"}`` vs ``a{y="2",x="1"}``): keys compare as bytes.
* Selective mode validates only sample lines whose metric name is wanted (the line starts with a
  wanted name, bare or quoted, followed by a character that cannot continue a name).
  ``samples_total`` counts every line that is neither blank nor a comment (before ``# EOF`` in
  OpenMetrics), valid or not, the same in both modes.
* OpenMetrics: the first ``# EOF`` line ends the exposition; each non-blank line after it is
  malformed ("content after # EOF") and not a sample. A missing ``# EOF`` keeps the samples read
  and adds one issue on the line after the last, counted in ``malformed_total`` (the payload may
  be truncated; Prometheus would fail the scrape). In whole mode a ``#`` line other than ``#
  HELP``/``# TYPE``/``# UNIT``/``# EOF`` is malformed. Tolerated in both formats beyond the
  letter of the specs: blank lines, runs of blanks/tabs, CRLF line ends, no final newline.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "ACCEPT_HEADER",
    "MAX_ISSUES",
    "Exposition",
    "ParseIssue",
    "content_is_openmetrics",
    "parse",
]

MAX_ISSUES = 20
"""How many malformed lines an :class:`Exposition` describes (all of them are counted)."""

ACCEPT_HEADER = (
    "application/openmetrics-text;version=1.0.0;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,"
    "*/*;q=0.2"
)
"""The Accept header kpimon scrapes with: OpenMetrics 1.0.0 and 0.0.1, then text 0.0.4, then any.

No ``escaping=allow-utf-8``: targets then escape non-legacy names to underscores, which is what
PromQL rules with legacy names select (quoted names are still parsed if a target sends them).
"""


@dataclass(frozen=True, slots=True)
class ParseIssue:
    """One malformed line: its 1-based line number in the payload, and what is wrong with it."""

    line: int
    message: str


@dataclass(frozen=True, slots=True, eq=False)
class Exposition:
    """The samples kept from one payload, and what was wrong with it.

    ``keys[i]`` is the series key of the sample whose value is ``values[i]``: the stripped bytes
    of its line before the value (labels not decoded). ``timestamps`` holds Unix seconds (NaN
    where a kept sample has none), or is None when no kept sample has one. ``samples_total``
    counts every sample line of the payload, kept or not; ``malformed_total`` the invalid lines
    (duplicates included); ``issues`` describes the first :data:`MAX_ISSUES` of them in line
    order. ``layout`` is what a whole parse of a later scrape leaves for the next parse of the
    target (:class:`Layout`), else None. (``eq=False``: the numpy fields make value equality
    meaningless.)
    """

    keys: list[bytes]
    values: npt.NDArray[np.float64]
    timestamps: npt.NDArray[np.float64] | None
    samples_total: int
    malformed_total: int
    issues: tuple[ParseIssue, ...]
    layout: Layout | None = None

    def __post_init__(self) -> None:
        # Read-only: the next parse of the target starts from these values (it copies the
        # ones whose token did not change), so nothing may write into them meanwhile.
        self.values.flags.writeable = False


@dataclass(frozen=True, slots=True, eq=False)
class Layout:
    """How the sample lines of a payload were laid out, kept for the next whole parse of the
    target: ``key_text`` is the keys concatenated (``b"".join(keys)``) and ``key_lengths`` their
    lengths, so that the next parse can guess where each line's key ends and compare all keys in
    one ``memcmp``; ``tokens`` holds row i the last ``width`` bytes of sample line i (its value
    token right-aligned, after its key's tail) and ``token_lengths`` the tokens' lengths, so
    that the next parse converts only the tokens that changed."""

    key_text: bytes
    key_lengths: npt.NDArray[np.intp]
    tokens: npt.NDArray[np.uint8]
    token_lengths: npt.NDArray[np.intp]


# --- Grammar --------------------------------------------------------------------------------------
# Possessive quantifiers everywhere, and no two adjacent pieces can match the same text, so a line
# is never re-scanned: time stays linear in its length (a 1 MB line of garbage, 10k labels).
_B = rb"[ \t]*+"
_NAME = rb"[a-zA-Z_:][a-zA-Z0-9_:]*+"
_LNAME = rb"[a-zA-Z_][a-zA-Z0-9_]*+"
# Character classes are spelled as byte ranges: re compiles those to a bitmap, which scans about
# three times faster than a short negated set like [^"\\\n].
_IN_QUOTES = rb"[\x00-\t\x0b-!#-\[\]-\xff]"  # not '"', '\\' or LF
_NON_BLANK = rb"[\x00-\x08\x0e-\x1f!-\xff]"  # \S
_VALUE_CHAR = rb"[\x00-\x08\x0e-\x1f!-^`-\xff]"  # \S less '_' (which float() would accept)
_QSTR = rb'"' + _IN_QUOTES + rb"*+(?:\\." + _IN_QUOTES + rb'*+)*+"'
# The canonical layout exporters write: no blanks inside braces, legacy label names.
_PAIR_F = _LNAME + rb"=" + _QSTR
_KEY_F = (
    _NAME + rb"(?:\{(?:" + _PAIR_F + rb"(?:," + _PAIR_F + rb")*+,?)?\})?"
    rb"|\{" + _QSTR + rb"(?:," + _PAIR_F + rb")*+,?\}"
)
# Everything the text format allows.
_PAIR_S = rb"(?:" + _LNAME + rb"|" + _QSTR + rb")" + _B + rb"=" + _B + _QSTR + _B
_MORE_S = rb"(?:," + _B + _PAIR_S + rb")*+(?:," + _B + rb")?\}"
_LABELS_S = rb"\{" + _B + rb"(?:" + _PAIR_S + _MORE_S + rb"|\})"
_KEY_S = re.compile(_NAME + rb"(?:" + _B + _LABELS_S + rb")?|\{" + _B + _QSTR + _B + _MORE_S)
_NUM = rb"(?:[0-9]++(?:\.[0-9]*+)?|\.[0-9]++)(?:[eE][+-]?[0-9]++)?"
_VALUE = rb"[+-]?(?:" + _NUM + rb"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)|[nN][aA][nN]"
_VALUE_RE = re.compile(_VALUE)
_SPECIAL_RE = re.compile(rb"[+-]?[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN]")
_SPECIALS = frozenset((b"NaN", b"+Inf", b"-Inf", b"Inf", b"nan", b"inf", b"+inf", b"-inf"))
_TS_RE = {False: re.compile(rb"[+-]?[0-9]++"), True: re.compile(rb"[+-]?" + _NUM)}
_EXEMPLAR = rb"#[ \t]++\{%s(?:%s%s|\})%s(?:%s)(?:[ \t]++[+-]?%s)?" % (
    _B, _PAIR_S, _MORE_S, _B, _VALUE, _NUM
)  # fmt: skip
_EXEMPLAR_RE = re.compile(_EXEMPLAR + _B)
# The fast line tail: value, optional timestamp (checked later), OpenMetrics exemplar.
_TAIL = {
    om: rb"[ \t]++(%s++)(?:[ \t]++(%s%s++))?%s[ \t]*+\r?(?=\n)" % (
        _VALUE_CHAR, rb"(?!#)" if om else b"", _NON_BLANK,
        rb"(?:[ \t]++%s)?" % _EXEMPLAR if om else b"",
    )
    for om in (False, True)
}  # fmt: skip
# In OpenMetrics a '#' line must be # HELP, # TYPE or # UNIT (# EOF is cut off before the regex
# runs, so an earlier one lands here too). Text-format comments and metadata are not checked.
_BAD_META_OM = rb"#(?! (?:HELP|TYPE|UNIT) )"
_BAD_META_OM_RE = re.compile(rb"\n[ \t]*+" + _BAD_META_OM)
# A line that is neither blank nor a comment starts (after blanks) with this.
_CANDIDATE = rb"[^# \t\r\n]|\r(?!\n)"
_CANDIDATE_RE = re.compile(rb"\n[ \t]*+(?:" + _CANDIDATE + rb")")
_WHOLE = {
    om: re.compile(rb"\n[ \t]*+(?:(%s)%s|((?:%s%s).*+))" % (
        _KEY_F, _TAIL[om], _CANDIDATE, rb"|" + _BAD_META_OM if om else b""
    ))
    for om in (False, True)
}  # fmt: skip
# The first byte of a line: starts a sample line / may start one after blanks or a CR.
_STARTS_SAMPLE = np.ones(256, np.bool_)
_STARTS_SAMPLE[[ord("#"), ord("\n"), ord(" "), ord("\t"), ord("\r")]] = False
_STARTS_IRREGULAR = np.zeros(256, np.bool_)
_STARTS_IRREGULAR[[ord(" "), ord("\t"), ord("\r")]] = True


@functools.lru_cache(maxsize=128)
def _selective(wanted: frozenset[bytes], om: bool) -> re.Pattern[bytes]:
    """The selective regex: the groups of :data:`_WHOLE`, for lines of wanted names only."""
    head = _wanted_head(wanted, om)
    return re.compile(
        rb"\n[ \t]*+(?=" + head + rb")(?:(" + _KEY_F + rb")" + _TAIL[om] + rb"|(.++))"
    )


def _wanted_head(wanted: frozenset[bytes], om: bool) -> bytes:
    """A regex for the start of a line of a wanted name, bare or quoted (tries: an attempt
    costs O(length)); in OpenMetrics also an early "# EOF" (the last one is cut off before the
    regex runs), which must reach the exact pass."""
    bare = _trie([n for n in wanted if re.fullmatch(_NAME, n)])
    quoted = _trie([_escape(n) for n in wanted])
    head = rb"(?:" + bare + rb'[^a-zA-Z0-9_:]|\{[ \t]*+"' + quoted + rb'"[ \t]*+[,}]'
    if om:
        head += rb"|#[ \t]*+EOF"
    return head + rb")"


def _trie(words: list[bytes]) -> bytes:
    """A regex for exactly ``words``, shaped as a trie: an attempt costs O(length), not O(n)."""
    words = sorted(set(words))
    if not words:
        return rb"(?!)"
    first, last = words[0], words[-1]
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    prefix = re.escape(first[:n])
    rests = [w[n:] for w in words]
    optional = rests[0] == b""  # sorted: an empty rest comes first
    groups: dict[int, list[bytes]] = {}
    for rest in rests[1:] if optional else rests:
        groups.setdefault(rest[0], []).append(rest)
    if not groups:
        return prefix
    alts = [_trie(group) for group in groups.values()]
    body = alts[0] if len(alts) == 1 else rb"(?:" + b"|".join(alts) + rb")"
    return prefix + (rb"(?:" + body + rb")?" if optional else body)


def _escape(name: bytes) -> bytes:
    """``name`` as written between the quotes of the quoted-name form."""
    return name.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")


def _unescape(quoted: bytes) -> bytes:
    """The inside of a quoted string, unescaped as Prometheus does (unknown escapes kept)."""
    if b"\\" not in quoted:
        return quoted
    return re.sub(rb"\\([\\\"n])", lambda m: b"\n" if m[1] == b"n" else m[1], quoted)


# --- Entry points ---------------------------------------------------------------------------------


def content_is_openmetrics(content_type: str | None) -> bool:
    """Whether a Content-Type header value says OpenMetrics (any version).

    The media type is compared case-insensitively with its parameters (``version``, ``charset``,
    ``escaping``...) set aside. A missing, empty or unparsable value means the text format.
    """
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/openmetrics-text"


def parse(
    data: bytes,
    wanted: frozenset[bytes] | None = None,
    *,
    openmetrics: bool = False,
    previous: Exposition | None = None,
) -> Exposition:
    """Parse one exposition payload.

    Args:
        data: the response body (text format, or OpenMetrics 1.0 when ``openmetrics``).
        wanted: metric names to keep, as bytes; None keeps every sample. Lines of other names
            are counted in ``samples_total`` but neither kept nor validated.
        openmetrics: parse as OpenMetrics (``# EOF``, float-second timestamps, exemplars).
        previous: the result of the previous parse of the same target with the same ``wanted``
            (optional). Its keys are known to be valid, so lines with the same keys need no
            grammar check: the common case of a target whose series set has not changed costs
            a byte split per line instead of a regex match. The result does not depend on it.

    Returns:
        The kept samples, and the counts and descriptions of malformed lines. Bad input never
        raises: it is reported in ``malformed_total`` and ``issues``.

    Raises:
        TypeError: ``data`` is not bytes, or ``wanted`` is not None or a set of bytes.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    if wanted is not None:
        names: object = wanted  # checked at run time: callers may not be type-checked
        if not isinstance(names, frozenset | set) or not all(isinstance(n, bytes) for n in names):
            raise TypeError("wanted must be None or a frozenset of bytes")
        wanted = frozenset(names)
    result = None
    if previous is not None:
        result = _by_lines(data, wanted, openmetrics, previous)
    if result is None:
        result = _fast(data, wanted, openmetrics)
    return result if result is not None else _exact(data, wanted, openmetrics)


_OM_META = (b"# HELP ", b"# TYPE ", b"# UNIT ")
# What value tokens, joined by spaces, may contain: float() also takes '_' and other blanks,
# which Go's parser does not.
_VALUE_BYTES_OR_SPACE = b"0123456789.eE+-infatyINFATY "


def _by_lines(
    data: bytes, wanted: frozenset[bytes] | None, om: bool, previous: Exposition
) -> Exposition | None:
    """The result when every sample line is ``KEY VALUE`` with one space (no timestamp); None
    to defer to :func:`_fast`.

    The key is the line up to its last space (label values may hold spaces; the value cannot).
    A key that the previous parse of the target returned is valid as it is; any other key must
    match the canonical key grammar, or the payload goes to :func:`_fast`. A timestamp leaves
    the line's key with a space after its label set, which no valid key has, so timestamped
    payloads are deferred too.
    """
    buf = _framed(data, om)
    if buf is None:
        return None
    if wanted is None:
        return _whole_by_lines(buf, om, previous)
    array = np.frombuffer(buf, np.uint8)
    line_start = array[:-1] == 10  # at the newline before each line
    if len(array) < _RUNS_MIN_BYTES:
        newlines = None
        firsts = array[1:][line_start]
    else:  # where the lines start, too (for _wanted_lines); in a small payload it costs more
        newlines = np.flatnonzero(line_start)
        firsts = array[newlines + 1]
    if _STARTS_IRREGULAR[firsts].any():
        return None  # a line starting with a blank or a CR
    keys: list[bytes] = []
    tokens: list[bytes] = []
    add_key = keys.append
    add_token = tokens.append
    if newlines is None:
        lines = _selected_lines(wanted, om).findall(buf)
    else:
        lines = _wanted_lines(buf, newlines, firsts, wanted, om)
    for line in lines:
        if line[0] == 35:
            return None  # "# EOF" before the end
        key, _, token = line.rpartition(b" ")
        add_key(key)
        add_token(token)
    if not keys:
        return None  # let the other passes say what is in an empty or odd payload
    if keys == previous.keys:
        # The very list of the previous result: the store then recognises the unchanged series
        # set by identity instead of comparing 100k keys again.
        keys = previous.keys
    elif not _new_keys_valid(keys, previous):
        return None
    values = _checked_values(b" ".join(tokens), tokens)
    if values is None:
        return None
    samples_total = int(np.count_nonzero(_STARTS_SAMPLE[firsts]))
    return Exposition(keys, values, None, samples_total, 0, ())


def _whole_by_lines(buf: bytes, om: bool, previous: Exposition) -> Exposition | None:
    """:func:`_by_lines` for a whole parse, vectorised: no Python code runs per line.

    numpy finds the newlines. Each sample line's key is guessed to end where the previous
    result's did (its :class:`Layout`); when a guess does not land on a space, numpy finds each
    line's last space instead. The keys are not sliced one by one: gathered into one buffer, they
    are compared with the previous result's in one ``memcmp``; equal, the previous key list is
    returned as it is. Only when the series set changed are the keys sliced, and the new ones
    checked. The value tokens are gathered right-aligned into rows of equal width; with the
    same keys, a row equal to the previous result's keeps its value, and only the tokens of the
    other rows are checked (one ``translate``) and converted. When most changed, all are.
    """
    array = np.frombuffer(buf, np.uint8)
    newlines = np.flatnonzero(array == 10)
    starts, ends = newlines[:-1] + 1, newlines[1:]
    if not len(starts) or (ends == starts).any():
        return None  # empty, or a blank line
    firsts = array[starts]
    if _STARTS_IRREGULAR[firsts].any():
        return None  # a line starting with a blank or a CR
    comment = firsts == 35
    if comment.any():
        if om and not all(buf.startswith(_OM_META, at) for at in starts[comment].tolist()):
            return None  # a "#" line OpenMetrics does not allow
        sample = ~comment
        sample_starts, sample_ends = starts[sample], ends[sample]
        if not len(sample_starts):
            return None
    else:
        sample_starts, sample_ends = starts, ends
    before = previous.layout
    lasts = None
    if before is not None and len(before.key_lengths) == len(sample_starts):
        guess = sample_starts + before.key_lengths
        if (guess < sample_ends).all() and (array[guess] == 32).all():
            lasts = guess  # each line has a space where its key ended last time
    guessed = lasts is not None
    if lasts is None:
        spaces = np.flatnonzero(array == 32)
        before_end = np.searchsorted(spaces, sample_ends) - 1
        if before_end[0] < 0:
            return None  # the first sample line has no space
        lasts = spaces[before_end]
        if (lasts <= sample_starts).any():
            return None  # a sample line without a space (its "last space" is on an earlier line)
    key_lengths = lasts - sample_starts
    key_text = _runs(array, sample_starts, lasts)
    if before is not None:  # (guessed key ends have the previous lengths by construction)
        same_keys = key_text == before.key_text and (
            guessed or np.array_equal(key_lengths, before.key_lengths)
        )
    else:  # the previous result came from another pass: compare with its key list
        same_keys = key_text == b"".join(previous.keys) and key_lengths.tolist() == list(
            map(len, previous.keys)
        )
    if same_keys:
        keys = previous.keys
    else:
        keys = [buf[a:b] for a, b in zip(sample_starts.tolist(), lasts.tolist(), strict=True)]
        if not _new_keys_valid(keys, previous):
            return None
    # The value tokens, right-aligned in rows of the longest one's width: row i is the last
    # ``width`` bytes of sample line i (its token, after its key's tail and the space).
    token_lengths = sample_ends - lasts - 1
    width = int(token_lengths.max())
    if not 0 < width <= _TOKEN_WIDTH_MAX or sample_ends[0] < width:
        return None  # an empty or a very long value, or a first line shorter than a value
    # Every run of ``width`` bytes of the buffer, as a read-only view (nothing is copied).
    windows = np.ndarray((len(buf) - width + 1, width), np.uint8, buf, 0, (1, 1))
    tokens = windows[sample_ends - width]
    layout = Layout(key_text, key_lengths, tokens, token_lengths)
    if same_keys and before is not None and before.tokens.shape == tokens.shape:
        # Same keys: a token of the same length whose row is the same is the same token,
        # the one the previous parse checked (a guessed key end may leave a space in a
        # token of another length: its line is checked as changed).
        changed = np.flatnonzero(
            (tokens != before.tokens).any(axis=1) | (token_lengths != before.token_lengths)
        )
        if len(changed) <= len(tokens) // 2:  # else converting them all costs less
            values = previous.values.copy()
            if len(changed):
                at, end = lasts[changed].tolist(), sample_ends[changed].tolist()
                new = _token_values(b"".join([buf[a:b] for a, b in zip(at, end, strict=True)]))
                if new is None or len(new) != len(changed):
                    return None
                values[changed] = new
            return Exposition(keys, values, None, len(keys), 0, (), layout)
    all_values = _token_values(_runs(array, lasts, sample_ends))
    if all_values is None or len(all_values) != len(keys):
        return None
    return Exposition(keys, all_values, None, len(keys), 0, (), layout)


def _token_values(text: bytes) -> npt.NDArray[np.float64] | None:
    """The values of the value tokens in ``text``, each after its space (`` 1 2.5 NaN``);
    None when one is not a value. A token that holds a space (after a guessed key end) comes
    out as two: the callers compare the count."""
    return _checked_values(text, text.split(b" ")[1:])


def _checked_values(text: bytes, tokens: list[bytes]) -> npt.NDArray[np.float64] | None:
    """The values of ``tokens``, whose bytes are those of ``text`` less spaces; None when a
    byte no value has is there (blanks other than spaces, '_', CR, non-ASCII) or a token is
    not a value."""
    if text.translate(None, _VALUE_BYTES_OR_SPACE):
        return None
    # With the bytes checked above, float() takes exactly the finite literals of _VALUE.
    return _values(tokens)


_TOKEN_WIDTH_MAX = 64
"""The longest value token of the vectorised whole parse (longer ones defer to the regex pass)."""


def _runs(
    array: npt.NDArray[np.uint8], begins: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> bytes:
    """The bytes of the ordered, disjoint half-open ranges ``[begins[i], ends[i])`` of
    ``array``, concatenated (a mask of the kept runs: cheaper than gathering their positions)."""
    bounds = np.empty(2 * len(begins) + 1, np.intp)
    bounds[0] = 0
    bounds[1::2], bounds[2::2] = begins, ends
    kept = np.zeros(len(bounds), np.bool_)
    kept[1::2] = True
    return array[np.repeat(kept, np.diff(bounds, append=len(array)))].tobytes()


def _new_keys_valid(keys: list[bytes], previous: Exposition) -> bool:
    """Whether ``keys`` are distinct and each is either a key of ``previous`` or canonical and
    valid UTF-8 (so that a payload whose series set changed needs no full parse)."""
    known = set(previous.keys)
    full = _KEY_FULL
    for key in keys:
        if key not in known and (full.fullmatch(key) is None or not _is_utf8(key)):
            return False
    return len(set(keys)) == len(keys)


_KEY_FULL = re.compile(_KEY_F)


def _wanted_lines(
    buf: bytes,
    newlines: npt.NDArray[np.intp],
    firsts: npt.NDArray[np.uint8],
    wanted: frozenset[bytes],
    om: bool,
) -> list[bytes]:
    """What :func:`_selected_lines` finds in ``buf`` (``newlines[i]``: the newline before line
    i; ``firsts[i]``: its first byte). When the lines that may start with a wanted name come
    in few runs (an exposition groups each family's lines), only those runs are searched: a
    line of another name then costs no regex attempt."""
    pattern = _selected_lines(wanted, om)
    candidate = _starters(wanted, om)[firsts]
    edges = np.flatnonzero(np.diff(candidate.view(np.int8), prepend=0, append=0))
    if len(edges) // 2 * _LINES_PER_RUN > len(firsts):
        return pattern.findall(buf)  # many short runs: one search costs less
    # Run [i, j) is searched from the newline before line i to the one after line j - 1,
    # included: a line's match never reads past its own newline.
    bounds = np.append(newlines, len(buf) - 1)
    begins, ends = bounds[edges[0::2]].tolist(), (bounds[edges[1::2]] + 1).tolist()
    lines: list[bytes] = []
    for at, end in zip(begins, ends, strict=True):
        lines += pattern.findall(buf, at, end)
    return lines


_RUNS_MIN_BYTES = 1 << 20
_LINES_PER_RUN = 256
"""Searching runs of lines pays in payloads of at least ``_RUNS_MIN_BYTES`` bytes, with at
least ``_LINES_PER_RUN`` lines per run on average (a node_exporter payload is 60 KB)."""


@functools.lru_cache(maxsize=128)
def _starters(wanted: frozenset[bytes], om: bool) -> npt.NDArray[np.bool_]:
    """The first bytes of the lines :func:`_selected_lines` can find: a bare wanted name's
    first byte, ``{`` (a quoted name), and in OpenMetrics ``#`` (an early ``# EOF``)."""
    table = np.zeros(256, np.bool_)
    table[[n[0] for n in wanted if re.fullmatch(_NAME, n)]] = True
    table[ord("{")] = True
    if om:
        table[ord("#")] = True
    return table


@functools.lru_cache(maxsize=128)
def _selected_lines(wanted: frozenset[bytes], om: bool) -> re.Pattern[bytes]:
    """The lines (without their newline) that start with a wanted name, bare or quoted."""
    return re.compile(rb"\n(?=" + _wanted_head(wanted, om) + rb")([^\n]*+)")


def _fast(data: bytes, wanted: frozenset[bytes] | None, om: bool) -> Exposition | None:
    """The result when the payload has nothing wrong or unusual; None to defer to :func:`_exact`."""
    buf = _framed(data, om)
    if buf is None:
        return None
    if not data.isascii() and not _is_utf8(data):
        return None
    # split, not findall: one flat list [gap, key, value, stamp, bad, gap, ...] instead of a
    # tuple per line (100k GC-tracked tuples cost as much as the matching).
    if wanted is None:
        parts = _WHOLE[om].split(buf)
        samples_total = len(parts) // 5
    else:
        parts = _selective(wanted, om).split(buf)
        samples_total = _count_sample_lines(buf)
    if len(parts) == 1:
        return Exposition([], np.empty(0, np.float64), None, samples_total, 0, ())
    if any(parts[4::5]):
        return None
    keys: list[bytes] = parts[1::5]
    tokens: list[bytes] = parts[2::5]
    stamps_t: list[bytes | None] = parts[3::5]
    if len(set(keys)) != len(keys):
        return None
    values = _values(tokens)
    if values is None:
        return None
    timestamps = None
    if any(stamps_t):
        stamps = [_timestamp(s, om) if s else math.nan for s in stamps_t]
        if None in stamps:
            return None
        timestamps = np.array(stamps, np.float64)
    return Exposition(keys, values, timestamps, samples_total, 0, ())


def _framed(data: bytes, om: bool) -> bytes | None:
    """``data`` between a leading and a final newline, OpenMetrics' final ``# EOF`` cut off;
    None when an OpenMetrics payload does not end with it (the exact pass says so)."""
    buf = b"\n" + data if data.endswith(b"\n") else b"\n" + data + b"\n"
    if om:
        pos = buf.rfind(b"\n# EOF")
        if pos < 0 or buf[pos:] not in (b"\n# EOF\n", b"\n# EOF\r\n"):
            return None
        buf = buf[: pos + 1]
    return buf


def _values(tokens: list[bytes]) -> npt.NDArray[np.float64] | None:
    """The values of value tokens free of blanks and '_'; None when one is not a Go float
    (float() also takes "+nan" and overflows to inf where Go's parser refuses)."""
    try:
        values = np.fromiter(map(float, tokens), np.float64, len(tokens))
    except ValueError:
        return None
    finite = np.isfinite(values)
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            if tokens[i] not in _SPECIALS and not _SPECIAL_RE.fullmatch(tokens[i]):
                return None  # out of range, or a NaN spelling Go rejects ("+nan")
    return values


def _count_sample_lines(buf: bytes) -> int:
    """How many lines of a newline-framed buffer are neither blank nor comments (vectorised)."""
    array = np.frombuffer(buf, np.uint8)
    firsts = array[1:][array[:-1] == 10]
    if _STARTS_IRREGULAR[firsts].any():
        return len(_CANDIDATE_RE.findall(buf))
    return int(np.count_nonzero(_STARTS_SAMPLE[firsts]))


def _timestamp(token: bytes, om: bool) -> float | None:
    """A timestamp token in Unix seconds; None when invalid or out of range."""
    if not _TS_RE[om].fullmatch(token):
        return None
    if om:
        seconds = float(token)
        return seconds if math.isfinite(seconds) else None
    if len(token.lstrip(b"+-0")) > 19:
        return None  # beyond int64 (and int() refuses very long digit strings)
    ms = int(token)
    return ms / 1000 if -(2**63) <= ms < 2**63 else None


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- The exact pass -------------------------------------------------------------------------------


class _Issues:
    """Counts malformed lines and keeps the first :data:`MAX_ISSUES` descriptions."""

    __slots__ = ("count", "issues")

    def __init__(self) -> None:
        self.count = 0
        self.issues: tuple[ParseIssue, ...] = ()

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if len(self.issues) < MAX_ISSUES:
            self.issues += (ParseIssue(line, message),)


def _exact(data: bytes, wanted: frozenset[bytes] | None, om: bool) -> Exposition:
    """Parse line by line with the full grammar, describing every malformed line."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the final newline ends the last line rather than starting one
    issues = _Issues()
    keys: list[bytes] = []
    values: list[float] = []
    stamps: list[float] = []
    first_seen: dict[bytes, int] = {}
    samples_total = 0
    end = len(lines)
    if om:
        end = next((i for i, raw in enumerate(lines) if raw.rstrip(b"\r") == b"# EOF"), end)
    for number, raw in enumerate(lines[:end], 1):
        line = (raw[:-1] if raw.endswith(b"\r") else raw).strip(b" \t")
        if not line:
            continue
        if line.startswith(b"#"):
            if om and wanted is None and _BAD_META_OM_RE.match(b"\n" + raw):
                issues.add(number, _OM_COMMENT)
            continue
        samples_total += 1
        if wanted is not None and _name_of(line) not in wanted:
            continue
        parsed = _parse_line(line, om)
        if isinstance(parsed, str):
            issues.add(number, parsed)
            continue
        key, value, stamp = parsed
        first = first_seen.setdefault(key, number)
        if first != number:
            issues.add(number, f"duplicate sample (first on line {first})")
            continue
        keys.append(key)
        values.append(value)
        stamps.append(stamp)
    if om:
        if end == len(lines):
            issues.add(end + 1, 'missing "# EOF" at the end (the payload may be truncated)')
        for number, raw in enumerate(lines[end + 1 :], end + 2):
            if raw.strip(b" \t\r"):
                issues.add(number, 'content after "# EOF"')
    timestamps = None
    if any(not math.isnan(s) for s in stamps):
        timestamps = np.array(stamps, np.float64)
    values_array = np.array(values, np.float64)
    return Exposition(keys, values_array, timestamps, samples_total, issues.count, issues.issues)


_NAME_RE = re.compile(_NAME)
_QNAME_RE = re.compile(rb"\{[ \t]*+(" + _QSTR + rb")")


def _name_of(line: bytes) -> bytes | None:
    """The metric name a sample line starts with (unescaped if quoted); None if there is none."""
    m = _NAME_RE.match(line)
    if m is not None:
        return m.group()
    m = _QNAME_RE.match(line)
    return _unescape(m.group(1)[1:-1]) if m is not None else None


_BLANKS = re.compile(rb"[ \t]++")
_TOKEN = re.compile(rb"[^ \t]++")
_BAD_NAME = re.compile(rb"[^ \t{]++")
_QSTR_RE = re.compile(_QSTR)
_LABEL_NAME_RE = re.compile(_LNAME + rb"|" + _QSTR)
_OM_COMMENT = "invalid comment line (OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF)"


def _parse_line(line: bytes, om: bool) -> tuple[bytes, float, float] | str:
    """(key, value, timestamp seconds or NaN) of a stripped sample line, or what is wrong."""
    m = _KEY_S.match(line)
    if m is None:
        if line.startswith(b"{"):
            return _describe_labels(line, 0, quoted_name=True)
        return f'invalid metric name "{_show(_TOKEN.match(line).group())}"'  # type: ignore[union-attr]
    key = m.group()
    pos = m.end()
    labelled = key.endswith(b"}")
    if not labelled:
        after = _BLANKS.match(line, pos)
        brace = after.end() if after else pos
        if line.startswith(b"{", brace):
            return _describe_labels(line, brace, quoted_name=False)
        if after is None and pos < len(line):
            token = _BAD_NAME.match(line).group()  # type: ignore[union-attr]
            return f'invalid metric name "{_show(token)}"'
    if not line.isascii() and not _is_utf8(key):
        return "invalid UTF-8 in the series name or labels"
    rest = line[pos:].lstrip(b" \t")
    if not rest:
        return "expected a value after the series name"
    value_token = _TOKEN.match(rest).group()  # type: ignore[union-attr]
    if not _VALUE_RE.fullmatch(value_token):
        return f'invalid value "{_show(value_token)}"'
    value = float(value_token)
    if math.isinf(value) and not _SPECIAL_RE.fullmatch(value_token):
        return f'value out of range "{_show(value_token)}"'
    rest = rest[len(value_token) :].lstrip(b" \t")
    stamp = math.nan
    if rest.startswith(b"#") and not om:
        return f'unexpected text after the value: "{_show(rest)}"'
    if rest and not rest.startswith(b"#"):
        ts_token = _TOKEN.match(rest).group()  # type: ignore[union-attr]
        seconds = _timestamp(ts_token, om)
        if seconds is None:
            if _TS_RE[om].fullmatch(ts_token):
                return f'timestamp out of range "{_show(ts_token)}"'
            return f'invalid timestamp "{_show(ts_token)}"'
        stamp = seconds
        rest = rest[len(ts_token) :].lstrip(b" \t")
    if rest:
        if not (om and rest.startswith(b"#")):
            return f'unexpected text after the timestamp: "{_show(rest)}"'
        if not _EXEMPLAR_RE.fullmatch(rest):
            return f'invalid exemplar "{_show(rest)}"'
    return key, value, stamp


def _describe_labels(line: bytes, pos: int, *, quoted_name: bool) -> str:
    """What is wrong in the label set that starts with the ``{`` at ``pos``."""

    def skip(at: int) -> int:
        m = _BLANKS.match(line, at)
        return m.end() if m else at

    def found(at: int) -> str:
        return f'"{_show(line[at : at + 1])}"' if at < len(line) else "the end of the line"

    pos = skip(pos + 1)
    if quoted_name:
        name = _QSTR_RE.match(line, pos)
        if name is None:
            if line.startswith(b'"', pos):
                return "unterminated quoted metric name"
            return "missing metric name"
        pos = skip(name.end())
        if line.startswith(b"=", pos):
            return "missing metric name"
        if line.startswith(b"}", pos):
            return f"unexpected {found(pos + 1)} after the label set"
        if not line.startswith(b",", pos):
            return f'expected "," or "}}" after the quoted metric name, found {found(pos)}'
        pos = skip(pos + 1)
    while pos < len(line):
        if line.startswith(b"}", pos):
            return f"unexpected {found(pos + 1)} after the label set"
        label = _LABEL_NAME_RE.match(line, pos)
        if label is None:
            if line.startswith(b'"', pos):
                return "unterminated quoted label name"
            return f"invalid label name at {found(pos)}"
        shown = _show(label.group())
        pos = skip(label.end())
        if not line.startswith(b"=", pos):
            return f'expected "=" after label name {shown}, found {found(pos)}'
        pos = skip(pos + 1)
        value = _QSTR_RE.match(line, pos)
        if value is None:
            if line.startswith(b'"', pos):
                return f"unterminated value of label {shown}"
            return f"expected a quoted value for label {shown}, found {found(pos)}"
        pos = skip(value.end())
        if line.startswith(b"}", pos):
            return f"unexpected {found(pos + 1)} after the label set"
        if not line.startswith(b",", pos):
            return f'expected "," or "}}" after the value of label {shown}, found {found(pos)}'
        pos = skip(pos + 1)
    return "unterminated label set"


def _show(token: bytes, limit: int = 40) -> str:
    """A token for a message: decoded, shortened."""
    text = token.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"
