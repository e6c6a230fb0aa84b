"""YAML with positions: every mapping, sequence, key and scalar knows its FILE:LINE:COL.

:func:`load_yaml` composes a document with a :class:`yaml.SafeLoader` subclass (only the safe
constructors; anchors, aliases and ``<<`` merge keys allowed) and turns the node graph into
immutable :class:`Map` / :class:`Seq` / :class:`Scalar` nodes carrying 1-based positions. It never
raises on bad input: syntax errors, duplicate keys (with both positions), several documents in
one file, unsupported tags and recursive aliases all become :class:`~kpimon.errors.Problem`\\ s.

:func:`position_at` maps a character offset inside a string scalar back to its line and column
(used to point at the exact spot of a PromQL error inside ``expr``).

This module knows YAML, not kpimon's config schema; no file I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import yaml

from kpimon.errors import Position, Problem

_STR: Final = "tag:yaml.org,2002:str"
_INT: Final = "tag:yaml.org,2002:int"
_FLOAT: Final = "tag:yaml.org,2002:float"
_BOOL: Final = "tag:yaml.org,2002:bool"
_NULL: Final = "tag:yaml.org,2002:null"
_MAP: Final = "tag:yaml.org,2002:map"
_SEQ: Final = "tag:yaml.org,2002:seq"
_MERGE: Final = "tag:yaml.org,2002:merge"
_MAX_REVISITS: Final = 50_000  # nodes built again through aliases: stops "billion laughs"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class Scalar:
    """A scalar with its position.

    Attributes:
        pos: where the scalar starts (the opening quote of a quoted scalar).
        value: the value as YAML's safe constructors build it (str, int, float, bool, None, ...).
        text: the scalar's text before type resolution (``"8080"`` for ``8080``, ``"on"`` for
            ``on``); what a field that expects a string uses, as Prometheus' YAML library does.
        tag: the resolved YAML tag, e.g. ``tag:yaml.org,2002:str``.
        style: ``None`` (plain), ``'"'``, ``"'"``, ``"|"`` or ``">"``.
        source: the source lines the scalar spans, for :func:`position_at`.
        end_column: 0-based column just past the scalar on its last line.
    """

    pos: Position
    value: object
    text: str
    tag: str
    style: str | None = None
    source: tuple[str, ...] = ()
    end_column: int = 0

    @property
    def is_str(self) -> bool:
        return self.tag == _STR

    @property
    def is_null(self) -> bool:
        return self.tag == _NULL

    @property
    def is_bool(self) -> bool:
        return self.tag == _BOOL

    @property
    def is_number(self) -> bool:
        return self.tag in (_INT, _FLOAT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Seq:
    """A sequence with its position."""

    pos: Position
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Map:
    """A mapping with its position; keys are scalars, looked up by their text."""

    pos: Position
    entries: tuple[tuple[Scalar, Node], ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        for i, (key, _) in enumerate(self.entries):
            index.setdefault(key.text, i)
        object.__setattr__(self, "_index", index)

    def get(self, key: str) -> Node | None:
        """The value under ``key``, or None when absent."""
        i = self._index.get(key)
        return None if i is None else self.entries[i][1]

    def key(self, key: str) -> Scalar | None:
        """The key node ``key`` (for its position), or None when absent."""
        i = self._index.get(key)
        return None if i is None else self.entries[i][0]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def keys(self) -> Iterator[str]:
        return (k.text for k, _ in self.entries)


Node = Scalar | Seq | Map
"""Any YAML node with a position."""


def join_key(path: str, key: str) -> str:
    """``path.key``, or ``path["key"]`` when ``key`` is not identifier-like."""
    if _IDENT.fullmatch(key):
        return f"{path}.{key}" if path else key
    quoted = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{path}[{quoted}]"


def join_index(path: str, index: int) -> str:
    """``path[index]``."""
    return f"{path}[{index}]"


def describe(node: Node) -> str:
    """How a value reads in a message: ``"abc"``, ``5 (a number)``, ``a list``, ``null``, ..."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    if node.is_null:
        return "null"
    if node.is_str:
        text = node.text if len(node.text) <= 60 else node.text[:57] + "..."
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if node.is_bool:
        return f"{node.text} (a boolean)"
    if node.is_number:
        return f"{node.text} (a number)"
    return f"{node.text} ({node.tag.rsplit(':', 1)[-1]})"


def load_yaml(text: str, file: str) -> tuple[Node | None, list[Problem]]:
    """Parse one YAML document into positioned nodes.

    Args:
        text: the file's contents.
        file: the file name used in positions (as the user gave it).

    Returns:
        The root node (None for an empty document, or when the text is not valid YAML) and the
        problems found; a syntax error yields exactly one problem at the error's position.
    """
    try:
        # PyYAML checks the text for characters YAML does not allow (control characters,
        # NUL) when the loader is created, so that belongs inside the try as well.
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        return None, [_reader_problem(exc, text, file)]
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_problem(exc, file)]
    except yaml.YAMLError as exc:  # a reader error (e.g. a control character)
        return None, [_reader_problem(exc, text, file)]
    except RecursionError:
        return None, [Problem(Position(file, 1, 1), "", "YAML nesting is too deep")]
    finally:
        loader.dispose()
    if root is None:
        return None, []
    builder = _Builder(loader, file, text.splitlines())
    try:
        node = builder.build(root, "")
    except RecursionError:
        return None, [Problem(Position(file, 1, 1), "", "YAML nesting is too deep")]
    # A mapping merged with << is built again where it is merged: report each problem once.
    unique = {(p.position, p.message): p for p in builder.problems}
    return node, list(unique.values())


def _reader_problem(exc: yaml.YAMLError, text: str, file: str) -> Problem:
    """A problem at the character PyYAML's reader refused (e.g. a pasted colour code)."""
    mark = getattr(exc, "position", 0)
    if not isinstance(mark, int):
        mark = 0
    line = text.count("\n", 0, mark) + 1
    column = mark - (text.rfind("\n", 0, mark) + 1) + 1
    char = getattr(exc, "character", None)
    if isinstance(char, int | str):
        code = ord(char) if isinstance(char, str) else char
        message = f"character U+{code:04X} is not allowed in YAML (a pasted control character?)"
    else:
        message = f"YAML syntax error: {exc}"
    return Problem(Position(file, line, column), "", message)


def position_at(node: Scalar, offset: int) -> Position:
    """The position of character ``offset`` of a string scalar's value.

    Exact for single-line plain and quoted scalars without escapes, and for literal block
    scalars (``|``); for any other scalar (folded, escaped, multi-line plain) the scalar's own
    position.
    """
    if not node.source or offset < 0 or offset > len(node.text):
        return node.pos
    line0, col0 = node.pos.line, node.pos.column - 1  # col0: 0-based
    first = node.source[0]
    if len(node.source) == 1 and node.style in (None, '"', "'"):
        raw = first[col0 : node.end_column]
        if node.style is None and raw == node.text:
            return Position(node.pos.file, line0, col0 + offset + 1)
        if node.style is not None and raw[1:-1] == node.text:
            return Position(node.pos.file, line0, col0 + offset + 2)
        return node.pos
    if node.style == "|":
        lines = node.text.split("\n")
        k = node.text.count("\n", 0, offset)
        c = offset - (node.text.rfind("\n", 0, offset) + 1)
        indent = _block_indent(node.source[1:], lines)
        if indent is None or 1 + k >= len(node.source):
            return node.pos
        return Position(node.pos.file, line0 + 1 + k, indent + c + 1)
    return node.pos


def _block_indent(source: tuple[str, ...], lines: list[str]) -> int | None:
    """The indentation of a literal block, checked against every content line; None if unsure."""
    indent: int | None = None
    for src, val in zip(source, lines, strict=False):
        if not val:
            continue
        cut = len(src) - len(val)
        if cut < 0 or src[cut:] != val or src[:cut].strip(" "):
            return None
        if indent is None:
            indent = cut
        elif cut != indent:
            return None
    return indent


_SURROGATE = re.compile("[\ud800-\udfff]")


class _Loader(yaml.SafeLoader):
    """The safe loader; composing only. Scalars are built with the safe constructors."""


def _pos(file: str, mark: yaml.Mark) -> Position:
    return Position(file, mark.line + 1, mark.column + 1)


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    pos = _pos(file, mark) if mark is not None else Position(file, 1, 1)
    if exc.context == "expected a single document in the stream":
        return Problem(pos, "", "a file holds one YAML document, found a second one here")
    message = f"YAML syntax error: {exc.problem or exc.context or 'invalid YAML'}"
    if exc.context and exc.problem and exc.context_mark is not None:
        cm = exc.context_mark
        message += f" ({exc.context} at line {cm.line + 1}, column {cm.column + 1})"
    return Problem(pos, "", message)


def _short_tag(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


class _Builder:
    """Turns composed yaml nodes into positioned nodes, collecting problems."""

    def __init__(self, loader: _Loader, file: str, lines: list[str]) -> None:
        self.loader = loader
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []
        self.revisits = 0
        self.built: set[int] = set()
        self.stack: set[int] = set()

    def problem(self, mark: yaml.Mark, path: str, message: str) -> None:
        self.problems.append(Problem(_pos(self.file, mark), path, message))

    def build(self, node: yaml.Node, path: str) -> Node:
        if id(node) in self.built:
            self.revisits += 1
            if self.revisits == _MAX_REVISITS:
                self.problem(node.start_mark, path, "too many aliases expanded")
            if self.revisits >= _MAX_REVISITS:
                return self.null(node)
        self.built.add(id(node))
        if id(node) in self.stack:
            self.problem(node.start_mark, path, "recursive alias")
            return self.null(node)
        self.stack.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self.sequence(node, path)
            assert isinstance(node, yaml.ScalarNode)
            return self.scalar(node, path)
        finally:
            self.stack.discard(id(node))

    def null(self, node: yaml.Node) -> Scalar:
        return Scalar(pos=_pos(self.file, node.start_mark), value=None, text="", tag=_NULL)

    def check_tag(self, node: yaml.Node, expected: str, path: str) -> None:
        if node.tag != expected:
            self.problem(node.start_mark, path, f"unsupported YAML tag {_short_tag(node.tag)}")

    def scalar(self, node: yaml.ScalarNode, path: str) -> Scalar:
        if node.tag not in self.loader.yaml_constructors:
            # Reported once; the scalar then reads as its plain text, so nothing else cascades.
            self.problem(node.start_mark, path, f"unsupported YAML tag {_short_tag(node.tag)}")
            node = yaml.ScalarNode(_STR, node.value, node.start_mark, node.end_mark, node.style)
        try:
            value = self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            detail = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
            self.problem(
                node.start_mark, path, f"invalid value for tag {_short_tag(node.tag)}: {detail}"
            )
            return self.null(node)
        if isinstance(value, str) and (bad := _SURROGATE.search(value)) is not None:
            # YAML's "\ud83d" escapes make lone UTF-16 halves, which no UTF-8 encoder (the
            # journal, JSON bodies) can write: the alert would fail at 3 a.m., not here.
            self.problem(
                node.start_mark,
                path,
                f"invalid character U+{ord(bad[0]):04X} (half of a UTF-16 pair); "
                'write the character itself or escape it whole, as "\\U0001F525"',
            )
            value = _SURROGATE.sub("\ufffd", value)  # reported once; nothing else cascades
        start, end = node.start_mark, node.end_mark
        return Scalar(
            pos=_pos(self.file, start),
            value=value,
            text=node.value,
            tag=node.tag,
            style=node.style,
            source=tuple(self.lines[start.line : end.line + 1]),
            end_column=end.column,
        )

    def sequence(self, node: yaml.SequenceNode, path: str) -> Seq:
        self.check_tag(node, _SEQ, path)
        items = tuple(self.build(child, join_index(path, i)) for i, child in enumerate(node.value))
        return Seq(pos=_pos(self.file, node.start_mark), items=items)

    def mapping(self, node: yaml.MappingNode, path: str) -> Map:
        self.check_tag(node, _MAP, path)
        entries: list[tuple[Scalar, Node]] = []
        seen: dict[str, yaml.Mark] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node.start_mark, path, "mapping keys must be plain scalars")
                continue
            key = self.scalar(key_node, path)
            first = seen.get(key.text)
            if first is not None:
                self.problem(
                    key_node.start_mark,
                    path,
                    f'duplicate key "{key.text}" '
                    f"(first defined at line {first.line + 1}, column {first.column + 1})",
                )
                continue
            seen[key.text] = key_node.start_mark
            entries.append((key, self.build(value_node, join_key(path, key.text))))
        # Merge keys (<<): explicit keys win, then earlier merged mappings win over later ones.
        for merged in self.merge_sources(merges, path):
            for key, value in merged.entries:
                if key.text not in seen:
                    seen[key.text] = node.start_mark
                    entries.append((key, value))
        return Map(pos=_pos(self.file, node.start_mark), entries=tuple(entries))

    def merge_sources(self, merges: list[yaml.Node], path: str) -> list[Map]:
        out: list[Map] = []
        for value in merges:
            candidates = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for candidate in candidates:
                if not isinstance(candidate, yaml.MappingNode):
                    self.problem(candidate.start_mark, path, "a merge key (<<) needs mappings")
                    continue
                built = self.build(candidate, path)
                if isinstance(built, Map):
                    out.append(built)
        return out
