"""Drift statistics on binned distributions: baseline proportions vs observed counts.

``expected`` is the baseline distribution over the bins (proportions, or any
non-negative weights: they are normalised), ``observed`` the counts seen in the
window over the same bins, in the same order. Every function is pure numpy.

Conventions (see docs/drift.md):

* PSI uses the natural logarithm and floors every proportion at ``PSI_EPSILON``
  (1e-4) before taking logs, without renormalising, so an empty bin on either
  side contributes a finite amount.
* Jensen-Shannon distance is the square root of the JS divergence in base 2, so
  it lies in [0, 1]; empty bins need no epsilon (0 log 0 = 0).
* chi-squared is Pearson's: goodness of fit of the observed counts to
  ``expected * total``, or, given the baseline's size, the 2 x k homogeneity test;
  a bin that is empty on both sides is left out (it carries no information and
  would cost a degree of freedom); in the goodness-of-fit form a bin the baseline
  never saw but the window did gets the baseline proportion ``PSI_EPSILON`` (then
  all proportions are renormalised), instead of an infinite statistic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pilotage.drift.errors import DriftInputError
from pilotage.drift.special import chi2_sf, ks_pvalue

PSI_EPSILON = 1e-4

FloatArray = npt.NDArray[np.float64]
Weights = Sequence[float] | npt.NDArray[np.floating] | npt.NDArray[np.integer]


@dataclass(frozen=True)
class TestResult:
    """A statistic with its p-value (for the tests that have one)."""

    statistic: float
    p_value: float


@dataclass(frozen=True)
class Chi2Result(TestResult):
    dof: int


def as_distribution(values: Weights, what: str) -> tuple[FloatArray, float]:
    """Non-negative finite weights → (proportions summing to 1, original total)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise DriftInputError(f"{what} must be a non-empty 1-D list of numbers")
    if not np.all(np.isfinite(array)):
        raise DriftInputError(f"{what} contains a non-finite value")
    if np.any(array < 0):
        raise DriftInputError(f"{what} contains a negative value")
    total = float(array.sum())
    if total <= 0.0:
        raise DriftInputError(f"{what} is all zeros")
    return array / total, total


def _pair(expected: Weights, observed: Weights) -> tuple[FloatArray, FloatArray, float]:
    p, _ = as_distribution(expected, "expected proportions")
    q, n = as_distribution(observed, "observed counts")
    if p.size != q.size:
        raise DriftInputError(f"expected has {p.size} bins but observed has {q.size}")
    return p, q, n


def psi(expected: Weights, observed: Weights, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index: sum((q - p) * ln(q / p)), proportions floored at epsilon."""
    p, q, _ = _pair(expected, observed)
    p = np.maximum(p, epsilon)
    q = np.maximum(q, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def _kl_to_mixture(p: FloatArray, m: FloatArray) -> float:
    support = p > 0
    return float(np.sum(p[support] * np.log2(p[support] / m[support])))


def js_distance(expected: Weights, observed: Weights) -> float:
    """Jensen-Shannon distance, base 2: sqrt(KL(p||m)/2 + KL(q||m)/2), m = (p+q)/2; in [0, 1]."""
    p, q, _ = _pair(expected, observed)
    m = (p + q) / 2.0
    divergence = (_kl_to_mixture(p, m) + _kl_to_mixture(q, m)) / 2.0
    return math.sqrt(min(1.0, max(0.0, divergence)))


def chi2(
    expected: Weights,
    observed: Weights,
    *,
    reference_size: int | None = None,
    epsilon: float = PSI_EPSILON,
) -> Chi2Result:
    """Pearson chi-squared of the observed counts against the expected proportions.

    Without ``reference_size`` it is the goodness-of-fit test against
    ``expected * total`` (the baseline taken as the true distribution, like
    scipy.stats.chisquare and Evidently). With it (m, the baseline rows) it is
    the test of homogeneity of the 2 x k table [expected * m; observed], like
    scipy.stats.chi2_contingency(correction=False): the baseline's own sampling
    noise is accounted for, which matters when the baseline is not much larger
    than the window.
    """
    p, _, n = _pair(expected, observed)
    counts = np.asarray(observed, dtype=np.float64)
    informative = (p > 0) | (counts > 0)
    counts = counts[informative]
    dof = int(counts.size) - 1
    if dof < 1:
        return Chi2Result(statistic=0.0, p_value=1.0, dof=0)
    if reference_size is None:
        p = np.maximum(p[informative], epsilon)
        p = p / p.sum()
        expected_counts = p * n
        statistic = float(np.sum((counts - expected_counts) ** 2 / expected_counts))
    else:
        if reference_size <= 0:
            raise DriftInputError(f"reference_size must be > 0, got {reference_size}")
        reference_counts = p[informative] * reference_size
        pooled = (reference_counts + counts) / (reference_size + n)
        statistic = float(
            np.sum((counts - pooled * n) ** 2 / (pooled * n))
            + np.sum((reference_counts - pooled * reference_size) ** 2 / (pooled * reference_size))
        )
    return Chi2Result(statistic=statistic, p_value=chi2_sf(statistic, dof), dof=dof)


def ks_binned(
    expected: Weights, observed: Weights, *, reference_size: int | None = None
) -> TestResult:
    """Kolmogorov-Smirnov on the binned CDFs: max |F - G| over the bin edges.

    Binning can only hide differences, so the statistic is a lower bound of the
    exact one and the p-value an upper bound (conservative). The p-value is the
    asymptotic one with n_eff = n*m/(n+m) when ``reference_size`` (m, the baseline
    rows) is given, else n (the baseline taken as the true distribution).
    """
    p, q, n = _pair(expected, observed)
    gap = np.abs(np.cumsum(p)[:-1] - np.cumsum(q)[:-1])
    statistic = float(min(1.0, gap.max())) if gap.size else 0.0
    n_eff = n if reference_size is None else n * reference_size / (n + reference_size)
    return TestResult(statistic=statistic, p_value=ks_pvalue(statistic, n_eff))


def outer_bounds(edges: Sequence[float]) -> tuple[float, float]:
    """Where the two unbounded outer bins are taken to end: one neighbouring bin width out.

    With a single edge there is no width to borrow and the outer bins collapse onto it.
    """
    if len(edges) < 2:
        return float(edges[0]), float(edges[0])
    return 2 * edges[0] - edges[1], 2 * edges[-1] - edges[-2]


def _check_edges(edges: Sequence[float], bins: int) -> FloatArray:
    array = np.asarray(edges, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise DriftInputError("edges must be a non-empty list of finite numbers")
    if np.any(np.diff(array) <= 0):
        raise DriftInputError("edges must be strictly increasing")
    if array.size + 1 != bins:
        raise DriftInputError(f"{array.size} edges make {array.size + 1} bins, got {bins}")
    return array


def _integral_abs_linear(a: FloatArray, b: FloatArray, width: FloatArray) -> FloatArray:
    """Integral of |f| over intervals where f goes linearly from a to b."""
    same_sign = a * b >= 0
    magnitude = np.abs(a) + np.abs(b)
    crossing = np.divide(a * a + b * b, 2 * magnitude, out=np.zeros_like(a), where=magnitude > 0)
    integral: FloatArray = np.where(same_sign, width * magnitude / 2, width * crossing)
    return integral


def wasserstein_binned(
    edges: Sequence[float],
    expected: Weights,
    observed: Weights,
    *,
    lower: float | None = None,
    upper: float | None = None,
) -> float:
    """Wasserstein-1 distance between two binned distributions on the real line.

    Mass is spread uniformly inside each bin, so both CDFs are piecewise linear
    and the integral of |F - G| is exact for that model. The outer bins end at
    ``lower`` and ``upper`` (by default one neighbouring bin width beyond the outer
    edges, see ``outer_bounds``). Bin convention: ``searchsorted(edges, x, "right")``.
    """
    p, q, _ = _pair(expected, observed)
    inner = _check_edges(edges, p.size)
    default_lower, default_upper = outer_bounds(list(inner))
    lo = default_lower if lower is None else min(float(lower), float(inner[0]))
    hi = default_upper if upper is None else max(float(upper), float(inner[-1]))
    knots = np.concatenate([[lo], inner, [hi]])
    gap = np.concatenate([[0.0], np.cumsum(p) - np.cumsum(q)])
    gap[-1] = 0.0
    return float(np.sum(_integral_abs_linear(gap[:-1], gap[1:], np.diff(knots))))


def binned_mean_std(
    edges: Sequence[float],
    proportions: Weights,
    *,
    lower: float | None = None,
    upper: float | None = None,
) -> tuple[float, float]:
    """Mean and standard deviation of the piecewise-uniform distribution over the bins."""
    p, _ = as_distribution(proportions, "proportions")
    inner = _check_edges(edges, p.size)
    default_lower, default_upper = outer_bounds(list(inner))
    knots = np.concatenate(
        [
            [default_lower if lower is None else lower],
            inner,
            [default_upper if upper is None else upper],
        ]
    )
    left, right = knots[:-1], knots[1:]
    mean = float(np.sum(p * (left + right) / 2))
    second_moment = float(np.sum(p * (left * left + left * right + right * right) / 3))
    return mean, math.sqrt(max(0.0, second_moment - mean * mean))
