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
from ipaddress import IPv6Address
from typing import Final

from kpimon import labels as labelset
from kpimon.config.durations import format_duration, parse_duration, parse_size
from kpimon.config.matchers import Matcher, parse_matcher
from kpimon.config.yamlload import Map, Node, Scalar, Seq, describe, join_index, join_key
from kpimon.errors import Position, Problem

LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?"
)


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
    misplaced: Callable[[str], str | None] | None = None,
) -> None:
    """Report every key of ``node`` that is not in ``allowed``.

    Keys in ``not_yet`` are known kpimon or Prometheus keys this version does not implement; they
    get "not supported ... yet" rather than "unknown key". ``misplaced`` says why a key that is
    known elsewhere does not belong here (None: it is unknown); that is reported at the key.
    """
    for key, _ in node.entries:
        name = key.text
        if name in allowed:
            continue
        why = None if misplaced is None else misplaced(name)
        if why is None and name in not_yet:
            why = f'"{name}" is not supported by this version of kpimon yet'
        if why is not None:
            problems.add(key.pos, join_key(path, name), why)
        else:
            problems.add(key.pos, path, f'unknown key "{name}"{suggestion(name, allowed)}')


def require(node: Map, key: str, path: str, problems: Problems) -> Node | None:
    """``node[key]``, reporting a missing required key at the mapping's position."""
    value = node.get(key)
    if value is None:
        problems.add(node.pos, path, f'missing required key "{key}"')
    return value


def claim_name(
    name: str, node: Node, path: str, what: str, seen: dict[str, Position], problems: Problems
) -> bool:
    """Record ``name`` as defined at ``node``; False (and a problem) when it already was.

    The first definition is named by line and column in the same file, by ``file:line:col``
    in another one.
    """
    first = seen.get(name)
    if first is not None:
        where = (
            f"line {first.line}, column {first.column}"
            if first.file == node.pos.file
            else str(first)
        )
        problems.add(node.pos, path, f'duplicate {what} "{name}" (first defined at {where})')
        return False
    seen[name] = node.pos
    return True


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


def list_items(node: Node | None, path: str, problems: Problems) -> tuple[Node, ...]:
    """The items of the list ``node``: none when it is absent, null or not a list (then a
    problem is recorded)."""
    seq = None if node is None else as_seq(node, path, problems)
    return seq.items if seq is not None else ()


def seq_items(m: Map, key: str, path: str, problems: Problems) -> tuple[Node, ...]:
    """The items of the list under ``key`` of ``m`` (see :func:`list_items`)."""
    return list_items(m.get(key), join_key(path, key), problems)


def value_pos(m: Map, key: str) -> Position:
    """Where the value of ``key`` is, or the mapping's position when the key is absent."""
    value = m.get(key)
    return value.pos if value is not None else m.pos


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


def required_str(
    m: Map,
    key: str,
    path: str,
    problems: Problems,
    *,
    nonempty: bool = False,
    check: Callable[[str], str | None] | None = None,
) -> str | None:
    """``m[key]`` (required) as a string; ``check`` says why a value is not acceptable (reported
    at the value). None when it is missing or wrong."""
    node = require(m, key, path, problems)
    if node is None:
        return None
    sub = join_key(path, key)
    value = as_str(node, sub, problems, nonempty=nonempty)
    why = None if value is None or check is None else check(value)
    if why is not None:
        problems.add(node.pos, sub, why)
        return None
    return value


def unique_name(
    m: Map,
    key: str,
    path: str,
    what: str,
    seen: dict[str, Position],
    problems: Problems,
    *,
    pattern: re.Pattern[str] | None = None,
    nonempty: bool = False,
) -> str | None:
    """``m[key]`` (required): a name matching ``pattern`` (when given), claimed in ``seen`` as
    ``what`` (see :func:`claim_name`); None when it is missing, invalid or a duplicate."""

    def check(name: str) -> str | None:
        if pattern is None or pattern.fullmatch(name):
            return None
        return f'invalid {what} "{name}" (must match {pattern.pattern})'

    name = required_str(m, key, path, problems, nonempty=nonempty, check=check)
    node = m.get(key)
    if name is None or node is None:
        return None
    return name if claim_name(name, node, join_key(path, key), what, seen, problems) else None


def str_or(m: Map, key: str, path: str, problems: Problems, default: str) -> str:
    """``m[key]`` as a string, or ``default`` when the key is absent or invalid (reported)."""
    node = m.get(key)
    if node is None:
        return default
    value = as_str(node, join_key(path, key), problems)
    return default if value is None else value


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


def as_labels(
    node: Node | None,
    path: str,
    problems: Problems,
    *,
    reserved: Collection[str],
    reserved_why: str,
) -> labelset.Labels | None:
    """A ``labels`` mapping a user sets (absent: none); None when any is invalid (reported).

    Names must be valid label names, not internal (``__`` prefix) and not in ``reserved``
    (reported as ``label "x" <reserved_why>``).
    """
    if node is None:
        return labelset.EMPTY

    def check(name: str) -> str | None:
        why = check_label_name(name)
        if why is None and name in reserved:
            return f'label "{name}" {reserved_why}'
        if why is None and name.startswith("__"):
            return f'label "{name}" is reserved (names starting with __ are internal)'
        return why

    pairs = as_str_map(node, path, problems, check_key=check)
    return None if pairs is None else labelset.make(pairs)


def given_duration(
    m: Map, key: str, path: str, problems: Problems, *, positive: bool = False, minimum: float = 0.0
) -> float | None:
    """``m[key]`` as a duration in seconds; None when it is absent or invalid (reported).

    ``positive`` rejects 0; ``minimum`` (which implies ``positive``) rejects shorter ones.
    """
    node = m.get(key)
    if node is None:
        return None
    sub = join_key(path, key)
    value = as_duration(node, sub, problems)
    if value is None:
        return None
    if (positive or minimum) and value <= 0:
        problems.add(node.pos, sub, f"must be greater than 0, got {format_duration(value)}")
        return None
    if value < minimum:
        problems.add(
            node.pos,
            sub,
            f"must be at least {format_duration(minimum)}, got {format_duration(value)}",
        )
        return None
    return value


def duration_or(
    m: Map,
    key: str,
    path: str,
    problems: Problems,
    default: float,
    *,
    positive: bool = False,
    minimum: float = 0.0,
) -> float:
    """:func:`given_duration`, or ``default`` when the key is absent or invalid."""
    value = given_duration(m, key, path, problems, positive=positive, minimum=minimum)
    return default if value is None else value


def one_of(
    m: Map,
    key: str,
    path: str,
    choices: tuple[str, ...],
    default: str,
    problems: Problems,
    *,
    unknown: Callable[[str], str] | None = None,
) -> str:
    """``m[key]``, a string among ``choices``, or ``default`` when absent or invalid.

    ``unknown`` words the problem for a value not among the choices (default: ``expected a, b
    or c, got "x"`` with a did-you-mean hint).
    """
    node = m.get(key)
    if node is None:
        return default
    sub = join_key(path, key)
    value = as_str(node, sub, problems)
    if value is None:
        return default
    if value not in choices:
        if unknown is None:
            alternatives = ", ".join(choices[:-1]) + f" or {choices[-1]}"
            message = f'expected {alternatives}, got "{value}"{suggestion(value, choices)}'
        else:
            message = unknown(value)
        problems.add(node.pos, sub, message)
        return default
    return value


def check_target(target: str) -> str | None:
    """Why ``target`` is not a valid ``host:port`` scrape target, or None when it is."""
    shown = f'invalid target "{target}"'
    if "://" in target:
        return f'{shown}: write host:port; the scheme goes in "scheme", the path in "metrics_path"'
    if "/" in target or "?" in target:
        return f'{shown}: write host:port; the path goes in "metrics_path"'
    if target.startswith("["):
        end = target.find("]")
        host, rest = target[1:end], target[end + 1 :]
        try:
            IPv6Address(host)
        except ValueError:
            return f"{shown}: {host!r} is not an IPv6 address"
        if not rest.startswith(":"):
            return f"{shown}: missing port (write [{host}]:port)"
        port = rest[1:]
    else:
        if target.count(":") > 1:
            return f"{shown}: put an IPv6 address in brackets, e.g. [::1]:9100"
        if target.isdigit():
            return f"{shown}: write host:port, e.g. localhost:{target}"
        if ":" not in target:
            return f"{shown}: missing port (write host:port, e.g. {target}:9100)"
        host, port = target.rsplit(":", 1)
        if not _HOSTNAME.fullmatch(host):
            return f'{shown}: "{host}" is not a valid host name or address'
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f'{shown}: port must be a number from 1 to 65535, got "{port}"'
    return None


def as_targets(
    node: Node | None, path: str, problems: Problems, *, path_key: str = "metrics_path"
) -> list[str]:
    """A ``targets`` list of ``host:port`` strings (absent: none), each checked with
    :func:`check_target`; ``path_key`` is the key that holds the URL path where it is used."""

    def check(target: str) -> str | None:
        why = check_target(target)
        return None if why is None else why.replace('"metrics_path"', f'"{path_key}"')

    return as_checked_strs(node, path, problems, check)


def as_checked_strs(
    node: Node | None, path: str, problems: Problems, check: Callable[[str], str | None]
) -> list[str]:
    """A list of strings (absent: none) without those that are not strings or that ``check``
    finds wrong (it says why; reported at the item)."""
    out: list[str] = []
    for i, item in enumerate(list_items(node, path, problems)):
        sub = join_index(path, i)
        text = as_str(item, sub, problems)
        why = None if text is None else check(text)
        if why is not None:
            problems.add(item.pos, sub, why)
        elif text is not None:
            out.append(text)
    return out


def as_matchers(node: Node | None, path: str, problems: Problems) -> tuple[Matcher, ...]:
    """A list of Alertmanager-style matcher strings (``team="db"``, ``severity=~"warn.*"``);
    each item that is not a non-empty string or does not parse is a problem at its position
    (and left out)."""
    if node is None:
        return ()
    seq = as_seq(node, path, problems)
    if seq is None:
        return ()
    out: list[Matcher] = []
    for i, item in enumerate(seq.items):
        sub = join_index(path, i)
        text = as_str(item, sub, problems, nonempty=True)
        if text is None:
            continue
        try:
            out.append(parse_matcher(text))
        except ValueError as exc:
            problems.add(item.pos, sub, str(exc))
    return tuple(out)


def timeout_within(
    m: Map,
    key: str,
    path: str,
    problems: Problems,
    *,
    default: float,
    interval: float,
    interval_name: str,
) -> float:
    """A timeout ``m[key]`` no longer than ``interval`` (a problem at the key otherwise, naming
    the interval ``interval_name``); unset or invalid: ``default`` or the interval, whichever
    is shorter."""
    timeout = given_duration(m, key, path, problems, positive=True)
    if timeout is None:
        return min(default, interval)
    node = m.get(key)
    if node is not None and timeout > interval:
        problems.add(
            node.pos,
            join_key(path, key),
            f"{key} ({format_duration(timeout)}) must not be greater than {interval_name} "
            f"({format_duration(interval)})",
        )
    return timeout
