"""Typed reads of positioned YAML nodes, collecting problems instead of raising.

Each ``as_*`` function takes a node and its key path, returns the typed value, or records a
:class:`~kpimon.errors.Problem` at the node's position and returns None. :func:`check_keys`
reports unknown keys (with a "did you mean" hint) and keys this version does not support yet.
The config and rule parsers are built from these; nothing here knows their schema.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Iterable
from typing import Final

from kpimon.config.durations import parse_duration, parse_size
from kpimon.config.yamlload import Map, Node, Scalar, Seq, describe, join_key
from kpimon.errors import Position, Problem

LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


class Problems:
    """The problems found so far, in any order (ConfigError sorts them)."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, pos: Position, path: str, message: str) -> None:
        self.items.append(Problem(pos, path, message))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.items.extend(problems)

    def __len__(self) -> int:
        return len(self.items)


def suggestion(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean "x"?)`` when ``word`` looks like a misspelling of one of ``choices``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def check_keys(
    node: Map,
    path: str,
    allowed: Collection[str],
    problems: Problems,
    *,
    not_yet: Collection[str] = (),
) -> None:
    """Report every key of ``node`` that is not in ``allowed``.

    Keys in ``not_yet`` are known kpimon or Prometheus keys this version does not implement; they
    get "not supported ... yet" rather than "unknown key".
    """
    for key, _ in node.entries:
        name = key.text
        if name in allowed:
            continue
        if name in not_yet:
            problems.add(
                key.pos,
                join_key(path, name),
                f'"{name}" is not supported by this version of kpimon yet',
            )
        else:
            problems.add(key.pos, path, f'unknown key "{name}"{suggestion(name, allowed)}')


def require(node: Map, key: str, path: str, problems: Problems) -> Node | None:
    """``node[key]``, reporting a missing required key at the mapping's position."""
    value = node.get(key)
    if value is None:
        problems.add(node.pos, path, f'missing required key "{key}"')
    return value


def _expected(node: Node, path: str, problems: Problems, what: str) -> None:
    problems.add(node.pos, path, f"expected {what}, got {describe(node)}")


def as_map(node: Node, path: str, problems: Problems) -> Map | None:
    """A mapping; null counts as an empty mapping (as in Prometheus)."""
    if isinstance(node, Map):
        return node
    if isinstance(node, Scalar) and node.is_null:
        return Map(pos=node.pos, entries=())
    _expected(node, path, problems, "a mapping")
    return None


def as_seq(node: Node, path: str, problems: Problems) -> Seq | None:
    """A list; null counts as an empty list (as in Prometheus)."""
    if isinstance(node, Seq):
        return node
    if isinstance(node, Scalar) and node.is_null:
        return Seq(pos=node.pos, items=())
    _expected(node, path, problems, "a list")
    return None


def as_str(node: Node, path: str, problems: Problems, *, nonempty: bool = False) -> str | None:
    """A string; an unquoted number or boolean is taken as written (``8080`` → ``"8080"``)."""
    if not isinstance(node, Scalar) or node.is_null:
        _expected(node, path, problems, "a string")
        return None
    if nonempty and not node.text.strip():
        problems.add(node.pos, path, "must not be empty")
        return None
    return node.text


def as_number(node: Node, path: str, problems: Problems) -> float | None:
    """A finite number (``70``, ``0.5``, ``1e3``); a quoted string is an error."""
    value: float | None = None
    if isinstance(node, Scalar):
        if node.is_number and not isinstance(node.value, bool):
            value = float(node.value)  # type: ignore[arg-type]  # int or float per the tag
        elif node.is_str and node.style is None and _PLAIN_NUMBER.fullmatch(node.text):
            value = float(node.text)  # YAML 1.1 reads 1e3 as a string; Prometheus would not
    if value is None:
        _expected(node, path, problems, "a number")
        return None
    if not math.isfinite(value):
        problems.add(node.pos, path, f"expected a finite number, got {node.text}")  # type: ignore[union-attr]
        return None
    return value


def as_int(node: Node, path: str, problems: Problems, *, minimum: int = 0) -> int | None:
    """A whole number no smaller than ``minimum``."""
    if not isinstance(node, Scalar) or not isinstance(node.value, int) or node.is_bool:
        _expected(node, path, problems, "a whole number")
        return None
    if node.value < minimum:
        problems.add(node.pos, path, f"must be at least {minimum}, got {node.value}")
        return None
    return node.value


def as_bool(node: Node, path: str, problems: Problems) -> bool | None:
    """``true`` or ``false``."""
    if isinstance(node, Scalar) and node.is_bool and isinstance(node.value, bool):
        return node.value
    _expected(node, path, problems, "true or false")
    return None


def as_duration(node: Node, path: str, problems: Problems) -> float | None:
    """A Prometheus duration in seconds (``30s``, ``5m``, ``1h30m``, ``0``)."""
    if isinstance(node, Scalar) and node.is_number and not node.is_bool:
        if node.value == 0:
            return 0.0
        problems.add(
            node.pos,
            path,
            f"invalid duration {node.text}: a duration needs a unit, e.g. "
            f"{node.text}s or {node.text}m",
        )
        return None
    if not isinstance(node, Scalar) or not node.is_str:
        _expected(node, path, problems, 'a duration like "30s" or "5m"')
        return None
    try:
        return parse_duration(node.text)
    except ValueError as exc:
        problems.add(node.pos, path, str(exc))
        return None


def as_size(node: Node, path: str, problems: Problems) -> int | None:
    """A byte size: a whole number of bytes or a string like ``10MB`` (base 2)."""
    if isinstance(node, Scalar) and isinstance(node.value, int) and not node.is_bool:
        if node.value < 0:
            problems.add(node.pos, path, f"must be at least 0, got {node.value}")
            return None
        return node.value
    if not isinstance(node, Scalar) or not node.is_str:
        _expected(node, path, problems, 'a size like "10MB"')
        return None
    try:
        return parse_size(node.text)
    except ValueError as exc:
        problems.add(node.pos, path, str(exc))
        return None


def check_label_name(name: str) -> str | None:
    """Why ``name`` is not a valid label name, or None when it is."""
    if not LABEL_NAME.fullmatch(name):
        return f'invalid label name "{name}" (must match [a-zA-Z_][a-zA-Z0-9_]*)'
    return None


def as_str_map(
    node: Node,
    path: str,
    problems: Problems,
    *,
    check_key: Callable[[str], str | None] = check_label_name,
) -> tuple[tuple[str, str], ...] | None:
    """A mapping of strings to strings, in file order; ``check_key`` says why a key is bad."""
    mapping = as_map(node, path, problems)
    if mapping is None:
        return None
    out: list[tuple[str, str]] = []
    ok = True
    for key, value in mapping.entries:
        sub = join_key(path, key.text)
        why = check_key(key.text)
        if why is not None:
            problems.add(key.pos, sub, why)
            ok = False
            continue
        text = as_str(value, sub, problems)
        if text is None:
            ok = False
            continue
        out.append((key.text, text))
    return tuple(out) if ok else None
