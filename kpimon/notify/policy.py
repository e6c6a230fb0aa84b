"""The notification planner: which hook hears what about which alert, and when. Pure.

Every evaluation tick, :meth:`Planner.plan` turns the tick's transitions and flapping starts
and stops into :class:`Notification` records, one per hook, that the journal writes into the
outbox in the same transaction as the transitions (:mod:`kpimon.notify.outbox`). It applies:

- **routing**: every Alertmanager target gets every alert; hooks by their matchers and
  ``continue`` (:func:`~kpimon.notify.routing.route`);
- **inhibition** (``alerting.inhibit_lower_levels``, default on): a level's notifications are
  held while a higher level of the same KPI series fires. A warning notified before its
  critical fired stays open at the receiver (its repeats are held) and its resolve is sent
  when the warning itself resolves; a warning that fired while critical fired is notified
  once critical resolves, if it still fires;
- **flapping**: while a series flaps its notifications are held; when it starts, ONE
  "flapping" notice goes to each hook that routes the series (its own key, so it never
  resolves or overwrites the level's incident), when it stops one "settled" notice follows,
  then the current state of each level where it differs from what the hook was last told;
- **silences** (:class:`SilenceCheck`): a firing alert that is silenced is not notified; it is
  notified once no silence covers it, if it still fires;
- **repeat_interval** per hook, for alerts still firing (0: never);
- a resolve is sent only to hooks that were told the alert fired (never for an alert nobody
  heard of); resolves are not held by silences or inhibition, so an incident a receiver was
  told about is always closed; they are held while the series flaps.

The planner's memory (per alert: its current event; per hook: the last status told and when,
and why a notification is held) is journaled with the notifications (:attr:`Plan.records`) and
restored at start-up (:meth:`Planner.load`), so a restart neither repeats nor forgets anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

import orjson

from kpimon.config.alerting import NO_ALERTING, AlertingConfig, HookConfig
from kpimon.kpi.machine import FIRING, SEVERITY, FlapEvent, Transition
from kpimon.labels import EMPTY, Labels, format_labels
from kpimon.notify.alertmanager import RESOLVED_RETENTION_S
from kpimon.notify.model import (
    AlertEvent,
    Status,
    build_event,
    dedup_key,
    event_from_dict,
    event_to_json,
)
from kpimon.notify.routing import repeat_due, route
from kpimon.notify.silences import SilenceCheck

if TYPE_CHECKING:
    from kpimon.kpi.engine import KpiRuntime

Kind = Literal["firing", "resolved", "repeat", "flapping", "settled"]
KINDS: Final[tuple[Kind, ...]] = ("firing", "resolved", "repeat", "flapping", "settled")

log = logging.getLogger("kpimon.hooks")

FLAPPING_LEVEL: Final = "flapping"
"""The ``level`` of a flapping notice's event: its dedup key differs from every level's."""


class Notification(NamedTuple):
    """One notification to one hook.

    Immutable; a tuple rather than a frozen dataclass because a burst of 1,000 alerts makes
    1,000 per hook in one tick, and a tuple costs a fraction of a frozen dataclass to create
    (as :class:`~kpimon.kpi.machine.Transition`).

    Attributes:
        hook: the hook's name (an Alertmanager target is ``alertmanager:host:port``).
        key: the alert's identity: its dedup key, or a flapping notice's own key.
        kind: firing, resolved, repeat (still firing, ``repeat_interval``), flapping, settled.
        event: what the hook sends.
        created_at: the evaluation tick that caused it (Unix seconds).
    """

    hook: str
    key: str
    kind: Kind
    event: AlertEvent
    created_at: float
    event_json: str = ""
    """``event`` as :func:`~kpimon.notify.model.event_to_json` writes it ("": not yet)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A tick's notifications and the planner state they change, for one journal commit.

    ``records`` maps alert keys to their new state as JSON (None: forgotten).
    """

    t: float
    notifications: tuple[Notification, ...] = ()
    records: tuple[tuple[str, str | None], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.notifications or self.records)


@dataclass(slots=True)
class Told:
    """What one hook was told about one alert (mutable, the planner's own)."""

    status: Status | None = None
    """The last status sent (None: nothing yet)."""
    at: float | None = None
    """When it was sent (the tick)."""
    held: str = ""
    """Why the alert's current state is not sent: silenced, inhibited, flapping ("" none)."""


@dataclass(slots=True)
class _Alert:
    key: str
    kpi: str
    fingerprint: str
    level: str
    series: Labels
    event: AlertEvent
    told: dict[str, Told] = field(default_factory=dict)
    notice: bool = False
    dirty: bool = True
    """Changed since last journaled (beyond what :meth:`Planner._reconcile` sees)."""
    _text: tuple[AlertEvent | None, str] = (None, "")

    def event_json(self) -> str:
        """``event`` as JSON, encoded once per event (records and outbox rows share it)."""
        if self._text[0] is not self.event:
            self._text = (self.event, event_to_json(self.event))
        return self._text[1]

    def told_state(self) -> list[tuple[str, Status | None, float | None, str]]:
        return [(h, t.status, t.at, t.held) for h, t in self.told.items()]

    def to_json(self) -> str:
        rest = orjson.dumps(
            {
                "kpi": self.kpi,
                "fingerprint": self.fingerprint,
                "level": self.level,
                "series": self.series,
                "told": {h: (t.status, t.at, t.held) for h, t in self.told.items()},
                "notice": self.notice,
            }
        ).decode()
        return '{"event":' + self.event_json() + "," + rest[1:]

    @classmethod
    def from_json(cls, key: str, text: str) -> _Alert:
        d = json.loads(text)
        told = {
            str(h): Told(s, None if at is None else float(at), str(held))
            for h, (s, at, held) in d["told"].items()
        }
        return cls(
            key=key,
            kpi=str(d["kpi"]),
            fingerprint=str(d["fingerprint"]),
            level=str(d["level"]),
            series=tuple((str(k), str(v)) for k, v in d["series"]),
            event=event_from_dict(d["event"]),
            told=told,
            notice=bool(d["notice"]),
        )


def flapping_key(kpi: str, series: Labels) -> str:
    """The key of a series' flapping notices: stable, and unlike any level's dedup key."""
    canonical = json.dumps(
        {"kpi": kpi, "flapping": True, "labels": sorted(series)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "kpimon-flapping-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Dest:
    name: str
    repeat_s: float
    alertmanager: bool


class Planner:
    """Plans notifications tick by tick; remembers what each hook was told.

    Args:
        alerting: the ``alerting:`` config (hooks, matchers, ``inhibit_lower_levels``).
        alertmanagers: the names of the Alertmanager targets (their hooks' ``name``).
        silences: consulted for every firing notification; None: nothing is silenced.
        external_labels, external_url: as in :func:`~kpimon.notify.model.build_event`.
    """

    def __init__(
        self,
        alerting: AlertingConfig = NO_ALERTING,
        alertmanagers: Sequence[str] = (),
        *,
        silences: SilenceCheck | None = None,
        external_labels: Labels = EMPTY,
        external_url: str = "",
    ) -> None:
        self.silences = silences
        self._alerts: dict[str, _Alert] = {}
        self._series: dict[tuple[str, Labels], dict[str, str]] = {}
        self._flapping: dict[tuple[str, Labels], str] = {}
        """Flapping series → their notice's key."""
        self._watch: set[str] = set()
        """Keys to look at every tick: held, repeating, or kept for Alertmanager re-sends."""
        self._kpis_seen: object = None
        self._pending_records: dict[str, str | None] = {}
        """State changes made between ticks (configure), for the next plan."""
        self.failures_total = 0
        """Alerts whose planning raised (logged once per alert)."""
        self._failed_keys: set[str] = set()
        self.suppressed_total: Counter[str] = Counter()
        """Per hook: firing notifications held by a silence, inhibition or flapping."""
        self.configure(
            alerting, alertmanagers, external_labels=external_labels, external_url=external_url
        )

    # -- configuration and state ------------------------------------------------------

    def configure(
        self,
        alerting: AlertingConfig,
        alertmanagers: Sequence[str],
        *,
        external_labels: Labels = EMPTY,
        external_url: str = "",
    ) -> None:
        """Take a new config (reload): what hooks no longer exist were told is forgotten, and
        every alert is looked at again at the next tick (routes may have changed)."""
        self._hooks: tuple[HookConfig, ...] = alerting.hooks
        self._am: tuple[_Dest, ...] = tuple(_Dest(n, 0.0, True) for n in alertmanagers)
        self._am_names = frozenset(alertmanagers)
        self._inhibit = alerting.inhibit_lower_levels
        self._external_labels = external_labels
        self._external_url = external_url
        names = {d.name for d in self._am} | {h.name for h in self._hooks}
        self._names = names
        for a in self._alerts.values():
            gone = a.told.keys() - names
            for h in gone:
                del a.told[h]
            if gone:
                self._pending_records[a.key] = a.to_json()
        self._watch.update(k for k, a in self._alerts.items() if not a.notice)

    @property
    def hook_names(self) -> frozenset[str]:
        return frozenset(self._names)

    def load(self, records: Iterable[tuple[str, str]]) -> int:
        """Restore the journaled state (start-up); returns the number of alerts loaded.

        Raises:
            ValueError: a record is unreadable.
        """
        for key, text in records:
            a = _Alert.from_json(key, text)
            a.dirty = False
            self._alerts[key] = a
            if a.notice:
                self._flapping[(a.kpi, a.series)] = key
            else:
                self._series.setdefault((a.kpi, a.series), {})[a.level] = key
                self._watch.add(key)
        return len(self._alerts)

    def active(self, hook: str, t: float) -> list[tuple[str, AlertEvent]]:
        """(key, event) of every alert ``hook`` (an Alertmanager) was told fires, or told
        resolved less than 15 minutes before ``t``: what it is re-sent every minute."""
        out = []
        for a in self._alerts.values():
            told = a.told.get(hook)
            if told is None or told.status is None:
                continue
            if told.status == "firing" or (
                a.event.resolved_at is not None and t - a.event.resolved_at <= RESOLVED_RETENTION_S
            ):
                out.append((a.key, a.event if told.status == a.event.status else _as(a, told)))
        return out

    def firing(self) -> int:
        """Alerts whose current state is firing (not notices)."""
        return sum(1 for a in self._alerts.values() if not a.notice and a.event.status == "firing")

    # -- planning ---------------------------------------------------------------------

    def plan(
        self,
        t: float,
        transitions: Sequence[tuple[str, Transition]],
        flap_events: Sequence[tuple[str, FlapEvent]],
        kpis: Mapping[str, KpiRuntime],
    ) -> Plan:
        """The notifications of tick ``t`` (and the state to journal with them)."""
        out: list[Notification] = []
        changed: dict[str, str | None] = self._pending_records
        self._pending_records = {}
        touched: dict[str, None] = {}  # ordered set
        if kpis is not self._kpis_seen:
            self._kpis_seen = kpis
            self._gone_kpis(t, kpis, touched, out, changed)
        for name, ev in flap_events:
            if ev.flapping:
                self._flap_start(t, name, ev, kpis, out, changed)
        for name, tr in transitions:
            if tr.flapping:
                self._flapping.setdefault((name, tr.labels), "")
            if tr.notifies:
                try:
                    self._transition(t, name, tr, kpis, touched)
                except Exception as exc:  # one alert's bug must not cost the others their pages
                    self._failed(f"{name} {tr.level} {tr.labels!r}", name, tr.labels, exc)
        for name, ev in flap_events:
            if not ev.flapping:
                self._flap_stop(t, name, ev, out, changed, touched)
        for key in list(self._watch):
            touched.setdefault(key, None)
        for key in touched:
            a = self._alerts.get(key)
            if a is not None:
                try:
                    self._reconcile(t, a, out, changed)
                except Exception as exc:
                    self._watch.discard(key)  # not retried every tick: it would fail again
                    self._failed(key, a.kpi, a.series, exc)
        return Plan(t, tuple(out), tuple(changed.items()))

    def _failed(self, key: str, kpi: str, series: Labels, exc: Exception) -> None:
        """Log (once per ``key``) and count an alert whose planning raised ``exc``; the tick's
        other alerts are planned as usual."""
        self.failures_total += 1
        if key not in self._failed_keys:
            if len(self._failed_keys) >= 10_000:
                self._failed_keys.clear()
            self._failed_keys.add(key)
            log.error(
                "planning a notification failed; the other alerts are planned kpi=%s labels=%s",
                kpi,
                ascii(dict(series)),
                exc_info=exc,
            )

    def _gone_kpis(
        self,
        t: float,
        kpis: Mapping[str, KpiRuntime],
        touched: dict[str, None],
        out: list[Notification],
        changed: dict[str, str | None],
    ) -> None:
        """Resolve the firing alerts of KPIs removed or redefined (by a reload, or while
        kpimon was down): their state is gone, no resolve transition will ever come. A
        flapping notice is settled (its incident is closed by nothing else)."""
        for a in list(self._alerts.values()):
            rt = kpis.get(a.kpi)
            if rt is not None and rt.fingerprint == a.fingerprint:
                continue
            if a.notice:
                self._flapping.pop((a.kpi, a.series), None)
                summary = f"KPI {a.kpi} was removed or changed: its flapping state was dropped"
                self._settle(a, t, summary, out, changed)
                continue
            if a.event.status == "firing":
                summary = (
                    f"{a.event.summary} — resolved: KPI {a.kpi} was removed or changed, so "
                    "its state was dropped"
                )
                a.dirty = True
                a.event = a.event._replace(
                    status="resolved",
                    resolved_at=t,
                    annotations=(
                        ("summary", summary),
                        *(p for p in a.event.annotations if p[0] != "summary"),
                    ),
                )
            touched[a.key] = None

    def _transition(
        self,
        t: float,
        name: str,
        tr: Transition,
        kpis: Mapping[str, KpiRuntime],
        touched: dict[str, None],
    ) -> None:
        rt = kpis.get(name)
        series = (name, tr.labels)
        levels = self._series.get(series)
        key = levels.get(tr.level) if levels is not None else None
        if key is None:
            key = dedup_key(name, tr.level, tr.labels)
        a = self._alerts.get(key)
        if tr.to_phase == FIRING:
            if rt is None:
                return
            active_at = tr.t
            row = rt.state.index.get(tr.labels)
            if row is not None:
                for li, lv in enumerate(rt.rule.levels):
                    if lv.name == tr.level:
                        v = float(rt.state.active_at[li, row])
                        active_at = v if math.isfinite(v) else tr.t
                        break
            event = build_event(
                rt.kpi,
                level=tr.level,
                status="firing",
                series_labels=tr.labels,
                value=tr.value,
                threshold=tr.threshold,
                active_at=active_at,
                fired_at=tr.t,
                now=tr.t,
                external_labels=self._external_labels,
                external_url=self._external_url,
            )
            if a is None:
                a = _Alert(key, name, rt.fingerprint, tr.level, tr.labels, event)
                self._alerts[key] = a
                if levels is None:
                    levels = self._series[series] = {}
                levels[tr.level] = key
            else:
                a.event, a.fingerprint, a.dirty = event, rt.fingerprint, True
        else:
            if a is None or a.event.status != "firing":
                return  # never known to fire: nobody to tell
            if rt is not None:
                event = build_event(
                    rt.kpi,
                    level=tr.level,
                    status="resolved",
                    series_labels=tr.labels,
                    value=tr.value,
                    threshold=tr.threshold,
                    active_at=a.event.active_at,
                    fired_at=a.event.fired_at,
                    resolved_at=tr.t,
                    now=tr.t,
                    external_labels=self._external_labels,
                    external_url=self._external_url,
                )
                # The alert the receivers were told fires, even if a reload changed
                # external_labels since (its identity: Alertmanager labels, fingerprint).
                event = event._replace(labels=a.event.labels)
            else:
                event = a.event._replace(status="resolved", resolved_at=tr.t)
            a.event, a.dirty = event, True
        touched[key] = None
        # Inhibition: the other levels of the series may be held or released by this change.
        if levels is not None and len(levels) > 1:
            for other in levels.values():
                touched.setdefault(other, None)

    # -- flapping ---------------------------------------------------------------------

    def _flap_start(
        self,
        t: float,
        name: str,
        ev: FlapEvent,
        kpis: Mapping[str, KpiRuntime],
        out: list[Notification],
        changed: dict[str, str | None],
    ) -> None:
        rt = kpis.get(name)
        series = (name, ev.labels)
        if rt is None or not rt.kpi.levels:
            self._flapping[series] = ""
            return
        # Routed as the most severe level firing, or the lowest level (the one that flaps).
        level = ev.firing[-1] if ev.firing else rt.kpi.levels[0].name
        lv = rt.kpi.level(level)
        base = build_event(
            rt.kpi,
            level=level,
            status="firing",
            series_labels=ev.labels,
            value=math.nan,
            threshold=lv.threshold if lv is not None else math.nan,
            active_at=t,
            fired_at=t,
            now=t,
            external_labels=self._external_labels,
            external_url=self._external_url,
        )
        subject = f"{name} {format_labels(ev.labels)}" if ev.labels else name
        summary = (
            f"{subject} is flapping: {ev.percent:.0f}% of its last 21 evaluations changed "
            "state; its notifications are held until it settles"
        )
        event = base._replace(
            level=FLAPPING_LEVEL,
            labels=tuple(sorted((*base.labels, ("flapping", "true")))),
            annotations=(("summary", summary),),
        )
        key = flapping_key(name, ev.labels)
        a = _Alert(key, name, rt.fingerprint, FLAPPING_LEVEL, ev.labels, event, notice=True)
        # A silence mutes the notice too (and then the "settled" one: nobody was told).
        silenced = self.silences is not None and self.silences.silenced(event.labels, t)
        for hook in route(base.labels, self._hooks):
            if silenced:
                self.suppressed_total[hook.name] += 1
                continue
            a.told[hook.name] = Told("firing", t)
            out.append(
                Notification(hook=hook.name, key=key, kind="flapping", event=event, created_at=t)
            )
        self._alerts[key] = a
        self._flapping[series] = key
        changed[key] = a.to_json()
        a.dirty = False

    def _flap_stop(
        self,
        t: float,
        name: str,
        ev: FlapEvent,
        out: list[Notification],
        changed: dict[str, str | None],
        touched: dict[str, None],
    ) -> None:
        key = self._flapping.pop((name, ev.labels), "")
        a = self._alerts.get(key) if key else None
        if a is not None:
            subject = f"{name} {format_labels(ev.labels)}" if ev.labels else name
            summary = (
                f"{subject} has settled ({ev.percent:.0f}% state changes); its current state "
                "follows"
            )
            self._settle(a, t, summary, out, changed)
        for other in self._series.get((name, ev.labels), {}).values():
            touched.setdefault(other, None)

    def _settle(
        self,
        a: _Alert,
        t: float,
        summary: str,
        out: list[Notification],
        changed: dict[str, str | None],
    ) -> None:
        """Close flapping notice ``a``: a "settled" notice with ``summary`` to every hook still
        configured that was told of it; then it is forgotten."""
        settled = a.event._replace(
            status="resolved", resolved_at=t, annotations=(("summary", summary),)
        )
        out.extend(
            Notification(hook=h, key=a.key, kind="settled", event=settled, created_at=t)
            for h in a.told
            if h in self._names
        )
        self._forget(a)
        changed[a.key] = None

    # -- reconciling what each hook was told with the alert's state -------------------

    def _dests(self, a: _Alert) -> list[_Dest]:
        dests = list(self._am)
        if not self._hooks and a.told.keys() <= self._am_names:
            return dests  # Alertmanagers only, and only they were told about it
        dests += [
            _Dest(h.name, h.repeat_interval_s, False) for h in route(a.event.labels, self._hooks)
        ]
        routed = {d.name for d in dests}
        # A hook told the alert fires hears it resolve even if routes changed since.
        for hook, told in a.told.items():
            if hook not in routed and told.status == "firing" and hook in self._names:
                dests.append(_Dest(hook, 0.0, hook.startswith("alertmanager:")))
        return dests

    def _held(self, a: _Alert, t: float) -> str:
        if (a.kpi, a.series) in self._flapping:
            return "flapping"
        if self._inhibit:
            mine = SEVERITY.get(a.level, 0)
            for level, key in self._series.get((a.kpi, a.series), {}).items():
                if SEVERITY.get(level, 0) > mine:
                    other = self._alerts.get(key)
                    if other is not None and other.event.status == "firing":
                        return "inhibited"
        if self.silences is not None and self.silences.silenced(a.event.labels, t):
            return "silenced"
        return ""

    def _reconcile(
        self, t: float, a: _Alert, out: list[Notification], changed: dict[str, str | None]
    ) -> None:
        if a.notice:
            self._watch.discard(a.key)
            return
        before = None if a.dirty else a.told_state()  # (a dirty alert is journaled anyway)
        firing = a.event.status == "firing"
        held = self._held(a, t)
        watch = bool(held)
        for d in self._dests(a):
            told = a.told.get(d.name)
            if told is None:
                if not firing:
                    continue
                told = a.told[d.name] = Told()
            if firing:
                if told.status != "firing":
                    if held:
                        if not told.held:
                            self.suppressed_total[d.name] += 1
                        told.held = held
                    else:
                        out.append(self._note(d.name, a, "firing", t))
                        told.status, told.at, told.held = "firing", t, ""
                        watch = watch or (not d.alertmanager and d.repeat_s > 0)
                elif held:
                    told.held = held
                else:
                    told.held = ""
                    if not d.alertmanager and d.repeat_s > 0:
                        watch = True
                        if repeat_due(told.at, t, d.repeat_s):
                            out.append(self._note(d.name, a, "repeat", t))
                            told.at = t
            elif told.status == "firing":
                if held == "flapping":
                    told.held, watch = held, True
                else:
                    out.append(self._note(d.name, a, "resolved", t))
                    told.status, told.at, told.held = "resolved", t, ""
            else:
                told.held = ""
        if not firing:
            retained = (
                a.event.resolved_at is not None
                and t - a.event.resolved_at <= RESOLVED_RETENTION_S
                and any(
                    h.startswith("alertmanager:") and told.status == "resolved"
                    for h, told in a.told.items()
                )
            )
            open_ = any(told.status == "firing" for told in a.told.values())
            if not retained and not open_:
                self._forget(a)
                changed[a.key] = None
                return
            watch = True
        if watch:
            self._watch.add(a.key)
        else:
            self._watch.discard(a.key)
        if a.dirty or a.told_state() != before:
            changed[a.key] = a.to_json()
            a.dirty = False

    def _note(self, hook: str, a: _Alert, kind: Kind, t: float) -> Notification:
        return Notification(
            hook=hook, key=a.key, kind=kind, event=a.event, created_at=t, event_json=a.event_json()
        )

    def _forget(self, a: _Alert) -> None:
        self._alerts.pop(a.key, None)
        self._watch.discard(a.key)
        levels = self._series.get((a.kpi, a.series))
        if levels is not None and levels.get(a.level) == a.key:
            del levels[a.level]
            if not levels:
                del self._series[(a.kpi, a.series)]


def _as(a: _Alert, told: Told) -> AlertEvent:
    """The event of ``a`` as ``told`` knows it (firing, when its resolve is still held)."""
    if told.status == "firing" and a.event.status == "resolved":
        return a.event._replace(status="firing", resolved_at=None)
    return a.event
