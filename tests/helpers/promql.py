"""Helpers for PromQL tests: promtool's series notation, feeding a Store, and promtool as oracle.

- :func:`expand` turns promtool's expanding notation (``'0+10x5 _ stale 3x2'``) into samples,
  exactly as Prometheus' parser does (``a+bxn`` adds ``b`` cumulatively, ``_xn`` is n gaps).
- :func:`load` feeds such series into a :class:`~kpimon.store.Store`, one target per series, so
  that a gap is "no sample" (not a staleness marker) just as in promtool.
- :func:`promtool_file` writes kpimon's answers as ``promql_expr_test`` expectations, and
  :func:`run_promtool` runs Debian's ``promtool test rules`` once over several such files and
  splits its report per file and per failing expression.
- :func:`differential` does all of that for many cases at once and judges each one
  (:class:`Verdict`): it asks kpimon (:func:`answer`, which also notes refusals and crashes),
  writes one promtool file per case (:func:`case_file`: NaN-proof expectations, and a sentinel
  sample when kpimon failed so that only a promtool error can agree), runs promtool once and
  reads its report per case.
"""

from __future__ import annotations

import math
import random
import re
import subprocess
import traceback
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
    """kpimon's answer to a case: samples (labels, value) or an error message.

    ``scalar`` tells a scalar result (one sample, no labels) from a vector; ``refused`` is
    compile_expr's message for an expression kpimon does not support; ``crash`` the traceback
    of an exception other than an evaluation error (a kpimon bug).
    """

    samples: tuple[tuple[Labels, float], ...] = ()
    error: str | None = None
    scalar: bool = False
    refused: str | None = None
    crash: str | None = None


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
        return Result(samples=(((), res.value),), scalar=True)
    assert isinstance(res, Vector)
    return Result(samples=tuple(zip(res.labels, res.values.tolist(), strict=True)))


def expectation(
    expr: str, eval_time: str, samples: Iterable[tuple[Labels, float]]
) -> dict[str, object]:
    """One ``promql_expr_test`` entry: ``expr`` at ``eval_time`` gives ``samples``."""
    exp = [{"labels": format_labels(lab) if lab else "{}", "value": v} for lab, v in samples]
    return {"expr": expr, "eval_time": eval_time, "exp_samples": exp}


def group_for(case: Case, tests: list[dict[str, object]]) -> dict[str, object]:
    """A promtool test group: the case's input series, checked by ``tests``."""
    return {
        "interval": case.interval,
        "input_series": [{"series": s, "values": v} for s, v in case.series],
        "promql_expr_test": tests,
    }


def write_tests(path: Path, groups: list[dict[str, object]]) -> None:
    """Write a promtool test file (no rule files, 1m evaluation interval) of ``groups``."""
    doc = {"rule_files": [], "evaluation_interval": "1m", "tests": groups}
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))


def promtool_file(path: Path, cases: Iterable[tuple[Case, Result]]) -> None:
    """Write one promtool test file: each case a test group expecting ``Result``'s samples."""
    groups = [
        group_for(case, [expectation(case.expr, case.at, result.samples), load_everything(case)])
        for case, result in cases
    ]
    write_tests(path, groups)


@dataclass(frozen=True)
class FileReport:
    """What promtool said about one test file."""

    passed: bool
    failures: list[tuple[str, str, str]]  # (expr, time, "err" or "mismatch")
    text: str


_FAILURE = re.compile(r'^\s+expr: (".*"), time: (\S+?),(?: err: (.*))?$', re.M)


def run_promtool(files: Sequence[Path], jobs: int = 1) -> dict[Path, FileReport]:
    """Run ``promtool test rules`` over ``files``; its report per file.

    ``jobs`` > 1 splits the files between that many promtool processes run side by side
    (promtool tests one file after the other, on one core).
    """
    exe = binary("promtool")
    chunks = [list(files[i::jobs]) for i in range(max(1, jobs))]
    procs = [
        subprocess.Popen(  # one pipe for both streams keeps the report in order
            [exe, "test", "rules", *map(str, chunk)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for chunk in chunks
        if chunk
    ]
    reports: dict[Path, FileReport] = {}
    for proc, chunk in zip(procs, [c for c in chunks if c], strict=True):
        text, _ = proc.communicate(timeout=600)
        reports |= _reports(text, chunk)
    return reports


def _reports(text: str, files: Sequence[Path]) -> dict[Path, FileReport]:
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


def reads_future(case: Case) -> bool:
    """Does the expression read samples after the evaluation time (``@``, negative offset)?"""
    return "@" in case.expr or re.search(r"\boffset\s*-", case.expr) is not None


def answer(case: Case, *, live: bool = False) -> Result:
    """kpimon's answer, never raising: refusals and crashes are part of the :class:`Result`.

    By default every sample is fed (as promtool, given :func:`load_everything`, has them all);
    ``live`` feeds samples only up to the eval time, as the daemon has them.
    """
    from kpimon.errors import PromQLError

    try:
        compile_expr(case.expr)
    except PromQLError as exc:
        return Result(refused=str(exc))
    try:
        return run_kpimon(case, live=live)
    except Exception:  # any other exception is a kpimon bug to report, not a harness failure
        return Result(crash=traceback.format_exc(limit=-3))


def load_everything(case: Case) -> dict[str, object]:
    """A passing promtool test whose only purpose is to make promtool load every sample.

    promtool 2.42 loads input samples lazily, only up to the last multiple of
    ``evaluation_interval`` (1m here) not after the group's latest ``eval_time``: without this,
    ``x`` at 4m46s over 15s samples would see nothing after 4m, and ``x @ 600`` nothing at 600.
    """
    steps = max((len(v) for v in case.expanded), default=1)
    last_ms = max((steps - 1) * case.interval_ms, case.at_ms)
    until = -(-last_ms // 60_000) * 60_000
    return {
        "expr": "vector(0)",
        "eval_time": go_duration(until),
        "exp_samples": [{"labels": "{}", "value": 0}],
    }


def bits(result: Result) -> set[tuple[Labels, str]]:
    """The samples of ``result`` with each value's exact bits (``float.hex``; NaN as NaN)."""
    return {(lab, "NaN" if math.isnan(v) else v.hex()) for lab, v in result.samples}


def order_sensitive(case: Case, result: Result, seed: int = 0) -> bool:
    """Does kpimon's answer change (in any bit) when the input series come in another order?

    promtool loads series in random order, and Prometheus sums in that order: such a case
    cannot be compared bit for bit.
    """
    if result.error or result.refused or result.crash or not result.samples:
        return False
    orders = [list(reversed(case.series)), list(case.series)]
    random.Random(seed).shuffle(orders[1])
    for order in orders:
        other = answer(Case(order, case.expr, case.at, case.interval, case.note))
        if bits(other) != bits(result) or other.error != result.error:
            return True
    return False


ERROR_SENTINEL = (("kpimon_error", "1"),)
"""Expected when kpimon failed: no real answer has this label, so only a promtool error agrees."""


def exact_tests(case: Case, result: Result) -> list[dict[str, object]]:
    """``promql_expr_test`` entries checking ``result`` bit for bit, NaN and -0 included.

    promtool 2.42 compares values with Go's ``==``, so NaN never matches and -0 matches 0.
    A result with NaN is checked twice instead: ``(E) >= -Inf`` (every sample but the NaN ones,
    values exact) and ``label_replace(E, ...) >= bool -Inf`` (each sample's labels, with the
    name moved to a label, and 1, or 0 for NaN); a NaN scalar as ``(E) >= bool -Inf`` giving 0.
    A result with a zero also gets ``1 / ...`` checked, which tells -0 (-Inf) from 0 (+Inf).
    """

    def test(expr: str, samples: Iterable[tuple[Labels, float]]) -> dict[str, object]:
        return expectation(expr, case.at, samples)

    if result.error is not None or result.crash is not None or result.refused is not None:
        return [test(case.expr, [(ERROR_SENTINEL, 0.0)])]
    expr, samples = case.expr, result.samples
    renamed = f'label_replace({expr}, "{NAME_LABEL}", "$1", "__name__", "(.+)")'
    real = [(lab, v) for lab, v in samples if not math.isnan(v)]
    tests = []
    if len(real) == len(samples):
        tests.append(test(expr, samples))
    elif result.scalar:
        tests.append(test(f"({expr}) >= bool -Inf", [((), 0.0)]))
    else:
        tests.append(test(f"({expr}) >= -Inf", real))
        flags = [(_renamed(lab), 0.0 if math.isnan(v) else 1.0) for lab, v in samples]
        tests.append(test(f"{renamed} >= bool -Inf", flags))
    if any(v == 0 for _, v in real):
        if result.scalar:
            tests.append(test(f"1 / ({expr})", [((), _div(1.0, samples[0][1]))]))
        else:
            inverse = [(_renamed(lab), _div(1.0, v)) for lab, v in real]
            tests.append(test(f"(1 / {renamed}) >= -Inf", inverse))
    return tests


def _renamed(labels: Labels) -> Labels:
    """``labels`` with the metric name moved to NAME_LABEL (as the checks' label_replace does)."""
    moved = [(NAME_LABEL if k == "__name__" else k, v) for k, v in labels]
    return tuple(sorted(moved))


NAME_LABEL = "kpimon_name"
"""Holds the metric name in the NaN and -0 checks (a label no case uses)."""


def case_file(path: Path, case: Case, result: Result) -> int:
    """Write one promtool test file checking ``result`` for ``case``; the number of tests."""
    tests = [*exact_tests(case, result), load_everything(case)]
    write_tests(path, [group_for(case, tests)])
    return len(tests) - 1


AGREE, AGREE_ERROR, DISAGREE, LIVE_DIFFERS = "agree", "agree-error", "disagree", "live-differs"
UNSUPPORTED, ORDER_SENSITIVE, PROMTOOL_REJECTS = (
    "unsupported",
    "order-sensitive",
    "promtool-rejects",
)


@dataclass(frozen=True)
class Verdict:
    """How one case came out.

    ``kind`` is one of:

    - AGREE: the same samples, bit for bit; AGREE_ERROR: both failed;
    - DISAGREE: anything else (kpimon crashing included);
    - LIVE_DIFFERS: kpimon agrees with promtool over the whole history, but answers otherwise
      when fed only the samples up to the eval time, as the daemon is (its fast paths differ
      from its general ones);
    - UNSUPPORTED: kpimon refuses the expression at compile time as unsupported;
    - ORDER_SENSITIVE: disagrees, but kpimon's own answer depends on the order of the input
      series, so promtool's random order decides: not comparable bit for bit;
    - PROMTOOL_REJECTS: promtool cannot parse the expression or the file (a bug of the case
      or of the harness, not of kpimon).
    """

    case: Case
    kind: str
    result: Result
    promtool: str  # promtool's report on the case's file

    def describe(self) -> str:
        """A reproducer: series, expression, time, kpimon's answer and promtool's report."""
        lines = [
            f"{self.kind}: {self.case.expr!r} at {self.case.at} (interval {self.case.interval})"
        ]
        lines += [f"    {key}: {values}" for key, values in self.case.series]
        r = self.result
        if r.refused:
            lines.append(f"  kpimon refuses: {r.refused}")
        elif r.crash:
            lines.append(f"  kpimon crashed: {r.crash.strip().splitlines()[-1]}")
        elif r.error:
            lines.append(f"  kpimon error: {r.error}")
        else:
            got = ", ".join(f"{format_labels(lab) if lab else '{}'} {v!r}" for lab, v in r.samples)
            lines.append(f"  kpimon: [{got}]")
        lines.append(
            "  promtool:" + "".join(f"\n    {ln}" for ln in self.promtool.strip().splitlines())
        )
        return "\n".join(lines)


def is_unsupported(refusal: str) -> bool:
    """Does compile_expr's message refuse a construct (rather than an invalid expression)?"""
    return "support" in refusal


def judge(case: Case, result: Result, report: FileReport | None, tests: int) -> str:
    """The verdict kind of a case from kpimon's answer and promtool's report on its file."""
    if report is None or (not report.passed and not report.failures):
        return PROMTOOL_REJECTS
    if any("parse error" in ln for ln in report.text.splitlines() if ", err: " in ln):
        return PROMTOOL_REJECTS
    if result.refused is not None and is_unsupported(result.refused):
        return UNSUPPORTED
    if result.crash is not None:
        return DISAGREE
    if result.error is not None or result.refused is not None:
        errs = [f for f in report.failures if f[2] == "err"]
        return AGREE_ERROR if len(errs) == len(report.failures) == tests else DISAGREE
    return AGREE if report.passed and not report.failures else DISAGREE


def promtool_varies(case: Case, result: Result, tmp: Path, runs: int = 12) -> bool:
    """Does promtool, asked ``runs`` times more, answer otherwise or once as kpimon does?

    promtool loads a group's series in random order, and Prometheus aggregates in load order:
    ``avg``, ``stddev`` and ``stdvar`` over three series of integers, or ``topk`` among equal
    values, can come out differently from one run to the next. Such a case is not comparable
    bit for bit, even when kpimon's answer does not depend on its input order.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(runs):
        files.append(tmp / f"again{i}.yml")
        case_file(files[-1], case, result)
    reports = run_promtool(files, jobs=2)
    answers = {
        tuple(ln.strip() for ln in r.text.splitlines() if "got:" in ln) for r in reports.values()
    }
    return any(r.passed for r in reports.values()) or len(answers) > 1


def _differs_live(case: Case, result: Result) -> bool:
    """Fed samples only up to the eval time, does kpimon answer otherwise?"""
    return not reads_future(case) and bits(answer(case, live=True)) != bits(result)


def differential(
    cases: Sequence[Case],
    tmp: Path,
    answers: Sequence[Result] | None = None,
    *,
    check_order: bool = True,
) -> list[Verdict]:
    """Judge every case: kpimon's answers (``answer`` unless given), one promtool run.

    With ``check_order`` (off for answers that are not kpimon's own), a disagreeing case whose
    answer depends on the order of the input series (kpimon's, or promtool's over a few more
    runs: :func:`promtool_varies`) is ORDER_SENSITIVE rather than DISAGREE, and an agreeing
    one is evaluated again as the daemon would (LIVE_DIFFERS).
    """
    results = list(answers) if answers is not None else [answer(c) for c in cases]
    files, counts = [], []
    for i, (case, result) in enumerate(zip(cases, results, strict=True)):
        path = tmp / f"case{i:04d}.yml"
        counts.append(case_file(path, case, result))
        files.append(path)
    reports = run_promtool(files, jobs=2) if files else {}
    verdicts = []
    for case, result, path, tests in zip(cases, results, files, counts, strict=True):
        report = reports.get(path)
        kind = judge(case, result, report, tests)
        if (
            kind == DISAGREE
            and check_order
            and (
                order_sensitive(case, result)
                or promtool_varies(case, result, tmp / f"{path.stem}-again")
            )
        ):
            kind = ORDER_SENSITIVE
        elif kind == AGREE and check_order and _differs_live(case, result):
            kind = LIVE_DIFFERS
        verdicts.append(Verdict(case, kind, result, report.text if report else ""))
    return verdicts


def unordered_error(message: str) -> str:
    """An error message with its bracketed list of series sorted (their order is the input's)."""
    head, sep, rest = message.partition(": [")
    if not sep:
        return message
    inside, _, tail = rest.partition("]")
    return head + sep + ", ".join(sorted(re.findall(r"\{[^}]*\}", inside))) + "]" + tail


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
