"""``alerting.silences`` in ``kpimon.yml``: silences defined in the configuration (read-only).

Each entry has Alertmanager-syntax ``matchers`` (at least one, and not all of them matching
the empty string) and either a time span (``starts_at``/``ends_at``, RFC 3339), a weekly
``schedule`` (windows written as a level's schedule in rule files: ``days``, ``from``, ``to``,
``timezone``), or both (the schedule only within the span). Every problem is reported at its
position, as everywhere in the config. Pure: builds :class:`kpimon.notify.silences.Silence`\\ s.
"""

from __future__ import annotations

import math
from typing import Final

from kpimon.config.fields import (
    Problems,
    as_map,
    as_matchers,
    as_seq,
    as_str,
    check_keys,
    list_items,
    require,
    str_or,
)
from kpimon.config.matchers import Matcher

# A silence's windows are read exactly as a level's schedule windows are, so that both accept
# and reject the same things with the same words.
from kpimon.config.rules import window_times
from kpimon.config.yamlload import Map, Node, join_index, join_key
from kpimon.kpi.schedule import Window
from kpimon.notify.silences import (
    Silence,
    check_matchers,
    config_silence,
    parse_rfc3339,
    rfc3339,
)

_KEYS: Final = ("matchers", "starts_at", "ends_at", "schedule", "created_by", "comment")
_WINDOW_KEYS: Final = ("days", "from", "to", "timezone")


def parse_silences(node: Node | None, problems: Problems) -> tuple[Silence, ...]:
    """The ``alerting.silences`` list (none when absent), recording problems."""
    out: list[Silence] = []
    for i, item in enumerate(list_items(node, "alerting.silences", problems)):
        silence = _silence(item, join_index("alerting.silences", i), problems)
        if silence is not None:
            out.append(silence)
    return tuple(out)


def _silence(node: Node, path: str, problems: Problems) -> Silence | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _KEYS, problems)
    matchers = _matchers(m, path, problems)
    starts_at = _time(m, "starts_at", path, problems)
    ends_at = _time(m, "ends_at", path, problems)
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        e_node = m.get("ends_at")
        assert e_node is not None
        problems.add(
            e_node.pos,
            join_key(path, "ends_at"),
            f"must be after starts_at ({rfc3339(starts_at)}), got {rfc3339(ends_at)}",
        )
    schedule: tuple[Window, ...] = ()
    s_node = m.get("schedule")
    if s_node is not None:
        schedule = _schedule(s_node, join_key(path, "schedule"), problems)
    elif m.get("ends_at") is None:
        problems.add(
            m.pos,
            path,
            'a silence needs "ends_at" or a weekly "schedule" (or both); without either it '
            "would never end",
        )
    created_by = str_or(m, "created_by", path, problems, "")
    comment = str_or(m, "comment", path, problems, "")
    if len(problems) > before or matchers is None:
        return None
    return config_silence(
        matchers,
        starts_at=-math.inf if starts_at is None else starts_at,
        ends_at=math.inf if ends_at is None else ends_at,
        schedule=schedule,
        created_by=created_by,
        comment=comment,
        origin=str(m.pos),
    )


def _matchers(m: Map, path: str, problems: Problems) -> tuple[Matcher, ...] | None:
    node = require(m, "matchers", path, problems)
    if node is None:
        return None
    sub = join_key(path, "matchers")
    before = len(problems)
    out = as_matchers(node, sub, problems)
    if len(problems) > before:
        return None
    why = check_matchers(out)
    if why is not None:
        problems.add(node.pos, sub, why + " (as in Alertmanager)" if not out else why)
        return None
    return out


def _time(m: Map, key: str, path: str, problems: Problems) -> float | None:
    node = m.get(key)
    if node is None:
        return None
    sub = join_key(path, key)
    text = as_str(node, sub, problems)
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        problems.add(node.pos, sub, str(exc))
        return None


def _schedule(node: Node, path: str, problems: Problems) -> tuple[Window, ...]:
    seq = as_seq(node, path, problems)
    if seq is None:
        return ()
    if not seq.items:
        problems.add(seq.pos, path, "at least one window is required")
        return ()
    windows: list[Window] = []
    for i, item in enumerate(seq.items):
        window = _window(item, join_index(path, i), problems)
        if window is not None:
            windows.append(window)
    return tuple(windows)


def _window(node: Node, path: str, problems: Problems) -> Window | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    check_keys(m, path, _WINDOW_KEYS, problems)
    times = window_times(m, path, problems)
    if times is None:
        return None
    days, start, end, timezone = times
    # A silence's window has no threshold: Window's threshold and clear are unused (0).
    return Window(
        days=days, start_min=start, end_min=end, timezone=timezone, threshold=0.0, clear=0.0
    )
