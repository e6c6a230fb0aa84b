"""Helpers for PromQL tests: promtool's series notation, feeding a Store, and promtool as oracle.

- :func:`expand` turns promtool's expanding notation (``'0+10x5 _ stale 3x2'``) into samples,
  exactly as Prometheus' parser does (``a+bxn`` adds ``b`` cumulatively, ``_xn`` is n gaps).
- :func:`load` feeds such series into a :class:`~kpimon.store.Store`, one target per series, so
  that a gap is "no sample" (not a staleness marker) just as in promtool.
- :func:`promtool_file` writes kpimon's answers as ``promql_expr_test`` expectations, and
  :func:`run_promtool` runs Debian's ``promtool test rules`` once over several such files and
  splits its report per file and per failing expression.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from kpimon.labels import Labels, format_labels
from kpimon.promql import Scalar, Vector, compile_expr, evaluate
from kpimon.store import STALE_NAN, Store
from tests.helpers.debian import binary

STALE = "stale"
Value = float | str | None  # a number, STALE, or None for "no sample"

_ITEM = re.compile(
    r"^(?P<blank>_)(?:x(?P<bn>\d+))?$"
    r"|^(?P<stale>stale)$"
    r"|^(?P<a>[-+]?(?:[0-9.]+(?:e[-+]?\d+)?|Inf|NaN))"
    r"(?:(?P<b>[-+](?:[0-9.]+(?:e[-+]?\d+)?|Inf|NaN))?x(?P<n>\d+))?$",
    re.I,
)


def expand(values: str) -> list[Value]:
    """Expand promtool's series notation into one entry per step."""
    out: list[Value] = []
    for item in values.split():
        m = _ITEM.match(item)
        if m is None:
            raise ValueError(f"bad series item {item!r}")
        if m["blank"]:
            out.extend([None] * (int(m["bn"]) if m["bn"] else 1))
        elif m["stale"]:
            out.append(STALE)
        else:
            a = float(m["a"])
            if m["n"] is None:
                out.append(a)
                continue
            step = float(m["b"]) if m["b"] else 0.0
            out.append(a)
            for _ in range(int(m["n"])):
                a += step  # cumulative, as Prometheus' parser does
                out.append(a)
    return out


@dataclass(frozen=True)
class Case:
    """One differential case: input series (promtool notation), an expression, an eval time."""

    series: Sequence[tuple[str, str]]
    expr: str
    at: str  # promtool duration, e.g. "10m"
    interval: str = "1m"
    note: str = ""
    expanded: list[list[Value]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "expanded", [expand(v) for _, v in self.series])

    @property
    def at_ms(self) -> int:
        return duration_ms(self.at)

    @property
    def interval_ms(self) -> int:
        return duration_ms(self.interval)


_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_UNIT_MS |= {"w": 7 * 86_400_000, "y": 365 * 86_400_000}


def duration_ms(text: str) -> int:
    """Milliseconds of a Prometheus duration such as ``1m30s``."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"bad duration {text!r}")
    return sum(int(n) * _UNIT_MS[u] for n, u in parts)


def go_duration(ms: int) -> str:
    """Prometheus' model.Duration.String() of ``ms`` milliseconds (as promtool prints times)."""
    if ms == 0:
        return "0s"
    out = ""
    for unit, mult, exact in (
        ("y", _UNIT_MS["y"], True),
        ("w", _UNIT_MS["w"], True),
        ("d", _UNIT_MS["d"], False),
        ("h", _UNIT_MS["h"], False),
        ("m", _UNIT_MS["m"], False),
        ("s", _UNIT_MS["s"], False),
        ("ms", 1, False),
    ):
        if exact and ms % mult:
            continue
        if ms // mult:
            out += f"{ms // mult}{unit}"
            ms -= (ms // mult) * mult
    return out


def load(case: Case, until_ms: int | None = None, store: Store | None = None) -> Store:
    """A store holding the case's samples (up to ``until_ms`` inclusive, or all of them)."""
    steps = max((len(v) for v in case.expanded), default=0)
    span_s = (steps + 2) * case.interval_ms / 1000
    store = store or Store(retention_s=max(span_s, 3600.0), min_interval_s=case.interval_ms / 1000)
    for step in range(steps):
        t_ms = step * case.interval_ms
        if until_ms is not None and t_ms > until_ms:
            break
        for i, ((key, _), values) in enumerate(zip(case.series, case.expanded, strict=True)):
            if step >= len(values) or values[step] is None:
                continue
            v = STALE_NAN if values[step] == STALE else float(values[step])  # type: ignore[arg-type]
            store.ingest(f"series-{i}", (), [key.encode()], np.array([v]), t_ms / 1000)
    return store


@dataclass(frozen=True)
class Result:
    """kpimon's answer to a case: samples (labels, value) or an error message."""

    samples: tuple[tuple[Labels, float], ...] = ()
    error: str | None = None


def run_kpimon(case: Case, *, live: bool = True) -> Result:
    """Evaluate the case with kpimon; ``live`` feeds samples only up to the eval time.

    With ``live=False`` every sample is fed, so the evaluation happens "in the past" and takes
    the store's general (gathering) read path instead of the per-series fast path.
    """
    from kpimon.errors import EvaluationError

    store = load(case, until_ms=case.at_ms if live else None)
    try:
        res = evaluate(compile_expr(case.expr), store, case.at_ms / 1000)
    except EvaluationError as exc:
        return Result(error=str(exc))
    if isinstance(res, Scalar):
        return Result(samples=(((), res.value),))
    assert isinstance(res, Vector)
    return Result(samples=tuple(zip(res.labels, res.values.tolist(), strict=True)))


def promtool_file(path: Path, cases: Iterable[tuple[Case, Result]]) -> None:
    """Write one promtool test file: each case a test group expecting ``Result``'s samples."""
    groups = []
    for case, result in cases:
        exp = [
            {"labels": format_labels(lab) if lab else "{}", "value": value}
            for lab, value in result.samples
        ]
        groups.append(
            {
                "interval": case.interval,
                "input_series": [{"series": s, "values": v} for s, v in case.series],
                "promql_expr_test": [{"expr": case.expr, "eval_time": case.at, "exp_samples": exp}],
            }
        )
    doc = {"rule_files": [], "evaluation_interval": "1m", "tests": groups}
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))


@dataclass(frozen=True)
class FileReport:
    """What promtool said about one test file."""

    passed: bool
    failures: list[tuple[str, str, str]]  # (expr, time, "err" or "mismatch")
    text: str


_FAILURE = re.compile(r'^\s+expr: (".*"), time: (\S+?),(?: err: (.*))?$', re.M)


def run_promtool(files: Sequence[Path]) -> dict[Path, FileReport]:
    """Run ``promtool test rules`` once over ``files``; its report per file."""
    exe = binary("promtool")
    proc = subprocess.run(  # one pipe for both streams keeps the report in order
        [exe, "test", "rules", *map(str, files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    text = proc.stdout
    sections = re.split(r"^Unit Testing:\s+", text, flags=re.M)[1:]
    reports: dict[Path, FileReport] = {}
    for section, path in zip(sections, files, strict=True):
        head, _, body = section.partition("\n")
        assert head.strip() == str(path), (head, path)
        failures = [
            (_go_unquote(m[1]), m[2], "err" if m[3] is not None else "mismatch")
            for m in _FAILURE.finditer(body)
        ]
        reports[path] = FileReport(passed="SUCCESS" in body, failures=failures, text=body)
    return reports


def _go_unquote(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


def nudge(value: float) -> float:
    """The next float after ``value`` (a wrong answer by the smallest possible amount)."""
    if math.isinf(value):
        return 0.0
    return float(np.nextafter(value, math.inf))


def reference_range(
    func: str, samples: Sequence[tuple[int, float]], lo: int, hi: int
) -> float | None:
    """A plain, per-sample transcription of Prometheus 2.42's range functions (a test oracle).

    ``samples`` are (ms, value) pairs, oldest first, without staleness markers; the window is
    [lo, hi] and the range ``hi - lo``. Returns None when Prometheus gives no result.
    """
    pts = [(t, v) for t, v in samples if lo <= t <= hi]
    if not pts:
        return None
    vals = [v for _, v in pts]
    if func == "count_over_time":
        return float(len(pts))
    if func in ("max_over_time", "min_over_time"):
        best = vals[0]
        for v in vals:
            better = v > best if func == "max_over_time" else v < best
            if better or math.isnan(best):
                best = v
        return best
    if func == "sum_over_time":
        total, comp = 0.0, 0.0
        for v in vals:
            total, comp = _kahan_inc(v, total, comp)
        return total if math.isinf(total) else total + comp
    if func == "avg_over_time":
        mean, comp, count = 0.0, 0.0, 0.0
        for v in vals:
            count += 1
            if math.isinf(mean):
                if math.isinf(v) and (mean > 0) == (v > 0):
                    continue
                if not math.isinf(v) and not math.isnan(v):
                    continue
            mean, comp = _kahan_inc(_div(v, count) - _div(mean, count), mean, comp)
        return mean if math.isinf(mean) else mean + comp
    if len(pts) < 2:
        return None
    if func == "irate":
        (t0, v0), (t1, v1) = pts[-2], pts[-1]
        delta = v1 if v1 < v0 else v1 - v0
        return _div(delta, (t1 - t0) / 1000)
    result = vals[-1] - vals[0]
    prev = vals[0]
    for v in vals[1:]:
        if v < prev:
            result += prev
        prev = v
    first_t, last_t = pts[0][0], pts[-1][0]
    to_start = (first_t - lo) / 1000
    to_end = (hi - last_t) / 1000
    sampled = (last_t - first_t) / 1000
    average = sampled / (len(pts) - 1)
    if result > 0 and vals[0] >= 0:
        to_zero = sampled * _div(vals[0], result)
        if to_zero < to_start:
            to_start = to_zero
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    factor = interval / sampled
    if func == "rate":
        whole, rest = divmod(hi - lo, 1000)
        factor /= float(whole) + float(rest * 1_000_000) / 1e9
    return result * factor


def _div(a: float, b: float) -> float:
    """IEEE division (Python raises on zero)."""
    if b != 0:
        return a / b
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def _kahan_inc(inc: float, total: float, comp: float) -> tuple[float, float]:
    t = total + inc
    if abs(total) >= abs(inc):
        comp += (total - t) + inc
    else:
        comp += (inc - t) + total
    return t, comp
