"""Annotation templates: Jinja2 in a sandbox, and the default summary.

Annotations of a KPI (and a webhook hook's ``body``) are Jinja2 templates rendered in a
:class:`~jinja2.sandbox.SandboxedEnvironment` with :class:`~jinja2.StrictUndefined`: a rule file
cannot reach Python internals, and a misspelt variable is an error rather than an empty string.
Variables: ``labels`` (the alert's labels, ``labels.instance``), ``value``, ``threshold``
(numbers, printed to four significant digits: ``72.41``), ``for_duration`` (``47m``), ``since``
(RFC 3339), ``owner``, ``kpi``, ``level``, ``unit``, ``external_labels``, ``external_url``.
Filters, as Prometheus' template functions: ``humanize``, ``humanize1024``,
``humanizeDuration``, ``humanizePercentage``, and ``format_value`` (the KPI's unit).
Prometheus' ``{{ $value }}``, ``{{ $labels.x }}``, ``{{ $externalLabels.x }}`` and
``{{ $externalURL }}`` are understood as well (:func:`prometheus_compatible`).

:func:`check` finds syntax errors and unknown variables for ``kpimon check``; :func:`render`
expands a template; :func:`default_summary` writes "CPU on db1 has been at 72.4%, above
warning (70), for 47m — owner platform-team". Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Final

import jinja2
import jinja2.meta
import jinja2.sandbox
from jinja2.exceptions import SecurityError

from kpimon.config.durations import format_duration
from kpimon.labels import Labels

VARIABLES: Final[tuple[str, ...]] = (
    "labels",
    "value",
    "threshold",
    "for_duration",
    "since",
    "owner",
    "kpi",
    "level",
    "unit",
    "external_labels",
    "external_url",
)
"""The names an annotation template may use."""

_PROMETHEUS_NAMES: Final[dict[str, str]] = {
    "$value": "value",
    "$labels": "labels",
    "$externalLabels": "external_labels",
    "$externalURL": "external_url",
    ".Value": "value",
    ".Labels": "labels",
    ".ExternalLabels": "external_labels",
    ".ExternalURL": "external_url",
}
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_PROMETHEUS_NAME = re.compile(
    r"\$(?:value|labels|externalLabels|externalURL)\b"
    r"|(?<![\w\])])\.(?:Value|Labels|ExternalLabels|ExternalURL)\b"
)
_DOLLAR_HINT: Final = (
    "; annotations are Jinja2 templates ({{ value }}, {{ labels.instance }}): of Prometheus' "
    "template syntax only $value, $labels, $externalLabels and $externalURL are understood"
)

WEBHOOK_VARIABLES: Final[tuple[str, ...]] = (
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
)
"""The names a webhook ``body`` template may use: the fields of the webhook v4 message."""

_BYTE_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_SI: Final = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))

TemplateError = jinja2.TemplateError


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What a template sees, before conversion to template variables."""

    kpi: str
    level: str
    labels: Labels
    value: float
    threshold: float
    direction: str = "above"
    unit: str = "none"
    owner: str = ""
    active_at: float
    now: float
    resolved: bool = False
    external_labels: Labels = ()
    external_url: str = ""

    def variables(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "value": Number(self.value),
            "threshold": Number(self.threshold),
            "for_duration": duration_text(self.now - self.active_at),
            "since": _rfc3339(self.active_at),
            "owner": self.owner,
            "kpi": self.kpi,
            "level": self.level,
            "unit": self.unit,
            "external_labels": dict(self.external_labels),
            "external_url": self.external_url,
        }


def _rfc3339(t: float) -> str:
    if not math.isfinite(t):
        return ""
    return dt.datetime.fromtimestamp(int(t), tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration_text(seconds: float) -> str:
    """``2820`` → ``47m``; rounded to whole seconds (minutes above an hour), never negative."""
    if not math.isfinite(seconds) or seconds <= 0:
        return "0s"
    s = round(seconds)
    if s >= 3600:
        s = round(s / 60) * 60
    return format_duration(s)


def _num(x: float) -> str:
    """A number as people read it: ``70``, ``72.41``, ``12345.7``, ``0.000123``, ``1e+20``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if abs(x) >= 1e15:
        return f"{x:.4g}"
    if x.is_integer():
        return str(int(x))
    if abs(x) >= 1000:
        return f"{x:.1f}"
    return f"{x:.4g}"


class Number(float):
    """A float that prints as people read it (``{{ value }}`` → ``72.41``, not
    ``72.41234567``) and still compares and computes as a float."""

    def __str__(self) -> str:
        return _num(self)


def format_value(value: Any, unit: str = "none") -> str:
    """A value as an operator reads it in ``unit``: ``72.4%``, ``1.5GiB``, ``47m``, ``250ms``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return _num(x)
    if unit == "percent":
        return f"{x:.1f}%"
    if unit == "ratio":
        return f"{x * 100:.1f}%"
    if unit == "seconds":
        return humanize_duration(x)
    if unit == "milliseconds":
        return humanize_duration(x / 1000)
    if unit == "bytes":
        return humanize1024(x) + "B"
    if unit == "bytes_per_second":
        return humanize1024(x) + "B/s"
    if unit == "celsius":
        return f"{x:.1f}°C"
    return _num(x)


def humanize(value: Any) -> str:
    """SI prefixes, as Prometheus' ``humanize``: ``1234567`` → ``1.235M``."""
    x = float(value)
    if not math.isfinite(x):
        return _num(x)
    for factor, prefix in _SI:
        if abs(x) >= factor:
            return f"{x / factor:.4g}{prefix}"
    return f"{x:.4g}"


def humanize1024(value: Any) -> str:
    """Binary prefixes, as Prometheus' ``humanize1024``: ``1536`` → ``1.5Ki``."""
    x = float(value)
    if not math.isfinite(x):
        return _num(x)
    v, i = abs(x), 0
    while v >= 1024 and i < len(_BYTE_UNITS) - 1:
        v /= 1024
        i += 1
    prefix = _BYTE_UNITS[i].removesuffix("B")
    return f"{'-' if x < 0 else ''}{v:.4g}{prefix}"


def humanize_duration(value: Any) -> str:
    """Seconds as a duration: ``2820`` → ``47m``, ``0.25`` → ``250ms``."""
    x = float(value)
    if not math.isfinite(x):
        return _num(x)
    sign = "-" if x < 0 else ""
    x = abs(x)
    if x == 0:
        return "0s"
    if x < 1:
        return f"{sign}{x * 1000:.3g}ms"
    if x >= 1e12:
        return f"{sign}{x:.4g}s"
    return sign + duration_text(x)


def humanize_percentage(value: Any) -> str:
    """A ratio as a percentage: ``0.724`` → ``72.4%``."""
    return f"{float(value) * 100:.4g}%"


MAX_REPEAT: Final = 10_000
"""Longest string or list ``*`` may build, and largest exponent ``**`` may use, in a template:
the sandbox keeps templates away from Python internals, this keeps ``{{ "x" * 10**9 }}`` from
taking the daemon's memory."""


class _Sandbox(jinja2.sandbox.SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 100:
                raise SecurityError("exponent too large in template")
            return left**right
        for seq, n in ((left, right), (right, left)):
            sized = isinstance(seq, (str, list, tuple)) and isinstance(n, int)
            if sized and len(seq) * n > MAX_REPEAT:
                raise SecurityError("repetition too large in template")
        return left * right


@functools.cache
def environment() -> jinja2.sandbox.SandboxedEnvironment:
    """The one sandboxed environment every template is compiled in."""
    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # text for pagers and chat, not HTML
        keep_trailing_newline=False,
    )
    env.filters.update(
        humanize=humanize,
        humanize1024=humanize1024,
        humanizeDuration=humanize_duration,
        humanizePercentage=humanize_percentage,
        format_value=format_value,
    )
    return env


def prometheus_compatible(text: str) -> str:
    """``text`` with Prometheus' trivial template names turned into kpimon's, inside
    ``{{ ... }}`` only: ``$value`` → ``value``, ``$labels.x`` → ``labels.x`` (also
    ``$externalLabels``, ``$externalURL`` and the ``.Value``/``.Labels`` forms), so that a KPI
    translated from a Prometheus alerting rule keeps its annotations. Newlines are kept, so
    line numbers of errors stay right."""
    if "$" not in text and "{{ ." not in text and "{{." not in text:
        return text
    return _ACTION.sub(
        lambda m: (
            "{{" + _PROMETHEUS_NAME.sub(lambda t: _PROMETHEUS_NAMES[t.group(0)], m.group(1)) + "}}"
        ),
        text,
    )


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> jinja2.Template:
    return environment().from_string(prometheus_compatible(text))


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """What is wrong with a template, and where: a 0-based character offset into its text."""

    message: str
    offset: int


def _line_offset(text: str, lineno: int) -> int:
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[: max(0, lineno - 1)])


def check(text: str, variables: tuple[str, ...] = VARIABLES) -> list[TemplateProblem]:
    """Every problem of template ``text``: a syntax error, or each unknown variable."""
    env = environment()
    source = prometheus_compatible(text)
    try:
        ast = env.parse(source)
        env.from_string(source)  # compiling also finds unknown filters and tests
    except jinja2.TemplateSyntaxError as exc:
        message = (exc.message or "syntax error").rstrip(".")
        if "unexpected char '$'" in message:
            message += _DOLLAR_HINT
        return [
            TemplateProblem(
                f"invalid template: {message[:1].lower()}{message[1:]}",
                _line_offset(text, exc.lineno),
            )
        ]
    out: list[TemplateProblem] = []
    for name in sorted(jinja2.meta.find_undeclared_variables(ast) - set(variables)):
        found = re.search(rf"\b{re.escape(name)}\b", text)
        close = difflib.get_close_matches(name, variables, n=1, cutoff=0.6)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        out.append(
            TemplateProblem(
                f'unknown template variable "{name}"{hint}; available: {", ".join(variables)}',
                found.start() if found else 0,
            )
        )
    return out


def render_or_explain(text: str, context: Context) -> tuple[str, str | None]:
    """``text`` expanded for ``context``, and None; or, when it fails at render time (a label
    some series lack, ``{{ value / 0 }}``), the text as written with the error appended, and
    the error: an annotation that cannot be rendered must never cost the alert."""
    try:
        return render(text, context), None
    except Exception as exc:  # TemplateError, or the template's own arithmetic
        return f"{text} (template error: {exc})", str(exc)


def render(text: str, context: Context) -> str:
    """Expand ``text`` for ``context``.

    Raises:
        jinja2.TemplateError: a syntax error, an undefined variable or attribute, or a
            forbidden operation (the sandbox's SecurityError).
    """
    if "{" not in text:
        return text
    return _compiled(text).render(context.variables())


def render_with(text: str, variables: dict[str, Any]) -> str:
    """Expand ``text`` with arbitrary variables (a webhook body gets the whole message)."""
    return _compiled(text).render(variables)


def default_summary(
    kpi: str,
    level: str,
    labels: Labels,
    *,
    value: float,
    threshold: float,
    direction: str,
    unit: str,
    owner: str,
    lasted_s: float,
    resolved: bool,
) -> str:
    """``CPU on db1 has been at 72.4%, above warning (70), for 47m — owner platform-team``.

    The subject is the KPI's name, and "on <instance>" when the alert has an ``instance``
    label (else its series labels in braces, if any). Made from the facts, not from a
    :class:`Context`: a burst of 1,000 alerts writes 1,000 summaries in one tick.
    """
    by_name = dict(labels)
    instance = by_name.get("instance")
    subject = kpi
    if instance:
        subject += f" on {instance}"
    else:
        own = [(k, v) for k, v in labels if k not in ("alertname", "severity", "kpi")]
        if own:
            subject += " {" + ", ".join(f'{k}="{v}"' for k, v in sorted(own)) + "}"
    value_text = format_value(value, unit)
    if unit in ("percent", "none", "count"):
        threshold_text = _num(threshold)  # "above warning (70)" reads better than (70.0%)
    else:
        threshold_text = format_value(threshold, unit)
    lasted = duration_text(lasted_s)
    if resolved:
        text = (
            f"{subject} is back at {value_text}, no longer {direction} {level} "
            f"({threshold_text}), after {lasted}"
        )
    else:
        text = (
            f"{subject} has been at {value_text}, {direction} {level} "
            f"({threshold_text}), for {lasted}"
        )
    if owner:
        text += f" — owner {owner}"
    return text
