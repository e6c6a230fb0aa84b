"""KPI rule files (``kpis:``) → :class:`~kpimon.config.models.Kpi` objects, every problem collected.

Pure: takes text or positioned nodes, returns KPIs plus problems. Expressions are compiled here
(:func:`kpimon.promql.compile_expr`), and a PromQL error is reported at the spot in ``expr``
where it was found when that can be known. KPI names must be unique across all the rule files
of a config, so callers pass one ``seen`` dictionary through every file.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Final, cast

from kpimon.config.alerting import as_annotations
from kpimon.config.durations import format_duration
from kpimon.config.fields import (
    Problems,
    as_labels,
    as_map,
    as_number,
    as_seq,
    as_str,
    check_keys,
    duration_or,
    list_items,
    one_of,
    require,
    required_str,
    str_or,
    suggestion,
    unique_name,
    value_pos,
)
from kpimon.config.models import (
    LEVEL_NAMES,
    RESERVED_LABELS,
    UNITS,
    Direction,
    Flapping,
    Kpi,
    Level,
    LevelName,
    NoData,
    Semantics,
    Threshold,
)
from kpimon.config.slos import RuleExtras, parse_services, parse_slos
from kpimon.config.yamlload import Map, Node, Scalar, join_index, join_key, load_yaml, position_at
from kpimon.errors import Position, Problem, PromQLError
from kpimon.kpi.schedule import DAY_NAMES, MINUTES_PER_DAY, Window, parse_time_of_day, zone
from kpimon.promql.compile import CompiledExpr, compile_expr
from kpimon.textfmt import plain_number as _num

KPI_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

_KPI_KEYS: Final = (
    "name",
    "help",
    "owner",
    "unit",
    "expr",
    "source",
    "target",
    "levels",
    "max_gap",
    "no_data",
    "flapping",
    "semantics",
    "labels",
    "annotations",
)
_LEVEL_KEYS: Final = ("above", "below", "for", "clear", "clear_for", "keep_firing_for", "schedule")
_WINDOW_KEYS: Final = ("days", "from", "to", "timezone", "above", "below", "clear")
_DIRECTIONS: Final[tuple[Direction, ...]] = ("above", "below")


def parse_rules(
    text: str, file: str, seen: dict[str, Position] | None = None
) -> tuple[tuple[Kpi, ...], list[Problem]]:
    """Parse the text of a rule file.

    Args:
        text: the file's contents.
        file: the file name for positions, as the user wrote it.
        seen: KPI names already defined (by earlier rule files) and where; updated in place.

    Returns:
        The valid KPIs and every problem found (the KPIs are only usable when there is none).
    """
    root, yaml_problems = load_yaml(text, file)
    problems = Problems()
    problems.extend(yaml_problems)
    kpis = parse_rules_node(root, file, problems, {} if seen is None else seen)
    return kpis, problems.items


def is_rule_file(root: Node | None) -> bool:
    """Whether a parsed document looks like a rule file: a mapping with ``kpis``, ``slos`` or
    ``services`` (or with ``groups``, a Prometheus rule file, so that it gets the rule-file
    message)."""
    return isinstance(root, Map) and any(k in root for k in (*_TOP_KEYS, "groups"))


_TOP_KEYS: Final = ("kpis", "slos", "services")


def parse_rules_node(
    root: Node | None,
    file: str,
    problems: Problems,
    seen: dict[str, Position],
    extras: RuleExtras | None = None,
) -> tuple[Kpi, ...]:
    """Parse a rule file's root node; see :func:`parse_rules`.

    The KPIs returned include those the file's ``slos`` compile into; its SLOs and
    ``services`` are added to ``extras`` (pass one :class:`RuleExtras` through every file of a
    config, as ``seen``).
    """
    if extras is None:
        extras = RuleExtras()
    if root is None:
        return ()  # an empty rule file defines no KPIs, as in Prometheus
    top = as_map(root, "", problems)
    if top is None:
        return ()
    for key, _ in top.entries:
        if key.text == "groups":
            problems.add(
                key.pos,
                "",
                '"groups" is a Prometheus rule file key; a kpimon rule file has a '
                'top-level "kpis" list (docs/rules.md)',
            )
        elif key.text not in _TOP_KEYS:
            problems.add(key.pos, "", f'unknown key "{key.text}"{suggestion(key.text, _TOP_KEYS)}')
    kpis: list[Kpi] = []
    for i, item in enumerate(list_items(top.get("kpis"), "kpis", problems)):
        kpi = _kpi(item, join_index("kpis", i), file, problems, seen)
        if kpi is not None:
            kpis.append(kpi)
    kpis.extend(parse_slos(top.get("slos"), file, problems, seen, extras))
    parse_services(top.get("services"), file, problems, seen, extras)
    return tuple(kpis)


def _kpi(
    node: Node, path: str, file: str, problems: Problems, seen: dict[str, Position]
) -> Kpi | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _KPI_KEYS, problems)

    name = unique_name(m, "name", path, "KPI name", seen, problems, pattern=KPI_NAME)
    owner = required_str(m, "owner", path, problems, nonempty=True)
    help_text = str_or(m, "help", path, problems, "")
    unit = _choice(m, "unit", path, UNITS, "none", problems)
    semantics = _choice(m, "semantics", path, ("default", "prometheus"), "default", problems)
    _source(m, path, problems)
    expr, expr_pos = _expr(m, path, problems)
    target = _target(m.get("target"), join_key(path, "target"), problems)
    levels = _levels(m, path, problems, semantics)
    max_gap = duration_or(m, "max_gap", path, problems, 0.0)
    if semantics == "prometheus" and max_gap:
        problems.add(
            value_pos(m, "max_gap"),
            join_key(path, "max_gap"),
            "max_gap is not available with semantics: prometheus (Prometheus drops a missing "
            "series at once)",
        )
    no_data = _no_data(m.get("no_data"), join_key(path, "no_data"), problems)
    flapping = _flapping(m.get("flapping"), join_key(path, "flapping"), problems)
    labels = as_labels(
        m.get("labels"),
        join_key(path, "labels"),
        problems,
        reserved=RESERVED_LABELS,
        reserved_why="is reserved (kpimon sets alertname, severity and kpi itself)",
    )
    annotations = as_annotations(m.get("annotations"), join_key(path, "annotations"), problems)
    if len(problems) > before:
        return None
    # No new problem means every required part parsed.
    assert name is not None
    assert owner is not None
    assert expr is not None
    assert expr_pos is not None
    assert levels is not None
    assert no_data is not None
    assert flapping is not None
    assert labels is not None
    assert annotations is not None
    return Kpi(
        name=name,
        help=help_text,
        owner=owner,
        unit=unit,
        expr=expr,
        target=target,
        levels=levels,
        max_gap_s=max_gap,
        no_data=no_data,
        flapping=flapping,
        semantics=cast(Semantics, semantics),
        labels=labels,
        annotations=annotations,
        file=file,
        position=m.pos,
        expr_position=expr_pos,
    )


def _choice(
    m: Map, key: str, path: str, choices: tuple[str, ...], default: str, problems: Problems
) -> str:
    def unknown(value: str) -> str:
        return f'unknown {key} "{value}"{suggestion(value, choices)}; expected one of ' + ", ".join(
            choices
        )

    return one_of(m, key, path, choices, default, problems, unknown=unknown)


def _source(m: Map, path: str, problems: Problems) -> None:
    node = m.get("source")
    if node is None:
        return
    sub = join_key(path, "source")
    value = as_str(node, sub, problems)
    if value == "remote":
        problems.add(
            node.pos, sub, 'source "remote" is not supported by this version of kpimon yet'
        )
    elif value is not None and value != "local":
        problems.add(
            node.pos,
            sub,
            f'unknown source "{value}"{suggestion(value, ["local", "remote"])}; '
            'expected "local" or "remote"',
        )


def _expr(m: Map, path: str, problems: Problems) -> tuple[CompiledExpr | None, Position | None]:
    node = require(m, "expr", path, problems)
    if node is None:
        return None, None
    sub = join_key(path, "expr")
    text = as_str(node, sub, problems, nonempty=True)
    if text is None:
        return None, None
    expr = compile_at(text, node, sub, problems)
    return (None, None) if expr is None else (expr, node.pos)


def compile_at(text: str, node: Node, path: str, problems: Problems) -> CompiledExpr | None:
    """``text`` (the value of ``node``) compiled; a PromQL error is reported at the spot in
    the value where it was found, when that can be known."""
    try:
        return compile_expr(text)
    except PromQLError as exc:
        pos = node.pos
        if exc.offset is not None and isinstance(node, Scalar):
            pos = position_at(node, exc.offset)
        problems.add(pos, path, exc.message)
        return None


def _direction(m: Map, path: str, problems: Problems, what: str) -> tuple[Direction, float] | None:
    """The one of ``above``/``below`` a target or level has, with its number."""
    present = [d for d in _DIRECTIONS if d in m]
    if not present:
        problems.add(m.pos, path, f'{what} needs "above" or "below"')
        return None
    if len(present) == 2:
        key = m.key("below")
        assert key is not None
        problems.add(key.pos, path, f'{what} has either "above" or "below", not both')
        return None
    direction = present[0]
    node = m.get(direction)
    assert node is not None
    value = as_number(node, join_key(path, direction), problems)
    return None if value is None else (direction, value)


def _target(node: Node | None, path: str, problems: Problems) -> Threshold | None:
    if node is None:
        return None
    m = as_map(node, path, problems)
    if m is None:
        return None
    check_keys(m, path, _DIRECTIONS, problems)
    found = _direction(m, path, problems, "a target")
    return None if found is None else Threshold(direction=found[0], value=found[1])


def _levels(m: Map, path: str, problems: Problems, semantics: str) -> tuple[Level, ...] | None:
    node = require(m, "levels", path, problems)
    if node is None:
        return None
    path = join_key(path, "levels")
    levels_map = as_map(node, path, problems)
    if levels_map is None:
        return None
    if not levels_map.entries:
        problems.add(levels_map.pos, path, "at least one level (warning or critical) is required")
        return None
    by_name: dict[str, Level] = {}
    ok = True
    for key, value in levels_map.entries:
        if key.text not in LEVEL_NAMES:
            problems.add(
                key.pos,
                path,
                f'unknown level "{key.text}"{suggestion(key.text, LEVEL_NAMES)}; '
                "levels are warning and critical",
            )
            ok = False
            continue
        level = _level(key.text, value, join_key(path, key.text), problems, semantics)
        if level is None:
            ok = False
        else:
            by_name[level.name] = level
    warning, critical = by_name.get("warning"), by_name.get("critical")
    if warning is not None and critical is not None:
        ok = _consistent(warning, critical, join_key(path, "critical"), problems) and ok
    if not ok:
        return None
    return tuple(by_name[n] for n in LEVEL_NAMES if n in by_name)


def _level(
    name: LevelName, node: Node, path: str, problems: Problems, semantics: str
) -> Level | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _LEVEL_KEYS, problems)
    found = _direction(m, path, problems, "a level")
    for_s = duration_or(m, "for", path, problems, 0.0)
    clear_for_s = duration_or(m, "clear_for", path, problems, 0.0)
    if "keep_firing_for" in m:
        if "clear_for" in m:
            key = m.key("keep_firing_for")
            first = m.key("clear_for")
            assert key is not None
            assert first is not None
            problems.add(
                key.pos,
                path,
                f'"clear_for" (line {first.pos.line}, column {first.pos.column}) and '
                '"keep_firing_for" are the same setting (keep_firing_for is '
                "Prometheus' name for it); use one",
            )
        else:
            clear_for_s = duration_or(m, "keep_firing_for", path, problems, 0.0)
    clear, clear_node = _clear(m, path, problems, semantics)
    if found is not None and clear is not None and clear_node is not None:
        direction, threshold = found
        side = _wrong_side(direction, threshold, clear)
        if side is not None:
            problems.add(
                clear_node.pos,
                join_key(path, "clear"),
                f'clear must be {side} the threshold of {_article(direction)} "{direction}" level '
                f"({_num(threshold)}), got {_num(clear)}",
            )
    schedule: tuple[Window, ...] = ()
    schedule_node = m.get("schedule")
    if schedule_node is not None and found is not None:
        windows = _schedule(
            schedule_node, join_key(path, "schedule"), problems, found[0], semantics
        )
        schedule = windows or ()
    if len(problems) > before or found is None:
        return None
    direction, threshold = found
    return Level(
        name=name,
        direction=direction,
        threshold=threshold,
        for_s=for_s,
        clear=threshold if clear is None else clear,
        clear_for_s=clear_for_s,
        schedule=schedule,
        position=m.pos,
    )


def _clear(
    m: Map, path: str, problems: Problems, semantics: str
) -> tuple[float | None, Node | None]:
    """A level's or schedule entry's ``clear`` number and its node (None, None: not given)."""
    node = m.get("clear")
    if node is None:
        return None, None
    clear = as_number(node, join_key(path, "clear"), problems)
    if semantics == "prometheus":
        problems.add(
            node.pos,
            join_key(path, "clear"),
            "clear is not available with semantics: prometheus (Prometheus alerting rules "
            "resolve at the threshold)",
        )
    return clear, node


def _wrong_side(direction: Direction, threshold: float, clear: float) -> str | None:
    """Where ``clear`` must be, when it is on the wrong side of ``threshold`` (else None)."""
    if direction == "above":
        return "at or below" if clear > threshold else None
    return "at or above" if clear < threshold else None


def _schedule(
    node: Node, path: str, problems: Problems, direction: Direction, semantics: str
) -> tuple[Window, ...] | None:
    """A level's ``schedule``: a list of windows, each with the level's direction."""
    items = as_seq(node, path, problems)
    if items is None:
        return None
    windows: list[Window] = []
    for i, item in enumerate(items.items):
        window = _window(item, join_index(path, i), problems, direction, semantics)
        if window is not None:
            windows.append(window)
    return tuple(windows) if len(windows) == len(items.items) else None


def _window(
    node: Node, path: str, problems: Problems, direction: Direction, semantics: str
) -> Window | None:
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, _WINDOW_KEYS, problems)
    times = window_times(m, path, problems)
    found = _direction(m, path, problems, "a schedule entry")
    if found is not None and found[0] != direction:
        key = m.key(found[0])
        assert key is not None
        problems.add(
            key.pos,
            path,
            f'the level is an "{direction}" level, so its schedule entries set "{direction}" '
            f'too, not "{found[0]}"',
        )
    clear, clear_node = _clear(m, path, problems, semantics)
    side = None
    if semantics != "prometheus" and found is not None and clear is not None:
        side = _wrong_side(direction, found[1], clear)
    if side is not None and clear_node is not None and found is not None and clear is not None:
        problems.add(
            clear_node.pos,
            join_key(path, "clear"),
            f"clear must be {side} the entry's threshold ({_num(found[1])}), got {_num(clear)}",
        )
    if len(problems) > before:
        return None
    assert times is not None
    assert found is not None
    days, start, end, timezone = times
    threshold = found[1]
    return Window(
        days=days,
        start_min=start,
        end_min=end,
        timezone=timezone,
        threshold=threshold,
        clear=threshold if clear is None else clear,
    )


def window_times(
    m: Map, path: str, problems: Problems
) -> tuple[frozenset[int], int, int, str] | None:
    """A weekly time window's ``days``, ``from``, ``to`` (minutes of the day) and ``timezone``
    (threshold schedules, silences), every problem recorded; None when any is wrong."""
    before = len(problems)
    days = _days(m, path, problems)
    start = _time_of_day(m, "from", path, problems, 0)
    end = _time_of_day(m, "to", path, problems, MINUTES_PER_DAY)
    if start == MINUTES_PER_DAY:
        problems.add(
            value_pos(m, "from"), join_key(path, "from"), 'a window cannot start at "24:00"'
        )
    elif start is not None and start == end:
        problems.add(
            value_pos(m, "to"),
            join_key(path, "to"),
            f'the window starts and ends at "{_hhmm(start)}" (for a whole day write '
            'from: "00:00", to: "24:00")',
        )
    timezone = _timezone(m, path, problems)
    if len(problems) > before or days is None or start is None or end is None or not timezone:
        return None
    return days, start, end, timezone


def _days(m: Map, path: str, problems: Problems) -> frozenset[int] | None:
    node = m.get("days")
    if node is None:
        return frozenset(range(7))
    sub = join_key(path, "days")
    items = as_seq(node, sub, problems)
    if items is None:
        return None
    if not items.items:
        problems.add(items.pos, sub, "at least one day is required (leave days out for every day)")
        return None
    days: set[int] = set()
    ok = True
    for i, item in enumerate(items.items):
        name = as_str(item, join_index(sub, i), problems)
        if name is None:
            ok = False
        elif name not in DAY_NAMES:
            problems.add(
                item.pos,
                join_index(sub, i),
                f'unknown weekday "{name}"{_day_hint(name)}; expected one of '
                + ", ".join(DAY_NAMES),
            )
            ok = False
        else:
            days.add(DAY_NAMES.index(name))
    return frozenset(days) if ok else None


def _day_hint(name: str) -> str:
    """`` (did you mean "wed"?)`` for ``wednesday``, ``Wed`` or a misspelling."""
    short = name.lower()[:3]
    if short in DAY_NAMES and name.lower() == _FULL_DAY_NAMES[DAY_NAMES.index(short)][: len(name)]:
        return f' (did you mean "{short}"?)'
    return suggestion(name.lower(), DAY_NAMES)


_FULL_DAY_NAMES: Final = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)


def _time_of_day(m: Map, key: str, path: str, problems: Problems, default: int) -> int | None:
    node = m.get(key)
    if node is None:
        return default
    sub = join_key(path, key)
    text = as_str(node, sub, problems)
    if text is None:
        return None
    minutes = parse_time_of_day(text)
    if minutes is None:
        problems.add(
            node.pos, sub, f'invalid time "{text}": expected "HH:MM" between "00:00" and "24:00"'
        )
    return minutes


def _timezone(m: Map, path: str, problems: Problems) -> str | None:
    node = require(m, "timezone", path, problems)
    if node is None:
        return None
    sub = join_key(path, "timezone")
    name = as_str(node, sub, problems, nonempty=True)
    if name is None:
        return None
    try:
        zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.add(
            node.pos,
            sub,
            f'unknown time zone "{name}"{suggestion(name, zoneinfo.available_timezones())} '
            '(an IANA name such as "Europe/Berlin" or "UTC")',
        )
        return None
    return name


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _flapping(node: Node | None, path: str, problems: Problems) -> Flapping | None:
    if node is None:
        return Flapping()
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, ("high", "low"), problems)
    default = Flapping()
    values = {"high": default.high, "low": default.low}
    for key in values:
        value_node = m.get(key)
        if value_node is None:
            continue
        value = as_number(value_node, join_key(path, key), problems)
        if value is not None and not 0 <= value <= 100:
            problems.add(
                value_node.pos,
                join_key(path, key),
                f"expected a percentage from 0 to 100, got {_num(value)}",
            )
        elif value is not None:
            values[key] = value
    if len(problems) > before:
        return None
    # A default never contradicts the value given: {high: 20} means low 20, {low: 40} high 40.
    if "low" not in m:
        values["low"] = min(values["low"], values["high"])
    if "high" not in m:
        values["high"] = max(values["high"], values["low"])
    if values["low"] > values["high"]:
        problems.add(
            value_pos(m, "low" if "low" in m else "high"),
            path,
            f"low ({_num(values['low'])}) must not be above high ({_num(values['high'])})",
        )
        return None
    return Flapping(high=values["high"], low=values["low"])


def _consistent(warning: Level, critical: Level, path: str, problems: Problems) -> bool:
    if warning.direction != critical.direction:
        problems.add(
            critical.position,
            path,
            f'critical is an "{critical.direction}" level but warning is "{warning.direction}"; '
            "all levels of a KPI go the same direction",
        )
        return False
    if critical.direction == "above" and critical.threshold < warning.threshold:
        problems.add(
            critical.position,
            path,
            f"critical threshold {_num(critical.threshold)} is below the warning threshold "
            f'{_num(warning.threshold)}; for an "above" KPI critical must be at least warning',
        )
        return False
    if critical.direction == "below" and critical.threshold > warning.threshold:
        problems.add(
            critical.position,
            path,
            f"critical threshold {_num(critical.threshold)} is above the warning threshold "
            f'{_num(warning.threshold)}; for a "below" KPI critical must be at most warning',
        )
        return False
    return True


def _no_data(node: Node | None, path: str, problems: Problems) -> NoData | None:
    if node is None:
        return NoData()
    m = as_map(node, path, problems)
    if m is None:
        return None
    before = len(problems)
    check_keys(m, path, ("after", "resolve_after"), problems)
    default = NoData()
    after = duration_or(m, "after", path, problems, default.after_s)
    resolve_after = duration_or(m, "resolve_after", path, problems, default.resolve_after_s)
    if len(problems) > before:
        return None
    if resolve_after < after:
        problems.add(
            value_pos(m, "resolve_after" if "resolve_after" in m else "after"),
            path,
            f"resolve_after ({format_duration(resolve_after)}) must not be shorter than "
            f"after ({format_duration(after)})",
        )
        return None
    return NoData(after_s=after, resolve_after_s=resolve_after)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
