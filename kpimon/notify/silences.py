"""Silences: label matchers and a time span (or a weekly schedule) that mute notifications.

A :class:`Silence` matches an alert when every one of its matchers (Alertmanager syntax,
:mod:`kpimon.config.matchers`) matches the alert's labels, and is **active** at Unix time ``t``
when ``starts_at <= t < ends_at`` and, if it has a weekly ``schedule``, ``t`` lies inside one of
its windows (:class:`kpimon.kpi.schedule.Window`: weekdays and a local time range in a named
time zone, following daylight saving time). Silences come from ``alerting.silences`` in
``kpimon.yml`` (read-only) and from the HTTP API (``POST /api/v1/silences``, kept in the journal
when kpimon has one).

A silence only suppresses notifications: KPIs are evaluated, journaled and exported as usual,
and the notification planner asks :meth:`SilenceSet.silenced` again at every tick, so an alert
that still fires when its silence ends is notified then.

:class:`SilenceSet` holds every silence and answers :meth:`SilenceSet.silenced` (the
``SilenceCheck`` protocol the planner uses) from precompiled matchers, indexed by the
``alertname="..."`` matcher most silences have. Pure but for the optional
:class:`SilenceStore` it writes API silences through (kpimon.notify.silence_store); never
awaits, so it is safe to call from the event loop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal, Protocol

from kpimon.config.matchers import Matcher
from kpimon.kpi.schedule import DAY_NAMES, Window
from kpimon.labels import Labels
from kpimon.notify.model import rfc3339

__all__ = [
    "MAX_API_SILENCES",
    "RETENTION_S",
    "STATES",
    "ReadOnlySilenceError",
    "Silence",
    "SilenceCheck",
    "SilenceError",
    "SilenceLimitError",
    "SilenceSet",
    "SilenceStore",
    "SilenceStoreError",
    "UnknownSilenceError",
    "check_matchers",
    "config_silence",
    "json_time",
    "matches_empty",
    "parse_rfc3339",
    "rfc3339",
    "window_doc",
]

log = logging.getLogger("kpimon.silences")

SilenceSource = Literal["config", "api"]
SilenceState = Literal["active", "pending", "expired"]
STATES: Final[tuple[SilenceState, ...]] = ("active", "pending", "expired")

MAX_API_SILENCES: Final = 10_000
"""API silences kept at most (expired ones still within :data:`RETENTION_S` included)."""
RETENTION_S: Final = 120 * 3600.0
"""Expired API silences are listed for this long, then forgotten (Alertmanager's default)."""
MAX_MATCHERS: Final = 64
MAX_TEXT: Final = 4096
"""Longest comment, createdBy or matcher value accepted from the API, in characters."""


class SilenceCheck(Protocol):
    """What the notification planner asks: is an alert with these labels silenced at ``t``?"""

    def silenced(self, labels: Labels, t: float) -> bool: ...


class SilenceError(ValueError):
    """A silence (or a request about one) is invalid; the message says why."""


class UnknownSilenceError(SilenceError):
    """No silence has the id asked for."""


class ReadOnlySilenceError(SilenceError):
    """The silence comes from ``kpimon.yml``: change it there, not through the API."""


class SilenceLimitError(SilenceError):
    """:data:`MAX_API_SILENCES` API silences are pending or active already."""


class SilenceStoreError(Exception):
    """The journal could not write silences (the message names the journal)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    """One silence.

    Attributes:
        id: unique; a UUID for API silences, ``config-`` and a digest of the definition for
            config silences (stable across reloads and restarts while the definition is).
        matchers: all must match an alert's labels (at least one, and not all of them may
            match the empty string: such a silence would mute every alert).
        starts_at: Unix seconds; -inf for a config silence without ``starts_at``.
        ends_at: Unix seconds, exclusive; +inf for a scheduled config silence without an end.
        schedule: weekly windows (their thresholds unused); none: active all through the span.
        created_by, comment: free text from whoever made it.
        source: ``config`` (read-only) or ``api``.
        updated_at: Unix seconds of the last change (API); 0 for config silences.
        origin: where a config silence is defined (``kpimon.yml:40:7``).
    """

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float = -math.inf
    ends_at: float = math.inf
    schedule: tuple[Window, ...] = ()
    created_by: str = ""
    comment: str = ""
    source: SilenceSource = "api"
    updated_at: float = 0.0
    origin: str = ""

    def active_at(self, t: float) -> bool:
        """Whether the silence mutes matching alerts at Unix time ``t``."""
        if not self.starts_at <= t < self.ends_at:
            return False
        return not self.schedule or any(w.contains(t) for w in self.schedule)

    def state_at(self, t: float) -> SilenceState:
        """``expired`` from ``ends_at`` on, ``active`` when :meth:`active_at`, else ``pending``
        (before ``starts_at``, or between two windows of its schedule)."""
        if t >= self.ends_at:
            return "expired"
        return "active" if self.active_at(t) else "pending"

    def matches(self, labels: Labels) -> bool:
        """Whether every matcher matches ``labels`` (time is not considered)."""
        return all(m.matches(labels) for m in self.matchers)


def matches_empty(matcher: Matcher) -> bool:
    """Whether ``matcher`` matches an alert that lacks its label (the empty value)."""
    return matcher.matches(())


def check_matchers(matchers: Sequence[Matcher]) -> str | None:
    """Why these matchers cannot make a silence (None: they can), as Alertmanager rules."""
    if not matchers:
        return "a silence needs at least one matcher"
    if all(matches_empty(m) for m in matchers):
        return (
            "at least one matcher must not match the empty string (this silence would mute "
            'every alert); add one such as alertname="..."'
        )
    return None


def config_silence(
    matchers: tuple[Matcher, ...],
    *,
    starts_at: float = -math.inf,
    ends_at: float = math.inf,
    schedule: tuple[Window, ...] = (),
    created_by: str = "",
    comment: str = "",
    origin: str = "",
) -> Silence:
    """A silence from ``kpimon.yml``, its id a digest of its definition (origin excluded, so
    moving it in the file keeps its id)."""
    canonical = json.dumps(
        [
            [str(m) for m in matchers],
            json_time(starts_at),
            json_time(ends_at),
            [window_doc(w) for w in schedule],
            created_by,
            comment,
        ]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return Silence(
        id=f"config-{digest}",
        matchers=matchers,
        starts_at=starts_at,
        ends_at=ends_at,
        schedule=schedule,
        created_by=created_by,
        comment=comment,
        source="config",
        origin=origin,
    )


# -- times -------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)


_YEAR_10000: Final = 253_402_300_800.0


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 time (``2026-11-29T02:00:00Z``, ``...+01:00``, fractions to
    nanoseconds as Go writes them).

    Raises:
        ValueError: malformed, no UTC offset, or not a real date and time.
    """
    m = _RFC3339.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            f'invalid time "{text}": expected RFC 3339 with a UTC offset, e.g. '
            '"2026-11-29T02:00:00Z" or "2026-11-29T03:00:00+01:00"'
        )
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    zone = m[8]
    offset = dt.timedelta(0)
    if zone not in ("Z", "z"):
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f'invalid time "{text}": UTC offset out of range')
        offset = dt.timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
    try:
        stamp = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone(offset))
    except ValueError as exc:
        raise ValueError(f'invalid time "{text}": {exc}') from None
    t = stamp.timestamp() + (float(m[7]) if m[7] else 0.0)
    if not 0 <= t < _YEAR_10000:
        raise ValueError(f'invalid time "{text}": not between 1970 and 9999 (UTC)')
    return t


def json_time(t: float) -> str | None:
    """:func:`rfc3339`, or None for an unbounded (infinite) time."""
    return None if math.isinf(t) else rfc3339(t)


def window_doc(window: Window) -> dict[str, object]:
    """A schedule window as written in ``kpimon.yml``."""
    return {
        "days": [DAY_NAMES[d] for d in sorted(window.days)],
        "from": f"{window.start_min // 60:02d}:{window.start_min % 60:02d}",
        "to": f"{window.end_min // 60:02d}:{window.end_min % 60:02d}",
        "timezone": window.timezone,
    }


# -- the set -----------------------------------------------------------------------------


class SilenceStore(Protocol):
    """Where API silences are kept across restarts (kpimon.notify.silence_store)."""

    def load(self) -> list[Silence]:
        """Every stored silence (raises :class:`kpimon.errors.JournalError`)."""
        ...

    def save(self, silence: Silence) -> None:
        """Insert or replace ``silence`` durably (raises :class:`SilenceStoreError`)."""
        ...

    def delete(self, ids: Sequence[str]) -> None:
        """Forget these silences (raises :class:`SilenceStoreError`)."""
        ...


class _Compiled:
    """A silence ready for :meth:`SilenceSet.silenced`: regexes compiled, the schedule's
    answer remembered for the last ``t`` asked (every alert of a tick asks the same ``t``)."""

    __slots__ = ("end", "memo", "memo_t", "silence", "start", "tests", "windows")

    def __init__(self, silence: Silence) -> None:
        self.silence = silence
        self.start = silence.starts_at
        self.end = silence.ends_at
        self.windows = silence.schedule
        self.memo_t = math.nan
        self.memo = False
        # (label, expected hit, literal value, compiled regex or None)
        self.tests = tuple(
            (
                m.name,
                m.op in ("=", "=~"),
                m.value,
                re.compile(m.value, re.S) if m.op in ("=~", "!~") else None,
            )
            for m in silence.matchers
        )

    def active(self, t: float) -> bool:
        if not self.start <= t < self.end:
            return False
        if not self.windows:
            return True
        if t != self.memo_t:
            self.memo = any(w.contains(t) for w in self.windows)
            self.memo_t = t
        return self.memo

    def matches(self, labels: Mapping[str, str]) -> bool:
        for name, want, value, pattern in self.tests:
            actual = labels.get(name, "")
            hit = actual == value if pattern is None else pattern.fullmatch(actual) is not None
            if hit is not want:
                return False
        return True


def _index_key(s: Silence) -> tuple[str, str] | None:
    """The equality matcher to index ``s`` by: ``alertname="..."`` if it has one, else its
    first ``label="value"`` with a value (an alert lacking the label cannot match it)."""
    equal = [(m.name, m.value) for m in s.matchers if m.op == "=" and m.value]
    for name, value in equal:
        if name == "alertname":
            return name, value
    return equal[0] if equal else None


class SilenceSet:
    """Every silence, config and API, answering :meth:`silenced` (``SilenceCheck``).

    One object for the daemon's whole life: :meth:`set_config` swaps the config silences on
    reload (API silences stay), :meth:`put`/:meth:`add`/:meth:`expire` change API silences
    (written to the store first, when there is one; if that fails nothing changes). Each
    change rebuilds the index: silences are grouped by one equality matcher (``alertname``
    first), so a lookup looks only at the silences that can match.
    """

    def __init__(
        self,
        config: Iterable[Silence] = (),
        *,
        max_api: int = MAX_API_SILENCES,
        retention_s: float = RETENTION_S,
    ) -> None:
        self.max_api = max_api
        self.retention_s = retention_s
        self._config: dict[str, Silence] = {}
        self._api: dict[str, Silence] = {}
        self._store: SilenceStore | None = None
        self._index: dict[str, dict[str, tuple[_Compiled, ...]]] = {}
        """label name → label value → the silences that require that value"""
        self._rest: tuple[_Compiled, ...] = ()
        self._compiled: dict[str, _Compiled] = {}
        self.set_config(config)

    # -- configuration and storage ------------------------------------------------------

    @property
    def persistent(self) -> bool:
        """Whether API silences are kept across restarts (kpimon has a journal)."""
        return self._store is not None

    def set_config(self, silences: Iterable[Silence]) -> None:
        """Replace the config silences (a reload); API silences stay."""
        self._config = {s.id: s for s in silences}
        self._rebuild()

    def attach_store(self, store: SilenceStore, now: float) -> int:
        """Load the API silences kept in ``store`` and write every later change to it.

        Expired silences past the retention are dropped. Returns how many were loaded.

        Raises:
            JournalError: the store cannot be read.
        """
        loaded = store.load()
        self._store = store
        for s in loaded:
            self._api[s.id] = s
        self._purge(now, room=0)
        self._rebuild()
        return len(self._api)

    # -- reading ------------------------------------------------------------------------

    def silenced(self, labels: Labels | Mapping[str, str], t: float) -> bool:
        """Whether an alert with ``labels`` is muted by an active silence at Unix time ``t``."""
        if not self._index and not self._rest:
            return False
        mapping = labels if isinstance(labels, Mapping) else dict(labels)
        for name, by_value in self._index.items():
            group = by_value.get(mapping.get(name, ""))
            if group is not None and self._any(group, mapping, t):
                return True
        return self._any(self._rest, mapping, t)

    @staticmethod
    def _any(group: tuple[_Compiled, ...], labels: Mapping[str, str], t: float) -> bool:
        return any(c.active(t) and c.matches(labels) for c in group)

    def get(self, silence_id: str) -> Silence | None:
        return self._config.get(silence_id) or self._api.get(silence_id)

    def all(self) -> list[Silence]:
        """Config silences in file order, then API silences by start and id."""
        api = sorted(self._api.values(), key=lambda s: (s.starts_at, s.id))
        return [*self._config.values(), *api]

    def counts(self, t: float) -> dict[str, int]:
        """How many silences are in each state at ``t`` (every state present)."""
        out: dict[str, int] = dict.fromkeys(STATES, 0)
        for s in (*self._config.values(), *self._api.values()):
            out[s.state_at(t)] += 1
        return out

    def __len__(self) -> int:
        return len(self._config) + len(self._api)

    # -- changing API silences ----------------------------------------------------------

    def put(self, silence: Silence, now: float, new_id: str) -> Silence:
        """Create (``silence.id == new_id``) or update an API silence.

        Updating an API silence that has expired already creates a new one (``new_id``)
        instead, as Alertmanager does.

        Raises:
            UnknownSilenceError: no silence has the id to update.
            ReadOnlySilenceError: the id is a config silence's.
            SilenceLimitError: :attr:`max_api` API silences are pending or active.
            SilenceStoreError: the store failed; nothing changed.
        """
        if silence.id != new_id:
            if silence.id in self._config:
                raise self._read_only(silence.id, "changed")
            old = self._api.get(silence.id)
            if old is None:
                raise UnknownSilenceError(f"no silence with id {silence.id}")
            if old.ends_at <= now:
                silence = replace(silence, id=new_id)
        return self.add(silence, now)

    def add(self, silence: Silence, now: float) -> Silence:
        """Create an API silence, or replace the API silence of the same id.

        Raises:
            ReadOnlySilenceError: the id is a config silence's.
            SilenceLimitError: :attr:`max_api` API silences are pending or active.
            SilenceStoreError: the store failed; nothing changed.
        """
        if silence.source != "api":
            raise ValueError("only API silences are added")
        if silence.id in self._config:
            raise self._read_only(silence.id, "changed")
        if silence.id not in self._api:
            self._purge(now, room=1)
            if len(self._api) >= self.max_api:
                raise SilenceLimitError(
                    f"too many silences: {len(self._api)} are pending or active (at most "
                    f"{self.max_api}); expire some first"
                )
        if self._store is not None:
            self._store.save(silence)
        self._api[silence.id] = silence
        self._rebuild()
        return silence

    def _read_only(self, silence_id: str, what: str) -> ReadOnlySilenceError:
        origin = self._config[silence_id].origin or "the configuration file"
        return ReadOnlySilenceError(
            f"silence {silence_id} is defined in the configuration ({origin}) and cannot be "
            f"{what} through the API; edit the configuration and reload"
        )

    def expire(self, silence_id: str, now: float) -> Silence:
        """End an API silence now (a pending one never starts); it stays listed as expired.

        Raises:
            UnknownSilenceError, ReadOnlySilenceError, SilenceStoreError.
        """
        if silence_id in self._config:
            raise self._read_only(silence_id, "deleted")
        old = self._api.get(silence_id)
        if old is None:
            raise UnknownSilenceError(f"no silence with id {silence_id}")
        if old.ends_at <= now:
            return old  # already expired: nothing to do (DELETE is idempotent)
        new = replace(old, starts_at=min(old.starts_at, now), ends_at=now, updated_at=now)
        if self._store is not None:
            self._store.save(new)
        self._api[silence_id] = new
        self._rebuild()
        return new

    def _purge(self, now: float, *, room: int) -> None:
        """Forget expired API silences past the retention, then the oldest expired ones until
        ``room`` places are free (pending and active silences are never dropped)."""
        expired = sorted((s for s in self._api.values() if s.ends_at <= now), key=_by_end)
        old = sum(1 for s in expired if s.ends_at <= now - self.retention_s)
        excess = len(self._api) + room - self.max_api
        drop = [s.id for s in expired[: max(old, excess)]]
        if not drop:
            return
        if self._store is not None:
            try:
                self._store.delete(drop)
            except SilenceStoreError as exc:
                log.warning("could not forget expired silences err=%s", exc)
                return
        for sid in drop:
            del self._api[sid]

    def _rebuild(self) -> None:
        index: dict[str, dict[str, list[_Compiled]]] = {}
        rest: list[_Compiled] = []
        compiled: dict[str, _Compiled] = {}
        for s in (*self._config.values(), *self._api.values()):
            c = self._compiled.get(s.id)
            if c is None or c.silence is not s:
                c = _Compiled(s)
            compiled[s.id] = c
            key = _index_key(s)
            if key is None:
                rest.append(c)
            else:
                index.setdefault(key[0], {}).setdefault(key[1], []).append(c)
        self._compiled = compiled
        self._index = {
            name: {value: tuple(cs) for value, cs in by_value.items()}
            for name, by_value in index.items()
        }
        self._rest = tuple(rest)


def _by_end(s: Silence) -> float:
    return s.ends_at
