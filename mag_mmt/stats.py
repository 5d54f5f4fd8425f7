"""Small statistics for comparing ablation arms over seeds (standard library only).

Student's t distribution is computed here (no SciPy dependency): its CDF through the
regularised incomplete beta function, evaluated with a continued fraction (modified Lentz),
and its quantiles by bisection on the CDF. On top of it:

* :func:`t_interval`: mean and two-sided t-based confidence interval of a sample;
* :func:`paired_t_test`: the paired differences ``a - b`` over the same seeds, their mean,
  t interval, t statistic and two-sided p-value.

With ``n`` seeds the test has ``n - 1`` degrees of freedom: 5 seeds make a weak test (the
95 % interval of the mean is ``+-2.78`` standard errors wide); with one seed there is no
interval and no p-value (``None``).

Example:
    >>> round(t_ppf(0.975, 4), 3)
    2.776
    >>> r = paired_t_test([0.50, 0.52, 0.55], [0.40, 0.45, 0.41])
    >>> round(r["mean"], 4), r["n"]
    (0.1033, 3)
    >>> 0.0 < r["p"] < 0.05
    True
"""

from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = ["betainc", "t_cdf", "t_sf", "t_ppf", "mean", "sample_std", "t_interval", "paired_t_test"]

_EPS = 1e-15
_TINY = 1e-300


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), for
    ``x < (a + 1) / (a + b + 2)`` where it converges fast."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        # even step
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        # odd step
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` for ``a, b > 0``, ``0 <= x <= 1``.

    >>> round(betainc(2.0, 3.0, 0.4), 6)  # binomial sum: 6x^2(1-x)^2 + 4x^3(1-x) + x^4
    0.5248
    """
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got {x}")
    return _betainc(a, b, x, 1.0 - x)


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """``I_x(a, b)`` with ``y = 1 - x`` given separately (exact when the caller computes it
    without cancellation, e.g. ``t^2 / (df + t^2)`` beside ``df / (df + t^2)``)."""
    if x <= 0.0 or y <= 0.0:
        return 0.0 if x <= 0.0 else 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, y) / b


def t_sf(t: float, df: float) -> float:
    """Survival function ``P(T > t)`` of Student's t with ``df > 0`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    t2 = t * t
    tail = 0.5 * _betainc(0.5 * df, 0.5, df / (df + t2), t2 / (df + t2))  # P(T > |t|)
    return tail if t >= 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    """CDF ``P(T <= t)`` of Student's t with ``df`` degrees of freedom.

    >>> round(t_cdf(1.0, 1), 6)  # Cauchy: 1/2 + atan(1)/pi
    0.75
    """
    return 1.0 - t_sf(t, df)


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t: the ``t`` with ``t_cdf(t, df) == q``, ``0 < q < 1``."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    target = 1.0 - q  # upper tail, more precise than the CDF near 1
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > target:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, df) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def _floats(values: Sequence[float], name: str) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ValueError(f"{name} is empty")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} holds a non-finite value: {out}")
    return out


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (``ValueError`` for an empty or non-finite sample)."""
    xs = _floats(values, "sample")
    return math.fsum(xs) / len(xs)


def sample_std(values: Sequence[float]) -> float:
    """Standard deviation with ``n - 1`` in the denominator (``nan`` for one value)."""
    xs = _floats(values, "sample")
    if len(xs) < 2:
        return math.nan
    m = math.fsum(xs) / len(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """``(mean, low, high)``: the two-sided t-based ``confidence`` interval of the mean.

    ``low``/``high`` are ``None`` for a single value (no interval can be given).

    >>> m, lo, hi = t_interval([1.0, 2.0, 3.0])
    >>> m, round(lo, 4), round(hi, 4)
    (2.0, -0.4841, 4.4841)
    >>> t_interval([0.3])
    (0.3, None, None)
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    xs = _floats(values, "sample")
    m = math.fsum(xs) / len(xs)
    if len(xs) < 2:
        return m, None, None
    half = t_ppf(0.5 + confidence / 2.0, len(xs) - 1) * sample_std(xs) / math.sqrt(len(xs))
    return m, m - half, m + half


def paired_t_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Paired t-test of ``a - b`` (the same seeds, in the same order).

    Returns ``{"n", "diffs", "mean", "low", "high", "t", "p"}``: the per-pair differences,
    their mean and t interval, the t statistic (``None`` for one pair) and the two-sided
    p-value of "mean difference = 0" (``None`` for one pair; 1.0 when every difference is 0,
    0.0 when all differences are equal and non-zero).
    """
    xa, xb = _floats(a, "a"), _floats(b, "b")
    if len(xa) != len(xb):
        raise ValueError(f"paired samples must have the same length, got {len(xa)} and {len(xb)}")
    diffs = [x - y for x, y in zip(xa, xb)]
    m, low, high = t_interval(diffs, confidence)
    out: dict[str, Any] = {"n": len(diffs), "diffs": diffs, "mean": m, "low": low, "high": high,
                           "t": None, "p": None}
    if len(diffs) < 2:
        return out
    se = sample_std(diffs) / math.sqrt(len(diffs))
    if se == 0.0:
        out["t"] = 0.0 if m == 0.0 else math.copysign(math.inf, m)
        out["p"] = 1.0 if m == 0.0 else 0.0
        return out
    t = m / se
    out["t"] = t
    out["p"] = min(1.0, 2.0 * t_sf(abs(t), len(diffs) - 1))
    return out
