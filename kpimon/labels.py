"""Label sets and series keys.

A label set is a tuple of ``(name, value)`` pairs sorted by name, so that it is hashable and
compares equal whatever order the labels were written in. ``__name__`` holds the metric name.

A *series key* is the bytes of an exposition line before its value, e.g.
``b'node_load1'`` or ``b'node_cpu_seconds_total{cpu="0",mode="idle"}'``. Sources hand the store
series keys (the scraper straight from the payload, without decoding them); the store decodes a key
into a label set only the first time it sees that key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

Labels = tuple[tuple[str, str], ...]
"""A label set: ``(name, value)`` pairs sorted by name."""

EMPTY: Labels = ()

# Patterns work on the key decoded to str once (errors replaced), with ASCII-only \s.
_Q = r'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_LNAME = r"(?:[a-zA-Z_][a-zA-Z0-9_]*+|" + _Q + r")"
_PAIR = _LNAME + r"\s*+=\s*+" + _Q
# What follows "{" (or the quoted metric name and its ","): pairs, an optional trailing comma, "}".
_LABEL_SET = re.compile(
    r"\s*+(?:" + _PAIR + r"\s*+(?:,\s*+" + _PAIR + r"\s*+)*+(?:,\s*+)?)?\}\s*+", re.S | re.A
)
_LABEL_PAIR = re.compile(r"(" + _LNAME + r')\s*+=\s*+"([^"\\]*+(?:\\.[^"\\]*+)*+)"', re.S | re.A)
# Without backslashes, a key whose quotes all belong to label values needs nothing more.
_PLAIN_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*+)\s*+=\s*+"([^"]*+)"', re.A)
# Text format 1.0.0: the metric name quoted, first in the braces: {"my.metric", a="b"}.
_QUOTED_NAME = re.compile(r"\s*+(" + _Q + r")\s*+(?:,|(?=\}))", re.S | re.A)
_NAME = re.compile(r"\s*+([a-zA-Z_:][a-zA-Z0-9_:]*+)\s*+", re.A)
# Only these escapes mean something; any other backslash is kept, as Prometheus does.
_UNESCAPE = re.compile(r'\\([\\"n])')


def make(mapping: Mapping[str, str] | Iterable[tuple[str, str]]) -> Labels:
    """Build a label set from a mapping or pairs, dropping empty values as Prometheus does."""
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    return tuple(sorted((k, v) for k, v in items if v != ""))


def get(labels: Labels, name: str, default: str = "") -> str:
    """The value of label ``name`` (``default`` when absent)."""
    for k, v in labels:
        if k == name:
            return v
    return default


def without(labels: Labels, names: Iterable[str]) -> Labels:
    """``labels`` less the given names."""
    drop = set(names)
    return tuple((k, v) for k, v in labels if k not in drop)


def without_name(labels: Labels) -> Labels:
    """``labels`` less ``__name__`` (the same object when it has none)."""
    for k, _ in labels:
        if k == "__name__":
            return tuple(p for p in labels if p[0] != "__name__")
    return labels


def _unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), raw)


def alert_labels(
    kpi_name: str, kpi_labels: Labels, level: str, series: Labels, external: Labels = EMPTY
) -> Labels:
    """The labels identifying the alert of ``level`` for one series of KPI ``kpi_name``,
    sorted: ``external`` labels, then the series labels, then the KPI's ``labels``, then
    ``severity: <level>`` and ``alertname: <KPI name>`` (ARCHITECTURE §6; later ones win)."""
    merged = dict(external)
    merged.update(series)
    merged.update(kpi_labels)
    merged["severity"] = level
    merged["alertname"] = kpi_name
    return tuple(sorted(merged.items()))


def decode_key(key: bytes) -> tuple[str, Labels]:
    """Decode a series key into its metric name and label set (without ``__name__``).

    Accepts what the text formats allow: blanks between tokens, a trailing comma, quoted label
    names, and text 1.0.0's quoted metric name (``{"my.metric", a="b"}``). Invalid UTF-8 is
    replaced. Raises ValueError on a key that is not well formed.
    """
    text = key.decode("utf-8", "replace")
    brace = text.find("{")
    if brace < 0:
        m = _NAME.fullmatch(text)
        if not m:
            raise ValueError(f"invalid metric name {key[:80]!r}")
        return m.group(1), EMPTY
    pos = brace + 1
    if text[:brace].strip():
        m = _NAME.fullmatch(text, 0, brace)
        if not m:
            raise ValueError(f"invalid metric name {text[:brace][:80]!r}")
        name = m.group(1)
    else:
        q = _QUOTED_NAME.match(text, pos)
        if q is None or q.group(1) == '""':
            raise ValueError(f"missing metric name in {key[:120]!r}")
        name = _unescape(q.group(1)[1:-1])
        pos = q.end()
    if not _LABEL_SET.fullmatch(text, pos):
        raise ValueError(f"invalid label set in {key[:120]!r}")
    if "\\" not in text:
        pairs: list[tuple[str, str]] = _PLAIN_PAIR.findall(text, pos)
        if 2 * len(pairs) == text.count('"', pos):  # else some label name is quoted
            if '""' in text:
                pairs = [p for p in pairs if p[1]]
            pairs.sort()
            return name, tuple(pairs)
    return name, make(
        (_unescape(n[1:-1]) if n[:1] == '"' else n, _unescape(v))
        for n, v in _LABEL_PAIR.findall(text, pos)
    )


def escape_value(value: str) -> str:
    """A label value escaped for exposition text and PromQL: ``\\``, ``"`` and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_body(pairs: Iterable[tuple[str, str]]) -> str:
    """``a="1",b="2"`` with values escaped: the inside of an exposition label set."""
    return ",".join(f'{k}="{escape_value(v)}"' for k, v in pairs)


def format_key(name: str, labels: Labels | Mapping[str, str] = EMPTY) -> bytes:
    """The series key of ``name`` with ``labels`` in canonical exposition syntax."""
    items = labels.items() if isinstance(labels, Mapping) else labels
    body = label_body(sorted(items))
    return (f"{name}{{{body}}}" if body else name).encode()


def format_labels(labels: Labels) -> str:
    """``{a="1", b="2"}`` as people read it (PromQL syntax)."""
    return "{" + ", ".join(f'{k}="{escape_value(v)}"' for k, v in labels) + "}"
