"""Go's ``math.Pow`` and ``math.Atan2`` (Go 1.19, as Prometheus 2.42 is built), vectorised.

PromQL's ``^`` and ``atan2`` are Go's functions, which are not the C library's: ``Pow`` with an
integer exponent multiplies the mantissa by repeated squaring (rounding at each step, where the
C ``pow`` is correctly rounded), and ``Atan2`` is a port of Cephes' ``atan`` (not correctly
rounded either). To give Prometheus' bits, both are written here after Go's algorithms, over
numpy arrays (every branch computed for all elements, then selected). One difference remains:
for a non-integer exponent ``Pow`` takes ``exp(yf * log(x))`` of the fractional part, and Go's
``Exp`` and ``Log`` (assembly on amd64) may differ from the C library's in the last bit.

Pure functions: no I/O, no state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

_PI = float(np.pi)
_3PI_4 = float("2.35619449019234492884698253745962716314787704953132936573120844")
# Cephes' atan: pi/2 = PIO2 + MOREBITS, tan(3 pi / 8), and the rational approximation on [0, 0.66].
_MOREBITS = 6.123233995736765886130e-17
_TAN_3PI_8 = 2.41421356237309504880
_P = (
    -8.750608600031904122785e-01,
    -1.615753718733365076637e01,
    -7.500855792314704667340e01,
    -1.228866684490136173410e02,
    -6.485021904942025371773e01,
)
_Q = (
    2.485846490142306297962e01,
    1.650270098316988542046e02,
    4.328810604912902668951e02,
    4.853903996359136964868e02,
    1.945506571482613964425e02,
)


def _xatan(x: F64) -> F64:
    """Cephes' series for atan on [0, 0.66], in Go's operation order."""
    z = x * x
    num = (((_P[0] * z + _P[1]) * z + _P[2]) * z + _P[3]) * z + _P[4]
    den = ((((z + _Q[0]) * z + _Q[1]) * z + _Q[2]) * z + _Q[3]) * z + _Q[4]
    z = z * num / den
    out: F64 = x * z + x
    return out


def _satan(x: F64) -> F64:
    """atan of a positive ``x``, reduced to [0, 0.66]."""
    small = _xatan(x)
    big = (_PI / 2 - _xatan(1 / x)) + _MOREBITS
    mid = (_PI / 4 + _xatan((x - 1) / (x + 1))) + 0.5 * _MOREBITS
    out: F64 = np.where(x <= 0.66, small, np.where(x > _TAN_3PI_8, big, mid))
    return out


def atan(x: F64) -> F64:
    """Go's ``math.Atan``."""
    with np.errstate(all="ignore"):
        s = _satan(np.abs(x))
        out: F64 = np.where(x == 0, x, np.where(x > 0, s, -s))
    return out


def atan2(y: Any, x: Any) -> F64:
    """Go's ``math.Atan2(y, x)``, elementwise (special cases in Go's order)."""
    y, x = np.broadcast_arrays(np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64))
    with np.errstate(all="ignore"):
        q = atan(y / x)
        general = np.where(x < 0, np.where(q <= 0, q + _PI, q - _PI), q)
        pos_inf_x = np.where(np.isinf(y), np.copysign(_PI / 4, y), np.copysign(0.0, y))
        neg_inf_x = np.where(np.isinf(y), np.copysign(_3PI_4, y), np.copysign(_PI, y))
        half_pi = np.copysign(_PI / 2, y)
        zero_y = np.where((x >= 0) & ~np.signbit(x), np.copysign(0.0, y), np.copysign(_PI, y))
        out: F64 = np.select(
            [
                np.isnan(y) | np.isnan(x),
                y == 0,
                x == 0,
                np.isposinf(x),
                np.isneginf(x),
                np.isinf(y),
            ],
            [np.nan, zero_y, half_pi, pos_inf_x, neg_inf_x, half_pi],
            general,
        )
    return out


def _is_odd_int(y: F64) -> NDArray[np.bool_]:
    frac, whole = np.modf(y)
    with np.errstate(all="ignore"):
        # Go: int64(xi) & 1; |xi| >= 2^63 converts to MinInt64 (even) on amd64.
        fits = np.abs(whole) < 2.0**63
        ints = np.where(fits, whole, 0.0).astype(np.int64)
    odd: NDArray[np.bool_] = (frac == 0) & fits & ((ints & 1) == 1)
    return odd


def power(x: Any, y: Any) -> F64:
    """Go's ``math.Pow(x, y)``, elementwise."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if ya.ndim == 0 and xa.ndim == 1 and xa.size > 64:
        fast = _power_scalar_exponent(xa, float(ya))
        if fast is not None:
            return fast
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    with np.errstate(all="ignore"):
        odd = _is_odd_int(y)
        ax = np.abs(x)
        below = np.where(odd, np.copysign(np.inf, x), np.inf)
        at_zero = np.where(y < 0, below, np.where(odd, x, 0.0))
        # Pow(-Inf, y) = Pow(-0, -y)
        odd_neg = _is_odd_int(-y)
        at_neg_inf = np.where(
            -y < 0, np.where(odd_neg, -np.inf, np.inf), np.where(odd_neg, -0.0, 0.0)
        )
        at_inf = np.where(np.isneginf(x), at_neg_inf, np.where(y < 0, 0.0, np.inf))
        inf_y = np.where(x == -1, 1.0, np.where((ax < 1) == np.isposinf(y), 0.0, np.inf))
        sqrt = np.sqrt(x)
        return np.select(
            [
                (y == 0) | (x == 1),
                y == 1,
                np.isnan(x) | np.isnan(y),
                x == 0,
                np.isinf(y),
                np.isinf(x),
                y == 0.5,
                y == -0.5,
            ],
            [1.0, x, np.nan, at_zero, inf_y, at_inf, sqrt, 1 / sqrt],
            _general_pow(x, y),
        )


def _general_pow(x: F64, y: F64) -> F64:
    """Go's Pow past its special cases: x**frac(y) by exp/log, x**int(y) by repeated squaring."""
    yf, yi = np.modf(np.abs(y))
    huge = yi >= 2.0**63
    huge_value = np.where(x == -1, 1.0, np.where((np.abs(x) < 1) == (y > 0), 0.0, np.inf))
    up = yf > 0.5
    yf = np.where(up, yf - 1, yf)
    yi = np.where(up, yi + 1, yi)
    a1 = np.where(yf != 0, np.exp(yf * np.log(x)), 1.0)
    ae = np.zeros(x.shape, dtype=np.int64)
    x1, xe32 = np.frexp(x)
    xe = xe32.astype(np.int64)
    i = np.where(huge | ~np.isfinite(yi), 0.0, yi).astype(np.int64)
    active = i != 0
    while active.any():
        out_of_range = active & ((xe < -(1 << 12)) | (xe > (1 << 12)))
        ae = np.where(out_of_range, ae + xe, ae)
        active &= ~out_of_range
        bit = active & ((i & 1) == 1)
        a1 = np.where(bit, a1 * x1, a1)
        ae = np.where(bit, ae + xe, ae)
        x1 = np.where(active, x1 * x1, x1)
        xe = np.where(active, xe << 1, xe)
        halve = active & (x1 < 0.5)
        x1 = np.where(halve, x1 + x1, x1)
        xe = np.where(halve, xe - 1, xe)
        i = np.where(active, i >> 1, i)
        active &= i != 0
    neg = y < 0
    a1 = np.where(neg, 1 / a1, a1)
    ae = np.where(neg, -ae, ae)
    result = np.ldexp(a1, np.clip(ae, -4000, 4000).astype(np.int32))
    out: F64 = np.where((yf != 0) & (x < 0), np.nan, np.where(huge, huge_value, result))
    return out


def _power_scalar_exponent(x: F64, y: float) -> F64 | None:
    """``power(x, y)`` for one ordinary exponent: Go's loop with the exponent's bits known.

    None when the general path must do it (a special exponent, or a huge one).
    """
    if y in (0.0, 1.0, 0.5, -0.5) or not np.isfinite(y) or abs(y) >= 2.0**62:
        return None
    yf, yi = math.modf(abs(y))
    if yf > 0.5:
        yf, yi = yf - 1, yi + 1
    with np.errstate(all="ignore"):
        a1 = np.exp(yf * np.log(x)) if yf != 0 else np.ones(x.size)
        x1, xe32 = np.frexp(x)
        xe = xe32.astype(np.int64)
        ae = np.zeros(x.size, dtype=np.int64)
        i = int(yi)
        while i:
            if bool(((xe < -(1 << 12)) | (xe > (1 << 12))).any()):
                return None  # Go stops early for these: leave them to the general path
            if i & 1:
                a1 = a1 * x1
                ae += xe
            x1 = x1 * x1
            xe <<= 1
            halve = x1 < 0.5
            x1 = np.where(halve, x1 + x1, x1)
            xe -= halve
            i >>= 1
        if y < 0:
            a1 = 1 / a1
            ae = -ae
        out: F64 = np.ldexp(a1, np.clip(ae, -4000, 4000).astype(np.int32))
        special = (x == 1) | (x == 0) | ~np.isfinite(x) | ((yf != 0) & (x < 0))
    if special.any():
        at = np.flatnonzero(special)
        out[at] = power(x[at], np.full(at.size, y))
    return out
