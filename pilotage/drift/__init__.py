"""Drift statistics against the training baseline (numpy only; no I/O, no clock).

Binned (baseline proportions vs window counts): ``psi``, ``js_distance``, ``chi2``,
``wasserstein_binned``, ``ks_binned``. Exact on samples (reservoir): ``ks_2samp``,
``wasserstein_1d``, ``psi_samples``, ``js_samples``; ``reference_samples`` (the model
card's training sample) and ``current_samples`` (recent rows) build a ``Reservoir``.
A whole check:
``window_counts`` then ``evaluate`` → ``DriftReport``. See docs/drift.md.
"""

from pilotage.drift.baseline import (
    categorical_profile,
    count_categorical,
    count_numeric,
    count_window,
    numeric_profile,
)
from pilotage.drift.binned import (
    PSI_EPSILON,
    Chi2Result,
    TestResult,
    binned_mean_std,
    chi2,
    js_distance,
    ks_binned,
    psi,
    wasserstein_binned,
)
from pilotage.drift.errors import DriftInputError
from pilotage.drift.evaluate import (
    DEFAULT_THRESHOLDS,
    METHODS,
    PREDICTION_NAME,
    Reservoir,
    evaluate,
    resolve_method,
)
from pilotage.drift.reference import current_samples, reference_samples
from pilotage.drift.report import DriftReport, FeatureDrift
from pilotage.drift.samples import (
    bin_counts,
    js_samples,
    ks_2samp,
    psi_samples,
    quantile_edges,
    wasserstein_1d,
)
from pilotage.drift.special import chi2_sf, kolmogorov_sf, ks_pvalue
from pilotage.drift.window import add_windows, counters_reset, window_counts

__all__ = [
    "DEFAULT_THRESHOLDS",
    "METHODS",
    "PREDICTION_NAME",
    "PSI_EPSILON",
    "Chi2Result",
    "DriftInputError",
    "DriftReport",
    "FeatureDrift",
    "Reservoir",
    "TestResult",
    "add_windows",
    "bin_counts",
    "binned_mean_std",
    "categorical_profile",
    "chi2",
    "chi2_sf",
    "count_categorical",
    "count_numeric",
    "count_window",
    "counters_reset",
    "current_samples",
    "evaluate",
    "js_distance",
    "js_samples",
    "kolmogorov_sf",
    "ks_2samp",
    "ks_binned",
    "ks_pvalue",
    "numeric_profile",
    "psi",
    "psi_samples",
    "quantile_edges",
    "reference_samples",
    "resolve_method",
    "wasserstein_1d",
    "wasserstein_binned",
    "window_counts",
]
