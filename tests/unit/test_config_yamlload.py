"""The position-recording YAML loader."""

from __future__ import annotations

import time

import pytest

from kpimon.config.yamlload import (
    Map,
    Node,
    Scalar,
    Seq,
    describe,
    join_key,
    load_yaml,
    position_at,
)
from kpimon.errors import Position


def load(text: str) -> Node | None:
    node, problems = load_yaml(text, "f.yaml")
    assert problems == []
    return node


def at(line: int, column: int) -> Position:
    return Position("f.yaml", line, column)


def test_positions_of_every_node() -> None:
    root = load("a: 1\nb:\n  - x\n  - {c: d}\n")
    assert isinstance(root, Map)
    assert root.pos == at(1, 1)
    key_a = root.key("a")
    assert key_a is not None
    assert key_a.pos == at(1, 1)
    a = root.get("a")
    assert isinstance(a, Scalar)
    assert a.pos == at(1, 4)
    assert a.value == 1
    b = root.get("b")
    assert isinstance(b, Seq)
    assert b.pos == at(3, 3)
    x, inner = b.items
    assert isinstance(x, Scalar)
    assert x.pos == at(3, 5)
    assert x.value == "x"
    assert isinstance(inner, Map)
    assert inner.pos == at(4, 5)
    c = inner.get("c")
    assert isinstance(c, Scalar)
    assert c.pos == at(4, 9)
    assert list(root.keys()) == ["a", "b"]
    assert "a" in root
    assert "z" not in root
    assert root.get("z") is None


def test_scalars_keep_their_text_and_type() -> None:
    root = load('port: 8080\non: on\nq: "8080"\nf: 1.5\nn: ~\n')
    assert isinstance(root, Map)
    port, flag, quoted, f, n = (root.entries[i][1] for i in range(5))
    assert isinstance(port, Scalar)
    assert port.value == 8080
    assert port.text == "8080"
    assert port.is_number
    assert not port.is_str
    assert isinstance(flag, Scalar)
    assert flag.value is True
    assert flag.text == "on"
    assert flag.is_bool
    assert isinstance(quoted, Scalar)
    assert quoted.value == "8080"
    assert quoted.is_str
    assert isinstance(f, Scalar)
    assert f.value == 1.5
    assert isinstance(n, Scalar)
    assert n.is_null
    assert [describe(v) for v in (port, flag, quoted, n)] == [
        "8080 (a number)",
        "on (a boolean)",
        '"8080"',
        "null",
    ]
    assert describe(root) == "a mapping"


def test_duplicate_keys_report_both_positions() -> None:
    text = "kpis:\n  - name: x\n    for: 5m\n    owner: a\n    for: 6m\n"
    root, problems = load_yaml(text, "f.yaml")
    assert [str(p) for p in problems] == [
        'f.yaml:5:5: kpis[0]: duplicate key "for" (first defined at line 3, column 5)'
    ]
    assert isinstance(root, Map)
    kpis = root.get("kpis")
    assert isinstance(kpis, Seq)
    first = kpis.items[0]
    assert isinstance(first, Map)
    value = first.get("for")
    assert isinstance(value, Scalar)
    assert value.value == "5m"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1\nb: 2\n", "f.yaml:2:2: YAML syntax error: expected ',' or ']', but got ':'"),
        ("a: 1\n\tb: 2\n", "f.yaml:2:1: YAML syntax error: found character '\\t'"),
        ("a: 1\n---\nb: 2\n", "f.yaml:2:1: a file holds one YAML document, found a second one"),
        ("a: *nope\n", "f.yaml:1:4: YAML syntax error: found undefined alias 'nope'"),
        ("a: 'x\n", "f.yaml:2:1: YAML syntax error: found unexpected end of stream"),
    ],
)
def test_syntax_errors_are_one_problem(text: str, expected: str) -> None:
    root, problems = load_yaml(text, "f.yaml")
    assert root is None
    assert len(problems) == 1
    assert str(problems[0]).startswith(expected)


def test_empty_document() -> None:
    assert load_yaml("", "f.yaml") == (None, [])
    assert load_yaml("# only a comment\n", "f.yaml") == (None, [])


def test_anchors_aliases_and_merge_keys() -> None:
    root = load("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\nagain: *b\n")
    assert isinstance(root, Map)
    use = root.get("use")
    assert isinstance(use, Map)
    assert list(use.keys()) == ["y", "x"]
    y, x = use.get("y"), use.get("x")
    assert isinstance(y, Scalar)
    assert y.value == 3
    assert isinstance(x, Scalar)
    assert x.value == 1
    assert x.pos == at(1, 14)
    again = root.get("again")
    assert isinstance(again, Map)
    assert list(again.keys()) == ["x", "y"]


def test_merge_of_a_list_of_mappings() -> None:
    root = load("a: &a {x: 1}\nb: &b {x: 2, z: 3}\nc:\n  <<: [*a, *b]\n")
    assert isinstance(root, Map)
    c = root.get("c")
    assert isinstance(c, Map)
    x = c.get("x")
    assert isinstance(x, Scalar)
    assert x.value == 1
    assert list(c.keys()) == ["x", "z"]


def test_recursive_alias_is_a_problem() -> None:
    root, problems = load_yaml("a: &x [1, *x]\n", "f.yaml")
    assert root is not None
    assert [p.message for p in problems] == ["recursive alias"]


def test_alias_bomb_is_cut_short() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    started = time.monotonic()
    _, problems = load_yaml("\n".join(lines) + "\n", "f.yaml")
    assert time.monotonic() - started < 5
    assert [p.message for p in problems] == ["too many aliases expanded"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!python/object/apply:os.system [echo]\n", "unsupported YAML tag !!python/object"),
        ("a: !!python/name:os.getcwd x\n", "unsupported YAML tag !!python/name:os.getcwd"),
        ("a: !custom x\n", "unsupported YAML tag !custom"),
        ("a: !!set {x}\n", "unsupported YAML tag !!set"),
        ("a: !!int zz\n", "invalid value for tag !!int"),
        ("? [a, b]\n: c\n", "mapping keys must be plain scalars"),
    ],
)
def test_only_safe_tags(text: str, message: str) -> None:
    _, problems = load_yaml(text, "f.yaml")
    assert len(problems) == 1
    assert problems[0].message.startswith(message)


def test_unsupported_tag_on_a_scalar_keeps_its_text() -> None:
    root, _ = load_yaml("a: !custom hello\n", "f.yaml")
    assert isinstance(root, Map)
    a = root.get("a")
    assert isinstance(a, Scalar)
    assert a.is_str
    assert a.text == "hello"


def _scalar(text: str) -> Scalar:
    root = load(text)
    assert isinstance(root, Map)
    node = root.get("expr")
    assert isinstance(node, Scalar)
    return node


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("expr: rate(x[5m]) > bad\n", 16, at(1, 23)),  # plain
        ('expr: "rate(x[5m]) > bad"\n', 16, at(1, 24)),  # double-quoted, no escapes
        ("expr: 'rate(x[5m]) > bad'\n", 16, at(1, 24)),  # single-quoted
        ("expr:   up\n", 1, at(1, 10)),
        ('expr: "a\\"b"\n', 2, at(1, 7)),  # an escape shifts columns: the scalar's position
        ("expr: |\n  sum(\n    rate(x[5m])\n  )\n", 11, at(3, 9)),  # literal block
        ("expr: |\n  up\n\n  + 1\n", 4, at(4, 3)),  # blank lines inside the block
        ("expr: >\n  sum(\n  up)\n", 6, at(1, 7)),  # folded: the scalar's position
        ("expr: a\n  b\n", 2, at(1, 7)),  # multi-line plain: the scalar's position
    ],
)
def test_position_at(text: str, offset: int, expected: Position) -> None:
    assert position_at(_scalar(text), offset) == expected


def test_position_at_out_of_range() -> None:
    node = _scalar("expr: up\n")
    assert position_at(node, 99) == node.pos
    assert position_at(node, -1) == node.pos


def test_join_key() -> None:
    assert join_key("", "kpis") == "kpis"
    assert join_key("kpis[0]", "for") == "kpis[0].for"
    assert join_key("labels", "a.b") == 'labels["a.b"]'
