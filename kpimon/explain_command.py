"""``kpimon explain NAME``: ask a running kpimon why a KPI's series have their status.

Queries ``GET /api/v1/kpis/{NAME}/explain`` of the daemon at ``--url`` and prints, per series,
its one-line explanation and a table of its levels (``--format text``), or the API's ``data``
as indented JSON (``--format json``).

Exit codes: 0 printed; 1 the daemon could not be reached, or answered with an error (unknown
KPI); 2 usage error (bad ``--url`` or ``--series``; the daemon rejecting a filter).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, TextIO

from kpimon.labels import escape_value

TIMEOUT_S = 10.0


class UsageError(ValueError):
    """The command line asks for something malformed (exit 2)."""


def explain_url(base: str, name: str, series: Sequence[str]) -> str:
    """The explain URL of KPI ``name`` on the daemon at ``base``.

    Each ``series`` is a label set (``{instance="db1"}``, sent as ``series=``) or a label filter
    ``name=value`` (sent as ``name=value``).

    Raises:
        UsageError: ``base`` is not an http(s) URL, or a ``series`` is neither form.
    """
    parsed = urllib.parse.urlsplit(base)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"--url: expected http://HOST:PORT, got {base!r}")
    params: list[tuple[str, str]] = []
    for item in series:
        text = item.strip()
        if text.startswith("{"):
            params.append(("series", text))
            continue
        label, sep, value = text.partition("=")
        if not sep or not label:
            raise UsageError(
                f'--series: expected a label set like {{instance="db1"}} or label=value, '
                f"got {item!r}"
            )
        params.append((label.strip(), value.strip().strip('"')))
    path = f"/api/v1/kpis/{urllib.parse.quote(name, safe='')}/explain"
    query = urllib.parse.urlencode(params)
    return base.rstrip("/") + path + (f"?{query}" if query else "")


def run_explain(
    base: str, name: str, series: Sequence[str], fmt: str, out: TextIO, err: TextIO
) -> int:
    """Run ``kpimon explain``; returns the exit code."""
    try:
        url = explain_url(base, name, series)
    except UsageError as exc:
        print(f"kpimon explain: {exc}", file=err)
        return 2
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:  # it holds the response's socket
            body = exc.read()
        print(f"kpimon explain: {_api_error(body, exc.code)}", file=err)
        return 2 if exc.code == 400 else 1
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"kpimon explain: cannot reach kpimon at {base}: {_reason(reason)}", file=err)
        return 1
    except ValueError as exc:  # not JSON: something else listens there
        print(f"kpimon explain: {base} did not answer like kpimon: {exc}", file=err)
        return 1
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        print(f"kpimon explain: {base} did not answer like kpimon", file=err)
        return 1
    if fmt == "json":
        print(json.dumps(data, indent=2, ensure_ascii=False), file=out)
    else:
        out.write(format_text(data, filtered=bool(series)))
    return 0


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def _api_error(body: bytes, code: int) -> str:
    try:
        doc = json.loads(body)
        return str(doc["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {code}"


def format_text(data: dict[str, Any], *, filtered: bool = False) -> str:
    """The explanation for people: a heading, then per series a sentence and a level table."""
    kpi = str(data.get("kpi", "?"))
    last = data.get("last_evaluation") or "none yet"
    every = _secs(data.get("evaluation_interval_seconds"))
    lines = [f"{kpi} at {data.get('time')} (last evaluation {last}, every {every})"]
    if data.get("evaluation_error"):
        lines.append(f"evaluation failing: {data['evaluation_error']}")
    series = data.get("series")
    if not isinstance(series, list) or not series:
        lines.append("no series match" if filtered else "no series")
        return "\n".join(lines) + "\n"
    for s in series:
        labels = s.get("labels") or {}
        body = ", ".join(f'{k}="{escape_value(str(v))}"' for k, v in labels.items())
        lines.append("")
        lines.append(f"{kpi}{{{body}}}" if body else kpi)
        lines.append(f"  {s.get('sentence', '')}")
        rows = [("level", "phase", "condition", "why")] + [
            (str(level), str(lx.get("phase")), str(lx.get("condition")), str(lx.get("sentence")))
            for level, lx in (s.get("levels") or {}).items()
        ]
        if len(rows) > 1:
            widths = [max(len(r[c]) for r in rows) for c in range(3)]
            lines.extend(
                "  " + "  ".join(r[c].ljust(widths[c]) for c in range(3)) + "  " + r[3]
                for r in rows
            )
    return "\n".join(lines) + "\n"


def _secs(value: object) -> str:
    """``90`` → ``1m30s`` (kept here: importing kpimon.config would slow the command down)."""
    if not isinstance(value, int | float) or not 0 <= value < 1e12:
        return "?"
    left = round(value)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, left = divmod(left, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"
