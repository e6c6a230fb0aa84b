"""How rule unit tests print and expand things the way Prometheus does.

- :func:`go_float` and :func:`go_float_e`: Go's ``%v`` and ``strconv.FormatFloat(v, 'E', -1, 64)``
  (what ``{{ $value }}`` prints, and how promtool prints sample values in a failure).
- :func:`expand_template`: the trivial Prometheus alert templates, ``{{ $value }}``,
  ``{{ $labels.name }}``, ``{{ $externalLabels.name }}`` and ``{{ $externalURL }}`` (also as
  ``.Value``, ``.Labels.name``, ...). A text with any other action (pipelines, functions,
  ``humanize``, kpimon's own ``{{ labels.x }}`` syntax) is returned unchanged, and the caller is
  told, until kpimon has a template engine.

Pure functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Final

_ACTION: Final = re.compile(r"\{\{(.*?)\}\}", re.S)
_TRIVIAL: Final = re.compile(
    r"\s*(?:\$value|\.Value|\$externalURL|\.ExternalURL"
    r"|(?:\$labels|\.Labels|\$externalLabels|\.ExternalLabels)\.([a-zA-Z_][a-zA-Z0-9_]*))\s*"
)


def _digits(x: float) -> tuple[str, int]:
    """The shortest decimal digits ``"d1d2..."`` of finite, non-zero ``abs(x)`` and the power of
    ten of ``d1`` (so that ``abs(x) = d1.d2... × 10**exp``)."""
    _, digits, exponent = Decimal(repr(abs(x))).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    # value = int(all digits) * 10**exponent; the first digit's power of ten:
    exp = len(digits) - 1 + exponent
    lead = len(text) - len(text.lstrip("0"))
    return text.lstrip("0"), exp - lead


def _special(x: float) -> str | None:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return None


def go_float(x: float) -> str:
    """``fmt.Sprint(x)`` for a float64: shortest digits, %e form when the exponent is < -4 or
    >= 6 (Go's %v), e.g. ``95``, ``123456``, ``1.234567e+06``, ``1e-05``."""
    special = _special(x)
    if special is not None:
        return special
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    digits, exp = _digits(x)
    sign = "-" if x < 0 else ""
    if exp < -4 or exp >= 6:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return sign + digits + "0" * (exp + 1 - len(digits))
    return f"{sign}{digits[: exp + 1]}.{digits[exp + 1 :]}"


def go_float_e(x: float) -> str:
    """``strconv.FormatFloat(x, 'E', -1, 64)``: ``6E+00``, ``1.5E-07``, ``NaN``, ``+Inf``."""
    special = _special(x)
    if special is not None:
        return special
    if x == 0:
        return ("-" if math.copysign(1.0, x) < 0 else "") + "0E+00"
    digits, exp = _digits(x)
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{'-' if x < 0 else ''}{mant}E{'-' if exp < 0 else '+'}{abs(exp):02d}"


def expand_template(
    text: str,
    *,
    labels: Mapping[str, str],
    value: float,
    external_labels: Mapping[str, str],
    external_url: str,
) -> str | None:
    """``text`` with its trivial actions expanded; None when it has any other action.

    A missing label expands to the empty string (Prometheus' ``missingkey=zero``).
    """
    parts: list[str] = []
    last = 0
    for m in _ACTION.finditer(text):
        action = _TRIVIAL.fullmatch(m.group(1))
        if action is None:
            return None
        inner = m.group(1).strip()
        name = action.group(1)
        if name is None:
            expanded = external_url if "xternalURL" in inner else go_float(value)
        elif inner.startswith(("$labels", ".Labels")):
            expanded = labels.get(name, "")
        else:
            expanded = external_labels.get(name, "")
        parts.append(text[last : m.start()])
        parts.append(expanded)
        last = m.end()
    parts.append(text[last:])
    return "".join(parts)
