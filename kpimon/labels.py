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

_LABEL_PAIR = re.compile(
    rb'\s*([a-zA-Z_][a-zA-Z0-9_]*|"(?:[^"\\]|\\.)*")\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})', re.S
)
_NAME = re.compile(rb"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*")
_UNESCAPE = re.compile(rb"\\(.)", re.S)


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


def _unescape(raw: bytes) -> str:
    def repl(m: re.Match[bytes]) -> bytes:
        c = m.group(1)
        return b"\n" if c == b"n" else c

    return _UNESCAPE.sub(repl, raw).decode("utf-8", "replace")


def decode_key(key: bytes) -> tuple[str, Labels]:
    """Decode a series key into its metric name and label set (without ``__name__``).

    Raises ValueError on a key that is not well formed.
    """
    brace = key.find(b"{")
    if brace < 0:
        m = _NAME.fullmatch(key)
        if not m:
            raise ValueError(f"invalid metric name {key[:80]!r}")
        return m.group(1).decode(), EMPTY
    head = key[:brace]
    name = ""
    if head.strip():
        m = _NAME.fullmatch(head)
        if not m:
            raise ValueError(f"invalid metric name {head[:80]!r}")
        name = m.group(1).decode()
    pairs: list[tuple[str, str]] = []
    pos = brace + 1
    end = len(key)
    # An empty label block, or a trailing comma before "}".
    rest = key[pos:].strip()
    if rest == b"}":
        return name, EMPTY
    while pos < end:
        m = _LABEL_PAIR.match(key, pos)
        if not m:
            if key[pos:].strip() == b"}":
                break
            raise ValueError(f"invalid label set in {key[:120]!r}")
        lname_raw = m.group(1)
        if lname_raw.startswith(b'"'):
            lname = _unescape(lname_raw[1:-1])
        else:
            lname = lname_raw.decode()
        pairs.append((lname, _unescape(m.group(2))))
        pos = m.end()
        if m.group(3) == b"}":
            if key[pos:].strip():
                raise ValueError(f"unexpected text after label set in {key[:120]!r}")
            break
    else:
        raise ValueError(f"unterminated label set in {key[:120]!r}")
    if not name:
        raise ValueError(f"missing metric name in {key[:120]!r}")
    return name, make(pairs)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_key(name: str, labels: Labels | Mapping[str, str] = EMPTY) -> bytes:
    """The series key of ``name`` with ``labels`` in canonical exposition syntax."""
    items = labels.items() if isinstance(labels, Mapping) else labels
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(items))
    return (f"{name}{{{body}}}" if body else name).encode()


def format_labels(labels: Labels) -> str:
    """``{a="1", b="2"}`` as people read it (PromQL syntax)."""
    return "{" + ", ".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"
