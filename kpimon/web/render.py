"""Render kpimon's ``/metrics`` in the Prometheus text format 0.0.4.

KPI series are rendered straight from the engine's numpy arrays with a per-series label string
cached until the KPI's series set changes, instead of through ``prometheus_client`` children
(≈10 µs per series): ARCHITECTURE §11 budgets 100 ms for 10k KPI series. Families that disappear
(a KPI removed on reload, a target gone) simply stop being rendered; nothing goes stale.

Pure: takes a :class:`MetricsView` snapshot, returns bytes. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kpimon.kpi.engine import KpiRuntime
from kpimon.kpi.machine import CLEARING, F64, FIRING, KpiState
from kpimon.labels import Labels, escape_value, label_body
from kpimon.slo.health import ServiceHealth
from kpimon.slo.metrics import render_families as slo_families
from kpimon.slo.tracker import SloReading
from kpimon.textfmt import exposition_number, family_header

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Labels kpimon adds itself; a series label of the same name is renamed, as Prometheus renames
# clashing target labels.
_RESERVED = ("kpi", "level")


@dataclass(frozen=True, slots=True)
class TargetView:
    """What /metrics shows about one scrape target."""

    job: str
    instance: str
    up: bool
    duration_s: float
    samples_scraped: int
    malformed: int


@dataclass(frozen=True, slots=True)
class MetricsView:
    """Everything /metrics renders, gathered by the app at request time."""

    kpis: Sequence[KpiRuntime]
    now: float
    targets: Sequence[TargetView]
    last_eval_wall: float | None
    last_eval_duration_s: float
    store_series: int
    reload_ok: bool
    reload_success_wall: float
    version: str
    journal: JournalView | None = None
    samples: SampleSnapshotView | None = None
    """The sample snapshots' metrics (None: kpimon keeps no files, not rendered)."""
    notifications: NotificationView | None = None
    """The notification metrics (None: not rendered)."""
    silences: Mapping[str, int] | None = None
    """Silences per state (``active``, ``pending``, ``expired``); None: not rendered."""
    slos: Sequence[SloReading] = ()
    """The SLOs' numbers at the last tick (kpimon.slo.tracker)."""
    services: Sequence[ServiceHealth] = ()
    """The services' health (kpimon.slo.health)."""


@dataclass(frozen=True, slots=True)
class NotificationView:
    """What /metrics shows about notifications (kpimon.notify.dispatch).

    ``counts`` is per (hook, result); ``queue`` and ``oldest_age_s`` per hook; ``latency``
    the histogram's upper bounds, their (non-cumulative) counts with +Inf last, sum and count.
    """

    counts: Mapping[tuple[str, str], int]
    queue: Mapping[str, int]
    oldest_age_s: Mapping[str, float]
    latency_buckets: Sequence[float]
    latency_counts: Sequence[int]
    latency_sum: float
    latency_count: int
    planning_failures: int = 0


@dataclass(frozen=True, slots=True)
class JournalView:
    """What /metrics shows about the state journal (absent when kpimon keeps none)."""

    write_failures: int
    commit_duration_s: float
    pending_transitions: int


@dataclass(frozen=True, slots=True)
class SampleSnapshotView:
    """What /metrics shows about the sample snapshots (kpimon.snapshots)."""

    last_success_wall: float
    """0 before the first snapshot whose files were all written."""
    duration_s: float
    failures: int


def _nums(a: np.ndarray) -> list[str]:
    out = [repr(v) for v in a.tolist()]
    if not np.isfinite(a).all():
        out = [exposition_number(v) for v in a.tolist()]
    return out


_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _legacy_name(name: str) -> str:
    """A label name the 0.0.4 text format accepts: other characters become ``_`` (Prometheus'
    "underscores" escaping), and a leading digit gets a ``_`` in front."""
    if _LEGACY_LABEL.fullmatch(name):
        return name
    name = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return name if name and not name[0].isdigit() else "_" + name


def export_labels(kpi: str, labels: Labels) -> list[tuple[str, str]]:
    """The labels of a KPI series as exported: ``kpi`` first, then the series' own labels.

    A series label that clashes with one kpimon sets (``kpi``, ``level``) or with another after
    escaping is renamed ``exported_<name>`` (again and again until it is free), as Prometheus
    renames clashing target labels; so every exported series has unique label names.
    """
    names = [_legacy_name(k) for k, _ in labels]
    used = {"kpi", *_RESERVED}
    keep = [False] * len(names)
    for i, name in enumerate(names):  # labels that clash with nothing keep their names
        if name not in used:
            used.add(name)
            keep[i] = True
    pairs = [("kpi", kpi)]
    for i, (name, (_, value)) in enumerate(zip(names, labels, strict=True)):
        if not keep[i]:
            while name in used:
                name = f"exported_{name}"
            used.add(name)
        pairs.append((name, value))
    return pairs


def breach_seconds(state: KpiState, now: float) -> F64:
    """Per level and series: seconds spent firing or clearing up to ``now``.

    The machine adds a tick's time to ``breach_s`` at the next tick; a breach still running is
    counted here up to ``now`` too, so the counter grows between ticks and never jumps back.
    """
    last = state.last_t
    if last is None or now <= last:
        return state.breach_s
    breaching = (state.phase == FIRING) | (state.phase == CLEARING)
    return state.breach_s + np.where(breaching, now - last, 0.0)


def _series_body(kpi: str, labels: Labels) -> str:
    return label_body(export_labels(kpi, labels))


class Renderer:
    """Renders /metrics; caches per-series label strings between scrapes."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[object, int, list[str]]] = {}

    def _bodies(self, kpi: str, state: KpiState) -> list[str]:
        key = id(state)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is state.labels and hit[1] == len(state.labels):
            return hit[2]
        bodies = [_series_body(kpi, lab) for lab in state.labels]
        self._cache[key] = (state.labels, len(state.labels), bodies)
        return bodies

    def render(self, view: MetricsView) -> bytes:
        out: list[str] = []
        live = {id(rt.state) for rt in view.kpis}
        for key in self._cache.keys() - live:
            del self._cache[key]
        self._kpi_families(view, out)
        slo_families(view.slos, view.services, out)
        self._self_families(view, out)
        return "".join(out).encode()

    def _kpi_families(self, view: MetricsView, out: list[str]) -> None:
        per_series: list[tuple[KpiRuntime, list[str]]] = [
            (rt, self._bodies(rt.kpi.name, rt.state)) for rt in view.kpis
        ]

        def family(name: str, kind: str, doc: str) -> None:
            out.append(family_header(name, doc, kind))

        family("kpimon_kpi_info", "gauge", "KPI metadata: owner, unit and help text (always 1).")
        for rt in view.kpis:
            k = rt.kpi
            body = label_body(
                [("help", k.help), ("kpi", k.name), ("owner", k.owner), ("unit", k.unit)]
            )
            out.append(f"kpimon_kpi_info{{{body}}} 1\n")

        family("kpimon_kpi_threshold", "gauge", "Threshold in force for each KPI level.")
        for rt in view.kpis:
            # The threshold in force at the last tick: a level's schedule may change it.
            for lv, (threshold, _clear) in zip(rt.rule.levels, rt.state.thresholds, strict=True):
                body = label_body([("kpi", rt.kpi.name), ("level", lv.name)])
                out.append(f"kpimon_kpi_threshold{{{body}}} {exposition_number(threshold)}\n")

        family(
            "kpimon_kpi_target", "gauge", "The KPI's objective (the value it should stay within)."
        )
        for rt in view.kpis:
            if rt.kpi.target is not None:
                body = label_body([("kpi", rt.kpi.name)])
                out.append(
                    f"kpimon_kpi_target{{{body}}} {exposition_number(rt.kpi.target.value)}\n"
                )

        family(
            "kpimon_kpi_value", "gauge", "Latest value of each KPI series (absent while no data)."
        )
        for rt, bodies in per_series:
            st = rt.state
            idx = np.flatnonzero(st.present)
            vals = _nums(st.value[idx])
            out.extend(
                f"kpimon_kpi_value{{{bodies[i]}}} {v}\n"
                for i, v in zip(idx.tolist(), vals, strict=True)
            )

        family(
            "kpimon_kpi_status",
            "gauge",
            "KPI series status: -1 no data, 0 ok, 1 warning, 2 critical.",
        )
        for rt, bodies in per_series:
            vals = [str(v) for v in rt.state.status.tolist()]
            out.extend(f"kpimon_kpi_status{{{b}}} {v}\n" for b, v in zip(bodies, vals, strict=True))

        family(
            "kpimon_kpi_status_since_timestamp_seconds",
            "gauge",
            "Unix time at which the KPI series entered its current status.",
        )
        for rt, bodies in per_series:
            vals = _nums(rt.state.status_since)
            out.extend(
                f"kpimon_kpi_status_since_timestamp_seconds{{{b}}} {v}\n"
                for b, v in zip(bodies, vals, strict=True)
            )

        self._level_family(
            out,
            per_series,
            "kpimon_kpi_pending_seconds",
            "gauge",
            "How long the level's condition has held while pending (0 when not pending).",
            lambda st: st.pending_seconds(view.now),
        )
        self._level_family(
            out,
            per_series,
            "kpimon_kpi_breaches_total",
            "counter",
            "Times the level started firing.",
            lambda st: st.breaches.astype(np.float64),
        )
        self._level_family(
            out,
            per_series,
            "kpimon_kpi_breach_seconds_total",
            "counter",
            "Seconds the level has spent firing (or clearing), the running breach included.",
            lambda st: breach_seconds(st, view.now),
        )

        family(
            "kpimon_kpi_flapping",
            "gauge",
            "1 while the KPI series is flapping (its notifications are held), else 0.",
        )
        for rt, bodies in per_series:
            vals = ["1" if f else "0" for f in rt.state.flapping.tolist()]
            out.extend(
                f"kpimon_kpi_flapping{{{b}}} {v}\n" for b, v in zip(bodies, vals, strict=True)
            )

    @staticmethod
    def _level_family(
        out: list[str],
        per_series: list[tuple[KpiRuntime, list[str]]],
        name: str,
        kind: str,
        doc: str,
        values: Callable[[KpiState], npt.NDArray[np.float64]],
    ) -> None:
        out.append(family_header(name, doc, kind))
        for rt, bodies in per_series:
            arr = values(rt.state)
            for li, lv in enumerate(rt.rule.levels):
                suffix = f',level="{lv.name}"'
                vals = _nums(arr[li])
                out.extend(
                    f"{name}{{{b}{suffix}}} {v}\n" for b, v in zip(bodies, vals, strict=True)
                )

    @staticmethod
    def _self_families(view: MetricsView, out: list[str]) -> None:
        def gauge(name: str, doc: str, samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
            out.append(family_header(name, doc))
            for labels, v in samples:
                body = label_body(sorted(labels.items()))
                out.append(
                    f"{name}{{{body}}} {exposition_number(v)}\n"
                    if body
                    else f"{name} {exposition_number(v)}\n"
                )

        def tl(t: TargetView) -> dict[str, str]:
            return {"job": t.job, "instance": t.instance}

        gauge(
            "kpimon_target_up",
            "1 if the last scrape of the target succeeded, else 0.",
            [(tl(t), 1.0 if t.up else 0.0) for t in view.targets],
        )
        gauge(
            "kpimon_scrape_duration_seconds",
            "Duration of the last scrape of the target.",
            [(tl(t), t.duration_s) for t in view.targets],
        )
        gauge(
            "kpimon_scrape_samples_scraped",
            "Samples the target exposed in its last scrape.",
            [(tl(t), float(t.samples_scraped)) for t in view.targets],
        )
        gauge(
            "kpimon_scrape_malformed_lines",
            "Malformed exposition lines in the target's payload (lines of unread metrics are "
            "checked on the first scrape and every 10th).",
            [(tl(t), float(t.malformed)) for t in view.targets],
        )
        gauge(
            "kpimon_rule_evaluation_duration_seconds",
            "Duration of the last evaluation of all KPIs.",
            [({}, view.last_eval_duration_s)],
        )
        if view.last_eval_wall is not None:
            gauge(
                "kpimon_last_evaluation_timestamp_seconds",
                "Unix time of the last evaluation tick.",
                [({}, view.last_eval_wall)],
            )
        out.append(
            "# HELP kpimon_rule_evaluation_failures_total KPI evaluations that failed.\n"
            "# TYPE kpimon_rule_evaluation_failures_total counter\n"
        )
        for rt in view.kpis:
            out.append(
                f'kpimon_rule_evaluation_failures_total{{kpi="{escape_value(rt.kpi.name)}"}} '
                f"{rt.failures_total}\n"
            )
        gauge(
            "kpimon_store_series",
            "Series held in kpimon's sample store.",
            [({}, float(view.store_series))],
        )
        gauge(
            "kpimon_config_last_reload_successful",
            "1 if the last configuration reload succeeded.",
            [({}, 1.0 if view.reload_ok else 0.0)],
        )
        gauge(
            "kpimon_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            [({}, view.reload_success_wall)],
        )
        gauge(
            "kpimon_build_info",
            "kpimon build information (always 1).",
            [({"version": view.version}, 1.0)],
        )
        if view.silences is not None:
            gauge(
                "kpimon_silences",
                "Silences by state (active, pending, expired); config and API silences.",
                [({"state": state}, float(n)) for state, n in sorted(view.silences.items())],
            )
        if view.notifications is not None:
            _notification_families(view.notifications, out, gauge)
        if view.journal is not None:
            j = view.journal
            out.append(
                "# HELP kpimon_journal_write_failures_total Journal commits that failed (each "
                "is retried at the next evaluation).\n"
                "# TYPE kpimon_journal_write_failures_total counter\n"
                f"kpimon_journal_write_failures_total {j.write_failures}\n"
            )
            gauge(
                "kpimon_journal_commit_duration_seconds",
                "Duration of the last successful journal commit (one per evaluation).",
                [({}, j.commit_duration_s)],
            )
            gauge(
                "kpimon_journal_pending_transitions",
                "Transitions waiting for a journal commit to succeed before they are acted on.",
                [({}, float(j.pending_transitions))],
            )
        if view.samples is not None:
            _sample_snapshot_families(view.samples, out, gauge)


def _sample_snapshot_families(
    s: SampleSnapshotView,
    out: list[str],
    gauge: Callable[[str, str, Iterable[tuple[Mapping[str, str], float]]], None],
) -> None:
    # The duration is a gauge of the last snapshot, not a histogram: there is one snapshot per
    # interval (5m by default), so every scrape of /metrics sees each value anyway, and its
    # size scales with the series held, so no fixed buckets would suit every kpimon.
    gauge(
        "kpimon_sample_snapshot_last_success_timestamp_seconds",
        "Unix time of the samples in the last sample snapshot written whole (0: none yet).",
        [({}, s.last_success_wall)],
    )
    gauge(
        "kpimon_sample_snapshot_duration_seconds",
        "Duration of the last sample snapshot: history copy and file writes, failed or not.",
        [({}, s.duration_s)],
    )
    out.append(
        "# HELP kpimon_sample_snapshot_failures_total Sample snapshot files that could not be "
        "written (each is tried again at the next interval).\n"
        "# TYPE kpimon_sample_snapshot_failures_total counter\n"
        f"kpimon_sample_snapshot_failures_total {s.failures}\n"
    )


def _notification_families(
    n: NotificationView,
    out: list[str],
    gauge: Callable[[str, str, Iterable[tuple[Mapping[str, str], float]]], None],
) -> None:
    out.append(
        "# HELP kpimon_notifications_total Notifications per hook and result (success, retry, "
        "failed, expired, suppressed, dropped, resent).\n"
        "# TYPE kpimon_notifications_total counter\n"
    )
    for (hook, result), count in sorted(n.counts.items()):
        body = label_body([("hook", hook), ("result", result)])
        out.append(f"kpimon_notifications_total{{{body}}} {count}\n")
    gauge(
        "kpimon_notification_queue_length",
        "Notifications waiting to be delivered, per hook.",
        [({"hook": h}, float(q)) for h, q in sorted(n.queue.items())],
    )
    gauge(
        "kpimon_notification_oldest_pending_age_seconds",
        "Age of the oldest notification waiting for the hook (0 when none).",
        [({"hook": h}, a) for h, a in sorted(n.oldest_age_s.items())],
    )
    name = "kpimon_notification_latency_seconds"
    out.append(
        f"# HELP {name} From the evaluation tick that caused a notification to its receiver's "
        f"answer, for notifications delivered.\n# TYPE {name} histogram\n"
    )
    cumulative = 0
    for bound, count in zip(n.latency_buckets, n.latency_counts, strict=False):
        cumulative += count
        out.append(f'{name}_bucket{{le="{exposition_number(float(bound))}"}} {cumulative}\n')
    out.append(f'{name}_bucket{{le="+Inf"}} {n.latency_count}\n')
    out.append(f"{name}_sum {exposition_number(n.latency_sum)}\n{name}_count {n.latency_count}\n")
    out.append(
        "# HELP kpimon_notification_planning_failures_total Alerts whose notifications could not "
        "be planned (a bug or an unencodable label: see the log); the tick's other alerts were "
        "planned.\n# TYPE kpimon_notification_planning_failures_total counter\n"
        f"kpimon_notification_planning_failures_total {n.planning_failures}\n"
    )
