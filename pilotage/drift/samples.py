"""Exact drift statistics on samples (a reference sample vs the server's reservoir).

Numeric samples only; NaNs are dropped first. ``ks_2samp`` and ``wasserstein_1d``
give the same statistic as scipy.stats.ks_2samp / wasserstein_distance; the KS
p-value is the asymptotic one (see ``pilotage.drift.special.ks_pvalue``), which is
what scipy's ``method="asymp"`` (and its default for samples above 10,000) gives.
PSI and JS on samples bin both samples on the reference's quantiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pilotage.drift.baseline import count_bins, quantile_edges_of
from pilotage.drift.binned import FloatArray, TestResult, js_distance, psi
from pilotage.drift.errors import DriftInputError
from pilotage.drift.special import ks_pvalue

Sample = Sequence[float] | npt.NDArray[np.floating] | npt.NDArray[np.integer]


def clean_sample(values: Sample, what: str) -> FloatArray:
    """1-D float array without NaNs; infinities are refused."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DriftInputError(f"{what} must be a 1-D list of numbers")
    array = array[~np.isnan(array)]
    if array.size == 0:
        raise DriftInputError(f"{what} has no non-null value")
    if np.any(np.isinf(array)):
        raise DriftInputError(f"{what} contains an infinite value")
    return array


def _sorted_pair(reference: Sample, current: Sample) -> tuple[FloatArray, FloatArray]:
    return np.sort(clean_sample(reference, "reference sample")), np.sort(
        clean_sample(current, "current sample")
    )


def ks_2samp(reference: Sample, current: Sample) -> TestResult:
    """Two-sample, two-sided Kolmogorov-Smirnov: sup |F_ref - F_cur| and asymptotic p-value."""
    a, b = _sorted_pair(reference, current)
    points = np.concatenate([a, b])
    gap = (
        np.searchsorted(a, points, side="right") / a.size
        - np.searchsorted(b, points, side="right") / b.size
    )
    statistic = float(min(1.0, np.max(np.abs(gap))))
    n_eff = a.size * b.size / (a.size + b.size)
    return TestResult(statistic=statistic, p_value=ks_pvalue(statistic, n_eff))


def wasserstein_1d(reference: Sample, current: Sample) -> float:
    """Wasserstein-1 distance between two empirical distributions: integral of |F - G|."""
    a, b = _sorted_pair(reference, current)
    points = np.sort(np.concatenate([a, b]))
    widths = np.diff(points)
    left = points[:-1]
    gap = (
        np.searchsorted(a, left, side="right") / a.size
        - np.searchsorted(b, left, side="right") / b.size
    )
    return float(np.sum(np.abs(gap) * widths))


def quantile_edges(reference: Sample, bins: int = 10) -> FloatArray:
    """Inner bin edges at the reference's quantiles 1/bins, ..., (bins-1)/bins, deduplicated.

    Ties (a discrete or constant feature) can merge edges, so there may be fewer bins.
    """
    if bins < 2:
        raise DriftInputError(f"bins must be >= 2, got {bins}")
    values = clean_sample(reference, "reference sample")
    return quantile_edges_of(values, bins)


def bin_counts(edges: Sample, values: Sample) -> npt.NDArray[np.int64]:
    """Counts per bin under the model-card convention searchsorted(edges, x, side="right")."""
    return count_bins(edges, clean_sample(values, "sample"))


def psi_samples(reference: Sample, current: Sample, *, bins: int = 10) -> float:
    """PSI of two samples on the reference's quantile bins."""
    edges = quantile_edges(reference, bins)
    return psi(bin_counts(edges, reference), bin_counts(edges, current))


def js_samples(reference: Sample, current: Sample, *, bins: int = 10) -> float:
    """Jensen-Shannon distance (base 2) of two samples on the reference's quantile bins."""
    edges = quantile_edges(reference, bins)
    return js_distance(bin_counts(edges, reference), bin_counts(edges, current))
