"""Alertmanager label matchers: ``severity="critical"``, ``team=~"db|infra"``, ``!=``, ``!~``.

:func:`parse_matcher` reads the syntax of Alertmanager's ``matchers`` (a value may be quoted,
with ``\\"``, ``\\\\`` and ``\\n`` escapes, or bare); regexes are fully anchored, as in
Alertmanager and PromQL. An absent label matches as the empty string. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from kpimon import labels as labelset

MatchOp = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True, slots=True)
class Matcher:
    """One Alertmanager label matcher: ``name op "value"`` (regexes are fully anchored)."""

    name: str
    op: MatchOp
    value: str

    def matches(self, labels: labelset.Labels) -> bool:
        """Whether the label set matches (an absent label has the value ``""``)."""
        actual = labelset.get(labels, self.name)
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual, re.S) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


_MATCHER = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*", re.S)
_UNESCAPE = re.compile(r'\\(["\\n])')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)


def parse_matcher(text: str) -> Matcher:
    """Parse ``team=~"db|infra"`` (Alertmanager syntax; an unquoted value is taken as is).

    Raises:
        ValueError: with a message saying what is wrong.
    """
    m = _MATCHER.fullmatch(text)
    if m is None:
        raise ValueError(
            f'invalid matcher "{text}": write label="value", label!="value", label=~"regex" or '
            'label!~"regex"'
        )
    name, op, raw = m.groups()
    if raw.startswith('"'):
        quoted = _QUOTED.fullmatch(raw)
        if quoted is None:
            raise ValueError(f'invalid matcher "{text}": unterminated or badly quoted value')
        value = _UNESCAPE.sub(lambda x: "\n" if x.group(1) == "n" else x.group(1), quoted[1])
    else:
        value = raw
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f'invalid regex "{value}" in matcher: {exc}') from None
    return Matcher(name, op, value)  # type: ignore[arg-type]  # op is one of the four
