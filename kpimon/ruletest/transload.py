"""``transition_test`` entries of a rule unit-test file → :class:`~.model.TransitionTest`.

kpimon's own addition to promtool's format (ARCHITECTURE §6): the exact ordered transitions
expected in a time range, with simulated restarts (``restart_at``) and outages (``gap``). Every
problem a run could only fail on (a phase that does not exist, a gap that ends before it starts,
an expected transition outside the range or out of order) is reported here, at its FILE:LINE:COL.

Pure, like :mod:`.loader`, which calls :func:`parse_transition_test` for each entry.
"""

from __future__ import annotations

import itertools
from typing import Final

from kpimon.config.durations import format_duration
from kpimon.config.fields import (
    Problems,
    as_bool,
    as_duration,
    as_map,
    as_str,
    check_keys,
    require,
    seq_items,
    suggestion,
)
from kpimon.config.models import DEFAULT_OUTAGE_TOLERANCE_S
from kpimon.config.yamlload import Map, Node, Scalar, join_index, join_key, position_at
from kpimon.errors import Position
from kpimon.kpi.machine import PHASES
from kpimon.labels import EMPTY, Labels
from kpimon.ruletest.model import ExpTransition, Gap, TransitionTest
from kpimon.ruletest.series import SeriesError, parse_metric

_TEST_KEYS: Final = (
    "name",
    "from",
    "to",
    "kpi",
    "restart_at",
    "gap",
    "outage_tolerance",
    "exp_transitions",
)
_GAP_KEYS: Final = ("from", "to")
_EXP_KEYS: Final = ("time", "kpi", "labels", "level", "from", "to", "notify", "reason")


def parse_transition_test(
    node: Node, index: int, path: str, problems: Problems
) -> TransitionTest | None:
    """One entry of ``tests[i].transition_test`` (``path`` names it); None after a problem."""
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _TEST_KEYS, problems)
    name = _text(m, "name", path, problems) or ""
    kpi = _text(m, "kpi", path, problems) or ""
    start = _ms(m, "from", path, problems) or 0
    to_node = require(m, "to", path, problems)
    end = None if to_node is None else _node_ms(to_node, join_key(path, "to"), problems)
    if end is not None and end < start:
        problems.add(
            m.pos, path, f"the range ends (to: {_fmt(end)}) before it starts (from: {_fmt(start)})"
        )
        end = None
    tolerance = DEFAULT_OUTAGE_TOLERANCE_S
    tol_node = m.get("outage_tolerance")
    if tol_node is not None:
        found = as_duration(tol_node, join_key(path, "outage_tolerance"), problems)
        if found is not None and found <= 0:
            problems.add(tol_node.pos, join_key(path, "outage_tolerance"), "must be positive")
        elif found is not None:
            tolerance = found
    gaps = _gaps(m, path, end, problems)
    restarts = _restarts(m, path, end, gaps, problems)
    expected = _expected(m, path, kpi, start, end, problems)
    if len(problems) > before or end is None:
        return None
    return TransitionTest(
        index=index,
        name=name,
        from_ms=start,
        to_ms=end,
        kpi=kpi,
        restart_at_ms=restarts,
        gaps=gaps,
        outage_tolerance_s=tolerance,
        exp_transitions=expected,
        position=m.pos,
    )


def _fmt(ms: int) -> str:
    return format_duration(ms / 1000)


def _node_ms(node: Node, path: str, problems: Problems) -> int | None:
    seconds = as_duration(node, path, problems)
    return None if seconds is None else round(seconds * 1000)


def _ms(m: Map, key: str, path: str, problems: Problems) -> int | None:
    node = m.get(key)
    return None if node is None else _node_ms(node, join_key(path, key), problems)


def _text(m: Map, key: str, path: str, problems: Problems) -> str | None:
    node = m.get(key)
    return None if node is None else as_str(node, join_key(path, key), problems, nonempty=True)


def _gaps(m: Map, path: str, end: int | None, problems: Problems) -> tuple[Gap, ...]:
    out: list[tuple[Gap, Node]] = []
    for i, item in enumerate(seq_items(m, "gap", path, problems)):
        sub = join_index(join_key(path, "gap"), i)
        gm = as_map(item, sub, problems)
        if gm is None:
            continue
        check_keys(gm, sub, _GAP_KEYS, problems)
        nodes = [require(gm, key, sub, problems) for key in _GAP_KEYS]
        if nodes[0] is None or nodes[1] is None:
            continue
        start = _node_ms(nodes[0], join_key(sub, "from"), problems)
        stop = _node_ms(nodes[1], join_key(sub, "to"), problems)
        if start is None or stop is None:
            continue
        if stop <= start:
            problems.add(
                gm.pos,
                sub,
                f"the gap must end after it starts (from: {_fmt(start)}, to: {_fmt(stop)})",
            )
        elif end is not None and stop > end:
            problems.add(
                nodes[1].pos,
                join_key(sub, "to"),
                f"the gap must end (with a restart) at or before the test's to ({_fmt(end)})",
            )
        else:
            out.append((Gap(from_ms=start, to_ms=stop), gm))
    out.sort(key=lambda g: g[0].from_ms)
    for (prev, _), (gap, node) in itertools.pairwise(out):
        if gap.from_ms < prev.to_ms:
            problems.add(
                node.pos,
                join_key(path, "gap"),
                f"gaps overlap ({_fmt(prev.from_ms)}-{_fmt(prev.to_ms)} and "
                f"{_fmt(gap.from_ms)}-{_fmt(gap.to_ms)})",
            )
    return tuple(g for g, _ in out)


def _restarts(
    m: Map, path: str, end: int | None, gaps: tuple[Gap, ...], problems: Problems
) -> tuple[int, ...]:
    out: set[int] = set()
    for i, item in enumerate(seq_items(m, "restart_at", path, problems)):
        sub = join_index(join_key(path, "restart_at"), i)
        at = _node_ms(item, sub, problems)
        if at is None:
            continue
        if at <= 0 or (end is not None and at > end):
            problems.add(item.pos, sub, "a restart must be after 0 and at or before the test's to")
            continue
        inside = next((g for g in gaps if g.from_ms <= at < g.to_ms), None)
        if inside is not None:
            problems.add(
                item.pos,
                sub,
                f"kpimon is not running at {_fmt(at)} (gap {_fmt(inside.from_ms)}-"
                f"{_fmt(inside.to_ms)}): it restarts at the gap's end",
            )
            continue
        out.add(at)
    return tuple(sorted(out))


def _expected(
    m: Map, path: str, kpi: str, start: int, end: int | None, problems: Problems
) -> tuple[ExpTransition, ...]:
    out: list[ExpTransition] = []
    last = start
    for i, item in enumerate(seq_items(m, "exp_transitions", path, problems)):
        sub = join_index(join_key(path, "exp_transitions"), i)
        em = as_map(item, sub, problems)
        if em is None:
            continue
        before = len(problems)
        check_keys(em, sub, _EXP_KEYS, problems)
        time_node = require(em, "time", sub, problems)
        time = None if time_node is None else _node_ms(time_node, join_key(sub, "time"), problems)
        if time_node is not None and time is not None:
            if time < start or (end is not None and time > end):
                problems.add(
                    time_node.pos,
                    join_key(sub, "time"),
                    f"{_fmt(time)} is outside the test's range ({_fmt(start)} to "
                    f"{'?' if end is None else _fmt(end)})",
                )
            elif time < last:
                problems.add(
                    time_node.pos,
                    join_key(sub, "time"),
                    f"transitions are listed in time order: {_fmt(time)} comes after {_fmt(last)}",
                )
            else:
                last = time
        kpi_node = em.get("kpi")
        name = (
            None
            if kpi_node is None
            else as_str(kpi_node, join_key(sub, "kpi"), problems, nonempty=True)
        )
        if name is None and not kpi:
            problems.add(em.pos, sub, 'missing required key "kpi" (or a "kpi" for the test)')
        elif kpi_node is not None and name is not None and kpi and name != kpi:
            problems.add(
                kpi_node.pos,
                join_key(sub, "kpi"),
                f'the test compares only the transitions of KPI "{kpi}"',
            )
        labels = _labels(em, sub, problems)
        level_node = require(em, "level", sub, problems)
        level = None if level_node is None else as_str(level_node, join_key(sub, "level"), problems)
        phases = [_phase(em, key, sub, problems) for key in ("from", "to")]
        if phases[0] is not None and phases[0] == phases[1]:
            problems.add(em.pos, sub, f"a transition changes the phase (from and to: {phases[0]})")
        notify_node = em.get("notify")
        notify = (
            None if notify_node is None else as_bool(notify_node, join_key(sub, "notify"), problems)
        )
        reason = _text(em, "reason", sub, problems)
        from_phase, to_phase = phases
        if (
            len(problems) > before
            or time is None
            or level is None
            or labels is None
            or from_phase is None
            or to_phase is None
        ):
            continue
        out.append(
            ExpTransition(
                time_ms=time,
                kpi=name or kpi,
                labels=labels,
                level=level,
                from_phase=from_phase,
                to_phase=to_phase,
                notify=notify,
                reason=reason,
                position=em.pos,
            )
        )
    return tuple(out)


def _labels(m: Map, path: str, problems: Problems) -> Labels | None:
    node = m.get("labels")
    if node is None:
        return EMPTY
    text = as_str(node, join_key(path, "labels"), problems)
    if text is None:
        return None
    labels = metric_at(text, node, join_key(path, "labels"), problems)
    if labels is None:
        return None
    if any(name == "__name__" for name, _ in labels):
        problems.add(
            node.pos,
            join_key(path, "labels"),
            "a KPI series has no metric name: give its labels only, e.g. '{instance=\"a\"}'",
        )
        return None
    return labels


def _phase(m: Map, key: str, path: str, problems: Problems) -> str | None:
    node = require(m, key, path, problems)
    if node is None:
        return None
    text = as_str(node, join_key(path, key), problems)
    if text is None:
        return None
    if text not in PHASES:
        problems.add(
            node.pos,
            join_key(path, key),
            f'unknown phase "{text}"{suggestion(text, PHASES)}; phases are {", ".join(PHASES)}',
        )
        return None
    return text


def metric_at(
    text: str, node: Node, path: str, problems: Problems, *, input_series: bool = False
) -> Labels | None:
    """:func:`~kpimon.ruletest.series.parse_metric`; a failure is a problem at the character
    it names (``invalid series '...': ...``)."""
    try:
        return parse_metric(text, input_series=input_series)
    except SeriesError as exc:
        problems.add(offset_pos(node, exc.offset), path, f"invalid series {text!r}: {exc.message}")
        return None


def offset_pos(node: Node, offset: int) -> Position:
    """The position of character ``offset`` of a scalar's value (the node's, for others)."""
    return position_at(node, offset) if isinstance(node, Scalar) else node.pos
