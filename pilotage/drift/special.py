"""Distribution tails the drift tests need, in plain numpy/math (no scipy at run time).

* ``chi2_sf``: survival function of the chi-squared distribution, through the
  regularized upper incomplete gamma function ``Q(k/2, x/2)`` (series below
  ``a + 1``, Lentz continued fraction above, as in Numerical Recipes §6.2).
* ``kolmogorov_sf``: survival function of the limiting Kolmogorov distribution,
  ``Q(l) = 2 * sum_{j>=1} (-1)^(j-1) exp(-2 j^2 l^2)``, with the Jacobi-theta form
  ``1 - sqrt(2 pi)/l * sum exp(-(2j-1)^2 pi^2 / (8 l^2))`` for small ``l`` where the
  alternating series converges slowly.
* ``ks_pvalue``: asymptotic two-sided p-value of a KS statistic ``d`` with effective
  sample size ``n_eff`` using Stephens' small-sample correction
  ``l = (sqrt(n_eff) + 0.12 + 0.11/sqrt(n_eff)) * d``.
"""

from __future__ import annotations

import math

_MAX_ITERATIONS = 10_000
_RELATIVE_TOLERANCE = 1e-15
_TINY = 1e-300


def _lower_gamma_series(a: float, x: float) -> float:
    """Regularized lower incomplete gamma P(a, x) by its power series (x < a + 1)."""
    term = 1.0 / a
    total = term
    denominator = a
    for _ in range(_MAX_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _RELATIVE_TOLERANCE:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _upper_gamma_continued_fraction(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) by Lentz's continued fraction (x >= a + 1)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _RELATIVE_TOLERANCE:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def regularized_upper_gamma(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a) for a > 0, x >= 0."""
    if not a > 0.0:
        raise ValueError(f"gamma shape must be > 0, got {a}")
    if not x >= 0.0:
        raise ValueError(f"gamma argument must be >= 0, got {x}")
    if x == 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1.0:
        return min(1.0, max(0.0, 1.0 - _lower_gamma_series(a, x)))
    return min(1.0, max(0.0, _upper_gamma_continued_fraction(a, x)))


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X ~ chi-squared with ``dof`` degrees of freedom."""
    if dof < 1:
        raise ValueError(f"chi-squared degrees of freedom must be >= 1, got {dof}")
    if math.isnan(statistic):
        raise ValueError("chi-squared statistic is NaN")
    if statistic <= 0.0:
        return 1.0
    return regularized_upper_gamma(dof / 2.0, statistic / 2.0)


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the limiting Kolmogorov distribution K = sup |Brownian bridge|."""
    if math.isnan(lam):
        raise ValueError("Kolmogorov argument is NaN")
    if lam <= 0.0:
        return 1.0
    if lam < 1.18:
        # Jacobi theta form: converges in a handful of terms for small lam.
        y = math.exp(-(math.pi**2) / (8.0 * lam * lam))
        total = 0.0
        for j in range(1, 8):
            total += y ** ((2 * j - 1) ** 2)
        return min(1.0, max(0.0, 1.0 - math.sqrt(2.0 * math.pi) / lam * total))
    total = 0.0
    for j in range(1, 101):
        term = math.exp(-2.0 * j * j * lam * lam)
        total += term if j % 2 == 1 else -term
        if term < 1e-17:
            break
    return min(1.0, max(0.0, 2.0 * total))


def ks_pvalue(statistic: float, n_eff: float) -> float:
    """Asymptotic two-sided p-value of a KS statistic with effective sample size ``n_eff``.

    For two samples of sizes n and m, ``n_eff = n * m / (n + m)``; for one sample
    against a known distribution, ``n_eff = n``.
    """
    if not n_eff > 0.0:
        raise ValueError(f"KS effective sample size must be > 0, got {n_eff}")
    if not 0.0 <= statistic <= 1.0:
        raise ValueError(f"KS statistic must be in [0, 1], got {statistic}")
    root = math.sqrt(n_eff)
    return kolmogorov_sf((root + 0.12 + 0.11 / root) * statistic)
